//! The metadata log against a real file: durability across reopen, checkpoints into the other
//! half, and damage detection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::rc::Rc;
use std::sync::Arc;

use edgeblob_io::sync_device::SyncDevice;
use edgeblob_io::{BlockDevice, DeviceFile};
use edgeblob_meta::model::*;
use edgeblob_meta::replay::{format_log, RecoverError};
use edgeblob_meta::wal::LogPlace;
use edgeblob_meta::{MetaStore, Record};

const HALF: u64 = 1 << 20;

fn place() -> LogPlace {
    LogPlace { shard: 0, uuid: [1; 16], halves: [(0, HALF), (HALF, HALF)] }
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f)
}

fn device(path: &std::path::Path, create: bool) -> Rc<dyn BlockDevice> {
    let f = if create { DeviceFile::create(path, 2 * HALF).unwrap() } else { DeviceFile::open(path).unwrap() };
    Rc::new(SyncDevice::new(Arc::new(f)))
}

fn staged(i: u32, pad: usize) -> Record {
    Record::BlockStaged {
        key: BlobKey::new("acct", "c", &format!("blob-{i:05}")),
        container_id: 1,
        block: StagedBlock {
            block: Block {
                id: vec![b'x'; pad],
                size: i as u64,
                chunks: vec![ChunkRef {
                    hash: [i as u8; 16],
                    offset: 4096 * i as u64,
                    stored_len: 1,
                    len: 1,
                    flags: 0,
                }]
                .into(),
            },
            staged_ns: i as i64,
        },
    }
}

#[test]
fn committed_records_survive_reopen_across_many_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let expected = run(async {
        let dev = device(&path, true);
        format_log(&place(), dev.as_ref()).await.unwrap();
        let (mut store, report) = MetaStore::open(place(), dev).await.unwrap();
        assert_eq!(report.records, 1);
        let start_gen = store.generation();
        // ~3 KiB per record with a 1 MiB half: several switches. Re-staging the same 50 names
        // keeps the checkpoint small.
        for i in 0..2000u32 {
            store.ready().await.unwrap();
            let c = store.commit(staged(i % 30, 3000)).unwrap();
            if i % 100 == 0 {
                c.durable.await.unwrap();
            }
        }
        store.sync().await.unwrap();
        assert!(store.generation() >= start_gen + 3, "the log switched halves");
        store.state.clone()
    });
    let back = run(async {
        let (store, _) = MetaStore::open(place(), device(&path, false)).await.unwrap();
        store.state.clone()
    });
    assert_eq!(back, expected);
    assert_eq!(back.staged.len(), 30);
}

#[test]
fn records_appended_after_reopen_follow_the_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    for round in 0..3u32 {
        run(async {
            let dev = device(&path, round == 0);
            if round == 0 {
                format_log(&place(), dev.as_ref()).await.unwrap();
            }
            let (mut store, _) = MetaStore::open(place(), dev).await.unwrap();
            assert_eq!(store.state.staged.len(), round as usize * 10);
            for i in 0..10 {
                store.commit(staged(round * 10 + i, 10)).unwrap();
            }
            store.sync().await.unwrap();
        });
    }
}

#[test]
fn a_record_larger_than_a_half_is_refused_without_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    run(async {
        let dev = device(&path, true);
        format_log(&place(), dev.as_ref()).await.unwrap();
        let (mut store, _) = MetaStore::open(place(), dev).await.unwrap();
        let err = store.commit(staged(1, 2 << 20)).err().unwrap();
        assert!(matches!(err, edgeblob_meta::MetaError::TooLarge(_)));
        assert!(store.state.staged.is_empty());
    });
}

#[test]
fn damaged_durable_record_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    run(async {
        let dev = device(&path, true);
        format_log(&place(), dev.as_ref()).await.unwrap();
        let (mut store, _) = MetaStore::open(place(), dev).await.unwrap();
        for i in 0..20 {
            // One at a time: each record is its own durable round.
            store.commit(staged(i, 100)).unwrap().durable.await.unwrap();
        }
    });
    // Flip a byte inside the third record's payload (header page, checkpoint, then records).
    let bytes = std::fs::read(&path).unwrap();
    let needle = b"blob-00002";
    let at = bytes.windows(needle.len()).position(|w| w == needle).unwrap();
    let mut damaged = bytes.clone();
    damaged[at] ^= 0x01;
    std::fs::write(&path, &damaged).unwrap();
    let err = run(async { MetaStore::open(place(), device(&path, false)).await.err().unwrap() });
    assert!(matches!(err, RecoverError::Damaged { .. }), "{err}");
    assert!(err.to_string().contains("refusing to start"));
}

