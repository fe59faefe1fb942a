//! redb on segments of a region (`meta::index::region`): what it stores survives reopening, a
//! power cut at any write or flush of a commit leaves the last durable commit whole, growth stops
//! cleanly when no segment is granted, and new space reads as zeros whatever the device held.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use edgeblob_io::fault::{Crash, Op, SimDisk};
use edgeblob_meta::index::region::{self, IndexPlace, RegionBackend, Segments, SharedDevice};
use redb::{Database, ReadableDatabase, ReadableTableMetadata, StorageBackend, TableDefinition};

const MIB: u64 = 1 << 20;
const SEGMENT: u64 = MIB;
const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("t");

fn place() -> IndexPlace {
    IndexPlace { shard: 3, uuid: [9; 16], header: 64 * 1024, segment_len: SEGMENT }
}

/// A 64 MiB disk whose bytes are all 0xA5 (an old format's leftovers), with the index header
/// formatted and segments 8..64 MiB, taken from the top down, to grant from.
fn disk() -> SimDisk {
    let disk = SimDisk::from_image(vec![0xA5; 64 * MIB as usize]);
    RegionBackend::format(&disk.device(), &place()).unwrap();
    disk
}

fn all_segments() -> Vec<u64> {
    (8..64).rev().map(|i| i * SEGMENT).collect()
}

fn open(disk: &SimDisk, grant: &[u64]) -> (Database, Arc<Segments>) {
    open_cached(disk, grant, 4 * MIB as usize)
}

fn open_cached(disk: &SimDisk, grant: &[u64], cache: usize) -> (Database, Arc<Segments>) {
    let segments = Arc::new(Segments::default());
    let backend = RegionBackend::open(Arc::new(disk.device()) as SharedDevice, place(), segments.clone()).unwrap();
    let held = backend.segments();
    segments.grant(grant.iter().copied().filter(|s| !held.contains(s)));
    let db = Database::builder().set_cache_size(cache).create_with_backend(backend).unwrap();
    (db, segments)
}

fn key(i: u32) -> Vec<u8> {
    format!("container-{:02}/blob-{i:08}", i % 7).into_bytes()
}

fn value(i: u32, round: u32) -> Vec<u8> {
    vec![(i ^ round) as u8; 40 + (i % 90) as usize]
}

