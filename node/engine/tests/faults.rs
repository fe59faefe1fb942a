//! The engine on a disk that answers EIO or ENOSPC (`edgeblob_io::fault`): at every write of a
//! Put Blob and of a Put Block List (data chunks, then the owner's log record), and at its
//! flush. The failed operation is refused with an error, never acknowledged; reads meanwhile
//! return the old version or the new one, never other bytes; after a power cut the node opens
//! on the previous state or the new one, and takes and keeps new writes again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use edgeblob_engine::config::EngineConfig;
use edgeblob_engine::{BlockListItem, EngineError, Node};
use edgeblob_io::fault::{Crash, Failure, Op, SimDisk};
use edgeblob_testkit::engine::*;

fn cfg(dir: &std::path::Path) -> EngineConfig {
    EngineConfig { data_size: 64 << 20, ..config(dir) }
}

/// Reads blob `name` whole: its bytes, or None when it does not exist.
fn read(rt: &tokio::runtime::Runtime, n: &Node, name: &str) -> Option<Vec<u8>> {
    match rt.block_on(n.read_blob(1, key("c", name), None, Default::default())) {
        Ok((_, _, bytes)) => Some(bytes.to_vec()),
        Err(EngineError::BlobNotFound) => None,
        Err(e) => panic!("reading {name}: {e}"),
    }
}

/// Writes `data` as blob `name` the way `how` says: one Put Blob, or blocks and a list.
fn write(rt: &tokio::runtime::Runtime, n: &Node, name: &str, data: &[u8], blocks: bool) -> Result<(), EngineError> {
    if !blocks {
        return rt
            .block_on(n.put_blob(0, key("c", name), body(data), Default::default(), Default::default()))
            .map(|_| ());
    }
    let mut list = Vec::new();
    for (i, piece) in data.chunks(150_000).enumerate() {
        let id = format!("b{i:03}").into_bytes();
        rt.block_on(n.put_block(i % 2, key("c", name), id.clone(), body(piece)))?;
        list.push(BlockListItem::Latest(id));
    }
    rt.block_on(n.commit_block_list(key("c", name), list, Default::default(), Default::default())).map(|_| ())
}

/// A node on a fresh disk holding blob `x` at version `old`; returns the disk and the node.
fn prepared(rt: &tokio::runtime::Runtime, config: &EngineConfig, old: &[u8]) -> (SimDisk, Node) {
    let disk = SimDisk::new(config.data_size as usize);
    let n = Node::open_simulated(config.clone(), disk.clone()).unwrap();
    rt.block_on(n.create_container(ACCOUNT, "c", vec![])).unwrap();
    write(rt, &n, "x", old, false).unwrap();
    // Its references counted (v2): what follows is the next change's writes alone.
    rt.block_on(n.sync()).unwrap();
    (disk, n)
}

