//! Metadata index spike: the same keys (blob keys of one shard, in 100 containers) and values
//! (~120 bytes, the size of a small blob's record) into redb, kept in a region of one data file
//! through its storage-backend trait, and into fjall, an LSM tree in its own directory.
//!
//! Each engine: insert in commits of `BATCH` keys, each made durable (a group commit's worth);
//! then with the OS cache dropped for its files and a small engine cache, point reads of random
//! keys (p50/p99/p999); then one ordered scan of everything. Reported: rates over the first and
//! the last tenth of the inserts, bytes on disk per key, resident memory.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

const BATCH: usize = 512;
const VALUE: usize = 120;
const READS: usize = 20_000;
const CACHE: usize = 16 << 20;

fn key(i: u64) -> Vec<u8> {
    // Containers interleave as clients would write them; names sort within a container.
    format!("devstoreaccount1\0container-{:03}\0dataset/shard-{:010}.tar", i % 100, i).into_bytes()
}

fn value(i: u64) -> Vec<u8> {
    let mut v = vec![0u8; VALUE];
    rand::rngs::StdRng::seed_from_u64(i).fill(&mut v[..]);
    v
}

fn rss_mib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0) >> 10
}

/// Drops the OS's cached pages of `path` (a file, or every file under a directory).
fn drop_cache(path: &Path) {
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap().flatten() {
            drop_cache(&e.path());
        }
    } else if let Ok(f) = File::open(path) {
        let _ = f.sync_all();
        // SAFETY: a valid descriptor; advice only.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
}

fn dir_bytes(path: &Path) -> u64 {
    if path.is_dir() {
        std::fs::read_dir(path).unwrap().flatten().map(|e| dir_bytes(&e.path())).sum()
    } else {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }
}

struct Report {
    name: &'static str,
    first: f64,
    last: f64,
    overall: f64,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    scan: f64,
    bytes_per_key: f64,
    rss: u64,
}

trait Index {
    fn put_batch(&mut self, items: &[(Vec<u8>, Vec<u8>)]);
    fn get(&self, k: &[u8]) -> Option<Vec<u8>>;
    fn scan(&self) -> u64;
    fn files(&self) -> &Path;
    fn disk_bytes(&self) -> u64;
}

fn run(name: &'static str, ix: &mut dyn Index, n: u64) -> Report {
    let started = Instant::now();
    let tenth = (n / 10).max(1);
    let mut first = 0.0;
    let mut mark = Instant::now();
    let mut i = 0;
    while i < n {
        let items: Vec<(Vec<u8>, Vec<u8>)> = (i..(i + BATCH as u64).min(n)).map(|j| (key(j), value(j))).collect();
        ix.put_batch(&items);
        let before = i;
        i += items.len() as u64;
        if before < tenth && i >= tenth {
            first = tenth as f64 / mark.elapsed().as_secs_f64();
        }
        if before < n - tenth && i >= n - tenth {
            mark = Instant::now();
        }
    }
    let last = tenth as f64 / mark.elapsed().as_secs_f64();
    let overall = n as f64 / started.elapsed().as_secs_f64();
    drop_cache(ix.files());
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut lat: Vec<Duration> = (0..READS)
        .map(|_| {
            let j = rng.gen_range(0..n);
            let t = Instant::now();
            let got = ix.get(&key(j));
            let d = t.elapsed();
            assert_eq!(got.as_deref(), Some(&value(j)[..]), "{name}: key {j}");
            d
        })
        .collect();
    lat.sort();
    let t = Instant::now();
    let seen = ix.scan();
    assert_eq!(seen, n, "{name}: the scan saw {seen} of {n}");
    let scan = n as f64 / t.elapsed().as_secs_f64();
    Report {
        name,
        first,
        last,
        overall,
        p50: lat[READS / 2],
        p99: lat[READS * 99 / 100],
        p999: lat[READS * 999 / 1000],
        scan,
        bytes_per_key: ix.disk_bytes() as f64 / n as f64,
        rss: rss_mib(),
    }
}

/// A region of a file, as the node would give redb a region of its device.
#[derive(Debug)]
struct Region {
    file: File,
    start: u64,
    max: u64,
    len: Mutex<u64>,
}

