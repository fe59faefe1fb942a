//! Engine behaviour through the public `Node` API, with real shards, rings and a data file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use edgeblob_engine::{BlockListItem, EngineError, PropsChange};
use edgeblob_meta::listing::ListQuery;
use edgeblob_meta::model::BlobProps;
use edgeblob_proto::conditions::{Conditions, ETagMatch};
use edgeblob_proto::etag_string;
use edgeblob_testkit::engine::*;

#[test]
fn put_get_ranges_and_overwrite_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let big = data(1, 300_000, false);
    let text = data(2, 200_000, true);
    let rt = rt();
    {
        let node = open(&cfg);
        rt.block_on(async {
            node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
            let props = BlobProps { content_type: Some("text/plain".into()), ..Default::default() };
            let s = node.put_blob(0, key("c", "big"), body(&big), props, Conditions::default()).await.unwrap();
            assert_eq!(s.size, big.len() as u64);
            node.put_blob(1, key("c", "text"), body(&text), BlobProps::default(), Conditions::default()).await.unwrap();
            let (b, range, got) = node.read_blob(1, key("c", "big"), None, Conditions::default()).await.unwrap();
            assert_eq!((range, got.as_ref()), ((0, big.len() as u64), &big[..]));
            assert_eq!(b.props.content_type.as_deref(), Some("text/plain"));
            for (a, z) in [(0u64, 0u64), (65_535, 65_536), (100, 200_000), (299_999, 299_999)] {
                let (_, r, got) =
                    node.read_blob(0, key("c", "big"), Some((a, Some(z))), Conditions::default()).await.unwrap();
                assert_eq!(r, (a, z + 1));
                assert_eq!(&got[..], &big[a as usize..=z as usize], "range {a}-{z}");
            }
            let (_, r, got) =
                node.read_blob(0, key("c", "text"), Some((1000, None)), Conditions::default()).await.unwrap();
            assert_eq!((r.1, &got[..]), (text.len() as u64, &text[1000..]));
            let (_, r, _) =
                node.read_blob(0, key("c", "big"), Some((10, Some(10_000_000))), Conditions::default()).await.unwrap();
            assert_eq!(r, (10, big.len() as u64), "end past the blob is clamped");
            let err =
                node.read_blob(0, key("c", "big"), Some((300_000, None)), Conditions::default()).await.unwrap_err();
            assert!(matches!(err, EngineError::InvalidRange { size: 300_000 }));
            // Overwrite with different content.
            node.put_blob(0, key("c", "big"), body(&text), BlobProps::default(), Conditions::default()).await.unwrap();
        });
        node.stop();
    }
    let node = open(&cfg);
    rt.block_on(async {
        let (_, _, got) = node.read_blob(0, key("c", "big"), None, Conditions::default()).await.unwrap();
        assert_eq!(&got[..], &text[..]);
        let (_, _, got) = node.read_blob(1, key("c", "text"), None, Conditions::default()).await.unwrap();
        assert_eq!(&got[..], &text[..]);
    });
}

#[test]
fn block_lists_commit_latest_committed_and_uncommitted() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(&config(dir.path()));
    let rt = rt();
    rt.block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        let k = || key("c", "b");
        let (a, b, c) = (data(1, 100_000, false), data(2, 70_000, true), data(3, 5, false));
        node.put_block(0, k(), b"id-1".to_vec(), body(&a)).await.unwrap();
        node.put_block(1, k(), b"id-2".to_vec(), body(&b)).await.unwrap();
        let err = node
            .commit_block_list(
                k(),
                vec![BlockListItem::Latest(b"id-9".to_vec())],
                Default::default(),
                Default::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::InvalidBlockList(_)));
        let list = vec![BlockListItem::Uncommitted(b"id-2".to_vec()), BlockListItem::Latest(b"id-1".to_vec())];
        let s = node.commit_block_list(k(), list, Default::default(), Default::default()).await.unwrap();
        assert_eq!(s.size, 170_000);
        let bl = node.get_block_list(k()).await.unwrap();
        assert_eq!(bl.committed.unwrap(), vec![(b"id-2".to_vec(), 70_000), (b"id-1".to_vec(), 100_000)]);
        assert!(bl.uncommitted.is_empty(), "commit drops staged blocks");
        // Re-stage id-1 with new content; keep the committed id-2.
        node.put_block(0, k(), b"id-1".to_vec(), body(&c)).await.unwrap();
        let bl = node.get_block_list(k()).await.unwrap();
        assert_eq!(bl.uncommitted, vec![(b"id-1".to_vec(), 5)]);
        let list = vec![
            BlockListItem::Committed(b"id-2".to_vec()),
            BlockListItem::Latest(b"id-1".to_vec()),
            BlockListItem::Committed(b"id-1".to_vec()),
        ];
        // Latest takes the restaged id-1; Committed still names the committed one.
        let s = node.commit_block_list(k(), list, Default::default(), Default::default()).await.unwrap();
        assert_eq!(s.size, 70_000 + 5 + 100_000);
        let (_, _, got) = node.read_blob(1, k(), None, Conditions::default()).await.unwrap();
        assert_eq!(got.to_vec(), [b.clone(), c.clone(), a.clone()].concat());
        // A block id of another length is refused while blocks are staged.
        node.put_block(0, k(), b"id-3".to_vec(), body(&c)).await.unwrap();
        let err = node.put_block(0, k(), b"id-03".to_vec(), body(&c)).await.unwrap_err();
        assert!(matches!(err, EngineError::InvalidBlobOrBlock(_)), "{err}");
        let err = node.put_block(0, k(), Vec::new(), body(&c)).await.unwrap_err();
        assert!(matches!(err, EngineError::InvalidBlockId(_)));
    });
}

