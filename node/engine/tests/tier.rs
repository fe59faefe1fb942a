//! The Azure tier's upload against real remotes: a second edgeblob in this process, and Azurite
//! from the peers kit. What is checked is what the tier promises before release and read-through
//! exist: every chunk goes up in few large packs, nothing of a user's (names, metadata, bytes)
//! is readable remotely, the packs hold the real chunks (opened here with the customer's key
//! alone), and a restart neither uploads again nor reuses a name.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use edgeblob::config::{DEV_ACCOUNT, DEV_KEY};
use edgeblob_engine::config::{EngineConfig, TierConfig};
use edgeblob_engine::tier::TierStatus;
use edgeblob_engine::Node;
use edgeblob_meta::model::{BlobProps, CHUNK_COMPRESSED};
use edgeblob_proto::conditions::Conditions;
use edgeblob_remote::{Credential, Remote, RemoteConfig};
use edgeblob_testkit::engine::{body, config, data, key, open, rt};
use edgeblob_testkit::node::InProcess;
use edgeblob_testkit::peers;
use edgeblob_tier::{CustomerKey, Header, PackId, Trailer, WrappedNodeKey, HEADER_LEN, TRAILER_LEN};

const CANARY: &str = "CANARY-7f3e";

fn tier_config(dir: &Path, origin: &str, container: &str) -> EngineConfig {
    let key_file = dir.join("customer.key");
    std::fs::write(&key_file, [0x5au8; 32]).unwrap();
    let tier = TierConfig {
        url: format!("{origin}/{DEV_ACCOUNT}/{container}/site-a"),
        account: Some(DEV_ACCOUNT.into()),
        account_key: Some(DEV_KEY.into()),
        key_file,
        pack_bytes: 1 << 20,
        upload_after_secs: 1,
        ..TierConfig::default()
    };
    EngineConfig { tier: Some(tier), ..config(dir) }
}

/// A second edgeblob in this process as the tier, and the configuration of a node (under
/// `dir/node`) that tiers to it.
fn with_edgeblob_tier(dir: &Path) -> (InProcess, EngineConfig) {
    let remote = InProcess::start(&dir.join("remote"), 1 << 30, 1, |_| {});
    std::fs::create_dir_all(dir.join("node")).unwrap();
    let cfg = tier_config(&dir.join("node"), &format!("http://{}", remote.addr), "tier");
    (remote, cfg)
}

fn remote(origin: &str, container: &str) -> Remote {
    let cred = Credential::shared_key(DEV_ACCOUNT, DEV_KEY).unwrap();
    Remote::new(RemoteConfig::new(&format!("{origin}/{DEV_ACCOUNT}/{container}/site-a"), cred)).unwrap()
}

/// Every object the tier holds, read whole, by name.
async fn everything(r: &Remote) -> BTreeMap<String, Bytes> {
    let mut out = BTreeMap::new();
    let mut marker: Option<String> = None;
    loop {
        let page = r.list("", marker.as_deref(), 100).await.unwrap();
        for b in page.blobs {
            let bytes = r.get(&b.name).await.unwrap();
            out.insert(b.name, bytes);
        }
        match page.next {
            Some(m) => marker = Some(m),
            None => return out,
        }
    }
}

/// A faulty proxy in front of `target` with `rules`, on a runtime of its own (kept with it: the
/// engine's test runtime only runs while a call is awaited).
fn proxy(
    target: std::net::SocketAddr,
    rules: Vec<edgeblob_testkit::faulty::Rule>,
    seed: u64,
) -> (tokio::runtime::Runtime, edgeblob_testkit::faulty::Faulty) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let faulty = rt.block_on(edgeblob_testkit::faulty::Faulty::start(target, rules, seed));
    (rt, faulty)
}

fn total(st: &[TierStatus]) -> TierStatus {
    let mut t = TierStatus::default();
    for s in st {
        t.local_chunks += s.local_chunks;
        t.both_chunks += s.both_chunks;
        t.tiered_chunks += s.tiered_chunks;
        t.packs += s.packs;
        t.pack_bytes += s.pack_bytes;
    }
    t
}

/// Bodies that carry the canary in their bytes, compressible and not, a shared one (dedup), and
/// one over several chunks.
fn bodies() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for i in 0..24u64 {
        let mut b = data(i, 3000 + (i as usize * 7919) % 150_000, i % 2 == 0);
        let at = b.len() / 2;
        b.splice(at..at, CANARY.bytes());
        out.push((format!("{CANARY}/blob-{i:03}"), b));
    }
    let shared = out[1].1.clone();
    out.push((format!("{CANARY}/copy-of-1"), shared));
    out.push((format!("{CANARY}/big"), data(99, 700_000, false)));
    out
}

async fn put_all(node: &Node, container: &str, bodies: &[(String, Vec<u8>)]) {
    for (i, (name, b)) in bodies.iter().enumerate() {
        let props = BlobProps { metadata: vec![("note".into(), format!("{CANARY} meta"))], ..BlobProps::default() };
        node.put_blob(i % node.shards(), key(container, name), body(b), props, Conditions::default()).await.unwrap();
    }
}

/// The chunks every pack holds, opened with the customer's key alone: their stored streams.
fn open_packs(objects: &BTreeMap<String, Bytes>, node_prefix: &str) -> Vec<(u8, Vec<u8>)> {
    let cmk = CustomerKey::from_file("customer.key", &[0x5au8; 32]).unwrap();
    let wrapped = WrappedNodeKey::decode(&objects[&format!("{node_prefix}/keys/node")]).unwrap();
    let node_key = wrapped.unwrap(&cmk).unwrap();
    let mut chunks = Vec::new();
    for (name, pack) in objects.iter().filter(|(n, _)| n.contains("/packs/")) {
        edgeblob_tier::verify(pack).unwrap_or_else(|e| panic!("{name}: {e}"));
        let header = Header::parse(&pack[..HEADER_LEN]).unwrap();
        let id: PackId = header.id;
        assert_eq!(name, &format!("{node_prefix}/{}", id.name()), "a pack is named by its id");
        let key = header.data_key(&node_key).unwrap();
        let trailer = Trailer::parse(&pack[pack.len() - TRAILER_LEN..]).unwrap();
        let r = trailer.footer_range();
        for e in trailer.entries(&id, &key, &pack[r.start as usize..r.end as usize]).unwrap() {
            let r = e.range();
            chunks.push((e.chunk.flags, e.open(&id, &key, &pack[r.start as usize..r.end as usize]).unwrap()));
        }
    }
    chunks
}

