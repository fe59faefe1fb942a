//! No client can brick a shard by filling its metadata: growth is refused at the shard's limit
//! with an error that says so, and deletes always go through, before and after a restart. In
//! format v1 the limit is the log half that holds each checkpoint; in v2 the metadata index grows
//! into the data area, so the limit is the area itself (data refused first, the index's reserve
//! last).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use edgeblob_engine::EngineError;
use edgeblob_meta::model::BlobProps;
use edgeblob_meta::MetaError;
use edgeblob_proto::conditions::Conditions;
use edgeblob_testkit::engine::*;

fn heavy_props() -> BlobProps {
    // Azure's 8 KiB of metadata per blob is the largest honest client: it fills a shard fastest.
    BlobProps { metadata: vec![("pad".into(), "m".repeat(7000))], ..BlobProps::default() }
}

/// The refusals of a full shard: its metadata (v1's log half, v2's index reserve) or its data
/// area (v2, where the index and the data share it).
fn is_full(e: &EngineError) -> bool {
    matches!(e, EngineError::Log(MetaError::MetadataFull) | EngineError::OutOfSpace)
}

#[test]
fn a_full_shard_refuses_growth_and_still_deletes_across_a_restart() {
    for format_version in [1, 2] {
        full_shard(format_version);
    }
}

fn full_shard(format_version: u32) {
    let dir = tempfile::tempdir().unwrap();
    // Without dedup every blob has a chunk of its own, so deleting blobs frees data space as well
    // as metadata (in v2 the index keeps the segments it took, and reuses its freed pages).
    let cfg = edgeblob_engine::config::EngineConfig { data_size: 64 << 20, format_version, ..config(dir.path()) }
        .with_reduction(false);
    let rt = rt();
    let node = open(&cfg);
    let (stored, refused) = rt.block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        let mut stored = Vec::new();
        let mut refused = Vec::new();
        // Until both shards have refused a few: every blob lands on one of the two.
        for i in 0..20_000 {
            let name = format!("blob-{i:06}");
            match node.put_blob(0, key("c", &name), body(b"x"), heavy_props(), Conditions::default()).await {
                Ok(_) => stored.push(name),
                Err(e) if is_full(&e) => refused.push(name),
                Err(e) => panic!("v{format_version}, blob {i}: {e}"),
            }
            if refused.len() >= 8 {
                break;
            }
        }
        assert!(refused.len() >= 8, "v{format_version}: the limit never applied ({} stored)", stored.len());
        // Deletes go through at the limit, and make room again. Two in three: in v2 the index
        // keeps the segments it took (its freed pages are its own), so only the data space the
        // deletes free is room for data, and half of it leaves a margin of one segment.
        for name in stored.iter().enumerate().filter(|(i, _)| i % 3 != 2).map(|(_, n)| n) {
            node.delete_blob(key("c", name), Conditions::default()).await.unwrap();
        }
        // v2 frees a chunk once its counting shard has logged the drop, milliseconds after the
        // delete is acknowledged (a client refused meanwhile retries after Retry-After).
        node.sync().await.unwrap();
        for name in &refused {
            node.put_blob(1, key("c", name), body(b"y"), heavy_props(), Conditions::default()).await.unwrap();
        }
        (stored, refused)
    });
    node.stop();
    let node = open(&cfg);
    rt.block_on(async {
        for (i, name) in stored.iter().enumerate() {
            let found = node.head_blob(key("c", name), Conditions::default()).await;
            assert_eq!(found.is_ok(), i % 3 == 2, "{name} after the restart");
        }
        for name in &refused {
            let (_, _, got) = node.read_blob(0, key("c", name), None, Conditions::default()).await.unwrap();
            assert_eq!(&got[..], b"y");
        }
        // The whole container goes, and the shards take new blobs.
        node.delete_container(ACCOUNT, "c").await.unwrap();
        node.create_container(ACCOUNT, "d", vec![]).await.unwrap();
        node.put_blob(0, key("d", "after"), body(b"z"), heavy_props(), Conditions::default()).await.unwrap();
    });
}

