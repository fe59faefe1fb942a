//! The index (`meta::index`): memtables flushed through its thread land with the LSN they cover,
//! in one step that a power cut cannot split; ranges page through it.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use edgeblob_io::fault::{Crash, Op, SimDisk};
use edgeblob_meta::index::db::Index;
use edgeblob_meta::index::memtable::{successor, Memtable};
use edgeblob_meta::index::region::{IndexPlace, RegionBackend, Segments, SharedDevice};
use edgeblob_meta::index::thread::IndexThread;
use edgeblob_meta::index::Table;

const MIB: u64 = 1 << 20;

fn place() -> IndexPlace {
    IndexPlace { shard: 0, uuid: [1; 16], header: 64 * 1024, segment_len: MIB }
}

fn disk() -> SimDisk {
    let disk = SimDisk::new(32 * MIB as usize);
    RegionBackend::format(&disk.device(), &place()).unwrap();
    disk
}

fn open(disk: &SimDisk) -> Index {
    Index::open(backend(disk), 2 * MIB as usize).unwrap()
}

/// The index storage on `disk`, granted the segments it does not hold.
fn backend(disk: &SimDisk) -> RegionBackend {
    let segments = Arc::new(Segments::default());
    let backend = RegionBackend::open(Arc::new(disk.device()) as SharedDevice, place(), segments.clone()).unwrap();
    let held = backend.segments();
    segments.grant((4..32).map(|i| i * MIB).filter(|s| !held.contains(s)));
    backend
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().unwrap()
}

/// Blob `i`'s key, in one container.
fn blob_key(i: u32) -> Vec<u8> {
    format!("acct\0c\0{i:06}").into_bytes()
}

/// Generation `g` of the data: keys 0..n of Blobs, each value naming the generation; every
/// tenth key of the previous generation deleted.
fn generation(g: u64, n: u32) -> Memtable {
    let mut m = Memtable::default();
    for i in 0..n {
        let key = blob_key(i);
        if g > 0 && i % 10 == 0 {
            m.delete(Table::Blobs, key);
        } else {
            m.put(Table::Blobs, key, format!("g{g}-{i}").into_bytes());
        }
    }
    m.applied(100 * (g + 1));
    m
}

/// Whether the index holds exactly generation `g` (and says so by its LSN).
fn holds_generation(ix: &Index, g: u64, n: u32) -> bool {
    let page = ix.range(Table::Blobs, b"", None, usize::MAX).unwrap();
    let want = generation(g, n);
    let expected: Vec<(Vec<u8>, Vec<u8>)> =
        want.changes().filter_map(|(_, k, v)| v.clone().map(|v| (k.to_vec(), v))).collect();
    ix.lsn().unwrap() == want.last_lsn() && page.complete && page.entries == expected
}

#[test]
fn flushes_land_with_their_lsn_and_survive_reopening() {
    let disk = disk();
    let rt = rt();
    {
        let thread = IndexThread::spawn("index-0".into(), open(&disk)).unwrap();
        for g in 0..3 {
            let m = generation(g, 2000);
            rt.block_on(thread.run(move |ix| ix.write(&m))).unwrap().unwrap();
        }
        let lsn = rt.block_on(thread.run(|ix| ix.lsn())).unwrap().unwrap();
        assert_eq!(lsn, 300);
    }
    let ix = open(&disk.crash(Crash::LoseUnflushed));
    assert!(holds_generation(&ix, 2, 2000));
    assert_eq!(ix.get(Table::Blobs, &blob_key(10)).unwrap(), None, "deleted");
    assert_eq!(ix.get(Table::Blobs, &blob_key(11)).unwrap().as_deref(), Some(&b"g2-11"[..]));
    assert_eq!(ix.get(Table::Staged, &blob_key(11)).unwrap(), None, "tables are apart");
}