fn tiers_every_chunk_opaquely(origin: &str, container: &str, dir: &Path) {
    let cfg = tier_config(dir, origin, container);
    let rt = rt();
    let node = open(&cfg);
    let bodies = bodies();
    rt.block_on(async {
        node.create_container(DEV_ACCOUNT, &format!("canary-7f3e-{container}"), vec![]).await.unwrap();
        put_all(&node, &format!("canary-7f3e-{container}"), &bodies).await;
        node.tier_flush().await.unwrap();
        // The metadata too: names, properties and metadata go up only sealed.
        let epoch = node.tier_epoch().await.unwrap();
        assert_eq!((epoch.epoch, epoch.counts.blobs, epoch.counts.containers), (1, bodies.len() as u64, 1));
    });
    let st = rt.block_on(node.tier_status()).unwrap();
    let t = total(&st);
    assert_eq!(t.local_chunks, 0, "every chunk counted is in a pack: {st:?}");
    assert!(t.both_chunks > bodies.len() as u64, "and kept on flash too: {st:?}");
    assert!(st.iter().all(|s| s.generation == 1), "a first start is generation 1: {st:?}");
    let r = remote(origin, container);
    let objects = rt.block_on(everything(&r));
    let node_prefix = objects.keys().next().unwrap().split('/').next().unwrap().to_owned();
    let under = |what: &str| objects.keys().filter(|n| n.starts_with(&format!("{node_prefix}/{what}/"))).count();
    let shards = node.shards();
    assert_eq!(
        (under("meta"), under("manifest")),
        (2 * shards, 1),
        "a part of blobs and one of chunks a shard, one manifest"
    );
    let packs = objects.keys().filter(|n| n.contains("/packs/")).count();
    assert_eq!(packs as u64, t.packs, "each pack recorded is in the tier, and only they: {:?}", objects.keys());
    assert!(packs < bodies.len() / 2, "few packs, never one a blob: {packs} for {} blobs", bodies.len());
    assert_eq!(
        objects.len(),
        packs + 1 + 1 + 1 + 2 * shards + 1,
        "packs, the node key, its claim, its name, the metadata: {:?}",
        objects.keys()
    );
    // Opacity: no name, metadata or byte of a user's in any object.
    for (name, bytes) in &objects {
        assert!(!name.to_ascii_uppercase().contains("CANARY"), "{name}");
        assert!(!bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()), "{name} holds the canary in clear");
        assert!(!bytes.windows(5).any(|w| w == b"alpha"), "{name} holds a body's words in clear");
    }
    // The packs hold the real chunks: every stored stream opens, and each is part of a body.
    let chunks = open_packs(&objects, &node_prefix);
    assert_eq!(chunks.len() as u64, t.both_chunks, "one entry a chunk counted (dedup: shared ones once)");
    let all: Vec<u8> = bodies.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    let mut compressed = 0;
    for (flags, stored) in &chunks {
        let plain = if flags & CHUNK_COMPRESSED != 0 {
            compressed += 1;
            zstd::decode_all(&stored[..]).unwrap()
        } else {
            stored.clone()
        };
        assert!(
            all.windows(plain.len()).any(|w| w == &plain[..]),
            "a chunk of {} bytes that no body holds",
            plain.len()
        );
    }
    assert!(compressed > 0 && compressed < chunks.len(), "both kinds went up as stored: {compressed}");
    // A restart uploads nothing again, and starts a new generation.
    node.stop();
    let node = open(&cfg);
    rt.block_on(node.tier_flush()).unwrap();
    let st = rt.block_on(node.tier_status()).unwrap();
    assert!(st.iter().all(|s| s.generation == 2), "{st:?}");
    assert_eq!(total(&st), t, "nothing uploaded again after a restart");
    // New data after it goes up under the new generation's names.
    rt.block_on(async {
        let b = data(1234, 200_000, false);
        node.put_blob(
            0,
            key(&format!("canary-7f3e-{container}"), "after"),
            body(&b),
            BlobProps::default(),
            Conditions::default(),
        )
        .await
        .unwrap();
        node.tier_flush().await.unwrap();
    });
    let later = rt.block_on(everything(&r));
    let new: Vec<&String> = later.keys().filter(|n| !objects.contains_key(*n)).collect();
    // A restart claims its next generation, and names its packs with it.
    assert!(
        !new.is_empty()
            && new.iter().all(|n| n.contains("/packs/0000000000000002/") || n.ends_with("/gen/0000000000000002")),
        "{new:?}"
    );
    assert_eq!(total(&rt.block_on(node.tier_status()).unwrap()).local_chunks, 0);
    node.stop();
}

#[test]
fn a_second_edgeblob_as_the_tier() {
    let dir = tempfile::tempdir().unwrap();
    let remote = InProcess::start(&dir.path().join("remote"), 1 << 30, 1, |_| {});
    let origin = format!("http://{}", remote.addr);
    std::fs::create_dir_all(dir.path().join("node")).unwrap();
    tiers_every_chunk_opaquely(&origin, "tier", &dir.path().join("node"));
}

#[test]
fn azurite_as_the_tier() {
    if peers::kit("Azurite as the tier's remote").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let azurite = peers::Azurite::start(&dir.path().join("azurite"));
    std::fs::create_dir_all(dir.path().join("node")).unwrap();
    tiers_every_chunk_opaquely(&azurite.endpoint(), "tier", &dir.path().join("node"));
}

/// Until the tier can be reached nothing goes up and nothing else changes: Puts and Gets are
/// served from flash. Once it answers, the backlog goes up without a restart.
#[test]
fn an_outage_keeps_everything_local_and_the_backlog_drains_after() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let origin = format!("http://127.0.0.1:{port}");
    std::fs::create_dir_all(dir.path().join("node")).unwrap();
    let mut cfg = tier_config(&dir.path().join("node"), &origin, "tier");
    cfg.tier.as_mut().unwrap().retry_budget_secs = 1;
    let rt = rt();
    let node = open(&cfg);
    let bodies = bodies();
    rt.block_on(async {
        node.create_container(DEV_ACCOUNT, "c", vec![]).await.unwrap();
        put_all(&node, "c", &bodies).await;
        for (name, b) in &bodies {
            let (_, _, got) = node.read_blob(1, key("c", name), None, Conditions::default()).await.unwrap();
            assert_eq!(&got[..], &b[..]);
        }
        let err = node.tier_flush().await.expect_err("nothing answers");
        assert!(err.to_string().contains("the tier"), "{err}");
    });
    let st = total(&rt.block_on(node.tier_status()).unwrap());
    assert!(st.local_chunks > bodies.len() as u64 && st.both_chunks == 0 && st.packs == 0, "{st:?}");
    // The remote comes up where the tier looks for it.
    let remote = InProcess::start(&dir.path().join("remote"), 1 << 30, 1, |c| c.port = port);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while rt.block_on(node.tier_flush()).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the backlog did not drain within a minute of the remote's return"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let after = total(&rt.block_on(node.tier_status()).unwrap());
    assert_eq!((after.local_chunks, after.both_chunks), (0, st.local_chunks), "{after:?}");
    let objects = rt.block_on(everything(&self::remote(&origin, "tier")));
    assert_eq!(
        open_packs(&objects, objects.keys().next().unwrap().split('/').next().unwrap()).len() as u64,
        after.both_chunks
    );
    node.stop();
    drop(remote);
}