#[test]
fn conditions_are_checked_on_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(&config(dir.path()));
    rt().block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        let k = || key("c", "b");
        let none_match_any = Conditions { if_none_match: Some(ETagMatch::Any), ..Default::default() };
        let s = node.put_blob(0, k(), body(b"one"), Default::default(), none_match_any.clone()).await.unwrap();
        let err = node.put_blob(1, k(), body(b"two"), Default::default(), none_match_any).await.unwrap_err();
        assert!(matches!(err, EngineError::BlobAlreadyExists));
        let wrong = Conditions { if_match: Some(ETagMatch::Tags(vec!["0x1".into()])), ..Default::default() };
        assert!(matches!(
            node.put_blob(0, k(), body(b"x"), Default::default(), wrong.clone()).await,
            Err(EngineError::ConditionNotMet)
        ));
        assert!(matches!(node.delete_blob(k(), wrong.clone()).await, Err(EngineError::ConditionNotMet)));
        assert!(matches!(node.read_blob(0, k(), None, wrong).await, Err(EngineError::ConditionNotMet)));
        let right = Conditions { if_match: Some(ETagMatch::Tags(vec![etag_string(s.etag)])), ..Default::default() };
        let s2 = node.put_blob(1, k(), body(b"three"), Default::default(), right.clone()).await.unwrap();
        assert!(s2.etag > s.etag, "every write gets a new, larger ETag");
        assert!(
            matches!(node.delete_blob(k(), right).await, Err(EngineError::ConditionNotMet)),
            "the old ETag no longer matches"
        );
        let secs = s2.modified_ns / 1_000_000_000;
        let unmodified = Conditions { if_unmodified_since: Some(secs), ..Default::default() };
        node.read_blob(0, k(), None, unmodified).await.unwrap();
        let modified = Conditions { if_modified_since: Some(secs), ..Default::default() };
        assert!(matches!(node.read_blob(0, k(), None, modified).await, Err(EngineError::NotModified)));
    });
}

#[test]
fn delete_blob_and_container_free_space_and_hide_everything() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path()).with_reduction(false);
    let node = open(&cfg);
    rt().block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        assert!(matches!(node.create_container(ACCOUNT, "c", vec![]).await, Err(EngineError::ContainerAlreadyExists)));
        let free0 = free_bytes(&node).await;
        let d = data(5, 1_000_000, false);
        for i in 0..4 {
            node.put_blob(i % 2, key("c", &format!("b{i}")), body(&d), Default::default(), Default::default())
                .await
                .unwrap();
        }
        node.put_block(0, key("c", "staged"), b"x".to_vec(), body(&d)).await.unwrap();
        assert!(free_bytes(&node).await < free0 - 5_000_000);
        node.delete_blob(key("c", "b0"), Default::default()).await.unwrap();
        assert!(matches!(node.delete_blob(key("c", "b0"), Default::default()).await, Err(EngineError::BlobNotFound)));
        assert!(matches!(node.head_blob(key("c", "b0"), Default::default()).await, Err(EngineError::BlobNotFound)));
        node.delete_container(ACCOUNT, "c").await.unwrap();
        assert!(matches!(
            node.head_blob(key("c", "b1"), Default::default()).await,
            Err(EngineError::ContainerNotFound)
        ));
        assert_eq!(free_bytes_once_settled(&node, free0).await, free0, "all space is back once nothing refers to it");
        // A new container of the same name starts empty.
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        let page = node.list_blobs(ACCOUNT, "c", ListQuery { max: 10, ..Default::default() }).await.unwrap();
        assert!(page.entries.is_empty());
        assert!(matches!(node.get_block_list(key("c", "staged")).await, Err(EngineError::BlobNotFound)));
    });
}

/// Whether some shard holds `k`'s staged list with chunk lists apart (in the index only).
async fn staged_apart(node: &edgeblob_engine::Node, k: &edgeblob_meta::BlobKey) -> bool {
    let mut apart = false;
    for i in 0..node.shards() {
        let k = k.clone();
        apart |= node
            .on(i, move |s| async move { s.meta.borrow().state().staged.get(&k).is_some_and(|st| !st.is_whole()) })
            .await
            .unwrap();
    }
    apart
}