#[test]
fn a_power_cut_in_a_flush_leaves_the_old_or_the_new_generation_with_its_lsn() {
    let base = disk();
    {
        let ix = open(&base);
        ix.write(&generation(0, 600)).unwrap();
    }
    let base = base.crash(Crash::LoseUnflushed);
    let probe = base.crash(Crash::LoseUnflushed);
    let (writes, flushes) = {
        let ix = open(&probe);
        let (w, f) = (probe.count(Op::Write), probe.count(Op::Flush));
        ix.write(&generation(1, 600)).unwrap();
        (probe.count(Op::Write) - w, probe.count(Op::Flush) - f)
    };
    let step = (writes / 12).max(1);
    let mut cases = 0;
    for (op, n) in
        (0..writes).step_by(step as usize).map(|n| (Op::Write, n)).chain((0..flushes).map(|n| (Op::Flush, n)))
    {
        for how in [Crash::LoseUnflushed, Crash::Reorder { seed: n + 1 }, Crash::Tear { write: n as usize, sectors: 5 }]
        {
            let disk = base.crash(Crash::LoseUnflushed);
            {
                let ix = open(&disk);
                disk.cut_power(op, n, how);
                ix.write(&generation(1, 600)).unwrap();
            }
            for after in disk.power_cuts() {
                let ix = open(&after);
                assert!(
                    holds_generation(&ix, 0, 600) || holds_generation(&ix, 1, 600),
                    "a cut at {op:?} #{n} ({how:?}) split a flush from its LSN"
                );
                cases += 1;
            }
        }
    }
    assert!(cases > 12, "{cases} cuts");
}

/// Every blob entry, read in pages of `n` entries, each page resuming after the last key of the
/// one before.
fn in_pages(ix: &Index, n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut from = Vec::new();
    let mut seen = Vec::new();
    loop {
        let page = ix.range(Table::Blobs, &from, None, n).unwrap();
        assert!(page.entries.len() <= n);
        let last = page.entries.last().map(|(k, _)| successor(k));
        seen.extend(page.entries);
        match (page.complete, last) {
            (false, Some(next)) => from = next,
            _ => return seen,
        }
    }
}

#[test]
fn ranges_page_through_every_key_once_in_order() {
    let disk = disk();
    let ix = open(&disk);
    ix.write(&generation(0, 50)).unwrap();
    ix.write(&generation(1, 30)).unwrap();
    let seen = in_pages(&ix, 7);
    let names: Vec<Vec<u8>> = seen.iter().map(|(k, _)| k.clone()).collect();
    let want: Vec<Vec<u8>> = (0..50).filter(|i| !(*i < 30 && i % 10 == 0)).map(blob_key).collect();
    assert_eq!(names, want);
    let value =
        |i: u32| seen.iter().find(|(key, _)| *key == blob_key(i)).map(|(_, v)| String::from_utf8(v.clone()).unwrap());
    assert_eq!(value(6).as_deref(), Some("g1-6"), "the newer flush wins");
    assert_eq!(value(40).as_deref(), Some("g0-40"));
    // A bounded range ends at its bound.
    let page = ix.range(Table::Blobs, &blob_key(12), Some(&blob_key(15)), 100).unwrap();
    assert!(page.complete);
    assert_eq!(page.entries.into_iter().map(|(k, _)| k).collect::<Vec<_>>(), [12, 13, 14].map(blob_key));
}