/// Without dedup a chunk is written where its request arrived. A client whose connection lands
/// on one shard fills that shard's region, then the others', and only then is refused.
#[test]
fn one_connection_fills_every_region_not_only_its_own() {
    for format_version in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = edgeblob_engine::config::EngineConfig { data_size: 64 << 20, format_version, ..config(dir.path()) }
            .with_reduction(false);
        let rt = rt();
        let node = open(&cfg);
        let region = node.shared().layout.data_area(0).1;
        let stored = rt.block_on(async {
            node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
            let mut stored = 0u64;
            for i in 0u32.. {
                let data: Vec<u8> = (0..64 * 1024u32).map(|j| (i.wrapping_mul(31) ^ j.wrapping_mul(7)) as u8).collect();
                match node
                    .put_blob(0, key("c", &format!("b{i}")), body(&data), Default::default(), Conditions::default())
                    .await
                {
                    Ok(_) => stored += data.len() as u64,
                    Err(e) if is_full(&e) => break,
                    Err(e) => panic!("v{format_version}, blob {i}: {e}"),
                }
            }
            stored
        });
        assert!(stored > region, "v{format_version}: {stored} bytes stored, no more than one region holds ({region})");
        node.stop();
    }
}

/// Puts a one-byte blob named `xxx-NNNNNN`, arriving on the shard its number picks (where its
/// chunk lands, without dedup).
async fn put(node: &edgeblob_engine::Node, name: &str, byte: u8) -> Result<(), EngineError> {
    let i: usize = name[4..].parse().unwrap();
    node.put_blob(i % 2, key("c", name), body(&[byte]), heavy_props(), Conditions::default()).await.map(|_| ())
}

/// A v2 shard filled with small blobs (each a chunk, and Azure's 8 KiB of metadata), then half
/// emptied, has its free space in holes of a few chunks each, too small for the index to grow
/// into; the index reuses the pages the deletes freed inside it instead, and gives data the spare
/// segments it will not need, so the shard takes new blobs again for the room the deletes made.
/// Before, it refused every one. The index keeps its reserve of spare segments across a restart
/// (where no contiguous room is left to set one aside again), so the restart changes nothing.
#[test]
fn a_shard_fragmented_by_deletes_takes_new_blobs_before_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = edgeblob_engine::config::EngineConfig { data_size: 64 << 20, ..config(dir.path()) }.with_reduction(false);
    let rt = rt();
    let node = open(&cfg);
    // Half of each shard's chunks go, every other pair: holes of one page each.
    let gone = |i: usize| i % 4 >= 2;
    let stored = rt.block_on(async {
        // A chunk lands on the shard its request arrives on (`i % 2`): until both refuse.
        let (stored, _) = fill_until_refused(&node, is_full).await;
        delete_where(&node, &stored, gone).await;
        for shard in 0..2 {
            let (largest, segment) = node
                .on(shard, |s| async move {
                    let space = s.space.borrow();
                    let largest = space.alloc.free_extents().map(|e| e.len).max().unwrap_or(0);
                    (largest, s.index_space.as_ref().unwrap().segment_len())
                })
                .await
                .unwrap();
            assert!(largest < segment, "shard {shard}: a free run of {largest} bytes is room for a segment");
        }
        stored
    });
    // The deletes made room for half as many blobs again, less the index's reserve for deletes:
    // a quarter before the restart and most of another after it; not one is refused.
    let fresh = stored.len() / 4;
    rt.block_on(put_new(&node, 0..fresh, b'y'));
    node.stop();
    let node = open(&cfg);
    rt.block_on(async {
        check_kept(&node, &stored, |i| !gone(i)).await;
        for i in 0..fresh {
            let (_, _, got) =
                node.read_blob(0, key("c", &format!("new-{i:06}")), None, Conditions::default()).await.unwrap();
            assert_eq!(&got[..], b"y");
        }
        put_new(&node, fresh..2 * fresh - fresh / 8, b'z').await;
    });
}

/// With dedup, blobs of the same bytes share one chunk, so a v2 shard filled with them is full
/// of metadata alone: its index takes every segment of the region. Deletes then free pages
/// inside the index, which redb reuses but the room check cannot count, and the region has no
/// free segment left to grant. A refused growth compacts the index, which trims it and gives the
/// segments above its new length back as spares, so the shard takes new blobs again, before and
/// after a restart. Before, it refused every one.
#[test]
fn a_shard_whose_index_took_its_whole_region_takes_new_blobs_after_deletes() {
    whole_region(64 << 20, shards_for(2));
}