fn commit(db: &Database, range: std::ops::Range<u32>, round: u32) -> Result<(), redb::Error> {
    let mut tx = db.begin_write()?;
    tx.set_quick_repair(true);
    {
        let mut t = tx.open_table(TABLE)?;
        for i in range {
            t.insert(key(i).as_slice(), value(i, round).as_slice())?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// The keys `0..n` all hold round `round`'s values, and nothing else is there.
fn holds(db: &Database, n: u32, round: u32) -> bool {
    let tx = db.begin_read().unwrap();
    let t = match tx.open_table(TABLE) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return n == 0,
        Err(e) => panic!("{e}"),
    };
    t.len().unwrap() == n as u64
        && (0..n).all(|i| t.get(key(i).as_slice()).unwrap().is_some_and(|v| v.value() == value(i, round).as_slice()))
}

#[test]
fn what_is_committed_survives_reopening() {
    let disk = disk();
    {
        let (db, segments) = open(&disk, &all_segments());
        for batch in 0..20 {
            commit(&db, batch * 1000..(batch + 1) * 1000, 0).unwrap();
        }
        assert!(holds(&db, 20_000, 0));
        assert!(segments.spare() < all_segments().len(), "growth took segments from the grant");
    }
    let reopened = disk.crash(Crash::LoseUnflushed);
    let (db, segments) = open(&reopened, &[]);
    assert!(holds(&db, 20_000, 0), "everything committed is there after a restart, with no grant");
    // Grants not taken before the restart are the allocator's again: the shard grants anew.
    segments.grant(all_segments().into_iter().filter(|s| !reopened_holds(&reopened).contains(s)));
    commit(&db, 0..20_000, 1).unwrap();
    assert!(holds(&db, 20_000, 1), "the reopened index takes writes");
}

#[test]
fn a_power_cut_anywhere_in_a_commit_leaves_the_old_or_the_new_state() {
    let base = disk();
    {
        let (db, _) = open(&base, &all_segments());
        commit(&db, 0..500, 0).unwrap();
    }
    let base = base.crash(Crash::LoseUnflushed);
    // Count the operations of the commit under test, then cut the power at each of them in turn.
    let probe = base.crash(Crash::LoseUnflushed);
    let (writes, flushes) = {
        let (db, _) = open(&probe, &all_segments());
        let (w0, f0) = (probe.count(Op::Write), probe.count(Op::Flush));
        commit(&db, 0..1000, 1).unwrap();
        (probe.count(Op::Write) - w0, probe.count(Op::Flush) - f0)
    };
    assert!(writes > 0 && flushes > 0);
    eprintln!("the commit under test: {writes} writes, {flushes} flushes");
    let mut cases = 0;
    for (op, n) in (0..writes).map(|n| (Op::Write, n)).chain((0..flushes).map(|n| (Op::Flush, n))) {
        for (k, how) in
            [Crash::LoseUnflushed, Crash::Reorder { seed: n * 31 + 7 }, Crash::Tear { write: n as usize, sectors: 3 }]
                .into_iter()
                .enumerate()
        {
            let disk = base.crash(Crash::LoseUnflushed);
            {
                let (db, _) = open(&disk, &all_segments());
                disk.cut_power(op, n, how);
                commit(&db, 0..1000, 1).unwrap();
            }
            for after in disk.power_cuts() {
                let (db, _) = open(&after, &all_segments());
                let old = holds(&db, 500, 0);
                let new = holds(&db, 1000, 1);
                assert!(old || new, "cut at {op:?} #{n} ({k}: {how:?}) left neither the old nor the new state");
                // And it takes writes again.
                commit(&db, 0..10, 2).unwrap();
                cases += 1;
            }
        }
    }
    assert!(cases >= 3 * (writes + flushes) as usize, "every cut fired ({cases})");
}

#[test]
fn growth_without_a_granted_segment_fails_cleanly_and_resumes_after_a_grant() {
    let disk = disk();
    let (db, segments) = open(&disk, &all_segments()[..2]);
    commit(&db, 0..100, 0).unwrap();
    let err = (1..64).find_map(|b| commit(&db, b * 2000..(b + 1) * 2000, 0).err());
    assert!(err.is_some(), "two segments of 1 MiB cannot hold everything");
    assert!(err.unwrap().to_string().contains("segment"), "the error names the cause");
    drop(db);
    drop(segments);
    // The failed commit changed nothing durable; a grant lets the index grow again.
    let (db, _) = open(&disk.crash(Crash::LoseUnflushed), &all_segments());
    let tx = db.begin_read().unwrap();
    let n = tx.open_table(TABLE).unwrap().len().unwrap();
    assert!(n >= 100 && n % 2000 == 100, "whole commits only ({n})");
    drop(tx);
    commit(&db, 0..60_000, 3).unwrap();
    assert!(holds(&db, 60_000, 3));
}

/// A scan that reads ahead (`region::read_ahead`, a window of storage per thread) sees its own
/// transaction's state while commits on another thread rewrite the whole table, freeing and
/// reusing pages beside the ones it reads; a later scan sees the last commit, not the window.
#[test]
fn a_scan_read_ahead_sees_its_own_snapshot_while_commits_rewrite_the_pages_around_it() {
    let disk = disk();
    // A small cache, so that the scan's leaves come from the storage.
    let (db, _segments) = open_cached(&disk, &all_segments(), 64 * 1024);
    commit(&db, 0..20_000, 0).unwrap();
    let db = Arc::new(db);
    let (go, rounds) = std::sync::mpsc::channel::<u32>();
    let (done, committed) = std::sync::mpsc::channel::<()>();
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            for round in rounds {
                commit(&db, 0..20_000, round).unwrap();
                done.send(()).unwrap();
            }
        })
    };
    let seen = region::read_ahead(|| {
        let tx = db.begin_read().unwrap();
        let t = tx.open_table(TABLE).unwrap();
        let mut n = 0u32;
        for e in t.range::<&[u8]>(..).unwrap() {
            let (k, v) = e.unwrap();
            let name = std::str::from_utf8(k.value()).unwrap();
            let i: u32 = name.rsplit('-').next().unwrap().parse().unwrap();
            assert_eq!(v.value(), value(i, 0).as_slice(), "{name} as of the scan's transaction");
            n += 1;
            if n.is_multiple_of(2500) {
                go.send(n / 2500).unwrap();
                committed.recv().unwrap();
            }
        }
        n
    });
    drop(go);
    writer.join().unwrap();
    assert_eq!(seen, 20_000);
    assert!(region::read_ahead(|| holds(&db, 20_000, 8)), "a new scan sees the last commit");
}

