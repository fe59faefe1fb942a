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
                }],
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
            let c = store.commit(staged(i % 50, 3000)).unwrap();
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
    assert_eq!(back.staged.len(), 50);
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