fn whole_region(data_size: u64, shards: usize) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = edgeblob_engine::config::EngineConfig { data_size, shards: Some(shards), ..config(dir.path()) };
    assert!(cfg.dedup, "the test needs blobs of the same bytes to share their chunk");
    let rt = rt();
    let node = open(&cfg);
    let gone = |i: usize| i % 3 != 2;
    let (stored, refused) = rt.block_on(async {
        let (stored, refused) =
            fill_until_refused(&node, |e| matches!(e, EngineError::Log(MetaError::MetadataFull))).await;
        delete_where(&node, &stored, gone).await;
        for name in &refused {
            put(&node, name, b'y').await.unwrap_or_else(|e| panic!("{name} after the deletes: {e}"));
        }
        (stored, refused)
    });
    // Two thirds of the blobs went: half as many again fit, whatever their bytes.
    let fresh = stored.len() / 4;
    rt.block_on(put_new(&node, 0..fresh, b'z'));
    node.stop();
    let node = open(&cfg);
    rt.block_on(async {
        check_kept(&node, &stored, |i| !gone(i)).await;
        for name in refused.iter().chain(&[format!("new-{:06}", fresh - 1)]) {
            let (_, _, got) = node.read_blob(0, key("c", name), None, Conditions::default()).await.unwrap();
            assert_eq!(got.len(), 1, "{name}");
        }
        put_new(&node, fresh..2 * fresh, b'w').await;
    });
}

/// The same with three shards on 192 MiB (the test's size on three devices, as on one): before,
/// the compaction that deletes asked for took the spares its flush had left and wanted more,
/// failed, and left its shard refusing every change.
#[test]
fn a_compaction_short_of_segments_leaves_its_shard_working() {
    whole_region(192 << 20, 3);
}

/// Puts `old-NNNNNN` blobs of one byte until eight are refused as `full` says: the names
/// stored and refused.
async fn fill_until_refused(
    node: &edgeblob_engine::Node,
    full: impl Fn(&EngineError) -> bool,
) -> (Vec<String>, Vec<String>) {
    node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
    let (mut stored, mut refused) = (Vec::new(), Vec::new());
    for i in 0..100_000 {
        let name = format!("old-{i:06}");
        match put(node, &name, b'x').await {
            Ok(()) => stored.push(name),
            Err(e) if full(&e) => refused.push(name),
            Err(e) => panic!("blob {i}: {e}"),
        }
        if refused.len() >= 8 {
            break;
        }
    }
    assert!(refused.len() >= 8 && stored.len() > 1000, "{} stored", stored.len());
    (stored, refused)
}

/// Deletes the blobs of `stored` whose number `gone` picks, and waits until the deletes are
/// durable.
async fn delete_where(node: &edgeblob_engine::Node, stored: &[String], gone: impl Fn(usize) -> bool) {
    for (_, name) in stored.iter().enumerate().filter(|(i, _)| gone(*i)) {
        node.delete_blob(key("c", name), Conditions::default()).await.unwrap();
    }
    node.sync().await.unwrap();
}

/// Puts `new-NNNNNN` blobs of `byte`, numbered `range`: not one may be refused.
async fn put_new(node: &edgeblob_engine::Node, range: std::ops::Range<usize>, byte: u8) {
    for i in range {
        put(node, &format!("new-{i:06}"), byte).await.unwrap_or_else(|e| panic!("new blob {i}: {e}"));
    }
}

/// Each blob of `stored` is there exactly when `kept` says so of its number.
async fn check_kept(node: &edgeblob_engine::Node, stored: &[String], kept: impl Fn(usize) -> bool) {
    for (i, name) in stored.iter().enumerate() {
        let found = node.head_blob(key("c", name), Conditions::default()).await;
        assert_eq!(found.is_ok(), kept(i), "{name}");
    }
}