/// Staged lists that keep only their ids in memory (here all of them, once flushed) list,
/// stage a block again, commit, and go with a delete or a container's purge as lists held whole
/// do: every byte reads back, across a restart, and every chunk's space comes back.
#[test]
fn staged_lists_held_apart_list_commit_and_drop_every_reference() {
    use edgeblob_engine::BlockListItem;
    let dir = tempfile::tempdir().unwrap();
    let cfg = edgeblob_engine::config::EngineConfig {
        meta_cache_bytes: 4096,
        meta_flush_bytes: 2048,
        meta_apart_bytes: 0,
        ..config(dir.path())
    }
    .with_reduction(false);
    let block = |n: u64| data(300 + n, 20_000, false);
    let id = |i: u64| format!("{i:04}").into_bytes();
    let (up, dropped) = (key("c", "up"), key("c", "dropped"));
    // Purged in two steps: more blocks than a step reads (256), then a list held apart meanwhile.
    let (purged_a, purged_b) = (key("c", "purged-a"), key("c", "purged-b"));
    let node = open(&cfg);
    let free0 = rt().block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        let free0 = free_bytes(&node).await;
        let mut seen_apart = false;
        for i in 0..30 {
            node.put_block(i as usize % 2, up.clone(), id(i), body(&block(i))).await.unwrap();
            seen_apart |= staged_apart(&node, &up).await;
        }
        for i in 0..260 {
            node.put_block(i as usize % 2, purged_a.clone(), id(i), body(&data(1000 + i, 1000, false))).await.unwrap();
        }
        assert!(seen_apart, "the list was held apart while blocks were staged into it");
        free0
    });
    node.stop();
    let node = open(&cfg);
    rt().block_on(async {
        let list = node.get_block_list(up.clone()).await.unwrap();
        let want: Vec<(Vec<u8>, u64)> = (0..30).map(|i| (id(i), 20_000)).collect();
        assert_eq!(list.uncommitted, want, "ids and sizes in staging order, after a restart");
        // Staged again: it moves last, and the commit takes its new bytes.
        node.put_block(1, up.clone(), id(5), body(&block(55))).await.unwrap();
        let list = node.get_block_list(up.clone()).await.unwrap();
        assert_eq!(list.uncommitted.last(), Some(&(id(5), 20_000)));
        let items = (0..30).map(|i| BlockListItem::Uncommitted(id(i))).collect();
        node.commit_block_list(up.clone(), items, Default::default(), Default::default()).await.unwrap();
        let want: Vec<u8> = (0..30).flat_map(|i| block(if i == 5 { 55 } else { i })).collect();
        let (_, _, got) = node.read_blob(0, up.clone(), None, Default::default()).await.unwrap();
        assert!(got[..] == want[..], "the committed bytes");
        // A delete drops a committed blob's staged list with it.
        node.put_blob(0, dropped.clone(), body(b"x"), Default::default(), Default::default()).await.unwrap();
        for i in 0..20 {
            node.put_block(i as usize % 2, dropped.clone(), id(i), body(&block(200 + i))).await.unwrap();
        }
        node.delete_blob(dropped.clone(), Default::default()).await.unwrap();
        assert!(matches!(node.get_block_list(dropped.clone()).await, Err(EngineError::BlobNotFound)));
    });
    node.stop();
    let node = open(&cfg);
    rt().block_on(async {
        let want: Vec<u8> = (0..30).flat_map(|i| block(if i == 5 { 55 } else { i })).collect();
        let (_, _, got) = node.read_blob(1, up.clone(), None, Default::default()).await.unwrap();
        assert!(got[..] == want[..], "the committed bytes after a restart");
        for i in 0..5 {
            node.put_block(i as usize % 2, purged_b.clone(), id(i), body(&block(100 + i))).await.unwrap();
        }
        // Flushed, then asked for (which holds the cache to its size): held apart.
        for i in 0..node.shards() {
            node.on(i, |s| async move { s.flush_index().await }).await.unwrap().unwrap();
        }
        node.get_block_list(purged_b.clone()).await.unwrap();
        assert!(staged_apart(&node, &purged_b).await, "held apart when the purge begins");
        // The purge of the container drops the lists never committed, and everything else.
        node.delete_container(ACCOUNT, "c").await.unwrap();
        node.sync().await.unwrap();
        assert_eq!(free_bytes_once_settled(&node, free0).await, free0, "every chunk's space is back");
    });
}

/// A container whose deletion was logged but whose blobs were not purged yet (a crash between
/// the two): the next start finds its entries, hides them, and purges them in the background,
/// so their space comes back.
#[test]
fn a_container_deleted_before_its_purge_is_purged_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path()).with_reduction(false);
    let node = open(&cfg);
    let free0 = rt().block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        let free0 = free_bytes(&node).await;
        for i in 0..6 {
            let d = data(30 + i, 300_000, false);
            node.put_blob(i as usize % 2, key("c", &format!("b{i}")), body(&d), Default::default(), Default::default())
                .await
                .unwrap();
        }
        node.sync().await.unwrap();
        assert!(free_bytes(&node).await < free0 - 1_500_000);
        // The deletion alone, as a crash right after it would leave it.
        node.on(edgeblob_engine::CATALOG_SHARD, |s| async move {
            let id = s.node.container(ACCOUNT, "c").unwrap().id;
            let rec = edgeblob_meta::Record::ContainerDelete { account: ACCOUNT.into(), name: "c".into(), id };
            let commit = s.meta.borrow_mut().commit(rec).unwrap();
            commit.durable.await.unwrap();
        })
        .await
        .unwrap();
        free0
    });
    node.stop();
    let node = open(&cfg);
    rt().block_on(async {
        assert!(matches!(
            node.head_blob(key("c", "b0"), Default::default()).await,
            Err(EngineError::ContainerNotFound)
        ));
        node.sync().await.unwrap();
        assert_eq!(free_bytes_once_settled(&node, free0).await, free0, "the purge gave their space back");
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        let page = node.list_blobs(ACCOUNT, "c", ListQuery { max: 10, ..Default::default() }).await.unwrap();
        assert!(page.entries.is_empty(), "a new container of the name starts empty");
    });
}