/// Through a remote that answers 30% of requests busy (with Retry-After), cuts 10% of
/// connections before passing them on and loses 5% of answers after acting: every chunk still
/// goes up once, in packs that open, and no retry after a busy answer came before its
/// Retry-After.
#[test]
fn a_tier_cycle_completes_through_a_faulty_remote() {
    use edgeblob_testkit::faulty::{Fault, Rule};
    let dir = tempfile::tempdir().unwrap();
    let remote = InProcess::start(&dir.path().join("remote"), 1 << 30, 1, |_| {});
    let rules =
        vec![Rule::ratio(Fault::Busy(1), 0.3), Rule::ratio(Fault::Cut, 0.1), Rule::ratio(Fault::LoseAnswer, 0.05)];
    let (_proxy_rt, faulty) = proxy(remote.addr, rules, 11);
    let origin = format!("http://{}", faulty.addr);
    std::fs::create_dir_all(dir.path().join("node")).unwrap();
    let mut cfg = tier_config(&dir.path().join("node"), &origin, "tier");
    cfg.tier.as_mut().unwrap().retry_budget_secs = 60;
    let rt = rt();
    let node = open(&cfg);
    let bodies = bodies();
    rt.block_on(async {
        node.create_container(DEV_ACCOUNT, "c", vec![]).await.unwrap();
        put_all(&node, "c", &bodies).await;
        node.tier_flush().await.unwrap();
    });
    let st = total(&rt.block_on(node.tier_status()).unwrap());
    assert_eq!(st.local_chunks, 0, "{st:?}");
    let direct = self::remote(&format!("http://{}", remote.addr), "tier");
    let objects = rt.block_on(everything(&direct));
    let prefix = objects.keys().next().unwrap().split('/').next().unwrap().to_owned();
    assert_eq!(open_packs(&objects, &prefix).len() as u64, st.both_chunks, "every chunk once");
    let seen = faulty.seen();
    assert!(seen.iter().any(|s| matches!(s.fault, Some(Fault::Busy(_)))), "the faults were met");
    let mut last: BTreeMap<&str, &edgeblob_testkit::faulty::Seen> = BTreeMap::new();
    for s in &seen {
        if let Some(prev) = last.insert(&s.request_id, s) {
            if matches!(prev.fault, Some(Fault::Busy(_))) {
                assert!(
                    s.at - prev.at >= std::time::Duration::from_secs(1),
                    "a retry {:?} after a busy answer",
                    s.at - prev.at
                );
            }
        }
    }
    node.stop();
}

/// Bytes the remote sent back since request `from` of the faulty proxy's record.
fn sent_since(faulty: &edgeblob_testkit::faulty::Faulty, from: usize) -> u64 {
    faulty.seen()[from..].iter().map(|s| s.bytes_out).sum()
}

/// Released chunks read back from the tier: whole blobs and random ranges are the bytes
/// written, a small range costs one sealed chunk, concurrent readers share downloads, a damaged
/// pack fails the read (never wrong bytes), and all of it holds after a restart.
#[test]
fn released_blobs_read_back_from_the_tier() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let remote = InProcess::start(&dir.path().join("remote"), 1 << 30, 1, |_| {});
    let (_proxy_rt, faulty) = proxy(remote.addr, vec![], 1);
    let origin = format!("http://{}", faulty.addr);
    std::fs::create_dir_all(dir.path().join("node")).unwrap();
    let cfg = tier_config(&dir.path().join("node"), &origin, "tier");
    let rt = rt();
    let node = open(&cfg);
    let blobs: Vec<(&str, Vec<u8>)> = vec![
        ("big", data(1, 4 << 20, false)),
        ("text", data(2, 3 << 20, true)),
        ("small", data(3, 2000, false)),
        ("cold-range", data(4, 1 << 20, false)),
        ("cold-many", data(5, 2 << 20, false)),
        ("damaged", data(6, 300_000, false)),
    ];
    rt.block_on(async {
        node.create_container(DEV_ACCOUNT, "c", vec![]).await.unwrap();
        for (i, (name, b)) in blobs.iter().enumerate() {
            node.put_blob(i % 2, key("c", name), body(b), BlobProps::default(), Conditions::default()).await.unwrap();
        }
        node.tier_flush().await.unwrap();
        let freed = node.tier_release(None).await.unwrap();
        assert!(freed >= 7 << 20, "the local copies' space: {freed}");
    });
    let st = total(&rt.block_on(node.tier_status()).unwrap());
    // Chunks of one page keep it (their place, which names them): nothing to give back.
    assert!(st.tiered_chunks > 100 && st.both_chunks < 8 && st.local_chunks == 0, "{st:?}");
    // New data takes the space given back: a read that went to the old places now would find
    // other chunks' pages there.
    let filler = data(77, 12 << 20, false);
    rt.block_on(node.put_blob(0, key("c", "filler"), body(&filler), BlobProps::default(), Conditions::default()))
        .unwrap();
    let get = |node: &Node, name: &str, range: Option<(u64, Option<u64>)>| {
        rt.block_on(node.read_blob(0, key("c", name), range, Conditions::default())).map(|(_, _, b)| b)
    };
    // A 4 KiB range of a released blob no one has read: one sealed chunk (64 KiB and its tag)
    // and the answer's head, not the blob.
    let before = faulty.seen().len();
    let got = get(&node, "cold-range", Some((300_000, Some(300_000 + 4095)))).unwrap();
    assert_eq!(&got[..], &blobs[3].1[300_000..300_000 + 4096]);
    let sent = sent_since(&faulty, before);
    assert!(sent <= (64 << 10) + 16 + (64 << 10), "a 4 KiB range cost {sent} bytes from the tier");
    // 64 readers of one released blob at once: each chunk downloaded about once.
    let before = faulty.seen().len();
    let reads: Vec<_> =
        (0..64).map(|i| node.read_blob_digest(i % node.shards(), key("c", "cold-many"), None)).collect();
    let digests = rt.block_on(futures::future::join_all(reads));
    let want = (blobs[4].1.len() as u64, xxhash_rust::xxh3::xxh3_64(&blobs[4].1));
    assert!(digests.iter().all(|d| d.as_ref().ok() == Some(&want)), "every reader got the blob");
    let sent = sent_since(&faulty, before);
    assert!(
        sent as f64 <= 1.1 * blobs[4].1.len() as f64,
        "64 readers cost {sent} bytes for a blob of {}",
        blobs[4].1.len()
    );
    // A whole released blob: the chunks its reader asks for at once lie side by side in their
    // packs, and come in one GET for each run, not one GET a chunk.
    let before = faulty.seen().len();
    assert_eq!(&get(&node, "big", None).unwrap()[..], &blobs[0].1[..]);
    let gets = faulty.seen()[before..].iter().filter(|s| s.method == "GET").count();
    let chunks = blobs[0].1.len() / (64 << 10);
    // (One GET a chunk took 69 here; with runs 25 to 38, as the asks happen to queue.)
    assert!(gets * 4 <= chunks * 3, "{gets} GETs for {chunks} chunks");
    // Whole blobs, and a thousand random ranges.
    for (name, b) in &blobs[..3] {
        assert_eq!(&get(&node, name, None).unwrap()[..], &b[..], "{name}");
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..1000 {
        let (name, b) = &blobs[rng.gen_range(0..2)];
        let start = rng.gen_range(0..b.len() as u64);
        let end = rng.gen_range(start..(start + 300_000).min(b.len() as u64));
        assert_eq!(&get(&node, name, Some((start, Some(end)))).unwrap()[..], &b[start as usize..=end as usize]);
    }
    // A blob written again with the bytes of a released one is stored anew (no download to
    // compare), and both read back.
    rt.block_on(node.put_blob(1, key("c", "twin"), body(&blobs[2].1), BlobProps::default(), Conditions::default()))
        .unwrap();
    assert_eq!(&get(&node, "twin", None).unwrap()[..], &blobs[2].1[..]);
    // After a restart the marks of released chunks are set again from the chunk tables.
    node.stop();
    let node = open(&cfg);
    for (name, b) in &blobs[..5] {
        assert_eq!(&get(&node, name, None).unwrap()[..], &b[..], "{name} after a restart");
    }
    let report = rt.block_on(node.check_all()).unwrap();
    assert!(report.damaged.is_empty() && report.tiered_chunks > 100, "{:?}", report.damaged);
    let verified = rt.block_on(node.tier_verify()).unwrap();
    assert!(verified.packs > 0 && verified.damaged.is_empty(), "{verified:?}");
    // A flipped byte in a pack: the read of its chunks fails; no wrong byte is served.
    let direct = self::remote(&format!("http://{}", remote.addr), "tier");
    let objects = rt.block_on(everything(&direct));
    for (name, bytes) in objects.iter().filter(|(n, _)| n.contains("/packs/")) {
        let mut flipped = bytes.to_vec();
        for i in (edgeblob_tier::HEADER_LEN..flipped.len() - TRAILER_LEN).step_by(4096) {
            flipped[i] ^= 0x40;
        }
        rt.block_on(direct.put_blob(name, Bytes::from(flipped), false)).unwrap();
    }
    let err = get(&node, "damaged", None).expect_err("a damaged pack must not serve");
    assert!(err.to_string().contains("does not open"), "{err}");
    // `tier verify` names every damaged pack.
    let verified = rt.block_on(node.tier_verify()).unwrap();
    let packs: Vec<&String> = objects.keys().filter(|n| n.contains("/packs/")).collect();
    assert_eq!(verified.damaged.len(), packs.len(), "{verified:?}");
    for name in packs {
        assert!(verified.damaged.iter().any(|d| d.starts_with(name.as_str())), "{name} not named: {verified:?}");
    }
    node.stop();
}