/// Format v1 only: there, uncommitted blocks share the log half with everything else. In v2 they
/// are index entries like blobs, bounded by Azure's 100,000 per blob, their expiry after a week,
/// and the shard's capacity (the test above).
#[test]
fn uncommitted_blocks_cannot_crowd_out_commits() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = edgeblob_engine::config::EngineConfig { format_version: 1, ..config(dir.path()) };
    let rt = rt();
    let node = open(&cfg);
    rt.block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        let mut refused = 0;
        // A careless writer stages blocks into many blobs and commits none.
        'flood: for blob in 0..1000 {
            for block in 0..100 {
                let id = format!("{block:060}").into_bytes();
                match node.put_block(0, key("c", &format!("junk-{blob}")), id, body(b"b")).await {
                    Ok(_) => {}
                    Err(EngineError::Log(MetaError::StagedFull)) => {
                        refused += 1;
                        if refused >= 8 {
                            break 'flood;
                        }
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
        assert!(refused >= 8, "the staged limit never applied");
        // Everyone else still commits, on every shard.
        for i in 0..64 {
            let name = format!("real-{i}");
            node.put_blob(1, key("c", &name), body(b"data"), BlobProps::default(), Conditions::default())
                .await
                .unwrap();
        }
        // Delete Blob does not see uncommitted blocks (404, as in Azure); committing the junk
        // as an empty blob drops them, and then the blob can be deleted: room to stage again.
        let mut relieved = 0;
        for blob in 0..1000 {
            let k = key("c", &format!("junk-{blob}"));
            let err = node.delete_blob(k.clone(), Conditions::default()).await.unwrap_err();
            assert!(matches!(err, EngineError::BlobNotFound), "{err}");
            node.commit_block_list(k.clone(), vec![], BlobProps::default(), Conditions::default()).await.unwrap();
            node.delete_blob(k, Conditions::default()).await.unwrap();
            relieved += 1;
            if node.put_block(0, key("c", "fresh"), format!("{:060}", 1).into_bytes(), body(b"b")).await.is_ok() {
                break;
            }
        }
        assert!(relieved < 1000, "relieving the junk never made room");
    });
}

/// The bytes of an upload not yet cut into a chunk are held in the shard's write budget like a
/// chunk in flight: a slow upload's partial chunk is counted, and given back when it ends.
#[test]
fn a_partial_chunk_holds_its_bytes_in_the_write_budget() {
    use bytes::Bytes;
    use edgeblob_engine::ops;
    use edgeblob_engine::write::budget_units;
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let rt = rt();
    let node = open(&cfg);
    rt.block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        node.on(0, |s| async move {
            let total = s.write_budget.available_permits();
            // Each sends 40,000 bytes (less than a chunk) and then nothing.
            let mut stalled = Vec::new();
            for i in 0..3 {
                let body =
                    futures::stream::iter([Ok(Bytes::from(vec![i as u8; 40_000]))]).chain(futures::stream::pending());
                let s2 = s.clone();
                stalled.push(tokio::task::spawn_local(async move {
                    let k = key("c", &format!("slow-{i}"));
                    ops::put_blob(&s2, k, body, BlobProps::default(), Conditions::default()).await
                }));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            assert_eq!(total - s.write_budget.available_permits(), 3 * budget_units(40_000));
            for t in &stalled {
                t.abort();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            assert_eq!(s.write_budget.available_permits(), total, "a dropped upload gives its share back");
            // A finished upload holds nothing either.
            let body = futures::stream::iter([Ok(Bytes::from(vec![9u8; 300_000]))]);
            ops::put_blob(&s, key("c", "done"), body, BlobProps::default(), Conditions::default()).await.unwrap();
            assert_eq!(s.write_budget.available_permits(), total);
        })
        .await
        .unwrap();
    });
}

