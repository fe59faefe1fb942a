//! What each workload asks for next. A `Plan` holds the data set a job reads (prepared
//! beforehand, not measured) and each job's cursor; request-issuing tasks take operations from it
//! until a bound (bytes, operations or time) is reached.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::data::{mix, name_key, Pattern};
use crate::job::{Job, Workload};

/// One blob of a data set, and how its bytes were made.
#[derive(Debug, Clone)]
pub struct Item {
    pub name: String,
    pub key: u64,
    pub size: u64,
    pub pattern: Pattern,
}

impl Item {
    pub fn new(job: &Job, name: String, size: u64, unit: u64) -> Item {
        let key = name_key(job.randseed, &name);
        Item { name, key, size, pattern: pattern(job, unit) }
    }

    /// The metadata value that says which data a blob holds, so a later run can reuse it.
    pub fn signature(&self) -> String {
        let p = &self.pattern;
        format!("v1-{}-{}-{}-{}", p.seed, p.compress_ratio, p.dedupe_percentage, p.unit)
    }
}

pub fn pattern(job: &Job, unit: u64) -> Pattern {
    Pattern {
        seed: job.randseed,
        compress_ratio: job.compress_ratio,
        dedupe_percentage: job.dedupe_percentage,
        unit: unit.max(1),
    }
}

/// Names of the blobs each workload reads.
pub fn dataset(job: &Job) -> Vec<Item> {
    use Workload::*;
    let n = job.nrfiles;
    match job.workload {
        CheckpointRead => {
            (0..job.numjobs).map(|j| Item::new(job, format!("ckpt/{j}"), job.size.max, job.block_size)).collect()
        }
        ShardRead => (0..n).map(|i| Item::new(job, format!("shards/{i:05}"), job.size.max, job.block_size)).collect(),
        RandomRange | Mixed => {
            (0..n).map(|i| Item::new(job, format!("large/{i:03}"), job.size.max, job.block_size)).collect()
        }
        SmallObjects => (0..n)
            .map(|i| {
                let size = pick_size(mix(job.randseed ^ i), job.size.min, job.size.max);
                Item::new(job, format!("small/{i:06}"), size, size)
            })
            .collect(),
        List => (0..n).map(|i| Item::new(job, list_name(i), job.size.max, job.size.max)).collect(),
        Hydrate => {
            (0..n).map(|i| Item::new(job, format!("hydrate-src/{i:03}"), job.size.max, job.block_size)).collect()
        }
        CheckpointWrite => Vec::new(),
    }
}

/// Listing test names: 100 "directories" so a delimiter listing has prefixes to fold.
pub fn list_name(i: u64) -> String {
    format!("list/d{:02}/f{i:07}", i % 100)
}

fn pick_size(r: u64, min: u64, max: u64) -> u64 {
    if max <= min {
        min
    } else {
        min + r % (max - min + 1)
    }
}

/// A blob being uploaded in blocks (Put Block, or Put Block From URL from `source`).
pub struct Upload {
    pub item: Item,
    pub bs: u64,
    pub blocks: u32,
    done: AtomicU32,
    /// The blob copied from (hydrate): index into the source data set.
    pub source: Option<usize>,
}

impl Upload {
    pub fn block(&self, index: u32) -> (u64, u64) {
        let off = u64::from(index) * self.bs;
        (off, self.bs.min(self.item.size - off))
    }

    /// Counts a stored block; true for the last one (the caller commits the list).
    pub fn block_done(&self) -> bool {
        self.done.fetch_add(1, Ordering::AcqRel) + 1 == self.blocks
    }
}

pub fn block_id(index: u32) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("block-{index:08}"))
}

pub enum Op {
    PutBlock { upload: Arc<Upload>, index: u32 },
    PutBlockFromUrl { upload: Arc<Upload>, index: u32 },
    GetRange { item: usize, offset: u64, len: u64 },
    GetBlob { item: usize },
    Head { item: usize },
    PutBlob { item: Item },
    List { delimiter: bool },
}