/// Past the high watermark a shard releases what is in the tier by itself.
#[test]
fn a_shard_past_its_high_watermark_releases_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (_remote, mut cfg) = with_edgeblob_tier(dir.path());
    let t = cfg.tier.as_mut().unwrap();
    (t.release_above, t.release_below) = (0.0, 0.0);
    let rt = rt();
    let node = open(&cfg);
    let b = data(9, 1 << 20, false);
    rt.block_on(async {
        node.create_container(DEV_ACCOUNT, "c", vec![]).await.unwrap();
        node.put_blob(0, key("c", "b"), body(&b), BlobProps::default(), Conditions::default()).await.unwrap();
        node.tier_flush().await.unwrap();
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let st = total(&rt.block_on(node.tier_status()).unwrap());
        if st.tiered_chunks >= 16 && st.both_chunks <= 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "nothing released past the watermark: {st:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (_, _, got) = rt.block_on(node.read_blob(1, key("c", "b"), None, Conditions::default())).unwrap();
    assert_eq!(&got[..], &b[..]);
    node.stop();
}

/// Rotating the customer's key writes one small object and no pack; the node then opens the
/// tier with the new key. With the key it needs gone, blobs on flash still serve and a read of
/// a released one fails with an error naming the key; the key back, everything reads again.
#[test]
fn the_customer_key_rotates_and_its_loss_stops_only_tiered_reads() {
    let dir = tempfile::tempdir().unwrap();
    let remote = InProcess::start(&dir.path().join("remote"), 1 << 30, 1, |_| {});
    let (_proxy_rt, faulty) = proxy(remote.addr, vec![], 3);
    let node_dir = dir.path().join("node");
    std::fs::create_dir_all(&node_dir).unwrap();
    let mut cfg = tier_config(&node_dir, &format!("http://{}", faulty.addr), "tier");
    cfg.tier.as_mut().unwrap().retry_budget_secs = 2;
    let rt = rt();
    let node = open(&cfg);
    let (released, local) = (data(11, 1 << 20, false), data(12, 3000, false));
    rt.block_on(async {
        node.create_container(DEV_ACCOUNT, "c", vec![]).await.unwrap();
        node.put_blob(0, key("c", "released"), body(&released), BlobProps::default(), Conditions::default())
            .await
            .unwrap();
        node.tier_flush().await.unwrap();
        node.tier_release(None).await.unwrap();
        node.put_blob(1, key("c", "local"), body(&local), BlobProps::default(), Conditions::default()).await.unwrap();
    });
    let uuid = node.shared().sb.uuid;
    node.stop();
    // Rotate: one object of a few hundred bytes goes up.
    let new_key = node_dir.join("customer-2.key");
    std::fs::write(&new_key, [0xa5u8; 32]).unwrap();
    let before = faulty.seen().len();
    let new = edgeblob_engine::tier::guard::Guard::File(edgeblob_engine::tier::guard::file_key(&new_key).unwrap());
    let name = rt.block_on(edgeblob_engine::tier::remote::rotate(cfg.tier.as_ref().unwrap(), uuid, &new)).unwrap();
    assert!(name.ends_with("/keys/node.00000001"), "{name}");
    let sent: u64 = faulty.seen()[before..].iter().map(|s| s.bytes_in).sum();
    assert!(sent > 0 && sent < 1 << 20, "a rotation sent {sent} bytes");
    assert!(faulty.seen()[before..].iter().all(|s| !s.path_and_query.contains("/packs/")), "no pack touched");
    let read = |cfg: &EngineConfig, name: &str| {
        let node = open(cfg);
        let got = rt.block_on(node.read_blob(0, key("c", name), None, Conditions::default())).map(|(_, _, b)| b);
        node.stop();
        got
    };
    let mut rotated = cfg.clone();
    rotated.tier.as_mut().unwrap().key_file = new_key.clone();
    assert_eq!(&read(&rotated, "released").unwrap()[..], &released[..], "the new key opens the tier");
    // The old key opens nothing newer than its own wrapping.
    let err = read(&cfg, "released").expect_err("the retired key");
    assert!(err.to_string().contains("customer-2.key"), "the error names the key needed: {err}");
    // The key gone: flash still serves, the tier does not.
    std::fs::remove_file(&new_key).unwrap();
    assert_eq!(&read(&rotated, "local").unwrap()[..], &local[..]);
    let err = read(&rotated, "released").expect_err("no key");
    assert!(err.to_string().contains("customer-2.key"), "{err}");
    assert!(matches!(err, edgeblob_engine::EngineError::Tier(_)), "a 503-class error: {err:?}");
    std::fs::write(&new_key, [0xa5u8; 32]).unwrap();
    assert_eq!(&read(&rotated, "released").unwrap()[..], &released[..], "the key back");
}

/// Bytes of every pack in the tier, by a listing.
async fn pack_bytes_in(r: &Remote) -> u64 {
    let page = r.list("", None, 5000).await.unwrap();
    assert!(page.next.is_none());
    page.blobs.iter().filter(|b| b.name.contains("/packs/")).map(|b| b.len).sum()
}

/// Deleting half of what is tiered leaves half of every pack dead: a collection repacks the live
/// chunks (from the tier, where released) and the next deletes the old packs, to within 1.15x
/// of what lives; with the tier's listing failing, a collection deletes nothing.
#[test]
fn garbage_is_collected_and_a_failed_listing_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let remote_dir = dir.path().join("remote");
    let remote = InProcess::start(&remote_dir, 1 << 30, 1, |c| c.port = port);
    let origin = format!("http://127.0.0.1:{port}");
    std::fs::create_dir_all(dir.path().join("node")).unwrap();
    let mut cfg = tier_config(&dir.path().join("node"), &origin, "tier");
    let t = cfg.tier.as_mut().unwrap();
    // One restore point kept, a grace of a second: a run after an epoch and a second deletes
    // what the epoch no longer names (released copies need an epoch first: the packs it names
    // are kept until a newer one no longer does).
    (t.gc_grace_secs, t.retry_budget_secs, t.manifests_kept) = (1, 1, 1);
    let rt = rt();
    let collect = |node: &Node| {
        rt.block_on(node.tier_epoch())?;
        std::thread::sleep(std::time::Duration::from_millis(1100));
        rt.block_on(node.tier_gc())
    };
    let node = open(&cfg);
    let blobs: Vec<Vec<u8>> = (0..20).map(|i| data(100 + i, 200_000, false)).collect();
    rt.block_on(async {
        node.create_container(DEV_ACCOUNT, "c", vec![]).await.unwrap();
        for (i, b) in blobs.iter().enumerate() {
            node.put_blob(i % 2, key("c", &format!("b{i:02}")), body(b), BlobProps::default(), Conditions::default())
                .await
                .unwrap();
        }
        node.tier_flush().await.unwrap();
        node.tier_release(None).await.unwrap();
        for i in (0..20).step_by(2) {
            node.delete_blob(key("c", &format!("b{i:02}")), Conditions::default()).await.unwrap();
        }
        node.sync().await.unwrap();
    });
    let r = self::remote(&origin, "tier");
    let before = rt.block_on(pack_bytes_in(&r));
    // A run repacks one pack's worth of live chunks a shard, and deletes what earlier runs left
    // dead: a few runs, until two running find nothing to do (a pack left dead is forgotten a
    // grace after, and deleted by the run after that).
    let (mut repacked, mut deleted, mut runs, mut quiet) = (0, 0, 0, 0);
    let last = loop {
        let run = collect(&node).unwrap();
        let (r, d) =
            (run.iter().map(|g| g.packs_repacked).sum::<u64>(), run.iter().map(|g| g.packs_deleted).sum::<u64>());
        (repacked, deleted, runs) = (repacked + r, deleted + d, runs + 1);
        quiet = if r + d == 0 { quiet + 1 } else { 0 };
        if quiet == 2 {
            break run;
        }
        assert!(runs < 10, "garbage collection does not settle: {run:?}");
    };
    // (The loop's own runs may find the old packs already deleted by a run of the shard's loop:
    // what the tier holds, below, is the measure.)
    assert!(repacked > 0, "{repacked} packs repacked, {deleted} deleted");
    let live: u64 = last.iter().map(|g| g.live_bytes).sum();
    let after = rt.block_on(pack_bytes_in(&r));
    assert!(
        live > 0 && after as f64 <= 1.15 * live as f64,
        "{after} bytes in the tier for {live} live (before: {before})"
    );
    for i in (1..20).step_by(2) {
        let (_, _, got) =
            rt.block_on(node.read_blob(0, key("c", &format!("b{i:02}")), None, Conditions::default())).unwrap();
        assert_eq!(&got[..], &blobs[i][..], "b{i:02} after its chunks moved");
    }
    // More garbage, then a collection while the tier cannot be listed: nothing is deleted.
    rt.block_on(async {
        for i in [1, 3, 5, 7, 9, 11, 13] {
            node.delete_blob(key("c", &format!("b{i:02}")), Conditions::default()).await.unwrap();
        }
        node.sync().await.unwrap();
    });
    let packs = total(&rt.block_on(node.tier_status()).unwrap()).packs;
    drop(remote);
    assert!(rt.block_on(node.tier_gc()).is_err(), "a collection without its listing fails");
    assert_eq!(total(&rt.block_on(node.tier_status()).unwrap()).packs, packs, "and forgets no pack");
    let remote = InProcess::start(&remote_dir, 1 << 30, 1, |c| c.port = port);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while collect(&node).is_err() {
        assert!(std::time::Instant::now() < deadline, "the collection did not recover with the tier");
    }
    let (mut last, mut quiet) = (collect(&node).unwrap(), 0);
    for _ in 0..8 {
        quiet = if last.iter().all(|g| g.packs_repacked + g.packs_deleted == 0) { quiet + 1 } else { 0 };
        if quiet == 2 {
            break;
        }
        last = collect(&node).unwrap();
    }
    let (live, after) = (last.iter().map(|g| g.live_bytes).sum::<u64>(), rt.block_on(pack_bytes_in(&r)));
    assert!(after as f64 <= 1.15 * live as f64, "{after} bytes in the tier for {live} live, once it answers again");
    for i in [15, 17, 19] {
        let (_, _, got) =
            rt.block_on(node.read_blob(1, key("c", &format!("b{i:02}")), None, Conditions::default())).unwrap();
        assert_eq!(&got[..], &blobs[i][..]);
    }
    node.stop();
    drop(remote);
}

