//! The metadata log on a disk that fails as real ones do (`edgeblob_io::fault`): the power cut
//! at every write and every flush of a run that checkpoints several times, with the unflushed
//! writes lost, persisted in any order, or torn at a sector; EIO and ENOSPC on writes, flushes
//! and recovery's reads. Whatever happens, recovery finds the state after some prefix of the
//! committed records that holds every acknowledged one (the previous state or a newer one), or
//! refuses with a clear error; never a state that no prefix gives.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::rc::Rc;

use edgeblob_io::fault::{Crash, Failure, Op, SimDisk};
use edgeblob_io::BlockDevice;
use edgeblob_meta::model::*;
use edgeblob_meta::replay::{format_log, RecoverError};
use edgeblob_meta::wal::LogPlace;
use edgeblob_meta::{MetaError, MetaStore, Record, ShardMeta};

/// Small halves, so that a run switches halves (checkpoints) several times.
const HALF: u64 = 32 << 10;
const RECORDS: u32 = 120;

fn place() -> LogPlace {
    LogPlace { shard: 0, uuid: [3; 16], halves: [(0, HALF), (HALF, HALF)] }
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f)
}

/// Record `i`: a blob of 1 to 40 chunks committed under one of six names, or (every third) a
/// small block staged on one of two others, so that the state (and so the checkpoints) stays
/// within a small half's limits while frames of varying size straddle pages.
fn record(i: u32) -> Record {
    let chunks = |n: u32| -> Vec<ChunkRef> {
        (0..n)
            .map(|c| ChunkRef { hash: [i as u8; 16], offset: 4096 * (i + c) as u64, stored_len: 1, len: 1, flags: 0 })
            .collect()
    };
    if i.is_multiple_of(3) {
        return Record::BlockStaged {
            key: BlobKey::new("acct", "c", &format!("staged-{}", i % 2)),
            container_id: 1,
            block: StagedBlock {
                block: Block { id: format!("block-{}", i % 2).into_bytes(), size: i as u64, chunks: chunks(1).into() },
                staged_ns: i as i64,
            },
        };
    }
    Record::BlobPut {
        key: BlobKey::new("acct", "c", &format!("blob-{}", i % 6)),
        blob: Blob {
            container_id: 1,
            etag: i as u64,
            created_ns: 0,
            modified_ns: i as i64,
            size: i as u64,
            props: BlobProps::default(),
            blocks: vec![Block { id: Vec::new(), size: i as u64, chunks: chunks((i * 7) % 40 + 1).into() }],
            single_put: true,
        },
    }
}

/// The state after each prefix of the records: `states[k]` has the first `k` applied.
fn prefix_states() -> Vec<ShardMeta> {
    let mut states = vec![ShardMeta::default()];
    for i in 0..RECORDS {
        let mut next = states.last().unwrap().clone();
        next.apply(&record(i));
        states.push(next);
    }
    states
}

fn formatted() -> SimDisk {
    let disk = SimDisk::new(2 * HALF as usize);
    run(async {
        let dev = disk.device();
        format_log(&place(), &dev).await.unwrap();
        dev.flush().await.unwrap();
    });
    disk
}

/// What a run did: records committed, and for each acknowledged one the disk's operation
/// counts (writes, flushes) when its acknowledgement arrived.
struct Run {
    committed: u32,
    acked_at: Vec<(u64, u64)>,
    /// Half switches (checkpoints) the run made.
    switches: u64,
}

impl Run {
    /// Records acknowledged before the `nth` operation of kind `op` began.
    fn acked_before(&self, op: Op, nth: u64) -> u32 {
        let pick = |&(w, f): &(u64, u64)| if op == Op::Write { w } else { f };
        self.acked_at.iter().filter(|a| pick(a) <= nth).count() as u32
    }
}

/// Commits the records one after another, each awaited, until one fails. After a failure the
/// log must refuse every further change.
fn workload(disk: &SimDisk) -> Run {
    run(async {
        let dev: Rc<dyn BlockDevice> = Rc::new(disk.device());
        let (mut store, _) = MetaStore::open(place(), dev).await.unwrap();
        let first = store.generation();
        let mut r = Run { committed: 0, acked_at: Vec::new(), switches: 0 };
        for i in 0..RECORDS {
            let Ok(c) = store.commit(record(i)) else { break };
            r.committed += 1;
            if c.durable.await.is_err() {
                assert_eq!(store.commit(record(i + 1)).err(), Some(MetaError::Failed), "a failed log takes more");
                break;
            }
            r.acked_at.push((disk.count(Op::Write), disk.count(Op::Flush)));
        }
        r.switches = store.generation() - first;
        r
    })
}

/// Recovers `disk` and checks its state is a prefix of at least `acked` records; then checks
/// the recovered log takes a new record that survives a clean reopen.
fn check_recovery(disk: &SimDisk, acked: u32, committed: u32, states: &[ShardMeta], what: &str) {
    let k = run(async {
        let dev: Rc<dyn BlockDevice> = Rc::new(disk.device());
        let (mut store, _) =
            MetaStore::open(place(), dev).await.unwrap_or_else(|e| panic!("{what}: recovery refused: {e}"));
        let k = (acked..=committed)
            .find(|&k| store.state == states[k as usize])
            .unwrap_or_else(|| panic!("{what}: recovered a state no prefix of {acked}..={committed} records gives"));
        let mut want = states[k as usize].clone();
        let extra = record(1000 + k);
        want.apply(&extra);
        store.commit(extra).unwrap().durable.await.unwrap();
        assert_eq!(store.state, want);
        k
    });
    let again = run(async {
        let (store, _) = MetaStore::open(place(), Rc::new(disk.device())).await.unwrap();
        store.state
    });
    let mut want = states[k as usize].clone();
    want.apply(&record(1000 + k));
    assert_eq!(again, want, "{what}: a record appended after recovery did not survive a reopen");
}