/// Blobs are kept in a redb table per container: ranges over several containers still come in
/// key order, a range may start in one container and end in another, and a container whose
/// blobs are all deleted leaves no table behind.
#[test]
fn blobs_of_many_containers_range_in_key_order_and_an_emptied_one_leaves_no_table() {
    let disk = disk();
    let ix = open(&disk);
    // Names where a separator other than NUL would sort the tables wrongly: "c" before "c-d"
    // and "c0", "ab" before "abc".
    let groups = ["ab\0c", "ab\0c-d", "ab\0c0", "abc\0a", "b\0z"];
    let key = |g: &str, i: u32| format!("{g}\0n{i:03}").into_bytes();
    let mut m = Memtable::default();
    for g in groups {
        for i in 0..20 {
            m.put(Table::Blobs, key(g, i), key(g, i));
        }
    }
    m.applied(1);
    ix.write(&m).unwrap();
    let mut all: Vec<Vec<u8>> = groups.iter().flat_map(|g| (0..20).map(move |i| key(g, i))).collect();
    all.sort();
    let keys = |entries: Vec<(Vec<u8>, Vec<u8>)>| entries.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(keys(in_pages(&ix, 7)), all);
    assert_eq!(keys(in_pages(&ix, 1000)), all);
    let page = ix.range(Table::Blobs, &key("ab\0c-d", 15), Some(&key("ab\0c0", 3)), 100).unwrap();
    let want: Vec<Vec<u8>> = (15..20).map(|i| key("ab\0c-d", i)).chain((0..3).map(|i| key("ab\0c0", i))).collect();
    assert_eq!((keys(page.entries), page.complete), (want, true));
    let page = ix.range(Table::Blobs, b"ab\0c\0", Some(b"ab\0c\x01"), 100).unwrap();
    assert_eq!(keys(page.entries), (0..20).map(|i| key("ab\0c", i)).collect::<Vec<_>>());
    assert_eq!(ix.get(Table::Blobs, &key("abc\0a", 4)).unwrap(), Some(key("abc\0a", 4)));

    let mut m = Memtable::default();
    for i in 0..20 {
        m.delete(Table::Blobs, key("ab\0c-d", i));
    }
    m.applied(2);
    ix.write(&m).unwrap();
    all.retain(|k| !k.starts_with(b"ab\0c-d\0"));
    let blob_tables = |ix: &Index| ix.tables().unwrap().into_iter().filter(|t| t.starts_with("blobs\0")).count();
    assert_eq!(blob_tables(&ix), groups.len() - 1, "{:?}", ix.tables().unwrap());
    drop(ix);
    let ix = open(&disk);
    assert_eq!(keys(in_pages(&ix, 3)), all);
    assert_eq!(ix.get(Table::Blobs, &key("ab\0c-d", 4)).unwrap(), None);
}

/// An index that keeps its blobs in one `blobs` table (a pre-release build's) is refused at open,
/// not opened with its blobs out of sight.
#[test]
fn an_index_with_every_blob_in_one_table_is_refused() {
    let disk = disk();
    {
        let db = redb::Database::builder().create_with_backend(backend(&disk)).unwrap();
        let tx = db.begin_write().unwrap();
        let def = redb::TableDefinition::<&[u8], &[u8]>::new("blobs");
        tx.open_table(def).unwrap().insert(blob_key(1).as_slice(), b"v".as_slice()).unwrap();
        tx.commit().unwrap();
    }
    let err = Index::open(backend(&disk), 2 * MIB as usize).err().expect("an index of the old layout is refused");
    assert!(err.to_string().contains("pre-release"), "{err}");
}

/// A flush that needs more segments than the index was granted fails as `Short`, and the index
/// stands at its last commit, readable and writable again once granted more: redb refuses every
/// write after a failed one until opened again, and left so it failed its shard for good. The
/// segments the failed flush took are spare again, so none is lost to the shard.
#[test]
fn a_flush_short_of_segments_leaves_the_index_at_its_last_commit() {
    use edgeblob_meta::index::db::WriteError;
    let disk = disk();
    let segments = Arc::new(Segments::default());
    let storage = RegionBackend::open(Arc::new(disk.device()) as SharedDevice, place(), segments.clone()).unwrap();
    segments.grant((4..7).map(|i| i * MIB));
    let ix = Index::open(storage, 2 * MIB as usize).unwrap();
    ix.write(&generation(0, 100)).unwrap();
    let held = segments.taken() + segments.spare();
    // Values of 2 KiB: some 8 MiB, more than the three segments granted.
    let mut big = Memtable::default();
    for i in 0..4000 {
        big.put(Table::Blobs, blob_key(i), vec![b'v'; 2048]);
    }
    big.applied(1000);
    let err = ix.write(&big).unwrap_err();
    assert!(matches!(err, WriteError::Short), "{err}");
    assert!(holds_generation(&ix, 0, 100), "the index stands at its last commit");
    assert_eq!(segments.taken() + segments.spare(), held, "no segment lost");
    ix.write(&generation(1, 100)).unwrap();
    assert!(holds_generation(&ix, 1, 100), "and takes a flush that fits");
    segments.grant((7..32).map(|i| i * MIB));
    ix.write(&big).unwrap();
    assert_eq!(ix.lsn().unwrap(), 1000);
    drop(ix);
    let ix = open(&disk);
    let page = ix.range(Table::Blobs, b"", None, usize::MAX).unwrap();
    assert_eq!(page.entries.len(), 4000, "the flush written once there was room, after a restart");
    assert!(page.entries.iter().all(|(_, v)| v.len() == 2048));
}