/// Random reads (smaller than a chunk) bring the chunks they touch back to flash, to the place
/// their ids name; whole reads do not. The promoted chunks read back, survive a restart (whose
/// checks of debug builds hold the allocator's image to the chunk table), and release again.
#[test]
fn random_reads_promote_chunks_and_whole_reads_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (_remote, cfg) = with_edgeblob_tier(dir.path());
    let rt = rt();
    let node = open(&cfg);
    let (a, b) = (data(1, 2 << 20, false), data(2, 2 << 20, false));
    rt.block_on(async {
        node.create_container(DEV_ACCOUNT, "c", vec![]).await.unwrap();
        for (name, bytes) in [("a", &a), ("b", &b)] {
            node.put_blob(0, key("c", name), body(bytes), Default::default(), Default::default()).await.unwrap();
        }
        node.tier_flush().await.unwrap();
        node.tier_release(None).await.unwrap();
    });
    // (A chunk of one page stays: releasing it would free nothing.)
    let released = total(&rt.block_on(node.tier_status()).unwrap());
    assert!(released.tiered_chunks >= 60, "{released:?}");
    let status_after = |node: &Node| {
        std::thread::sleep(std::time::Duration::from_millis(300));
        total(&rt.block_on(node.tier_status()).unwrap())
    };
    // A whole read: nothing promoted.
    let (_, _, got) = rt.block_on(node.read_blob(1, key("c", "a"), None, Conditions::default())).unwrap();
    assert_eq!(&got[..], &a[..]);
    assert_eq!(status_after(&node), released, "a whole read promoted chunks");
    // Random 4 KiB ranges: the chunks they touch come back.
    let ranges: Vec<u64> = (0..24u64).map(|i| (i * 7_919_993) % ((2 << 20) - 4096)).collect();
    rt.block_on(async {
        for &at in &ranges {
            let (_, _, got) =
                node.read_blob(1, key("c", "b"), Some((at, Some(at + 4095))), Conditions::default()).await.unwrap();
            assert_eq!(&got[..], &b[at as usize..at as usize + 4096]);
        }
    });
    let promoted = status_after(&node);
    let up = promoted.both_chunks - released.both_chunks;
    assert!((1..=24).contains(&up), "{promoted:?}");
    assert_eq!(promoted.tiered_chunks, released.tiered_chunks - up);
    node.stop();
    let node = open(&cfg);
    rt.block_on(async {
        for &at in &ranges {
            let (_, _, got) =
                node.read_blob(0, key("c", "b"), Some((at, Some(at + 4095))), Conditions::default()).await.unwrap();
            assert_eq!(&got[..], &b[at as usize..at as usize + 4096]);
        }
        let (_, _, got) = node.read_blob(0, key("c", "b"), None, Conditions::default()).await.unwrap();
        assert_eq!(&got[..], &b[..]);
    });
    assert!(total(&rt.block_on(node.tier_status()).unwrap()).both_chunks >= promoted.both_chunks);
    assert!(rt.block_on(node.tier_release(None)).unwrap() > 0, "promoted chunks release again");
    assert_eq!(total(&rt.block_on(node.tier_status()).unwrap()).tiered_chunks, released.tiered_chunks);
    node.stop();
}