/// The window is the scan's alone: pages written after it was read show in the next scan and
/// in reads outside a scan, and a window stops at its segment's end.
#[test]
fn a_read_ahead_window_lasts_one_scan() {
    let disk = disk();
    let (b, _) = granted(&disk);
    let page = 4096u64;
    b.set_len(2 * SEGMENT).unwrap();
    let last = SEGMENT - page;
    for (at, byte) in [(0, 1u8), (page, 2), (last, 3), (SEGMENT, 4)] {
        b.write(at, &vec![byte; page as usize]).unwrap();
    }
    b.sync_data().unwrap();
    let read = |at: u64| {
        let mut out = vec![0u8; page as usize];
        b.read(at, &mut out).unwrap();
        out[0]
    };
    region::read_ahead(|| {
        assert_eq!((read(0), read(page)), (1, 2));
        assert_eq!((read(last), read(SEGMENT)), (3, 4), "across the segment's end");
    });
    region::read_ahead(|| assert_eq!(read(0), 1));
    b.write(page, &vec![5; page as usize]).unwrap();
    b.sync_data().unwrap();
    assert_eq!(read(page), 5, "outside a scan");
    region::read_ahead(|| assert_eq!(read(page), 5, "a new scan reads anew"));
}

/// The index storage on `disk`, with every segment granted.
fn granted(disk: &SimDisk) -> (RegionBackend, Arc<Segments>) {
    let segments = Arc::new(Segments::default());
    segments.grant(all_segments());
    let b = RegionBackend::open(Arc::new(disk.device()) as SharedDevice, place(), segments.clone()).unwrap();
    (b, segments)
}

/// The spares a header names outlive the storage that wrote it, and only a change to the pool
/// rewrites them: a tool that opens the index to read it (with no spares of its own) leaves them.
#[test]
fn the_header_names_the_spares_until_the_pool_changes() {
    let disk = disk();
    let (b, _) = granted(&disk);
    b.set_len(SEGMENT).unwrap();
    b.write(0, &[7u8; 4096]).unwrap();
    b.sync_data().unwrap();
    let mut spares = all_segments();
    spares.retain(|s| !b.segments().contains(s));
    spares.sort_unstable();
    assert_eq!(b.header().spares, spares, "every granted segment not taken");
    drop(b);
    let reader =
        || RegionBackend::open(Arc::new(disk.device()) as SharedDevice, place(), Arc::new(Segments::default()));
    let b = reader().unwrap();
    assert_eq!(b.spares(), spares);
    b.sync_data().unwrap();
    drop(b);
    assert_eq!(reader().unwrap().spares(), spares, "an empty pool that never changed rewrites nothing");
    // As a start does: it grants again the spares still free (here two of them).
    let pool = Arc::new(Segments::default());
    let b = RegionBackend::open(Arc::new(disk.device()) as SharedDevice, place(), pool.clone()).unwrap();
    pool.grant(spares[..2].iter().copied());
    b.sync_data().unwrap();
    drop(b);
    assert_eq!(reader().unwrap().spares(), spares[..2], "a changed pool is written");
}

/// The segments the index on `disk` holds.
fn reopened_holds(disk: &SimDisk) -> Vec<u64> {
    RegionBackend::open(Arc::new(disk.device()) as SharedDevice, place(), Arc::new(Segments::default()))
        .unwrap()
        .segments()
}

/// Five zeros, `mid`, five zeros.
fn padded(mid: &[u8; 20]) -> [u8; 30] {
    let mut out = [0u8; 30];
    out[5..25].copy_from_slice(mid);
    out
}