impl redb::StorageBackend for Region {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(*self.len.lock().unwrap())
    }
    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, std::io::Error> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, self.start + offset)?;
        Ok(buf)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        if len > self.max {
            return Err(std::io::Error::other("the metadata region is full"));
        }
        let mut cur = self.len.lock().unwrap();
        if len > *cur {
            // New space must read as zeros: it may hold old bytes of the region.
            let zeros = vec![0u8; (len - *cur) as usize];
            self.file.write_all_at(&zeros, self.start + *cur)?;
        }
        *cur = len;
        Ok(())
    }
    fn sync_data(&self, _eventual: bool) -> Result<(), std::io::Error> {
        self.file.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.file.write_all_at(data, self.start + offset)
    }
}

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("blobs");

struct Redb {
    db: redb::Database,
    path: std::path::PathBuf,
}

impl Index for Redb {
    fn put_batch(&mut self, items: &[(Vec<u8>, Vec<u8>)]) {
        let tx = self.db.begin_write().unwrap();
        {
            let mut t = tx.open_table(TABLE).unwrap();
            for (k, v) in items {
                t.insert(k.as_slice(), v.as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    fn get(&self, k: &[u8]) -> Option<Vec<u8>> {
        let tx = self.db.begin_read().unwrap();
        let t = tx.open_table(TABLE).unwrap();
        t.get(k).unwrap().map(|v| v.value().to_vec())
    }
    fn scan(&self) -> u64 {
        use redb::ReadableTable;
        let tx = self.db.begin_read().unwrap();
        let t = tx.open_table(TABLE).unwrap();
        t.iter().unwrap().map(|r| r.unwrap()).count() as u64
    }
    fn files(&self) -> &Path {
        &self.path
    }
    fn disk_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }
}

struct Fjall {
    ks: fjall::Keyspace,
    part: fjall::PartitionHandle,
    path: std::path::PathBuf,
}

impl Index for Fjall {
    fn put_batch(&mut self, items: &[(Vec<u8>, Vec<u8>)]) {
        let mut b = self.ks.batch();
        for (k, v) in items {
            b.insert(&self.part, k.as_slice(), v.as_slice());
        }
        b.commit().unwrap();
        self.ks.persist(fjall::PersistMode::SyncData).unwrap();
    }
    fn get(&self, k: &[u8]) -> Option<Vec<u8>> {
        self.part.get(k).unwrap().map(|v| v.to_vec())
    }
    fn scan(&self) -> u64 {
        self.part.iter().map(|r| r.unwrap()).count() as u64
    }
    fn files(&self) -> &Path {
        &self.path
    }
    fn disk_bytes(&self) -> u64 {
        dir_bytes(&self.path)
    }
}

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let which = std::env::args().nth(2).unwrap_or_else(|| "both".into());
    let dir = std::env::var("SPIKE_DIR").unwrap_or_else(|_| "/tmp/index-spike".into());
    let dir = Path::new(&dir);
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let mut reports = Vec::new();
    if which == "both" || which == "redb" {
        let path = dir.join("data.file");
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        // The index region starts past a first megabyte, as it would past a superblock.
        let backend = Region { file, start: 1 << 20, max: 64 << 30, len: Mutex::new(0) };
        let db = redb::Database::builder().set_cache_size(CACHE).create_with_backend(backend).unwrap();
        let mut ix = Redb { db, path };
        reports.push(run("redb (region of a file)", &mut ix, n));
    }
    if which == "both" || which == "fjall" {
        let path = dir.join("fjall");
        let ks = fjall::Config::new(&path).cache_size(CACHE as u64).open().unwrap();
        let part = ks.open_partition("blobs", fjall::PartitionCreateOptions::default()).unwrap();
        let mut ix = Fjall { ks, part, path };
        reports.push(run("fjall (directory)", &mut ix, n));
    }
    println!("| index | keys | insert first 10% | last 10% | overall | get p50 | p99 | p99.9 | scan | disk bytes/key | RSS MiB |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in reports {
        println!(
            "| {} | {n} | {:.0}/s | {:.0}/s | {:.0}/s | {:?} | {:?} | {:?} | {:.0}/s | {:.0} | {} |",
            r.name, r.first, r.last, r.overall, r.p50, r.p99, r.p999, r.scan, r.bytes_per_key, r.rss
        );
    }
}