#[test]
fn eio_and_enospc_at_any_write_or_flush_refuse_the_change_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = cfg(dir.path());
    let rt = rt();
    let (old, new, later) = (data(1, 300_000, false), data(2, 450_000, false), data(3, 70_000, true));
    let mut failures_seen = 0;
    for blocks in [false, true] {
        // How many writes and flushes the change makes, from a run without faults.
        let (disk, n) = prepared(&rt, &config, &old);
        let (w0, f0) = (disk.count(Op::Write), disk.count(Op::Flush));
        write(&rt, &n, "x", &new, blocks).unwrap();
        // The change's writes and flushes, then those that count its references (v2).
        rt.block_on(n.sync()).unwrap();
        let (writes, flushes) = (disk.count(Op::Write) - w0, disk.count(Op::Flush) - f0);
        n.stop();
        assert!(writes >= 2, "data and a log record: {writes} writes");
        let targets = (0..writes).map(|i| (Op::Write, i)).chain((0..flushes).map(|i| (Op::Flush, i)));
        for (op, nth) in targets {
            for failure in [Failure::Io, Failure::NoSpace] {
                let what =
                    format!("{failure:?} at {op:?} #{nth} of a {}", if blocks { "block list" } else { "Put Blob" });
                let (disk, n) = prepared(&rt, &config, &old);
                disk.fail(op, nth, failure);
                let res = write(&rt, &n, "x", &new, blocks);
                let _ = rt.block_on(n.sync());
                let live = read(&rt, &n, "x");
                match &res {
                    Err(_) => failures_seen += 1,
                    // A fault after the change was durable, while its references were being
                    // counted: acknowledged, and it must stay.
                    Ok(()) => assert!(live == Some(new.clone()), "{what}: an acknowledged change is not read"),
                }
                assert!(live == Some(old.clone()) || live == Some(new.clone()), "{what}: a read returned other bytes");
                for how in [Crash::LoseUnflushed, Crash::Reorder { seed: nth }] {
                    let image = disk.crash(how);
                    let back = Node::open_simulated(config.clone(), image.clone())
                        .unwrap_or_else(|e| panic!("{what}, {how:?}: the node refused to open: {e}"));
                    let got = read(&rt, &back, "x");
                    assert!(got == Some(old.clone()) || got == Some(new.clone()), "{what}, {how:?}: other bytes");
                    assert!(
                        res.is_err() || got == Some(new.clone()),
                        "{what}, {how:?}: an acknowledged change was lost"
                    );
                    // The node takes writes again, and they survive a clean restart.
                    write(&rt, &back, "y", &later, blocks).unwrap_or_else(|e| panic!("{what}, {how:?}: {e}"));
                    back.stop();
                    let again = Node::open_simulated(config.clone(), image).unwrap();
                    assert_eq!(read(&rt, &again, "y"), Some(later.clone()), "{what}, {how:?}");
                    assert_eq!(read(&rt, &again, "x"), got, "{what}, {how:?}: x changed over a clean restart");
                    again.stop();
                }
                n.stop();
            }
        }
    }
    assert!(failures_seen >= 8, "too few faults to mean anything: {failures_seen}");
}

/// A power cut at any write of a change, whatever happens to the writes not yet flushed: the
/// blob is the old version or the new one afterwards, never a record whose data was lost
/// (before the log's barrier, a reordered cut kept Put Blob's record without its chunks).
#[test]
fn a_power_cut_at_any_write_of_a_change_leaves_the_old_or_the_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let config = cfg(dir.path());
    let rt = rt();
    let (old, new) = (data(1, 300_000, false), data(2, 450_000, false));
    for blocks in [false, true] {
        let (disk, n) = prepared(&rt, &config, &old);
        let w0 = disk.count(Op::Write);
        write(&rt, &n, "x", &new, blocks).unwrap();
        rt.block_on(n.sync()).unwrap();
        let writes = disk.count(Op::Write) - w0;
        n.stop();
        let mut outcomes = [0; 2];
        let mut missed = 0;
        for nth in 0..writes {
            for seed in 0..12 {
                let how = match seed {
                    0 => Crash::LoseUnflushed,
                    1 | 2 => Crash::Tear { write: usize::MAX, sectors: (nth as usize + seed as usize) % 9 },
                    _ => Crash::Reorder { seed: nth * 100 + seed },
                };
                let (disk, n) = prepared(&rt, &config, &old);
                disk.cut_power(Op::Write, nth, how);
                write(&rt, &n, "x", &new, blocks).unwrap();
                rt.block_on(n.sync()).unwrap();
                // Reference changes are sent in batches as they come, so a run may make a write
                // or two fewer than the one counted.
                let [image] = &disk.power_cuts()[..] else {
                    missed += 1;
                    n.stop();
                    continue;
                };
                n.stop();
                let back = Node::open_simulated(config.clone(), image.clone()).unwrap();
                let got = read(&rt, &back, "x");
                let what = format!("cut at write #{nth} of {writes}, {how:?}, blocks: {blocks}");
                assert!(got == Some(old.clone()) || got == Some(new.clone()), "{what}: other bytes");
                outcomes[(got == Some(new.clone())) as usize] += 1;
                back.stop();
            }
        }
        assert!(outcomes[0] > 0 && outcomes[1] > 0, "both outcomes occur: {outcomes:?}");
        assert!(missed * 10 <= writes * 12, "most cuts land: {missed} of {} missed", writes * 12);
    }
}