/// Per job: what was issued, and where uploads and sequential reads stand.
#[derive(Default)]
struct Cursor {
    upload: Option<(Arc<Upload>, u32)>,
    uploads_started: u64,
}

struct JobState {
    bytes: AtomicU64,
    ops: AtomicU64,
    seq: AtomicU64,
    cursor: Mutex<Cursor>,
}

pub struct Plan {
    pub job: Job,
    /// The blobs read (or, for hydrate, copied from the source).
    pub items: Vec<Item>,
    jobs: Vec<JobState>,
}

/// A per-task random stream (SplitMix64), from the seed, so a run repeats.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, job: usize, task: usize) -> Rng {
        Rng(mix(seed ^ ((job as u64) << 40) ^ ((task as u64) << 20) ^ 0xA5A5))
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

const ALIGN: u64 = 4096;

impl Plan {
    pub fn new(job: Job) -> Plan {
        let items = dataset(&job);
        let jobs = (0..job.numjobs)
            .map(|_| JobState {
                bytes: AtomicU64::new(0),
                ops: AtomicU64::new(0),
                seq: AtomicU64::new(0),
                cursor: Mutex::new(Cursor::default()),
            })
            .collect();
        Plan { job, items, jobs }
    }

    /// Claims `bytes` and one operation against job `j`'s bounds.
    fn claim(&self, j: usize, bytes: u64) -> bool {
        let s = &self.jobs[j];
        if let Some(n) = self.job.number_ios {
            if s.ops.fetch_add(1, Ordering::Relaxed) >= n {
                return false;
            }
        }
        match self.job.io_size {
            Some(limit) => s.bytes.fetch_add(bytes, Ordering::Relaxed) < limit,
            None => true,
        }
    }

    /// The next operation for a task of job `j`, or None when the job's bounds are reached.
    pub fn next(&self, j: usize, rng: &mut Rng) -> Option<Op> {
        let job = &self.job;
        use Workload::*;
        match job.workload {
            CheckpointWrite | Hydrate => self.next_block(j, rng),
            CheckpointRead => {
                let item = j;
                let size = self.items[item].size;
                let k = self.jobs[j].seq.fetch_add(1, Ordering::Relaxed);
                let per_pass = size.div_ceil(job.bs.max);
                let offset = (k % per_pass) * job.bs.max;
                let len = job.bs.max.min(size - offset);
                self.claim(j, len).then_some(Op::GetRange { item, offset, len })
            }
            ShardRead => {
                // Each job starts at its own place in the list and goes round it.
                let k = self.jobs[j].seq.fetch_add(1, Ordering::Relaxed);
                let n = self.items.len() as u64;
                let item = ((k + j as u64 * n / job.numjobs as u64) % n) as usize;
                self.claim(j, self.items[item].size).then_some(Op::GetBlob { item })
            }
            RandomRange => {
                let op = self.random_range(rng);
                let bytes = if let Op::GetRange { len, .. } = op { len } else { 0 };
                self.claim(j, bytes).then_some(op)
            }
            Mixed => {
                if rng.below(100) < u64::from(job.rwmixread) {
                    let op = self.random_range(rng);
                    let bytes = if let Op::GetRange { len, .. } = op { len } else { 0 };
                    return self.claim(j, bytes).then_some(op);
                }
                let n = self.jobs[j].seq.fetch_add(1, Ordering::Relaxed);
                let size = pick_size(rng.next(), job.bs.min, job.bs.max);
                let item = Item::new(job, format!("mixed-put/{j}/{n:08}"), size, size);
                self.claim(j, size).then_some(Op::PutBlob { item })
            }
            SmallObjects => match weighted(&job.mix, rng) {
                "put" => {
                    let n = self.jobs[j].seq.fetch_add(1, Ordering::Relaxed);
                    let size = pick_size(rng.next(), job.size.min, job.size.max);
                    let item = Item::new(job, format!("small-put/{j}/{n:08}"), size, size);
                    self.claim(j, size).then_some(Op::PutBlob { item })
                }
                op => {
                    let item = rng.below(self.items.len() as u64) as usize;
                    if op == "head" {
                        self.claim(j, 0).then_some(Op::Head { item })
                    } else {
                        self.claim(j, self.items[item].size).then_some(Op::GetBlob { item })
                    }
                }
            },
            List => {
                let delimiter = weighted(&job.mix, rng) == "delimiter";
                self.claim(j, 0).then_some(Op::List { delimiter })
            }
        }
    }