/// ETags stay unique across a restart even when the clock is behind a stamp already given out
/// (here an upgrade carried one from a node whose clock ran an hour ahead): each shard keeps the
/// floor of its stamps in its index, and the clock starts past it.
#[test]
fn etags_after_a_restart_pass_every_stamp_given_out() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let ahead = (edgeblob_engine::shard::now_ns() + 3_600_000_000_000) as u64;
    let keep = edgeblob_engine::blob::Stamps { etag: ahead, created_ns: 1, modified_ns: 1 };
    let node = open(&cfg);
    rt().block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        for i in 0..4 {
            node.import_blob(i % 2, key("c", &format!("old{i}")), body(b"x"), Default::default(), keep).await.unwrap();
        }
    });
    node.stop();
    let node = open(&cfg);
    rt().block_on(async {
        for i in 0..4 {
            let got =
                node.put_blob(i % 2, key("c", &format!("new{i}")), body(b"y"), Default::default(), Default::default());
            let etag = got.await.unwrap().etag;
            assert!(etag > ahead, "a new ETag {etag} passes the stamp {ahead} given out before");
        }
    });
}

/// Bytes of the data areas not holding data.
async fn free_bytes(node: &edgeblob_engine::Node) -> u64 {
    let mut total = 0;
    for i in 0..node.shards() {
        total += node
            .on(i, |s| async move {
                let mut sp = s.space.borrow_mut();
                sp.reclaim(s.node.epochs.horizon());
                // The index's segments are metadata: data space is what is free besides them.
                sp.alloc.free_bytes() + s.index_bytes()
            })
            .await
            .unwrap();
    }
    total
}

/// Free bytes once references given back to other shards have arrived: a shard posts freed
/// extents to their region's shard without waiting, so right after an operation returns, a
/// count taken through another channel may not hold them yet (seen under load). Gives up after
/// five seconds and returns the last count, for the caller's assertion to report.
async fn free_bytes_once_settled(node: &edgeblob_engine::Node, want: u64) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let free = free_bytes(node).await;
        if free == want || std::time::Instant::now() > deadline {
            return free;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[test]
fn dedup_stores_identical_chunks_once_and_compression_shrinks_text() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(&config(dir.path()));
    rt().block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        node.create_container(ACCOUNT, "d", vec![]).await.unwrap();
        let d = data(9, 64 * 1024 * 8, false);
        // Copies on one device (dedup never crosses devices).
        let copies = on_one_device(&node, |n| (0..5).map(|i| key("c", &format!("copy{i}-{n}"))).collect());
        for (i, k) in copies.iter().enumerate() {
            node.put_blob(i % 2, k.clone(), body(&d), Default::default(), Default::default()).await.unwrap();
        }
        let r = node.reduction().await.unwrap();
        assert_eq!(r.logical_bytes, 5 * d.len() as u64);
        assert!(r.ratio() > 4.9 && r.ratio() <= 5.0, "five copies stored once: {r:?}");
        let t = data(10, 1 << 20, true);
        node.put_blob(0, key("d", "text"), body(&t), Default::default(), Default::default()).await.unwrap();
        let rd = node.container_reduction(ACCOUNT, "d").await.unwrap();
        assert!(rd.ratio() > 2.0, "text compresses: {rd:?}");
        let rc = node.container_reduction(ACCOUNT, "c").await.unwrap();
        assert!(rc.ratio() > 4.9, "{rc:?}");
        // Deleting copies keeps the shared chunks for the rest.
        for k in &copies[..4] {
            node.delete_blob(k.clone(), Default::default()).await.unwrap();
        }
        let (_, _, got) = node.read_blob(1, copies[4].clone(), None, Default::default()).await.unwrap();
        assert_eq!(&got[..], &d[..]);
    });
}