/// A Put Blob that deduplicated against a blob deleted right after, both acknowledged while the
/// shard that counts their one chunk cannot log (its log's stretch of the disk gone bad), then
/// a crash: at the restart both changes are on their way to that shard, and the delete's drop,
/// if counted first, must not free the chunk the new blob names (the Put's pin was in memory).
/// The two deliveries race, so the node opens several times from the same image. Debug builds
/// check at start that no chunk counted lies in free space (what catches it); every build then
/// writes new chunks, which may land in a freed chunk's space, and reads the blob back.
#[test]
fn a_drop_counted_before_another_shards_addition_after_a_crash_frees_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig { shards: Some(3), dedup: true, ..cfg(dir.path()) };
    let rt = rt();
    let disk = SimDisk::new(config.data_size as usize);
    let n = Node::open_simulated(config.clone(), disk.clone()).unwrap();
    rt.block_on(n.create_container(ACCOUNT, "c", vec![])).unwrap();
    let bytes = data(7, 3000, false);
    write(&rt, &n, "probe", &bytes, false).unwrap();
    let [chunk] = chunks_of(&n, &key("c", "probe"))[..] else { panic!("a blob of one chunk") };
    let shared = n.shared().clone();
    let counter = shared.ref_owner(&chunk);
    // Two blobs owned by the two other shards, the one deleted on the lower: its delivery
    // starts first at a restart, which makes the race's bad order the likelier.
    let owner = |name: &str| shared.owner_of(&key("c", name));
    let [x, y] = [0, 1, 2].into_iter().filter(|&s| s != counter).collect::<Vec<_>>()[..] else { unreachable!() };
    let name_on = |shard: usize| (0..1000).map(|i| format!("blob-{i}")).find(|n| owner(n) == shard).expect("a name");
    let (a, b) = (name_on(x), name_on(y));
    write(&rt, &n, &a, &bytes, false).unwrap();
    rt.block_on(n.delete_blob(key("c", "probe"), Default::default())).unwrap();
    rt.block_on(n.sync()).unwrap();
    assert_eq!(chunks_of(&n, &key("c", &a)), vec![chunk], "a deduplicated Put Blob");
    for half in 0..2 {
        let (offset, len) = shared.layout.log_half(counter as u32, half);
        disk.fail_within(Op::Write, offset, len, Failure::Io);
    }
    write(&rt, &n, &b, &bytes, false).unwrap();
    assert_eq!(chunks_of(&n, &key("c", &b)), vec![chunk], "deduplicated against a's chunk");
    rt.block_on(n.delete_blob(key("c", &a), Default::default())).unwrap();
    let image = disk.crash(Crash::LoseUnflushed).image();
    n.stop();
    for round in 0..4 {
        let back = Node::open_simulated(config.clone(), SimDisk::from_image(image.clone()))
            .unwrap_or_else(|e| panic!("round {round}: the node refused to open: {e}"));
        for i in 0..8 {
            write(&rt, &back, &format!("new-{i}"), &data(100 + i, 3000, false), false).unwrap();
        }
        assert_eq!(read(&rt, &back, &b), Some(bytes.clone()), "round {round}: the deduplicated blob");
        assert_eq!(read(&rt, &back, &a), None, "round {round}: the deleted blob");
        let report = rt.block_on(back.check_all()).unwrap();
        assert!(report.damaged.is_empty(), "round {round}: {:?}", report.damaged);
        assert_eq!(report.chunks, 9, "round {round}: b's chunk and the eight new ones");
        back.stop();
    }
}