#[test]
fn new_space_reads_as_zeros_and_partial_pages_keep_their_neighbours() {
    let disk = disk();
    let (b, segments) = granted(&disk);
    b.set_len(3 * SEGMENT + 100).unwrap();
    assert_eq!(segments.spare(), all_segments().len(), "a longer index takes no segment until written");
    let mut out = vec![1u8; 3 * SEGMENT as usize + 100];
    b.read(0, &mut out).unwrap();
    assert!(out.iter().all(|&x| x == 0), "the device's old bytes never show through");
    // Unaligned, across a segment boundary (segments are not adjacent on the device).
    let at = SEGMENT - 10;
    b.write(at, b"0123456789abcdefghij").unwrap();
    let mut back = [0u8; 30];
    b.read(at - 5, &mut back).unwrap();
    assert_eq!(&back, &padded(b"0123456789abcdefghij"));
    b.write(at + 3, b"XY").unwrap();
    b.read(at - 5, &mut back).unwrap();
    assert_eq!(&back, &padded(b"012XY56789abcdefghij"));
    assert!(b.read(3 * SEGMENT + 90, &mut [0u8; 11]).is_err(), "reads stop at the length");
    b.sync_data().unwrap();
    let segments_left = segments.spare();
    let header = b.header();
    assert_eq!(header.len, 3 * SEGMENT + 100);
    assert_eq!(header.segments.len(), 2, "only the segments written to are taken");
    assert_eq!(segments_left, all_segments().len() - 2);
    drop(b);
    // After a restart the header names the same segments and the written bytes are there.
    let disk = disk.crash(Crash::LoseUnflushed);
    let b =
        RegionBackend::open(Arc::new(disk.device()) as SharedDevice, place(), Arc::new(Segments::default())).unwrap();
    assert_eq!(b.header(), header);
    b.read(at - 5, &mut back).unwrap();
    assert_eq!(&back, &padded(b"012XY56789abcdefghij"));
    // Shrinking then growing again reads zeros where the bytes were.
    b.set_len(SEGMENT - 8).unwrap();
    b.set_len(2 * SEGMENT).unwrap();
    b.read(at - 5, &mut back).unwrap();
    assert_eq!(&back[..7], &[0, 0, 0, 0, 0, b'0', b'1']);
    assert!(back[7..].iter().all(|&x| x == 0), "{back:?}");
}

#[test]
fn a_torn_header_falls_back_to_the_other_slot() {
    let disk = disk();
    let (b, _) = granted(&disk);
    b.set_len(SEGMENT).unwrap();
    b.write(0, &[7u8; 4096]).unwrap();
    b.sync_data().unwrap();
    let durable = b.header();
    b.set_len(2 * SEGMENT).unwrap();
    disk.cut_power(Op::Write, 0, Crash::Tear { write: 0, sectors: 2 });
    b.sync_data().unwrap();
    let after = disk.power_cuts().pop().unwrap();
    let b =
        RegionBackend::open(Arc::new(after.device()) as SharedDevice, place(), Arc::new(Segments::default())).unwrap();
    assert_eq!(b.header(), durable, "the torn slot is ignored for the older, whole one");
}

/// A shrink gives the segments wholly above the new length back as spares (after a compaction,
/// what deletes freed inside the index is room the room check counts), with the header written
/// at the next sync; the segment the new length ends in stays, and growing back reads zeros.
#[test]
fn a_shrink_gives_the_segments_above_the_new_length_back_as_spares() {
    let disk = disk();
    let (b, pool) = granted(&disk);
    b.set_len(3 * SEGMENT).unwrap();
    for s in 0..3 {
        b.write(s * SEGMENT, &[s as u8 + 1; 4096]).unwrap();
    }
    b.sync_data().unwrap();
    let held = b.segments();
    let (spare, taken) = (pool.spare(), pool.taken());
    assert_eq!((held.len(), taken), (3, 3));
    b.set_len(SEGMENT + 4096).unwrap();
    assert_eq!((pool.spare(), pool.taken()), (spare + 1, 2), "only the segment wholly above");
    b.set_len(SEGMENT / 2).unwrap();
    assert_eq!((pool.spare(), pool.taken()), (spare + 2, 1));
    b.sync_data().unwrap();
    assert_eq!(reopened_holds(&disk), held[..1], "the header maps what is left");
    let mut got = [0u8; 4096];
    b.read(0, &mut got).unwrap();
    assert_eq!(got, [1u8; 4096], "below the new length nothing moved");
    b.set_len(3 * SEGMENT).unwrap();
    b.read(2 * SEGMENT, &mut got).unwrap();
    assert_eq!(got, [0u8; 4096], "grown back, it reads zeros");
}
