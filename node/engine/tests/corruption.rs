//! Damage on disk: flipped bytes in chunk pages, in the metadata log and in the superblock give a
//! clear error, never wrong data.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::FileExt;

use edgeblob_engine::{EngineError, Node};
use edgeblob_testkit::engine::*;

/// Flips a byte at node offset `at` of the node in `dir`, in whichever of its files holds it.
fn flip_node(dir: &std::path::Path, at: u64) {
    let (path, local) = edgeblob_testkit::engine::file_at(dir, at);
    flip(&path, local);
}

fn flip(path: &std::path::Path, at: u64) {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x20;
    f.write_all_at(&b, at).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn a_flipped_byte_in_a_raw_chunk_fails_only_the_reads_that_touch_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path()).with_reduction(false);
    let d = data(1, 200_000, false);
    let other = data(2, 50_000, false);
    let target = {
        let node = open(&cfg);
        rt().block_on(async {
            node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
            node.put_blob(0, key("c", "b"), body(&d), Default::default(), Default::default()).await.unwrap();
            node.put_blob(1, key("c", "other"), body(&other), Default::default(), Default::default()).await.unwrap();
        });
        chunks_of(&node, &key("c", "b"))[1]
    };
    // Damage the third page of the second chunk.
    flip_node(dir.path(), target.offset + 2 * 4096 + 100);
    let node = open(&cfg);
    rt().block_on(async {
        let err = node.read_blob(0, key("c", "b"), None, Default::default()).await.unwrap_err();
        assert!(matches!(err, EngineError::Corrupt(_)), "{err}");
        assert!(err.to_string().contains(&target.offset.to_string()), "the error names the place: {err}");
        // The first chunk, and the second chunk's first page, are still readable and right.
        let first = target.len as u64;
        let (_, _, got) =
            node.read_blob(1, key("c", "b"), Some((0, Some(first + 4000))), Default::default()).await.unwrap();
        assert_eq!(&got[..], &d[..first as usize + 4001]);
        let (_, _, got) = node.read_blob(0, key("c", "other"), None, Default::default()).await.unwrap();
        assert_eq!(&got[..], &other[..]);
        // fsck finds exactly the damaged chunk.
        let report = node.check_all().await.unwrap();
        assert_eq!(report.damaged.len(), 1, "{:?}", report.damaged);
        assert!(report.damaged[0].contains(&format!("offset {}", target.offset)));
    });
}

#[test]
fn a_flipped_byte_in_a_compressed_chunk_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let d = data(3, 300_000, true);
    let target = {
        let node = open(&cfg);
        rt().block_on(async {
            node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
            node.put_blob(0, key("c", "t"), body(&d), Default::default(), Default::default()).await.unwrap();
        });
        let chunks = chunks_of(&node, &key("c", "t"));
        assert!(chunks.iter().all(|c| c.is_compressed()), "text is stored compressed");
        chunks[0]
    };
    flip_node(dir.path(), target.offset + 10);
    let node = open(&cfg);
    let err = rt().block_on(node.read_blob(0, key("c", "t"), Some((5, Some(6))), Default::default())).unwrap_err();
    assert!(matches!(err, EngineError::Corrupt(_)), "{err}");
}