/// Azure's limits per blob, end to end: 100,000 uncommitted blocks (the next new id is refused,
/// re-staging one is not), and 50,000 blocks in a committed list.
#[test]
fn a_blob_takes_azures_block_counts_and_no_more() {
    use edgeblob_engine::BlockListItem;
    use edgeblob_meta::model::limits::{MAX_COMMITTED_BLOCKS, MAX_UNCOMMITTED_BLOCKS};
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    // One shard on a sparse 16 GiB file: a half of 512 MiB, so that 100,000 staged blocks fit
    // the shard's share for them (64 MiB).
    let cfg = edgeblob_engine::config::EngineConfig {
        data_size: 16 << 30,
        shards: Some(shards_for(1)),
        ..config(dir.path())
    };
    let rt = rt();
    let node = open_sparse(&cfg);
    rt.block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        let id = |i: usize| format!("{i:08}").into_bytes();
        let stage = |i: usize| node.put_block(0, key("c", "many"), id(i), body(b"b"));
        // Many at once: group commit makes one flush serve them.
        let staged: Vec<_> =
            futures::stream::iter(0..MAX_UNCOMMITTED_BLOCKS).map(stage).buffer_unordered(256).collect().await;
        assert!(staged.iter().all(|r| r.is_ok()), "{:?}", staged.iter().find(|r| r.is_err()));
        let err = stage(MAX_UNCOMMITTED_BLOCKS).await.unwrap_err();
        assert!(matches!(err, EngineError::BlockCountExceedsLimit), "{err}");
        stage(7).await.unwrap();
        let too_long: Vec<BlockListItem> = (0..=MAX_COMMITTED_BLOCKS).map(|i| BlockListItem::Latest(id(i))).collect();
        let err = node
            .commit_block_list(key("c", "many"), too_long, BlobProps::default(), Conditions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::BlockListTooLong), "{err}");
        let most: Vec<BlockListItem> = (0..MAX_COMMITTED_BLOCKS).map(|i| BlockListItem::Latest(id(i))).collect();
        let b =
            node.commit_block_list(key("c", "many"), most, BlobProps::default(), Conditions::default()).await.unwrap();
        assert_eq!(b.size, MAX_COMMITTED_BLOCKS as u64);
        let list = node.get_block_list(key("c", "many")).await.unwrap();
        assert_eq!((list.committed.unwrap().len(), list.uncommitted.len()), (MAX_COMMITTED_BLOCKS, 0));
    });
}

/// 300,000 blobs in one container list whole and in order in every page size, flat and by
/// directory, on two shards (issue 10 keeps this as its listing must-hold).
#[test]
fn three_hundred_thousand_blobs_list_in_every_page_size() {
    use edgeblob_meta::listing::ListQuery;
    use futures::StreamExt;
    const N: usize = 300_000;
    let dir = tempfile::tempdir().unwrap();
    let cfg = edgeblob_engine::config::EngineConfig { data_size: 8 << 30, ..config(dir.path()) };
    let rt = rt();
    let node = open_sparse(&cfg);
    rt.block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        // Names in 300 directories, written out of order. At 512 in flight a Put may be told
        // the shard is busy while its flushes catch up (503 ServerBusy to a client, which tries
        // again, as here); any other answer fails the test.
        let name = |i: usize| format!("d{:03}/b{:06}", (i * 7919) % 300, (i * 104_729) % N);
        let node = &node;
        let put = |i: usize| async move {
            loop {
                match node
                    .put_blob(i % 2, key("c", &name(i)), vec![], BlobProps::default(), Conditions::default())
                    .await
                {
                    Err(EngineError::Log(MetaError::Busy)) => {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await
                    }
                    other => return other,
                }
            }
        };
        let puts: Vec<_> = futures::stream::iter(0..N).map(put).buffer_unordered(512).collect().await;
        assert!(puts.iter().all(|r| r.is_ok()), "{:?}", puts.iter().find(|r| r.is_err()));
        let mut want: Vec<String> = (0..N).map(name).collect();
        want.sort();
        want.dedup();
        for max in [5000, 4999, 1237] {
            let mut seen = Vec::with_capacity(want.len());
            let mut q = ListQuery { max, ..Default::default() };
            loop {
                let page = node.list_blobs(ACCOUNT, "c", q.clone()).await.unwrap();
                assert!(page.entries.len() <= max);
                seen.extend(page.entries.iter().map(|e| e.name().to_owned()));
                match page.next_marker {
                    Some(m) => q.marker = Some(m),
                    None => break,
                }
            }
            assert!(seen == want, "pages of {max}: {} listed of {}", seen.len(), want.len());
        }
        let dirs = node
            .list_blobs(ACCOUNT, "c", ListQuery { delimiter: Some("/".into()), max: 5000, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(dirs.entries.len(), 300);
        assert!(dirs.next_marker.is_none());
        let one = ListQuery { prefix: "d123/".into(), max: 5000, ..Default::default() };
        let page = node.list_blobs(ACCOUNT, "c", one).await.unwrap();
        assert_eq!(page.entries.len(), want.iter().filter(|n| n.starts_with("d123/")).count());
    });
}