/// Format v2 counts references in the index: after a restart, with a working set too small to
/// keep the chunk and dedup entries in memory, a write of the same bytes finds them there, and
/// the space goes back only with the last reference.
#[test]
fn dedup_after_a_restart_finds_chunks_through_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        edgeblob_engine::config::EngineConfig { meta_cache_bytes: 4096, meta_flush_bytes: 2048, ..config(dir.path()) };
    let d = data(21, 64 * 1024 * 8, false);
    let node = open(&cfg);
    let ab = on_one_device(&node, |n| vec![key("c", &format!("a{n}")), key("c", &format!("b{n}"))]);
    let (a, b) = (ab[0].clone(), ab[1].clone());
    let empty = rt().block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        let empty = free_bytes(&node).await;
        node.put_blob(0, a.clone(), body(&d), Default::default(), Default::default()).await.unwrap();
        empty
    });
    node.stop();
    let node = open(&cfg);
    rt().block_on(async {
        let before = free_bytes(&node).await;
        assert!(before < empty - d.len() as u64, "a's chunks hold their space after the restart");
        node.put_blob(1, b.clone(), body(&d), Default::default(), Default::default()).await.unwrap();
        node.sync().await.unwrap();
        let after = free_bytes(&node).await;
        assert!(after + 64 * 1024 > before, "b's chunks are a's: {} bytes more were used", before - after);
        node.delete_blob(a.clone(), Default::default()).await.unwrap();
        node.sync().await.unwrap();
        let (_, _, got) = node.read_blob(0, b.clone(), None, Default::default()).await.unwrap();
        assert_eq!(&got[..], &d[..]);
        node.delete_blob(b.clone(), Default::default()).await.unwrap();
        node.sync().await.unwrap();
        let back = free_bytes_once_settled(&node, empty).await;
        assert!(back + (1 << 20) > empty && back <= empty, "the chunks' space is back: {back} of {empty}");
    });
}

/// A body stored but not yet committed pins its chunks: a blob that shared them and is deleted
/// takes their count to zero, yet their space is not reused until the pin goes.
#[test]
fn a_pinned_chunk_outlives_its_count() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(&config(dir.path()));
    let d = data(22, 64 * 1024 * 6, false);
    rt().block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        let empty = free_bytes(&node).await;
        let stored = node
            .on(0, move |s| async move {
                let body = futures::stream::iter(vec![Ok(bytes::Bytes::from(d))]);
                edgeblob_engine::ops::store(&s, &key("c", "later"), body, u64::MAX).await
            })
            .await
            .unwrap()
            .unwrap();
        let d = data(22, 64 * 1024 * 6, false);
        node.put_blob(1, key("c", "a"), body(&d), Default::default(), Default::default()).await.unwrap();
        node.delete_blob(key("c", "a"), Default::default()).await.unwrap();
        node.sync().await.unwrap();
        // Enough new data to take any space that was freed.
        for i in 0..4 {
            let fill = data(200 + i, 64 * 1024 * 6, false);
            node.put_blob(
                i as usize % 2,
                key("c", &format!("fill{i}")),
                body(&fill),
                Default::default(),
                Default::default(),
            )
            .await
            .unwrap();
        }
        node.on(0, move |s| async move {
            edgeblob_engine::ops::commit_single(
                &s,
                key("c", "later"),
                stored,
                Default::default(),
                Default::default(),
                None,
            )
            .await
        })
        .await
        .unwrap()
        .unwrap();
        let (_, _, got) = node.read_blob(1, key("c", "later"), None, Default::default()).await.unwrap();
        assert_eq!(&got[..], &d[..], "the pinned chunks kept their bytes");
        for name in ["later", "fill0", "fill1", "fill2", "fill3"] {
            node.delete_blob(key("c", name), Default::default()).await.unwrap();
        }
        node.sync().await.unwrap();
        let back = free_bytes_once_settled(&node, empty).await;
        assert!(back + (1 << 20) > empty && back <= empty, "the chunks' space is back: {back} of {empty}");
    });
}

/// A chunk is written into the region of the shard that counts it, whichever shard received
/// the bytes: freeing it is then one shard's business (architecture.md, "Metadata at scale", 6).
#[test]
fn every_chunk_lies_in_the_region_of_the_shard_that_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(&config(dir.path()));
    assert!(node.shards() > 1, "the test needs chunks whose counting shard is not the receiving one");
    rt().block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        for i in 0..8u8 {
            let d = data(40 + i as u64, 64 * 1024 * 6, false);
            node.put_blob(i as usize % 2, key("c", &format!("b{i}")), body(&d), Default::default(), Default::default())
                .await
                .unwrap();
        }
        let mut counted = 0;
        for shard in 0..node.shards() {
            let misplaced = node
                .on(shard, |s| async move {
                    let counted = edgeblob_engine::stats::counted_chunks(&s).await.unwrap();
                    let away: Vec<u64> = counted
                        .iter()
                        .filter(|(c, _)| s.node.region_of(c.offset) != s.index)
                        .map(|(c, _)| c.offset)
                        .collect();
                    (counted.len(), away)
                })
                .await
                .unwrap();
            counted += misplaced.0;
            assert!(misplaced.1.is_empty(), "shard {shard} counts chunks in other regions: {:?}", misplaced.1);
        }
        assert!(counted >= 8 * 6, "every chunk is counted somewhere: {counted}");
        for i in 0..8u8 {
            let (_, _, got) = node.read_blob(1, key("c", &format!("b{i}")), None, Default::default()).await.unwrap();
            assert_eq!(&got[..], &data(40 + i as u64, 64 * 1024 * 6, false)[..]);
        }
    });
}