/// A local copy is released only once a restore point names its pack: released before, a
/// disaster's restore would find blobs whose chunks are in no restore point's packs. The
/// operator's report then counts what went where.
#[test]
fn local_copies_are_released_only_once_a_restore_point_names_their_packs() {
    let dir = tempfile::tempdir().unwrap();
    let (_remote, cfg) = with_edgeblob_tier(dir.path());
    let rt = rt();
    let node = open(&cfg);
    let a = data(3, 2 << 20, false);
    let release_on_shards = |node: &Node| {
        rt.block_on(async {
            let mut freed = 0;
            for i in 0..node.shards() {
                freed += node
                    .on(i, |s| async move { edgeblob_engine::tier::release::release(&s, None).await })
                    .await
                    .unwrap()
                    .unwrap();
            }
            freed
        })
    };
    rt.block_on(async {
        node.create_container(DEV_ACCOUNT, "c", vec![]).await.unwrap();
        node.put_blob(0, key("c", "a"), body(&a), Default::default(), Default::default()).await.unwrap();
        node.tier_flush().await.unwrap();
    });
    let report = rt.block_on(node.tier_report()).unwrap();
    assert_eq!((report.status.local_bytes, report.status.pending_secs), (0, 0.0), "{report:?}");
    assert!(report.status.both_bytes > 0 && report.packs_committed >= 1, "{report:?}");
    assert_eq!(report.restore_point_age_secs, None, "no epoch yet");
    assert_eq!(release_on_shards(&node), 0, "released before a manifest named the pack");
    rt.block_on(node.tier_epoch()).unwrap();
    let freed = release_on_shards(&node);
    assert!(freed >= (2 << 20) - 64 * 4096, "{freed} bytes freed once covered");
    let report = rt.block_on(node.tier_report()).unwrap();
    assert!(report.restore_point_age_secs.is_some_and(|a| a < 60.0), "{report:?}");
    assert!(report.status.tiered_bytes > 0 && report.status.both_bytes < report.status.tiered_bytes, "{report:?}");
    let (_, _, got) = rt.block_on(node.read_blob(1, key("c", "a"), None, Conditions::default())).unwrap();
    assert_eq!(&got[..], &a[..]);
    let report = rt.block_on(node.tier_report()).unwrap();
    assert!(report.fetch.count >= 1, "downloads timed: {report:?}");
    assert_eq!((report.fetch_errors, report.integrity_errors), (0, 0));
    let gets: u64 = report
        .remote
        .attempts
        .iter()
        .filter(|(op, o, _)| *op == "Get Blob" && *o == edgeblob_remote::Outcome::Status(206))
        .map(|(_, _, n)| n)
        .sum();
    assert!(gets >= 1, "{:?}", report.remote);
    node.stop();
}