/// One blob at Azure's limits: 50,000 committed blocks and more than 4 TiB, on a 1 GiB data file
/// (two staged blocks, one of 100 MiB, listed 50,000 times). It commits, lists, reads correctly
/// at its first, middle and last bytes, and does all of that again after a restart; then it is
/// deleted and its space comes back.
#[test]
fn a_blob_of_fifty_thousand_blocks_and_four_tebibytes_commits_reads_and_restarts() {
    use edgeblob_engine::BlockListItem;
    use edgeblob_meta::model::limits::MAX_COMMITTED_BLOCKS;
    const BIG: usize = 100 << 20;
    const SMALL: usize = 4103;
    for format_version in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = edgeblob_engine::config::EngineConfig {
            data_size: 1 << 30,
            chunk_size: 1 << 20,
            format_version,
            ..config(dir.path())
        };
        let big = data(1, BIG, false);
        let small = data(2, SMALL, false);
        // Block i is the small one when i is a multiple of 997, else the big one.
        let is_small = |i: usize| i.is_multiple_of(997);
        let sizes: Vec<u64> = (0..MAX_COMMITTED_BLOCKS).map(|i| if is_small(i) { SMALL } else { BIG } as u64).collect();
        let total: u64 = sizes.iter().sum();
        assert!(total > 4 << 40);
        // The byte at `at`, and where each block starts.
        let starts: Vec<u64> = sizes.iter().scan(0, |at, s| Some(std::mem::replace(at, *at + s))).collect();
        let byte_at = |at: u64| {
            let i = starts.partition_point(|&s| s <= at) - 1;
            let within = (at - starts[i]) as usize;
            if is_small(i) {
                small[within]
            } else {
                big[within]
            }
        };
        let ranges = [(0, 9999), (total / 2 - 5000, total / 2 + 5000), (total - 10_000, total - 1)];
        let check = |node: &edgeblob_engine::Node, rt: &tokio::runtime::Runtime| {
            rt.block_on(async {
                let b = node.head_blob(key("c", "huge"), Conditions::default()).await.unwrap();
                assert_eq!(b.size, total, "v{format_version}");
                for (a, z) in ranges {
                    let (_, got_range, got) =
                        node.read_blob(1, key("c", "huge"), Some((a, Some(z))), Conditions::default()).await.unwrap();
                    assert_eq!(got_range, (a, z + 1));
                    let want: Vec<u8> = (a..=z).map(byte_at).collect();
                    assert!(got[..] == want[..], "v{format_version}: bytes {a}..={z}");
                }
                let list = node.get_block_list(key("c", "huge")).await.unwrap();
                let committed = list.committed.unwrap();
                assert_eq!(committed.len(), MAX_COMMITTED_BLOCKS);
                let q = edgeblob_meta::listing::ListQuery { max: 5000, ..Default::default() };
                let page = node.list_blobs(ACCOUNT, "c", q).await.unwrap();
                let sizes_listed: Vec<(String, u64)> = page
                    .entries
                    .iter()
                    .filter_map(|e| match e {
                        edgeblob_meta::listing::ListEntry::Blob(b) => Some((b.name.clone(), b.size)),
                        _ => None,
                    })
                    .collect();
                assert_eq!(sizes_listed, [("huge".to_string(), total)], "v{format_version}");
                assert!(committed.iter().enumerate().all(|(i, b)| b.1 == sizes[i]));
            })
        };
        let rt = rt();
        let node = open(&cfg);
        rt.block_on(async {
            node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
            node.put_block(0, key("c", "huge"), b"big".to_vec(), body(&big)).await.unwrap();
            node.put_block(1, key("c", "huge"), b"sml".to_vec(), body(&small)).await.unwrap();
            let list: Vec<BlockListItem> = (0..MAX_COMMITTED_BLOCKS)
                .map(|i| BlockListItem::Uncommitted(if is_small(i) { b"sml".to_vec() } else { b"big".to_vec() }))
                .collect();
            let b = node
                .commit_block_list(key("c", "huge"), list, BlobProps::default(), Conditions::default())
                .await
                .unwrap_or_else(|e| panic!("v{format_version}: {e}"));
            assert_eq!(b.size, total);
        });
        check(&node, &rt);
        node.stop();
        let node = open(&cfg);
        check(&node, &rt);
        rt.block_on(async {
            // Committed blocks are listed again, by id: the small one first, then the big one.
            let again = vec![BlockListItem::Committed(b"sml".to_vec()), BlockListItem::Committed(b"big".to_vec())];
            let b = node
                .commit_block_list(key("c", "huge"), again, BlobProps::default(), Conditions::default())
                .await
                .unwrap();
            assert_eq!(b.size, (SMALL + BIG) as u64);
            let (_, _, got) =
                node.read_blob(0, key("c", "huge"), Some((4000, Some(4200))), Conditions::default()).await.unwrap();
            let want: Vec<u8> = small[4000..].iter().chain(&big[..4201 - SMALL]).copied().collect();
            assert!(got[..] == want[..]);
            node.delete_blob(key("c", "huge"), Conditions::default()).await.unwrap();
            // The 100 MiB the blob held is free again: 400 MiB fit the region of shard 0 (about
            // 470 MiB of data) only if it is.
            let fill = data(3, 400 << 20, false);
            node.put_blob(0, key("c", "fill"), body(&fill), BlobProps::default(), Conditions::default()).await.unwrap();
        });
        node.stop();
    }
}