/// Dedup is within an account: another account's copy of the same bytes takes its own space, so
/// whether a write costs space (or fails on a full node) tells nothing about other accounts.
#[test]
fn dedup_never_crosses_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(&config(dir.path()));
    rt().block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        node.create_container("otheraccount", "c", vec![]).await.unwrap();
        let d = data(11, 64 * 1024 * 8, false);
        // All on one device: only the account may keep them apart.
        let keys = on_one_device(&node, |n| {
            let k = |account: &str, name: &str| edgeblob_meta::model::BlobKey::new(account, "c", &format!("{name}{n}"));
            vec![k(ACCOUNT, "one"), k(ACCOUNT, "two"), k("otheraccount", "one")]
        });
        let put = |k: &edgeblob_meta::model::BlobKey| {
            node.put_blob(0, k.clone(), body(&d), Default::default(), Default::default())
        };
        put(&keys[0]).await.unwrap();
        put(&keys[1]).await.unwrap();
        let within = node.reduction().await.unwrap();
        put(&keys[2]).await.unwrap();
        let across = node.reduction().await.unwrap();
        assert_eq!(across.logical_bytes, 3 * d.len() as u64);
        assert!(within.ratio() > 1.9, "two copies in one account share chunks: {within:?}");
        assert!(
            across.stored_bytes >= 2 * within.stored_bytes,
            "the other account's copy took its own space: {within:?} then {across:?}"
        );
    });
}

#[test]
fn listing_merges_shards_with_prefix_delimiter_and_marker() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(&config(dir.path()));
    rt().block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        let mut names: Vec<String> = (0..60).map(|i| format!("dir{}/f{i:03}", i % 3)).collect();
        names.push("top".into());
        for (i, n) in names.iter().enumerate() {
            node.put_blob(i % 2, key("c", n), body(n.as_bytes()), Default::default(), Default::default())
                .await
                .unwrap();
        }
        names.sort();
        let mut seen = Vec::new();
        let mut q = ListQuery { max: 7, ..Default::default() };
        loop {
            let page = node.list_blobs(ACCOUNT, "c", q.clone()).await.unwrap();
            assert!(page.entries.len() <= 7);
            seen.extend(page.entries.iter().map(|e| e.name().to_owned()));
            match page.next_marker {
                Some(m) => q.marker = Some(m),
                None => break,
            }
        }
        assert_eq!(seen, names);
        let q = ListQuery { delimiter: Some("/".into()), max: 100, ..Default::default() };
        let page = node.list_blobs(ACCOUNT, "c", q).await.unwrap();
        let got: Vec<&str> = page.entries.iter().map(|e| e.name()).collect();
        assert_eq!(got, ["dir0/", "dir1/", "dir2/", "top"]);
        let q = ListQuery { prefix: "dir1/".into(), max: 100, ..Default::default() };
        assert_eq!(node.list_blobs(ACCOUNT, "c", q).await.unwrap().entries.len(), 20);
    });
}

#[test]
fn properties_and_metadata_change_the_etag_and_keep_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let rt = rt();
    {
        let node = open(&cfg);
        rt.block_on(async {
            node.create_container(ACCOUNT, "c", vec![("Owner".into(), "me".into())]).await.unwrap();
            let s = node
                .put_blob(0, key("c", "b"), body(b"payload"), Default::default(), Default::default())
                .await
                .unwrap();
            let md = vec![("Mixed_Case".to_owned(), "v".to_owned())];
            let s2 = node
                .set_blob_props(key("c", "b"), PropsChange::Metadata(md.clone()), Default::default())
                .await
                .unwrap();
            assert!(s2.etag > s.etag);
            let props = BlobProps {
                content_type: Some("image/png".into()),
                cache_control: Some("no-cache".into()),
                ..Default::default()
            };
            node.set_blob_props(key("c", "b"), PropsChange::Properties(Box::new(props)), Default::default())
                .await
                .unwrap();
        });
    }
    let node = open(&cfg);
    rt.block_on(async {
        let (s, _, got) = node.read_blob(0, key("c", "b"), None, Default::default()).await.unwrap();
        assert_eq!(&got[..], b"payload");
        assert_eq!(s.props.content_type.as_deref(), Some("image/png"));
        assert_eq!(edgeblob_meta::model::metadata_get(&s.props.metadata, "mixed_case"), Some("v"));
        assert_eq!(s.props.metadata[0].0, "Mixed_Case", "case is kept");
        assert_eq!(node.get_container(ACCOUNT, "c").unwrap().metadata[0].0, "Owner");
    });
}

#[test]
fn uncommitted_blocks_expire_after_seven_days() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(&config(dir.path()));
    rt().block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        let before = free_bytes(&node).await;
        node.put_block(0, key("c", "b"), b"blk".to_vec(), body(&data(1, 100_000, false))).await.unwrap();
        let owner = node.shared().owner_of(&key("c", "b"));
        let now = edgeblob_engine::shard::now_ns();
        let day = 24 * 3600 * 1_000_000_000i64;
        let dropped = node
            .on(owner, move |s| async move { edgeblob_engine::blob::expire_staged(&s, now + 6 * day).await })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(dropped, 0, "six days: kept");
        assert_eq!(node.get_block_list(key("c", "b")).await.unwrap().uncommitted.len(), 1);
        let dropped = node
            .on(owner, move |s| async move { edgeblob_engine::blob::expire_staged(&s, now + 8 * day).await })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(dropped, 1, "eight days: dropped");
        assert!(matches!(node.get_block_list(key("c", "b")).await, Err(EngineError::BlobNotFound)));
        assert_eq!(free_bytes_once_settled(&node, before).await, before, "their space is free again");
    });
}