/// Writes and flushes a whole run makes on a formatted disk.
fn operations_of_a_clean_run() -> (u64, u64) {
    let disk = formatted();
    let before = (disk.count(Op::Write), disk.count(Op::Flush));
    let run = workload(&disk);
    assert_eq!(run.acked_at.len(), RECORDS as usize);
    assert!(run.switches >= 3, "the run checkpointed {} times", run.switches);
    (disk.count(Op::Write) - before.0, disk.count(Op::Flush) - before.1)
}

#[test]
fn a_power_cut_at_any_write_or_flush_keeps_every_acknowledged_record() {
    let states = prefix_states();
    // One clean run to learn how many writes and flushes a run makes.
    let (writes, flushes) = operations_of_a_clean_run();
    assert!(writes > RECORDS as u64, "the run switched halves: {writes} writes");
    let mut cuts = 0;
    for op in [Op::Write, Op::Flush] {
        let total = if op == Op::Write { writes } else { flushes };
        for nth in 0..total {
            let modes = [
                Crash::LoseUnflushed,
                Crash::Reorder { seed: nth },
                Crash::Tear { write: usize::MAX, sectors: (nth % 9) as usize },
                Crash::Tear { write: (nth % 3) as usize, sectors: (nth % 17) as usize },
            ];
            for how in modes {
                let disk = formatted();
                // Counted from the formatted disk: the same operations as the clean run.
                disk.cut_power(op, nth, how);
                let r = workload(&disk);
                let [cut] = &disk.power_cuts()[..] else { panic!("{op:?} #{nth} never happened") };
                let what = format!("power cut at {op:?} #{nth}, {how:?}");
                check_recovery(cut, r.acked_before(op, nth), r.committed, &states, &what);
                cuts += 1;
            }
        }
    }
    assert!(cuts > 800, "too few power cuts to mean anything: {cuts}");
}

#[test]
fn eio_and_enospc_fail_the_log_and_lose_nothing_acknowledged() {
    let states = prefix_states();
    let (writes, flushes) = operations_of_a_clean_run();
    for (op, total) in [(Op::Write, writes), (Op::Flush, flushes)] {
        for nth in (0..total).step_by(7) {
            for failure in [Failure::Io, Failure::NoSpace] {
                let disk = formatted();
                disk.fail(op, nth, failure);
                let r = workload(&disk);
                assert!(r.committed < RECORDS || r.acked_at.len() < RECORDS as usize, "{op:?} #{nth}: no failure seen");
                let acked = r.acked_at.len() as u32;
                for how in [Crash::LoseUnflushed, Crash::Reorder { seed: nth }] {
                    let what = format!("{failure:?} at {op:?} #{nth}, then {how:?}");
                    check_recovery(&disk.crash(how), acked, r.committed, &states, &what);
                }
            }
        }
    }
}

#[test]
fn a_read_error_during_recovery_is_a_clear_refusal() {
    let disk = formatted();
    workload(&disk);
    let before = disk.count(Op::Read);
    run(async { MetaStore::open(place(), Rc::new(disk.device())).await.unwrap() });
    let reads = disk.count(Op::Read) - before;
    assert!(reads >= 2, "recovery reads both halves: {reads} reads");
    for nth in 0..reads {
        disk.fail(Op::Read, nth, Failure::Io);
        let err = run(async { MetaStore::open(place(), Rc::new(disk.device())).await.err() });
        let err = err.unwrap_or_else(|| panic!("read #{nth} failed, yet recovery went on"));
        assert!(matches!(err, RecoverError::Io { .. }), "{err}");
        assert!(err.to_string().contains("shard 0"), "the error names the shard: {err}");
    }
}

/// What a record points at is written before the record is queued; the log makes it durable
/// before the record: whatever a power cut keeps of the writes in flight, a recovered record
/// never lacks the data written before it.
#[test]
fn data_written_before_a_record_is_durable_whenever_the_record_is() {
    let page = edgeblob_io::PAGE_SIZE;
    let mut kept = 0;
    for seed in 0..64u64 {
        // The log's two halves, then one page standing for chunk data.
        let disk = SimDisk::new(2 * HALF as usize + page);
        let data_at = 2 * HALF;
        run(async {
            let dev = disk.device();
            format_log(&place(), &dev).await.unwrap();
            dev.flush().await.unwrap();
            let (mut store, _) = MetaStore::open(place(), Rc::new(disk.device())).await.unwrap();
            let mut buf = edgeblob_io::AlignedBuf::zeroed(page);
            buf.full_mut().fill(0xAB);
            dev.write(buf, data_at).await.0.unwrap();
            // The cut lands on the record's write, with the data write still unflushed or not.
            disk.cut_power(Op::Write, 0, Crash::Reorder { seed });
            store.commit(record(0)).unwrap().durable.await.unwrap();
        });
        let [cut] = &disk.power_cuts()[..] else { panic!("the record was never written") };
        let image = cut.image();
        let recovered = run(async { MetaStore::open(place(), Rc::new(cut.device())).await.unwrap().0.state });
        if recovered == prefix_states()[1] {
            kept += 1;
            assert!(image[data_at as usize..].iter().all(|&b| b == 0xAB), "seed {seed}: the record without its data");
        } else {
            assert_eq!(recovered, ShardMeta::default(), "seed {seed}");
        }
    }
    assert!(kept > 0, "no cut kept the record: the test shows nothing");
}