    fn random_range(&self, rng: &mut Rng) -> Op {
        let job = &self.job;
        let item = rng.below(self.items.len() as u64) as usize;
        let size = self.items[item].size;
        let len = pick_size(rng.next(), job.bs.min, job.bs.max).min(size);
        // Offsets aligned to 4 KiB where the range allows, as an mmap'd reader's page faults are.
        let slots = (size - len) / ALIGN + 1;
        let mut offset = rng.below(slots) * ALIGN;
        if offset + len > size {
            offset = size - len;
        }
        Op::GetRange { item, offset, len }
    }

    /// The next block of job `j`'s current upload, starting a new blob when the last is all
    /// issued and the bounds allow one more whole blob.
    fn next_block(&self, j: usize, _rng: &mut Rng) -> Option<Op> {
        let job = &self.job;
        let mut c = self.jobs[j].cursor.lock().unwrap_or_else(|p| p.into_inner());
        let exhausted = c.upload.as_ref().is_none_or(|(u, next)| *next >= u.blocks);
        if exhausted {
            let n = c.uploads_started;
            let size = job.size.max;
            if job.io_size.is_some_and(|limit| n * size >= limit) || job.number_ios.is_some_and(|l| n >= l) {
                return None;
            }
            let name = match (job.workload, n) {
                (Workload::Hydrate, _) => format!("hydrate/{j}.{n}"),
                (_, 0) => format!("ckpt/{j}"),
                _ => format!("ckpt/{j}.{n}"),
            };
            let source = (job.workload == Workload::Hydrate).then(|| (j + n as usize) % self.items.len());
            // A copy holds the source's bytes, so it is checked against the source's pattern.
            let item = match source {
                Some(s) => Item { name, ..self.items[s].clone() },
                None => Item::new(job, name, size, job.bs.max),
            };
            let blocks = size.div_ceil(job.bs.max) as u32;
            let upload = Upload { item, bs: job.bs.max, blocks, done: AtomicU32::new(0), source };
            c.upload = Some((Arc::new(upload), 0));
            c.uploads_started += 1;
        }
        let (upload, next) = c.upload.as_mut()?;
        let index = *next;
        *next += 1;
        self.jobs[j].bytes.fetch_add(upload.block(index).1, Ordering::Relaxed);
        let upload = upload.clone();
        Some(if job.workload == Workload::Hydrate {
            Op::PutBlockFromUrl { upload, index }
        } else {
            Op::PutBlock { upload, index }
        })
    }
}