#[test]
fn a_read_in_flight_keeps_the_space_of_a_deleted_blob() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(&config(dir.path()).with_reduction(false));
    let original = data(7, 500_000, false);
    rt().block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        node.put_blob(0, key("c", "old"), body(&original), Default::default(), Default::default()).await.unwrap();
        let got = node
            .on(0, |s| async move {
                use edgeblob_engine::{blob, read::BlobReader, write::store_body};
                let k = key("c", "old");
                let owner = s.node.owner_of(&k);
                // Resolve the blob as a GET does, then delete it before reading a byte.
                let guard = s.node.epochs.enter();
                let kk = k.clone();
                let plan = s
                    .peers
                    .call(owner, move |o| async move { blob::resolve(&o, &kk, None, &Default::default()).await })
                    .await
                    .unwrap()
                    .unwrap();
                s.peers
                    .call(owner, move |o| async move { blob::delete_blob(&o, k, Default::default()).await })
                    .await
                    .unwrap()
                    .unwrap();
                // Let the give-backs land, then write enough new data to reuse any free space.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                for i in 0..4 {
                    let fill = data(100 + i, 500_000, false);
                    let stored = store_body(
                        &s,
                        ACCOUNT,
                        s.index,
                        futures::stream::iter(vec![Ok(bytes::Bytes::from(fill))]),
                        u64::MAX,
                    )
                    .await
                    .unwrap();
                    stored.give_back(&s);
                }
                BlobReader::new(s.clone(), ACCOUNT.into(), plan.segments, guard).read_all().await
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got[..], &original[..], "the read sees the bytes it resolved");
    });
}

/// A clean stop writes everything into the metadata indexes: the next start replays nothing. A
/// stop without it (a crash) replays the log, and loses nothing either way. The stop right after
/// a crash's replay flushes more than the index's segments held, with no commit in between to
/// have granted it room.
#[test]
fn a_clean_stop_leaves_nothing_to_replay() {
    let dir = tempfile::tempdir().unwrap();
    // No flush before the crash: everything is replayed.
    let cfg = edgeblob_engine::config::EngineConfig { meta_flush_bytes: 64 << 20, ..config(dir.path()) };
    let replayed = |node: &edgeblob_engine::Node| -> usize {
        (0..node.shards()).map(|i| rt().block_on(node.on(i, |s| async move { s.replayed })).unwrap()).sum()
    };
    // Segments the indexes held when their shards opened.
    let held_at_open = |node: &edgeblob_engine::Node| -> usize {
        let of = |i| node.on(i, |s| async move { s.index_space.as_ref().map_or(0, |x| x.held.len()) });
        (0..node.shards()).map(|i| rt().block_on(of(i)).unwrap()).max().unwrap()
    };
    let props = || BlobProps { metadata: vec![("pad".into(), "m".repeat(1500))], ..BlobProps::default() };
    let node = open(&cfg);
    let held = held_at_open(&node);
    // Enough for each shard's flush to need more than the segments it starts with.
    let blobs = 1200 * cfg.shards.unwrap_or(2);
    rt().block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        for i in 0..blobs {
            node.put_blob(i % 2, key("c", &format!("b{i:05}")), body(b"x"), props(), Default::default()).await.unwrap();
        }
    });
    drop(node);
    let node = open(&cfg);
    assert!(replayed(&node) > blobs, "without a clean stop the log is replayed: {}", replayed(&node));
    node.stop();
    let node = open(&cfg);
    assert_eq!(replayed(&node), 0, "a clean stop flushed everything");
    assert!(held_at_open(&node) > held, "the flush at the stop needed room beyond the segments held at first");
    let mut q = ListQuery { max: 1000, ..Default::default() };
    let mut listed = 0;
    loop {
        let page = rt().block_on(node.list_blobs(ACCOUNT, "c", q.clone())).unwrap();
        listed += page.entries.len();
        match page.next_marker {
            Some(m) => q.marker = Some(m),
            None => break,
        }
    }
    assert_eq!(listed, blobs);
}

/// A container's stored access policies ride in its catalog entry: they survive a restart, a
/// later Set Container Metadata keeps them, and they never show as metadata.
#[test]
fn stored_access_policies_survive_a_restart_and_new_metadata() {
    use edgeblob_engine::container::{access_policies, client_metadata, AccessPolicy};
    use edgeblob_meta::model::PublicAccess;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let policies = vec![
        AccessPolicy {
            id: "readers".into(),
            start: None,
            expiry: Some("2030-01-01T00:00:00Z".into()),
            permission: Some("rl".into()),
        },
        AccessPolicy { id: "all".into(), start: Some("2026-01-01T00:00:00Z".into()), expiry: None, permission: None },
    ];
    let rt = rt();
    {
        let node = open(&cfg);
        rt.block_on(async {
            node.create_container(ACCOUNT, "c", vec![("Team".into(), "ml".into())]).await.unwrap();
            node.set_container_acl(ACCOUNT, "c", PublicAccess::Blob, policies.clone()).await.unwrap();
            node.set_container_metadata(ACCOUNT, "c", vec![("Owner".into(), "a".into())]).await.unwrap();
        });
        node.stop();
    }
    let node = open(&cfg);
    let c = node.get_container(ACCOUNT, "c").unwrap();
    assert_eq!(access_policies(&c), policies);
    assert_eq!(client_metadata(&c), vec![("Owner".to_owned(), "a".to_owned())]);
    assert_eq!(c.public_access, PublicAccess::Blob);
    // An ACL without policies removes them.
    rt.block_on(node.set_container_acl(ACCOUNT, "c", PublicAccess::None, vec![])).unwrap();
    let c = node.get_container(ACCOUNT, "c").unwrap();
    assert!(access_policies(&c).is_empty() && c.metadata.len() == 1, "{:?}", c.metadata);
}