/// The node key wrapped by a Key Vault key (a stand-in vault and managed identity endpoint):
/// the tier works as with a key file; the key disabled in the vault closes the tier within a
/// recheck (tiered reads fail naming the key, flash still serves); enabled again, it opens; a
/// new version in the vault and a rotation re-wrap one small object, and the node opens with it.
#[test]
fn a_key_vault_key_guards_the_tier_and_disabling_it_closes_the_tier() {
    use edgeblob_testkit::keyvault::KeyVaultStub;
    let dir = tempfile::tempdir().unwrap();
    let vault = KeyVaultStub::start("cmk");
    let (remote, mut cfg) = with_edgeblob_tier(dir.path());
    {
        let t = cfg.tier.as_mut().unwrap();
        t.key_file = std::path::PathBuf::new();
        t.key_vault_key = Some(vault.key_url("cmk"));
        t.identity_endpoint = Some(vault.identity_endpoint());
        (t.key_recheck_secs, t.retry_budget_secs) = (1, 2);
    }
    let rt = rt();
    let node = open(&cfg);
    let (released, local, cold) = (data(21, 1 << 20, false), data(22, 3000, false), data(23, 1 << 20, false));
    let text = data(24, 1 << 20, true);
    rt.block_on(async {
        node.create_container(DEV_ACCOUNT, "c", vec![]).await.unwrap();
        for (name, b) in [("released", &released), ("cold", &cold), ("text", &text)] {
            node.put_blob(0, key("c", name), body(b), BlobProps::default(), Conditions::default()).await.unwrap();
        }
        node.tier_flush().await.unwrap();
        node.tier_release(None).await.unwrap();
        node.put_blob(1, key("c", "local"), body(&local), BlobProps::default(), Conditions::default()).await.unwrap();
    });
    assert_eq!(vault.calls("wrapkey"), 1, "the node key was wrapped once, in the vault");
    assert!(vault.calls("token") >= 1, "with a managed identity token");
    let r = self::remote(&format!("http://{}", remote.addr), "tier");
    let uuid = node.shared().sb.uuid;
    let prefix: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
    let stored = rt.block_on(r.get(&format!("{prefix}/keys/node"))).unwrap();
    match edgeblob_tier::StoredNodeKey::decode(&stored).unwrap() {
        edgeblob_tier::StoredNodeKey::Vault(v) => assert!(v.kid.starts_with(&vault.key_url("cmk")), "{}", v.kid),
        other => panic!("a key file's wrapping: {other:?}"),
    }
    let read =
        |name: &str| rt.block_on(node.read_blob(0, key("c", name), None, Conditions::default())).map(|(_, _, b)| b);
    assert_eq!(&read("released").unwrap()[..], &released[..]);
    // Compressed chunks read from the tier stay decoded in the shard's read cache.
    assert_eq!(&read("text").unwrap()[..], &text[..]);

    // Disabled in the vault: within a recheck, the tier is closed.
    vault.set_enabled("cmk", false);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while rt.block_on(node.tier_report()).unwrap().ready {
        assert!(std::time::Instant::now() < deadline, "the tier stayed open with its key disabled");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let report = rt.block_on(node.tier_report()).unwrap();
    assert!(report.trouble.as_deref().is_some_and(|t| t.contains("/keys/cmk/")), "{report:?}");
    // (A blob never read: no shard keeps a chunk of it decoded.)
    let err = read("cold").expect_err("a tiered read with the key disabled");
    assert!(matches!(err, edgeblob_engine::EngineError::Tier(_)), "a 503-class error: {err:?}");
    assert!(err.to_string().contains("/keys/cmk/") && err.to_string().contains("403"), "names the key and why: {err}");
    assert_eq!(&read("local").unwrap()[..], &local[..], "flash still serves");
    // Nor do copies of tiered chunks a shard keeps decoded.
    let err = read("text").map(|b| b.len()).expect_err("a cached copy of a tiered chunk with the key disabled");
    assert!(matches!(err, edgeblob_engine::EngineError::Tier(_)), "{err:?}");

    // Enabled again: the tier opens (the thread tries again within a minute).
    vault.set_enabled("cmk", true);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(70);
    while read("cold").is_err() {
        assert!(std::time::Instant::now() < deadline, "the tier did not open with its key back");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert_eq!(&read("cold").unwrap()[..], &cold[..]);
    node.stop();

    // A new version in the vault, and a rotation: one small object; the node opens with it.
    let version = vault.rotate("cmk");
    let guard = edgeblob_engine::tier::guard::Guard::of(cfg.tier.as_ref().unwrap()).unwrap();
    let name = rt.block_on(edgeblob_engine::tier::remote::rotate(cfg.tier.as_ref().unwrap(), uuid, &guard)).unwrap();
    let object = rt.block_on(r.get(&name)).unwrap();
    assert!(object.len() < 1 << 10, "a rotation writes {} bytes", object.len());
    match edgeblob_tier::StoredNodeKey::decode(&object).unwrap() {
        edgeblob_tier::StoredNodeKey::Vault(v) => {
            assert!(v.kid.ends_with(&version), "wrapped by the new version: {}", v.kid)
        }
        other => panic!("{other:?}"),
    }
    let node = open(&cfg);
    let got = rt.block_on(node.read_blob(0, key("c", "released"), None, Conditions::default())).unwrap().2;
    assert_eq!(&got[..], &released[..], "the rotated wrapping opens the tier");
    node.stop();
}

/// The tier reached with the host's managed identity (a stand-in identity endpoint) over TLS
/// (Azurite taking bearer tokens, the kit's CA as `ca_file`): chunks go up, are released, and
/// read back, with no account key or SAS configured.
#[test]
fn a_managed_identity_reaches_the_tier_over_tls() {
    let Some(tls) = peers::tls("the tier with a managed identity against Azurite") else { return };
    let dir = tempfile::tempdir().unwrap();
    let azurite = peers::Azurite::start_oauth(&dir.path().join("azurite"), &tls);
    let stub = edgeblob_testkit::keyvault::KeyVaultStub::start("unused");
    std::fs::create_dir_all(dir.path().join("node")).unwrap();
    let mut cfg = tier_config(&dir.path().join("node"), &format!("https://127.0.0.1:{}", azurite.port), "tier");
    {
        let t = cfg.tier.as_mut().unwrap();
        (t.account, t.account_key, t.managed_identity) = (None, None, true);
        t.identity_endpoint = Some(stub.identity_endpoint());
        t.ca_file = Some(tls.join("ca.pem"));
    }
    let rt = rt();
    let node = open(&cfg);
    let a = data(31, 1 << 20, false);
    rt.block_on(async {
        node.create_container(DEV_ACCOUNT, "c", vec![]).await.unwrap();
        node.put_blob(0, key("c", "a"), body(&a), BlobProps::default(), Conditions::default()).await.unwrap();
        node.tier_flush().await.unwrap();
        assert!(node.tier_release(None).await.unwrap() > 0);
    });
    let (_, _, got) = rt.block_on(node.read_blob(1, key("c", "a"), None, Conditions::default())).unwrap();
    assert_eq!(&got[..], &a[..]);
    assert!(stub.calls("token") >= 1);
    node.stop();
}

fn put(node: &Node, shard: usize, container: &str, name: &str, bytes: &[u8]) {
    let rt = rt();
    rt.block_on(node.put_blob(shard, key(container, name), body(bytes), Default::default(), Default::default()))
        .unwrap();
}

fn residency(node: &Node, container: &str, name: &str) -> edgeblob_engine::tier::manage::Residency {
    rt().block_on(node.tier_residency(key(container, name))).unwrap()
}

/// The watermarks release the coldest copies first (last read or write, per MiB of the
/// device), and none touched within `release_idle_secs`; a restart forgets the clock, so what
/// was not touched since counts as coldest.
#[test]
fn the_coldest_copies_go_first_and_none_touched_within_the_idle_time() {
    let dir = tempfile::tempdir().unwrap();
    let (_remote, mut cfg) = with_edgeblob_tier(dir.path());
    // One shard on one device (under EDGEBLOB_TEST_DEVICES too): the order is the device's.
    (cfg.shards, cfg.devices) = (Some(1), Vec::new());
    cfg.tier.as_mut().unwrap().access_tick = std::time::Duration::from_millis(40);
    let rt = rt();
    let node = open(&cfg);
    let (old, new) = (data(1, 3 << 20, false), data(2, 3 << 20, false));
    let tick = || std::thread::sleep(std::time::Duration::from_millis(150));
    rt.block_on(node.create_container(DEV_ACCOUNT, "c", vec![])).unwrap();
    put(&node, 0, "c", "old", &old);
    tick();
    put(&node, 0, "c", "new", &new);
    tick();
    // Read after "new" was written: "old" is now the warmer of the two.
    let (_, _, got) = rt.block_on(node.read_blob(0, key("c", "old"), None, Conditions::default())).unwrap();
    assert_eq!(&got[..], &old[..]);
    rt.block_on(node.sync()).unwrap();
    rt.block_on(node.tier_flush()).unwrap();
    let freed = rt.block_on(node.tier_release(Some(1 << 20))).unwrap();
    assert!((1 << 20..2 << 20).contains(&freed), "about what was asked: {freed}");
    let (o, n) = (residency(&node, "c", "old"), residency(&node, "c", "new"));
    assert_eq!(o.tiered, 0, "the warmer blob kept all of its copies: {o:?}");
    assert!(n.tiered >= 1 << 20, "the colder one gave them: {n:?}");
    node.stop();

    // An hour's idle time: after a restart only what was not touched since may go.
    cfg.tier.as_mut().unwrap().release_idle_secs = 3600;
    let node = open(&cfg);
    let (_, _, got) = rt.block_on(node.read_blob(0, key("c", "old"), None, Conditions::default())).unwrap();
    assert_eq!(&got[..], &old[..]);
    let newer = data(3, 2 << 20, false);
    put(&node, 0, "c", "newer", &newer);
    rt.block_on(node.sync()).unwrap();
    rt.block_on(node.tier_flush()).unwrap();
    assert!(rt.block_on(node.tier_release(None)).unwrap() > 0);
    let (o, n, w) = (residency(&node, "c", "old"), residency(&node, "c", "new"), residency(&node, "c", "newer"));
    assert_eq!((o.tiered, w.tiered), (0, 0), "read and written within the hour: {o:?} {w:?}");
    // (A chunk of one page has nothing to give back.)
    assert!(n.local < 4096 && n.local + n.tiered == new.len() as u64, "untouched since the start: {n:?}");
    let (_, _, got) = rt.block_on(node.read_blob(0, key("c", "new"), None, Conditions::default())).unwrap();
    assert_eq!(&got[..], &new[..]);
    node.stop();
}

/// A container opted out of release, and a pin on a prefix: their blobs' copies stay on flash
/// whatever releases (the watermarks, `tier now`), and so do chunks other blobs share with
/// them; rules added later apply to blobs written before, from the start's marking.
#[test]
fn kept_containers_and_pinned_prefixes_stay_on_flash() {
    use edgeblob_engine::config::KeepRule;
    let dir = tempfile::tempdir().unwrap();
    let (_remote, mut cfg) = with_edgeblob_tier(dir.path());
    let rule = |container: &str, prefix: &str| KeepRule {
        account: DEV_ACCOUNT.into(),
        container: container.into(),
        prefix: prefix.into(),
    };
    // One shard on one device: each blob's chunks lie together, so that only the MiB where two
    // blobs meet is shared by a kept one and another.
    (cfg.shards, cfg.devices) = (Some(1), Vec::new());
    cfg.tier.as_mut().unwrap().keep = vec![rule("pinned", ""), rule("c", "keep/")];
    let rt = rt();
    let node = open(&cfg);
    let (x, y, z, w) =
        (data(1, 2 << 20, false), data(2, 2 << 20, false), data(3, 3 << 20, false), data(4, 3 << 20, false));
    for c in ["pinned", "c"] {
        rt.block_on(node.create_container(DEV_ACCOUNT, c, vec![])).unwrap();
    }
    put(&node, 0, "c", "go/z", &z);
    put(&node, 0, "pinned", "x", &x);
    put(&node, 0, "c", "keep/y", &y);
    // The same bytes as a kept blob: its chunks are the kept blob's.
    put(&node, 0, "c", "go/twin-of-x", &x);
    put(&node, 0, "c", "later/w", &w);
    rt.block_on(node.sync()).unwrap();
    rt.block_on(node.tier_flush()).unwrap();
    assert!(rt.block_on(node.tier_release(None)).unwrap() > 0);
    for (c, name) in [("pinned", "x"), ("c", "keep/y"), ("c", "go/twin-of-x")] {
        let r = residency(&node, c, name);
        assert_eq!((r.tiered, r.local), (0, 2 << 20), "{c}/{name} kept on flash");
    }
    // (The last MiB of a blob written right before a kept one may share its keep mark.)
    let r = residency(&node, "c", "go/z");
    assert!(r.tiered >= 3 << 19, "not covered by a rule: released {r:?}");
    let r = residency(&node, "c", "later/w");
    assert!(r.tiered >= 1 << 20, "{r:?}");
    // An operator's `tier now` of a kept prefix releases nothing of it, and says so.
    let report = rt.block_on(node.tier_now(DEV_ACCOUNT, "c", "keep/")).unwrap();
    assert_eq!((report.blobs, report.done), (1, 0), "{report:?}");
    assert!(report.kept >= 32, "{report:?}");
    assert_eq!(residency(&node, "c", "keep/y").tiered, 0);
    // A rule added later covers blobs already written, once the start has marked them.
    rt.block_on(node.tier_hydrate(DEV_ACCOUNT, "c", "later/")).unwrap();
    assert_eq!(residency(&node, "c", "later/w").tiered, 0, "hydrated");
    node.stop();
    cfg.tier.as_mut().unwrap().keep.push(rule("c", "later/"));
    let node = open(&cfg);
    let v = data(5, 3 << 20, false);
    put(&node, 0, "c", "go/v", &v);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    // Nothing is released until the start's marking is done: then "go/v" is.
    while residency(&node, "c", "go/v").tiered < 1 << 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "the start's marking never finished: {:?}",
            residency(&node, "c", "go/v")
        );
        rt.block_on(node.tier_flush()).unwrap();
        rt.block_on(node.tier_release(None)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(residency(&node, "c", "later/w").tiered, 0, "kept by the rule added");
    for (c, name, b) in [("pinned", "x", &x), ("c", "keep/y", &y), ("c", "go/z", &z), ("c", "later/w", &w)] {
        let (_, _, got) = rt.block_on(node.read_blob(0, key(c, name), None, Conditions::default())).unwrap();
        assert!(got[..] == b[..], "{c}/{name}");
    }
    node.stop();
}

/// A node on three devices tiers like any; when one device is lost the node starts read-only on
/// the others, and their blobs whose chunks were released are read from the tier (only the lost
/// device's blobs fail, naming it).
#[test]
fn a_node_short_of_a_device_reads_released_chunks_from_the_tier() {
    use edgeblob_engine::EngineError;
    use edgeblob_testkit::engine::files_from;
    let dir = tempfile::tempdir().unwrap();
    let (_remote, cfg) = with_edgeblob_tier(dir.path());
    let cfg = EngineConfig { devices: files_from(&cfg.data_path, 3), shards: Some(3), ..cfg };
    let rt = rt();
    let node = open(&cfg);
    let blobs: Vec<(String, Vec<u8>)> = (0..24).map(|i| (format!("b{i:02}"), data(i, 200_000, false))).collect();
    rt.block_on(async {
        node.create_container(DEV_ACCOUNT, "c", vec![]).await.unwrap();
        for (i, (name, b)) in blobs.iter().enumerate() {
            node.put_blob(i % 3, key("c", name), body(b), BlobProps::default(), Conditions::default()).await.unwrap();
        }
        node.tier_flush().await.unwrap();
        let freed = node.tier_release(None).await.unwrap();
        assert!(freed >= 24 * 150_000, "the local copies' space: {freed}");
    });
    let shared = node.shared();
    let device = |name: &str| shared.device_of(shared.owner_of(&key("c", name)));
    assert!((0..3).all(|d| blobs.iter().any(|(n, _)| device(n) == d)), "blobs on every device");
    let on: Vec<usize> = blobs.iter().map(|(n, _)| device(n)).collect();
    // New data on every device takes the space given back: a read that went to the old places
    // would find its pages there, not the released chunks'.
    let fillers: Vec<String> =
        (0..3).map(|d| (0..).map(|i| format!("filler-{i}")).find(|n| device(n) == d).unwrap()).collect();
    // Shard d lies on device d (a shard a device): the survivors' view of the tier.
    let tiered = |st: &[TierStatus]| st.iter().take(2).map(|s| s.tiered_chunks).sum::<u64>();
    let released = tiered(&rt.block_on(node.tier_status()).unwrap());
    assert!(released > 0);
    rt.block_on(async {
        for (i, f) in fillers.iter().enumerate() {
            let bytes = data(100 + i as u64, 8 << 20, false);
            node.put_blob(i, key("c", f), body(&bytes), BlobProps::default(), Conditions::default()).await.unwrap();
        }
    });
    node.stop();
    std::fs::rename(&cfg.devices[2], dir.path().join("away.dat")).unwrap();
    let node = open(&cfg);
    assert!(node.shared().read_only().is_some(), "short of a device");
    rt.block_on(async {
        for ((name, b), d) in blobs.iter().zip(on) {
            let got = node.read_blob(0, key("c", name), None, Conditions::default()).await;
            match d {
                2 => assert!(matches!(got, Err(EngineError::DeviceLost(_))), "{name}: {:?}", got.err()),
                _ => {
                    assert_eq!(&got.unwrap().2[..], &b[..], "{name}");
                    // A random range would promote its chunk to flash on a whole node.
                    let range = Some((70_000, Some(74_095)));
                    let (_, _, got) = node.read_blob(0, key("c", name), range, Conditions::default()).await.unwrap();
                    assert_eq!(&got[..], &b[70_000..74_096], "{name}");
                }
            }
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let st = rt.block_on(node.tier_status()).unwrap();
    assert_eq!(st.len(), 2, "the shards online");
    assert_eq!(tiered(&st), released, "read from the tier, nothing promoted back: {st:?}");
    node.stop();
}