#[test]
fn header_damage_on_both_halves_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    run(async {
        let dev = device(&path, true);
        format_log(&place(), dev.as_ref()).await.unwrap();
    });
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = run(async { MetaStore::open(place(), device(&path, false)).await.err().unwrap() });
    assert!(matches!(err, RecoverError::NoHeader { .. }), "{err}");
}

fn blob_put(i: u32, md_len: usize) -> Record {
    Record::BlobPut {
        key: BlobKey::new("acct", "c", &format!("blob-{i:05}")),
        blob: Blob {
            container_id: 1,
            etag: i as u64,
            created_ns: 0,
            modified_ns: 0,
            size: 1,
            props: BlobProps { metadata: vec![("m".into(), "v".repeat(md_len))], ..BlobProps::default() },
            blocks: vec![],
            single_put: true,
        },
    }
}

/// The bug this guards against: a state that grew to fill a log half left the shard unable to
/// checkpoint, so every later change, deletes included, failed, and kept failing after a
/// restart. Growth now stops at the limit, and deletes always go through.
#[test]
fn growth_stops_at_the_limit_and_deletes_always_go_through() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let written = run(async {
        let dev = device(&path, true);
        format_log(&place(), dev.as_ref()).await.unwrap();
        let (mut store, _) = MetaStore::open(place(), dev).await.unwrap();
        let limits = store.limits();
        assert_eq!(limits, edgeblob_meta::Limits::of_half(HALF as usize));
        let mut n = 0;
        let err = loop {
            match store.commit(blob_put(n, 400)) {
                Ok(_) => n += 1,
                Err(e) => break e,
            }
            assert!(n < 100_000, "the limit never applied");
        };
        assert_eq!(err, edgeblob_meta::MetaError::MetadataFull);
        assert_eq!(store.state.blobs.len(), n as usize, "the refused record changed nothing");
        assert!(store.used().total() <= limits.total && store.used().total() > limits.total - 1024);
        // Cycles of delete-one, create-one at the limit: each delete makes room for exactly one
        // blob of its size, and neither ever fails, across many checkpoints.
        let start_gen = store.generation();
        for round in 0..(3 * n) {
            let victim = round % n;
            let key = BlobKey::new("acct", "c", &format!("blob-{victim:05}"));
            store.ready().await.unwrap();
            store.commit(Record::BlobDelete { key }).unwrap();
            store.ready().await.unwrap();
            store.commit(blob_put(victim, 400)).unwrap();
            assert_eq!(store.commit(blob_put(n + 1, 400)).err(), Some(edgeblob_meta::MetaError::MetadataFull));
        }
        assert!(store.generation() > start_gen + 2, "the cycles crossed checkpoints");
        // Deleting every blob always succeeds, one at a time.
        for i in (0..n).step_by(2) {
            let key = BlobKey::new("acct", "c", &format!("blob-{i:05}"));
            store.commit(Record::BlobDelete { key }).unwrap();
        }
        store.sync().await.unwrap();
        assert_eq!(store.used(), store.state.footprint());
        (store.state.clone(), store.used())
    });
    let (state, used) = written;
    run(async {
        let (mut store, _) = MetaStore::open(place(), device(&path, false)).await.unwrap();
        assert_eq!(store.state, state);
        assert_eq!(store.used(), used, "the count at start matches the count kept while running");
        store.commit(blob_put(999_999, 400)).unwrap().durable.await.unwrap();
    });
}

#[test]
fn staged_blocks_have_a_share_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    run(async {
        let dev = device(&path, true);
        format_log(&place(), dev.as_ref()).await.unwrap();
        let (mut store, _) = MetaStore::open(place(), dev).await.unwrap();
        let mut n = 0;
        let err = loop {
            match store.commit(staged(n, 40)) {
                Ok(_) => n += 1,
                Err(e) => break e,
            }
            assert!(n < 100_000, "the staged limit never applied");
        };
        assert_eq!(err, edgeblob_meta::MetaError::StagedFull);
        assert!(store.used().staged <= store.limits().staged);
        // Commits still fit beside them; re-staging a block of the same size replaces it.
        store.commit(blob_put(1, 10)).unwrap();
        store.commit(staged(3, 40)).unwrap();
        // Dropping staged blocks makes room for more.
        store.commit(Record::StagedDropped { key: BlobKey::new("acct", "c", "blob-00007") }).unwrap();
        store.commit(staged(n + 1, 40)).unwrap();
        assert_eq!(store.used(), store.state.footprint());
    });
}