/// Set Blob Tier keeps the blob's ETag and Last-Modified (Azure's rule), a metadata change keeps
/// the tier, and both survive a restart.
#[test]
fn a_blob_tier_keeps_the_etag_and_survives_a_restart_and_new_metadata() {
    use edgeblob_engine::{access_tier, PropsChange};
    use edgeblob_proto::request::AccessTier;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let rt = rt();
    let before = {
        let node = open(&cfg);
        let before = rt.block_on(async {
            node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
            let b =
                node.put_blob(0, key("c", "b"), body(b"x"), BlobProps::default(), Conditions::default()).await.unwrap();
            let tiered = node.set_blob_props(key("c", "b"), PropsChange::Tier(AccessTier::Cold), Conditions::default());
            let t = tiered.await.unwrap();
            assert_eq!((t.etag, t.modified_ns), (b.etag, b.modified_ns), "Set Blob Tier changed the ETag");
            let md = vec![("Owner".to_owned(), "a".to_owned())];
            node.set_blob_props(key("c", "b"), PropsChange::Metadata(md), Conditions::default()).await.unwrap()
        });
        node.stop();
        before
    };
    let node = open(&cfg);
    let b = rt.block_on(node.head_blob(key("c", "b"), Conditions::default())).unwrap();
    assert_eq!(b.etag, before.etag);
    let tier = access_tier::of(&b.props).unwrap();
    assert_eq!(tier.tier, AccessTier::Cold);
    assert!(tier.changed_ns.is_some_and(|ns| ns > 0));
    assert_eq!(
        edgeblob_engine::reserved_metadata::client_metadata(&b.props.metadata),
        vec![("Owner".to_owned(), "a".to_owned())]
    );
}

/// An account's Blob service properties are kept in a catalog entry no listing shows, and
/// survive a restart.
#[test]
fn service_properties_survive_a_restart_and_never_list_as_a_container() {
    use edgeblob_engine::container::{service_properties, SERVICE_ENTRY};
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let rt = rt();
    {
        let node = open(&cfg);
        rt.block_on(async {
            node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
            node.set_service_properties(ACCOUNT, "<StorageServiceProperties><Cors/></StorageServiceProperties>".into())
                .await
                .unwrap();
            node.set_service_properties(ACCOUNT, "<StorageServiceProperties/>".into()).await.unwrap();
        });
        node.stop();
    }
    let node = open(&cfg);
    let entry = node.get_container(ACCOUNT, SERVICE_ENTRY).unwrap();
    assert_eq!(service_properties(&entry), Some("<StorageServiceProperties/>"), "the last one set");
    let (listed, next) = node.list_containers(ACCOUNT, "", None, 10);
    assert_eq!((listed.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), next), (vec!["c"], None));
}

/// Format v2: a clean stop keeps the keys of the blobs its shards hold in memory, and the next
/// start reads them back in the background: they are in memory again before any client asks
/// (a restart would otherwise read the index at every blob's first touch).
#[test]
fn a_clean_restart_reads_back_the_blobs_held_in_memory() {
    use edgeblob_meta::index::shard::HoldsIndex;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let rt = rt();
    let keys: Vec<_> = (0..40).map(|i| key("c", &format!("warm-{i:02}"))).collect();
    let in_memory = |node: &edgeblob_engine::Node, k: &edgeblob_meta::model::BlobKey| {
        let k = k.clone();
        let at = node.on(node.shared().owner_of(&k), move |s| async move {
            s.meta.borrow().index().is_some_and(|m| m.state.blobs.contains_key(&k))
        });
        rt.block_on(at).unwrap()
    };
    let node = open(&cfg);
    rt.block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        for (i, k) in keys.iter().enumerate() {
            node.put_blob(i % 2, k.clone(), body(&data(i as u64, 100, false)), Default::default(), Default::default())
                .await
                .unwrap();
        }
    });
    assert!(keys.iter().all(|k| in_memory(&node, k)), "written, so held");
    node.stop();
    let node = open(&cfg);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !keys.iter().all(|k| in_memory(&node, k)) {
        assert!(std::time::Instant::now() < deadline, "not read back after the start");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // And served as they were.
    rt.block_on(async {
        let (_, _, got) = node.read_blob(0, keys[7].clone(), None, Default::default()).await.unwrap();
        assert_eq!(&got[..], &data(7, 100, false)[..]);
    });
}