#[test]
fn random_damage_never_yields_wrong_bytes() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let blobs: Vec<(String, Vec<u8>)> = (0..6).map(|i| (format!("b{i}"), data(10 + i, 150_000, i % 2 == 0))).collect();
    let mut chunks = Vec::new();
    {
        let node = open(&cfg);
        rt().block_on(async {
            node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
            for (i, (n, d)) in blobs.iter().enumerate() {
                node.put_blob(i % 2, key("c", n), body(d), Default::default(), Default::default()).await.unwrap();
            }
        });
        for (n, _) in &blobs {
            chunks.extend(chunks_of(&node, &key("c", n)));
        }
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    for _ in 0..40 {
        let c = chunks[rng.gen_range(0..chunks.len())];
        flip_node(dir.path(), c.offset + rng.gen_range(0..c.extent().len));
    }
    let node = open(&cfg);
    rt().block_on(async {
        let (mut ok, mut bad) = (0, 0);
        for (n, d) in &blobs {
            for start in (0..d.len() as u64).step_by(20_000) {
                match node.read_blob(0, key("c", n), Some((start, Some(start + 9_999))), Default::default()).await {
                    Ok((_, _, got)) => {
                        assert_eq!(
                            &got[..],
                            &d[start as usize..(start as usize + 10_000).min(d.len())],
                            "wrong bytes from {n}"
                        );
                        ok += 1;
                    }
                    Err(EngineError::Corrupt(_)) => bad += 1,
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
        }
        assert!(bad > 0 && ok > 0, "the damage hit some reads and spared others ({ok} ok, {bad} corrupt)");
    });
}

#[test]
fn damage_to_a_durable_log_record_stops_the_node_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let name = "a-name-to-find-in-the-log";
    {
        let node = open(&cfg);
        rt().block_on(async {
            node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
            node.put_blob(0, key("c", name), body(b"x"), Default::default(), Default::default()).await.unwrap();
            for i in 0..30 {
                node.put_blob(0, key("c", &format!("later-{i}")), body(b"y"), Default::default(), Default::default())
                    .await
                    .unwrap();
            }
        });
    }
    // The log record naming it, in whichever device file its shard's log lies.
    let files = std::iter::once(data_path(dir.path())).chain(cfg.devices.iter().skip(1).cloned());
    let (path, at) = files
        .filter_map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            bytes.windows(name.len()).position(|w| w == name.as_bytes()).map(|at| (p, at))
        })
        .next()
        .unwrap();
    flip(&path, at as u64);
    let err = Node::open(cfg.clone()).err().expect("must not start");
    assert!(err.to_string().contains("refusing to start"), "{err}");
}

#[test]
fn damaged_or_foreign_superblock_is_an_error_not_a_reformat() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    drop(open(&cfg));
    let path = data_path(dir.path());
    // Alone, the device is the node: it does not start. One of several: the node starts
    // read-only on the others, the damaged one named (never reformatted either way).
    let refused = |why: &str| match Node::open(cfg.clone()) {
        Err(err) => assert!(err.to_string().contains(why), "{err}"),
        Ok(node) => {
            assert!(devices() > 1, "one device, damaged: the node must not start");
            let ro = node.shared().read_only().expect("read-only without device 0").to_string();
            assert!(ro.contains("data device 0") && ro.contains(why), "{ro}");
            node.stop();
        }
    };
    flip(&path, 200);
    refused("superblock");
    flip(&path, 200);
    drop(open(&cfg)); // repaired: opens again with its data
    flip(&path, 0);
    refused("not formatted");
    let shards = cfg.shards.unwrap();
    let wrong_shards = edgeblob_engine::config::EngineConfig { shards: Some(shards * 2), ..cfg };
    flip(&path, 0);
    let err = Node::open(wrong_shards).err().expect("must not start");
    assert!(err.to_string().contains(&format!("formatted with {shards} shards")), "{err}");
}

#[test]
fn small_chunks_are_served_from_the_read_cache_until_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path()).with_reduction(false);
    let d = data(4, 3000, false);
    let node = open(&cfg);
    rt().block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        node.put_blob(0, key("c", "small"), body(&d), Default::default(), Default::default()).await.unwrap();
        let (_, _, got) = node.read_blob(1, key("c", "small"), None, Default::default()).await.unwrap();
        assert_eq!(&got[..], &d[..]);
    });
    let target = chunks_of(&node, &key("c", "small"))[0];
    // Damage on disk after the chunk was read: the cached, verified copy still answers.
    flip_node(dir.path(), target.offset + 10);
    rt().block_on(async {
        for shard in 0..2 {
            let r = node.read_blob(shard, key("c", "small"), Some((100, Some(199))), Default::default()).await;
            // The shard that read it before answers from memory; the other reads the disk.
            match r {
                Ok((_, _, got)) => assert_eq!(&got[..], &d[100..200]),
                Err(e) => assert!(shard == 0 && matches!(e, EngineError::Corrupt(_)), "shard {shard}: {e}"),
            }
        }
        let (_, _, got) = node.read_blob(1, key("c", "small"), None, Default::default()).await.unwrap();
        assert_eq!(&got[..], &d[..], "shard 1 cached it");
    });
    node.stop();
    // A restarted node starts cold and finds the damage.
    let node = open(&cfg);
    rt().block_on(async {
        let err = node.read_blob(1, key("c", "small"), None, Default::default()).await.unwrap_err();
        assert!(matches!(err, EngineError::Corrupt(_)), "{err}");
    });
}