/// A blob whose blocks name more chunks than a few pieces hold (`keys::WHOLE_PIECES` pieces of
/// `keys::PIECE_REFS`) is read in part once it is not in memory: only the pieces that cover the
/// bytes asked for. Twenty distinct blocks of 16 MiB in 4 KiB chunks (4,101 references each, a
/// piece each; zeros but for a marker at each end, so that the node stores little) read
/// correctly at every block's edges, across two and across all of them, before and after a
/// restart (where nothing is in memory); then a blob cut otherwise replaces it, and goes.
#[test]
fn a_blob_of_many_pieces_reads_in_part_at_any_offset() {
    use edgeblob_engine::BlockListItem;
    const BLOCKS: usize = 20;
    const BLOCK: usize = 16 << 20;
    let dir = tempfile::tempdir().unwrap();
    let cfg = edgeblob_engine::config::EngineConfig { data_size: 1 << 30, chunk_size: 4096, ..config(dir.path()) };
    let block = |i: usize, len: usize| {
        let mut b = vec![0u8; len];
        b[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        b[len - 8..].copy_from_slice(&(i as u64 + 1).to_be_bytes());
        b
    };
    let id = |i: usize| format!("{i:04}").into_bytes();
    let whole: Vec<u8> = (0..BLOCKS).flat_map(|i| block(i, BLOCK)).collect();
    let total = whole.len() as u64;
    let read = |node: &edgeblob_engine::Node, rt: &tokio::runtime::Runtime, a: u64, z: u64| {
        let (_, got_range, got) = rt
            .block_on(node.read_blob(1, key("c", "cut"), Some((a, Some(z))), Conditions::default()))
            .unwrap_or_else(|e| panic!("bytes {a}..={z}: {e}"));
        assert_eq!(got_range, (a, z + 1));
        assert!(got[..] == whole[a as usize..=z as usize], "bytes {a}..={z}");
    };
    let check = |node: &edgeblob_engine::Node, rt: &tokio::runtime::Runtime| {
        let b = rt.block_on(node.head_blob(key("c", "cut"), Conditions::default())).unwrap();
        assert_eq!(b.size, total);
        for i in 0..BLOCKS as u64 {
            let edge = i * BLOCK as u64;
            read(node, rt, edge, edge + 7);
            if i > 0 {
                read(node, rt, edge - 9, edge + 9);
                read(node, rt, edge - 1, edge - 1);
            }
        }
        read(node, rt, BLOCK as u64 / 2, 5 * BLOCK as u64 / 2);
        read(node, rt, total - 8, total - 1);
        read(node, rt, 0, total - 1);
        // A range that ends past any blob (as far as a u64 goes) reads to the blob's end.
        let (_, got_range, got) = rt
            .block_on(node.read_blob(0, key("c", "cut"), Some((total - 5, Some(u64::MAX))), Conditions::default()))
            .unwrap();
        assert_eq!(got_range, (total - 5, total));
        assert!(got[..] == whole[whole.len() - 5..]);
        let e = rt.block_on(node.read_blob(0, key("c", "cut"), Some((total, None)), Conditions::default()));
        assert!(matches!(e, Err(EngineError::InvalidRange { size }) if size == total), "{e:?}");
        let list = rt.block_on(node.get_block_list(key("c", "cut"))).unwrap();
        let committed = list.committed.unwrap();
        assert_eq!(committed, (0..BLOCKS).map(|i| (id(i), BLOCK as u64)).collect::<Vec<_>>());
    };
    let rt = rt();
    let node = open(&cfg);
    rt.block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        for i in 0..BLOCKS {
            node.put_block(i % 2, key("c", "cut"), id(i), body(&block(i, BLOCK))).await.unwrap();
        }
        let list = (0..BLOCKS).map(|i| BlockListItem::Uncommitted(id(i))).collect();
        let b =
            node.commit_block_list(key("c", "cut"), list, BlobProps::default(), Conditions::default()).await.unwrap();
        assert_eq!(b.size, total);
    });
    check(&node, &rt);
    node.stop();
    let node = open(&cfg);
    check(&node, &rt);
    // Read whole (a GET of every byte, Get Block List) but never made resident: its 20 pieces
    // would take the cache's room.
    let resident: Vec<bool> = (0..node.shards())
        .map(|i| {
            let wants = [edgeblob_meta::shard_store::Want::Blob(key("c", "cut"))];
            rt.block_on(node.on(i, move |s| async move { s.meta.borrow().all_resident(&wants) })).unwrap()
        })
        .collect();
    assert!(resident.contains(&false), "the blob's shard holds it resident: {resident:?}");
    node.stop();
    let node = open(&cfg);
    rt.block_on(async {
        // Cut otherwise: blocks 1, 3, 5... then a small one staged now. No piece of the blob
        // before is left to be read as this one's.
        let small = block(99, 10_000);
        node.put_block(0, key("c", "cut"), b"small".to_vec(), body(&small)).await.unwrap();
        let mut list: Vec<BlockListItem> = (1..BLOCKS).step_by(2).map(|i| BlockListItem::Committed(id(i))).collect();
        list.push(BlockListItem::Uncommitted(b"small".to_vec()));
        node.commit_block_list(key("c", "cut"), list, BlobProps::default(), Conditions::default()).await.unwrap();
        let want: Vec<u8> = (1..BLOCKS).step_by(2).flat_map(|i| block(i, BLOCK)).chain(small.clone()).collect();
        let (b, _, got) = node.read_blob(0, key("c", "cut"), None, Conditions::default()).await.unwrap();
        assert_eq!(b.size, want.len() as u64);
        assert!(got[..] == want[..]);
    });
    node.stop();
    let node = open(&cfg);
    rt.block_on(async {
        let want: Vec<u8> = (1..BLOCKS).step_by(2).flat_map(|i| block(i, BLOCK)).chain(block(99, 10_000)).collect();
        let at = 9 * BLOCK as u64 - 4;
        let (_, _, got) =
            node.read_blob(1, key("c", "cut"), Some((at, Some(at + 20))), Conditions::default()).await.unwrap();
        assert!(got[..] == want[at as usize..=at as usize + 20], "the small block after nine big ones");
        node.delete_blob(key("c", "cut"), Conditions::default()).await.unwrap();
        let e = node.read_blob(1, key("c", "cut"), None, Conditions::default()).await;
        assert!(matches!(e, Err(EngineError::BlobNotFound)), "{e:?}");
    });
    node.stop();
}