fn weighted<'a>(mix: &'a [(String, u32)], rng: &mut Rng) -> &'a str {
    let total: u32 = mix.iter().map(|(_, w)| w).sum();
    let mut r = rng.below(u64::from(total)) as u32;
    for (op, w) in mix {
        if r < *w {
            return op;
        }
        r -= w;
    }
    mix.last().map(|(o, _)| o.as_str()).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{parse_file, resolve};

    fn plan(settings: &str) -> Plan {
        let (_, mut jobs) = resolve(parse_file(&format!("[j]\n{settings}\n")).unwrap()).unwrap();
        Plan::new(jobs.remove(0))
    }

    fn drain(p: &Plan, j: usize) -> Vec<Op> {
        let mut rng = Rng::new(1, j, 0);
        std::iter::from_fn(|| p.next(j, &mut rng)).take(100_000).collect()
    }

    #[test]
    fn checkpoint_write_issues_every_block_of_whole_blobs_once() {
        let p = plan("workload=checkpoint-write\nsize=10M\nbs=4M\nio_size=20M\nnumjobs=2");
        let ops = drain(&p, 1);
        let mut seen = Vec::new();
        for op in &ops {
            let Op::PutBlock { upload, index } = op else { panic!("not a Put Block") };
            seen.push((upload.item.name.clone(), *index, upload.block(*index)));
        }
        assert_eq!(
            seen,
            vec![
                ("ckpt/1".into(), 0, (0, 4 << 20)),
                ("ckpt/1".into(), 1, (4 << 20, 4 << 20)),
                ("ckpt/1".into(), 2, (8 << 20, 2 << 20)),
                ("ckpt/1.1".into(), 0, (0, 4 << 20)),
                ("ckpt/1.1".into(), 1, (4 << 20, 4 << 20)),
                ("ckpt/1.1".into(), 2, (8 << 20, 2 << 20)),
            ]
        );
        let Op::PutBlock { upload, .. } = &ops[0] else { unreachable!() };
        assert!(!upload.block_done() && !upload.block_done() && upload.block_done());
    }

    #[test]
    fn checkpoint_read_covers_the_blob_once_per_pass() {
        let p = plan("workload=checkpoint-read\nsize=10M\nbs=4M\nnumjobs=2");
        let ranges: Vec<_> = drain(&p, 0)
            .into_iter()
            .map(|op| match op {
                Op::GetRange { item, offset, len } => (item, offset, len),
                _ => panic!("not a range read"),
            })
            .collect();
        assert_eq!(ranges, vec![(0, 0, 4 << 20), (0, 4 << 20, 4 << 20), (0, 8 << 20, 2 << 20)]);
    }

    #[test]
    fn random_ranges_are_aligned_and_inside_the_blob() {
        let p = plan("workload=random-range\nsize=1M\nbs=4K-64K\nnrfiles=3\nnumber_ios=2000");
        let ops = drain(&p, 0);
        assert_eq!(ops.len(), 2000);
        let mut lens = std::collections::HashSet::new();
        for op in ops {
            let Op::GetRange { item, offset, len } = op else { panic!() };
            assert!(item < 3 && offset % 4096 == 0 && offset + len <= 1 << 20 && (4096..=65536).contains(&len));
            lens.insert(len);
        }
        assert!(lens.len() > 100, "sizes are drawn from the range");
    }

    #[test]
    fn small_objects_follow_the_mix() {
        let p = plan("workload=small-objects\nnrfiles=50\nmix=get:60,put:30,head:10\nnumber_ios=10000");
        let (mut get, mut put, mut head) = (0, 0, 0);
        for op in drain(&p, 0) {
            match op {
                Op::GetBlob { .. } => get += 1,
                Op::PutBlob { item } => {
                    assert!((4096..=256 << 10).contains(&item.size));
                    put += 1
                }
                Op::Head { .. } => head += 1,
                _ => panic!(),
            }
        }
        assert_eq!(get + put + head, 10000);
        assert!((5700..6300).contains(&get) && (2700..3300).contains(&put) && (800..1200).contains(&head));
    }

    #[test]
    fn hydrate_copies_source_blobs_with_their_pattern() {
        let p = plan("workload=hydrate\nsize=16M\nbs=8M\nnrfiles=2");
        let ops = drain(&p, 1);
        assert_eq!(ops.len(), 2);
        let Op::PutBlockFromUrl { upload, .. } = &ops[0] else { panic!() };
        assert_eq!((upload.item.name.as_str(), upload.source), ("hydrate/1.0", Some(1)));
        assert_eq!(upload.item.key, p.items[1].key);
    }

    #[test]
    fn block_ids_have_one_length() {
        assert_eq!(block_id(0).len(), block_id(49_999).len());
    }
}
