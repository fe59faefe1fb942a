//! A node rebuilt from its tier alone (issue 11, DR): an epoch writes the metadata and a
//! manifest; the data file is wiped; `restore` builds a new one from the tier and the node serves
//! every blob acknowledged before the cut, byte for byte, with its containers, properties,
//! metadata, block lists and ETags, having downloaded only metadata before its first GET. The
//! old node, still running, is fenced: its commits fail and cannot damage the new one.
//!
//! Size: 1 GiB data file, 10,000 blobs (empty ones, block lists, dedup-shared copies, one of
//! 260 MiB); `EDGEBLOB_FULL=1` does not change it (this is the CI size the issue names).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use edgeblob::config::{DEV_ACCOUNT, DEV_KEY};
use edgeblob_engine::blob::BlockListItem;
use edgeblob_engine::config::{EngineConfig, TierConfig};
use edgeblob_engine::{ops, Node, CATALOG_SHARD};
use edgeblob_meta::listing::BlobSummary;
use edgeblob_meta::model::{BlobProps, PublicAccess};
use edgeblob_proto::conditions::Conditions;
use edgeblob_testkit::engine::{body, config, data, key, rt};
use edgeblob_testkit::node::InProcess;

fn tier_config(dir: &Path, origin: &str) -> EngineConfig {
    let key_file = dir.join("customer.key");
    std::fs::write(&key_file, [0x5au8; 32]).unwrap();
    let tier = TierConfig {
        url: format!("{origin}/{DEV_ACCOUNT}/tier/site-a"),
        account: Some(DEV_ACCOUNT.into()),
        account_key: Some(DEV_KEY.into()),
        key_file,
        pack_bytes: 8 << 20,
        upload_after_secs: 1,
        epoch_interval_secs: 0,
        ..TierConfig::default()
    };
    EngineConfig { tier: Some(tier), data_size: 1 << 30, ..config(dir) }
}

/// A small node's configuration (256 MiB) in its own directory `name` under `dir`.
fn small_node(dir: &Path, name: &str, origin: &str) -> EngineConfig {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    EngineConfig { data_size: 256 << 20, ..tier_config(&d, origin) }
}

/// What a client sees of a blob: its bytes, properties and block list.
#[derive(Debug, PartialEq)]
struct Seen {
    summary: BlobSummary,
    bytes_digest: u64,
    len: u64,
    blocks: Option<Vec<(Vec<u8>, u64)>>,
}

async fn seen(node: &Node, container: &str, name: &str) -> Seen {
    let k = key(container, name);
    let summary = node.head_blob(k.clone(), Conditions::default()).await.unwrap();
    let (len, bytes_digest) = node.read_blob_digest(0, k.clone(), None).await.unwrap();
    let blocks = node.get_block_list(k).await.unwrap().committed;
    Seen { summary, bytes_digest, len, blocks }
}

/// 10,000 blobs over two containers: small ones of every kind, empty ones, dedup-shared copies,
/// block lists, and one of 260 MiB.
async fn fill(node: &Node) -> Vec<(String, String)> {
    for (name, access) in [("photos", PublicAccess::Blob), ("ckpt", PublicAccess::None)] {
        let md = vec![("Team".to_owned(), format!("{name}-owners"))];
        node.on(CATALOG_SHARD, move |s| async move {
            ops::create_container(&s, DEV_ACCOUNT.into(), name.into(), md, access).await
        })
        .await
        .unwrap()
        .unwrap();
    }
    let mut names = Vec::new();
    for i in 0..9_980u64 {
        let name = format!("img/{:05}.jpg", i);
        let bytes = match i % 10 {
            0 => Vec::new(),
            // A tenth share their bytes with another blob (deduplicated).
            1 => data(i - 1 + 7, 2000, true),
            _ => data(i, 500 + (i as usize * 37) % 6000, i % 3 == 0),
        };
        let props = BlobProps {
            content_type: Some("image/jpeg".into()),
            metadata: vec![("Index".into(), i.to_string())],
            ..BlobProps::default()
        };
        node.put_blob(i as usize % 2, key("photos", &name), body(&bytes), props, Conditions::default()).await.unwrap();
        names.push(("photos".to_owned(), name));
    }
    for i in 0..19u64 {
        let name = format!("step-{i}/shard");
        let mut list = Vec::new();
        for b in 0..3u64 {
            let id = format!("blk-{b:04}").into_bytes();
            let bytes = data(1000 + i * 3 + b, 100_000 + b as usize * 1000, b == 1);
            node.put_block(0, key("ckpt", &name), id.clone(), body(&bytes)).await.unwrap();
            list.push(BlockListItem::Uncommitted(id));
        }
        // One block listed twice.
        list.push(BlockListItem::Uncommitted(b"blk-0000".to_vec()));
        let props = BlobProps { content_type: Some("application/x-ckpt".into()), ..BlobProps::default() };
        node.commit_block_list(key("ckpt", &name), list, props, Conditions::default()).await.unwrap();
        names.push(("ckpt".to_owned(), name));
    }
    let big = data(4242, 260 << 20, false);
    node.put_blob(1, key("ckpt", "big.bin"), body(&big), BlobProps::default(), Conditions::default()).await.unwrap();
    names.push(("ckpt".to_owned(), "big.bin".to_owned()));
    names
}

#[test]
fn a_node_is_restored_from_its_tier_alone_and_the_old_one_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let remote = InProcess::start(&dir.path().join("remote"), 3 << 30, 1, |_| {});
    let origin = format!("http://{}", remote.addr);
    let a_dir = dir.path().join("a");
    std::fs::create_dir_all(&a_dir).unwrap();
    let cfg_a = tier_config(&a_dir, &origin);
    let rt = rt();
    let a = Node::open(cfg_a.clone()).unwrap();
    let names = rt.block_on(fill(&a));
    assert_eq!(names.len(), 10_000);
    let epoch = rt.block_on(a.tier_epoch()).unwrap();
    assert_eq!(epoch.counts.blobs, 10_000, "{epoch:?}");
    assert_eq!(epoch.counts.containers, 2);
    let before: BTreeMap<(String, String), Seen> = rt.block_on(async {
        let mut out = BTreeMap::new();
        for (c, n) in &names {
            out.insert((c.clone(), n.clone()), seen(&a, c, n).await);
        }
        out
    });
    let containers_before: Vec<_> = a.list_containers(DEV_ACCOUNT, "", None, 10).0;
    // Written after the cut: not in the epoch.
    rt.block_on(a.put_blob(0, key("photos", "late.jpg"), body(b"late"), Default::default(), Default::default()))
        .unwrap();

    // The new node: same tier, a data file of its own; every byte it reads from the tier counted.
    let b_dir = dir.path().join("b");
    std::fs::create_dir_all(&b_dir).unwrap();
    let (proxy_rt, faulty) = {
        let prt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let f = prt.block_on(edgeblob_testkit::faulty::Faulty::start(remote.addr, Vec::new(), 1));
        (prt, f)
    };
    let cfg_b = tier_config(&b_dir, &format!("http://{}", faulty.addr));
    // What a restore killed half-way leaves: a node formatted with its superblocks flagged
    // restoring. No node opens it; the next restore starts over.
    let paths = cfg_b.device_paths();
    let mut sbs = edgeblob_io::superblock::Superblock::new_node(&vec![1 << 30; paths.len()], 1, 2).unwrap();
    sbs.iter_mut().for_each(|sb| sb.restoring = true);
    edgeblob_engine::startup::format_files_as(&paths, sbs).unwrap();
    let err = Node::open(cfg_b.clone()).err().expect("a node a restore did not finish is refused").to_string();
    assert!(err.contains("has not finished"), "{err}");
    assert!(edgeblob_engine::startup::restore_unfinished(&paths).is_some());
    let report = rt.block_on(edgeblob_engine::tier::restore::restore(&cfg_b, None, None)).unwrap();
    assert_eq!(edgeblob_engine::startup::restore_unfinished(&paths), None, "the flags are cleared");
    eprintln!(
        "restore: {} bytes of metadata for {} blobs, {} chunks; {:?}",
        report.metadata_bytes, report.blobs, report.chunks, report.elapsed
    );
    // A finished one is never overwritten.
    let again = rt.block_on(edgeblob_engine::tier::restore::restore(&cfg_b, None, None)).unwrap_err().to_string();
    assert!(again.contains("holds data"), "{again}");
    assert_eq!((report.blobs, report.blobs_left_out, report.containers), (10_000, 0, 2), "{report:?}");
    assert!(report.generation > 1, "{report:?}");
    let b = Node::open(cfg_b.clone()).unwrap();
    // The first GET, before any data was downloaded but metadata and that blob's chunks.
    let first = &names[5];
    let got = rt.block_on(seen(&b, &first.0, &first.1));
    assert_eq!(got, before[first], "{first:?}");
    let data_bytes: u64 = before.values().map(|s| s.len).sum();
    let read: u64 = faulty.seen().iter().map(|s| s.bytes_out).sum();
    assert!(
        read <= report.metadata_bytes + data_bytes / 100 + (4 << 20),
        "read {read} bytes before the first GET; metadata {} + 1% of {data_bytes}",
        report.metadata_bytes
    );

    // Every blob as it was: bytes, properties, metadata, ETags, block lists; the containers too.
    rt.block_on(async {
        for ((c, n), want) in &before {
            assert_eq!(&seen(&b, c, n).await, want, "{c}/{n}");
        }
    });
    assert_eq!(b.list_containers(DEV_ACCOUNT, "", None, 10).0, containers_before);
    assert!(rt.block_on(b.head_blob(key("photos", "late.jpg"), Conditions::default())).is_err(), "after the cut");

    // The old node is fenced: its commits fail, and the new node's blobs stay readable.
    let late = rt.block_on(a.tier_flush()).unwrap_err().to_string();
    assert!(late.contains("fenced"), "{late}");
    assert!(rt.block_on(a.tier_epoch()).is_err());
    let gc = rt.block_on(a.tier_gc());
    assert!(gc.is_err() || gc.unwrap().iter().all(|r| r.packs_deleted == 0 && r.orphans_deleted == 0));
    a.stop();
    // The new node writes, tiers and takes epochs of its own.
    rt.block_on(b.put_blob(0, key("photos", "after.jpg"), body(b"after"), Default::default(), Default::default()))
        .unwrap();
    rt.block_on(b.tier_flush()).unwrap();
    let next = rt.block_on(b.tier_epoch()).unwrap();
    assert!(next.epoch > epoch.epoch && next.counts.blobs == 10_001, "{next:?}");
    let (points, wrong) = rt.block_on(b.tier_check_restore_points()).unwrap();
    assert_eq!((points, wrong), (3, Vec::<String>::new()), "the first epoch, the restore's, the new node's");
    b.stop();
    // A restart checks (debug builds) the counts and the allocator's image against the blobs.
    // With no grace, a collection deletes every pack the node no longer needs, except those a
    // retained manifest names: the photos deleted, the first epoch still restores whole.
    let mut cfg_b = cfg_b;
    cfg_b.tier.as_mut().unwrap().gc_grace_secs = 0;
    let b = Node::open(cfg_b.clone()).unwrap();
    let big = ("ckpt".to_owned(), "big.bin".to_owned());
    assert_eq!(rt.block_on(seen(&b, &big.0, &big.1)), before[&big]);
    rt.block_on(b.delete_container(DEV_ACCOUNT, "photos")).unwrap();
    for _ in 0..2 {
        rt.block_on(b.tier_gc()).unwrap();
    }
    b.stop();
    let c_dir = dir.path().join("c");
    std::fs::create_dir_all(&c_dir).unwrap();
    let cfg_c = tier_config(&c_dir, &origin);
    let back = rt.block_on(edgeblob_engine::tier::restore::restore(&cfg_c, None, Some(epoch.epoch))).unwrap();
    assert_eq!((back.epoch, back.blobs), (epoch.epoch, 10_000), "{back:?}");
    let c = Node::open(cfg_c).unwrap();
    rt.block_on(async {
        for ((cn, n), want) in &before {
            assert_eq!(&seen(&c, cn, n).await, want, "{cn}/{n}");
        }
    });
    c.stop();
    drop(proxy_rt);
}

/// Restore points past `manifests_kept` are pruned with their metadata (parts of a failed epoch
/// too); the kept ones still restore, each to its own state.
#[test]
fn old_restore_points_are_pruned_and_the_kept_ones_restore() {
    let dir = tempfile::tempdir().unwrap();
    let remote = InProcess::start(&dir.path().join("remote"), 1 << 30, 1, |_| {});
    let origin = format!("http://{}", remote.addr);
    let mut cfg = small_node(dir.path(), "a", &origin);
    cfg.tier.as_mut().unwrap().manifests_kept = 2;
    let rt = rt();
    let a = Node::open(cfg.clone()).unwrap();
    let r = edgeblob_remote::Remote::new(edgeblob_remote::RemoteConfig::new(
        &format!("{origin}/{DEV_ACCOUNT}/tier/site-a"),
        edgeblob_remote::Credential::shared_key(DEV_ACCOUNT, DEV_KEY).unwrap(),
    ))
    .unwrap();
    let names = |prefix: &'static str| {
        let r = &r;
        async move {
            let page = r.list("", None, 5000).await.unwrap();
            page.blobs.into_iter().map(|b| b.name).filter(|n| n.contains(prefix)).collect::<Vec<_>>()
        }
    };
    rt.block_on(a.create_container(DEV_ACCOUNT, "c", vec![])).unwrap();
    let mut epochs = Vec::new();
    for v in 0..3u64 {
        let bytes = data(v, 100_000, false);
        rt.block_on(a.put_blob(0, key("c", "blob"), body(&bytes), Default::default(), Default::default())).unwrap();
        epochs.push((rt.block_on(a.tier_epoch()).unwrap(), bytes));
    }
    // What an epoch that failed before its manifest leaves: a part no manifest names.
    let node = rt.block_on(names("/manifest/"))[0].split('/').next().unwrap().to_owned();
    let stray = format!("{node}/meta/0000000000000001/0000000000000002/0000/b00000099");
    rt.block_on(r.put_blob(&stray, bytes::Bytes::from_static(b"junk"), true)).unwrap();
    assert_eq!(rt.block_on(names("/manifest/")).len(), 3);
    let gc = rt.block_on(a.tier_gc()).unwrap();
    assert_eq!((gc[0].pruned.manifests, gc[0].pruned.parts), (1, epochs[0].0.parts as u64 + 1), "{gc:?}");
    let left = rt.block_on(names("/manifest/"));
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().all(|n| !n.ends_with(&format!("-{:016x}", epochs[0].0.epoch))), "{left:?}");
    let parts = rt.block_on(names("/meta/"));
    let first = format!("{:016x}", epochs[0].0.epoch);
    assert!(parts.iter().all(|p| p.split('/').nth(3) != Some(first.as_str()) && *p != stray), "{parts:?}");
    a.stop();
    for (report, bytes) in &epochs[1..] {
        let cfg_r = small_node(dir.path(), &format!("r{}", report.epoch), &origin);
        let got = rt.block_on(edgeblob_engine::tier::restore::restore(&cfg_r, None, Some(report.epoch))).unwrap();
        assert_eq!(got.blobs, 1);
        let n = Node::open(cfg_r).unwrap();
        let (_, _, read) = rt.block_on(n.read_blob(0, key("c", "blob"), None, Conditions::default())).unwrap();
        assert_eq!(&read[..], &bytes[..], "epoch {}", report.epoch);
        n.stop();
    }
    let cfg_r = small_node(dir.path(), "gone", &origin);
    assert!(rt.block_on(edgeblob_engine::tier::restore::restore(&cfg_r, None, Some(epochs[0].0.epoch))).is_err());
    // A part of a kept restore point gone: the check names it.
    let part = rt.block_on(names("/meta/")).into_iter().next().unwrap();
    assert!(rt.block_on(r.delete(&part)).unwrap());
    let mut cfg_c = small_node(dir.path(), "checker", &origin);
    cfg_c.tier.as_mut().unwrap().passive = true;
    // Passive: a node of another uuid that only reads; the check looks at the restored node's.
    let restored = small_node(dir.path(), &format!("r{}", epochs[2].0.epoch), &origin);
    let checker =
        Node::open(EngineConfig { data_path: restored.data_path, devices: restored.devices, ..cfg_c }).unwrap();
    let (_, wrong) = rt.block_on(checker.tier_check_restore_points()).unwrap();
    let short = part.split_once('/').unwrap().1;
    assert!(!wrong.is_empty() && wrong.iter().all(|w| w.contains(short)), "{wrong:?}");
    checker.stop();
}

/// The restore the next test kills, when this binary was started as its process.
#[test]
fn restore_process() {
    let Ok(spec) = std::env::var("EDGEBLOB_RESTORE_CHILD") else { return };
    let [dir, origin] = spec.split('\t').collect::<Vec<_>>()[..] else { panic!("EDGEBLOB_RESTORE_CHILD: {spec:?}") };
    let cfg = tier_config(Path::new(dir), origin);
    let report = rt().block_on(edgeblob_engine::tier::restore::restore(&cfg, None, None)).unwrap();
    println!("RESTORED {}", report.blobs);
}

/// SIGKILL at points of a restore (while it reads the metadata, logs the chunks, logs the
/// blobs): no node opens what it left, and the next restore starts over and completes, with
/// every blob as it was.
#[test]
fn a_restore_killed_midway_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let remote = InProcess::start(&dir.path().join("remote"), 1 << 30, 1, |_| {});
    let origin = format!("http://{}", remote.addr);
    let rt = rt();
    let a = Node::open(small_node(dir.path(), "a", &origin)).unwrap();
    rt.block_on(a.create_container(DEV_ACCOUNT, "c", vec![])).unwrap();
    let mut want = BTreeMap::new();
    for i in 0..3000u64 {
        let bytes = data(i, 200 + (i as usize * 131) % 20_000, i % 2 == 0);
        let name = format!("b{i:05}");
        rt.block_on(a.put_blob(i as usize % 2, key("c", &name), body(&bytes), Default::default(), Default::default()))
            .unwrap();
        want.insert(name, xxhash_rust::xxh3::xxh3_64(&bytes));
    }
    rt.block_on(a.tier_epoch()).unwrap();
    a.stop();
    let b_dir = dir.path().join("b");
    let cfg_b = small_node(dir.path(), "b", &origin);
    let paths = cfg_b.device_paths();
    let unfinished = || edgeblob_engine::startup::restore_unfinished(&paths).is_some();
    // The same, read without the device's lock: the restoring node holds it from its open to
    // its end, and `restore_unfinished` (which takes it) would wait until the flag is cleared.
    let flagged = || {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(&cfg_b.data_path).ok()?;
        let mut page = vec![0u8; edgeblob_io::PAGE_SIZE];
        f.read_exact_at(&mut page, 0).ok()?;
        edgeblob_io::superblock::Superblock::decode(&page, f.metadata().ok()?.len()).ok().map(|sb| sb.restoring)
    };
    let flagged = || flagged() == Some(true);
    let mut killed = 0;
    // Killed once the new data file is formatted (its import has begun), after a varying delay.
    for delay_ms in [0u64, 30, 120] {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["restore_process", "--exact", "--nocapture", "--quiet", "--test-threads=1"])
            .env("EDGEBLOB_RESTORE_CHILD", format!("{}\t{origin}", b_dir.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Until this restore has formatted its own data file (a killed one's is still there).
        let stamp = || std::fs::metadata(&cfg_b.data_path).and_then(|m| m.modified()).ok();
        let (before, began) = (stamp(), std::time::Instant::now());
        while !(flagged() && stamp().is_some() && stamp() != before)
            && child.try_wait().unwrap().is_none()
            && began.elapsed().as_secs() < 60
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let finished = child.try_wait().unwrap().is_some();
        child.kill().unwrap();
        child.wait().unwrap();
        if finished || !unfinished() {
            // It ended before the kill: start the next try from nothing.
            for p in &paths {
                let _ = std::fs::remove_file(p);
            }
            continue;
        }
        killed += 1;
        assert!(Node::open(cfg_b.clone()).is_err(), "a half-restored data file opens (after {delay_ms} ms)");
    }
    eprintln!("{killed} of 3 kills landed inside a restore");
    assert!(killed > 0, "no kill landed inside a restore");
    let report = rt.block_on(edgeblob_engine::tier::restore::restore(&cfg_b, None, None)).unwrap();
    assert_eq!((report.blobs, report.blobs_left_out), (3000, 0));
    let b = Node::open(cfg_b).unwrap();
    rt.block_on(async {
        for (name, digest) in &want {
            let (_, got) = b.read_blob_digest(0, key("c", name), None).await.unwrap();
            assert_eq!(got, *digest, "{name}");
        }
    });
    b.stop();
}

/// A node on three devices takes epochs like any (a manifest of version 2 names its devices'
/// lengths) and is restored onto three new data files laid out as its own were: every blob as
/// it was, its chunks read from the tier. A configuration with another number of devices is
/// refused before anything is written.
#[test]
fn a_node_on_three_devices_is_restored_onto_three() {
    use edgeblob_testkit::engine::{data_path, files_from};
    let dir = tempfile::tempdir().unwrap();
    let remote = InProcess::start(&dir.path().join("remote"), 1 << 30, 1, |_| {});
    let origin = format!("http://{}", remote.addr);
    let on_devices = |name: &str, n: usize| {
        let cfg = small_node(dir.path(), name, &origin);
        EngineConfig { devices: files_from(&cfg.data_path, n), shards: Some(n), ..cfg }
    };
    let cfg_a = on_devices("a", 3);
    let rt = rt();
    let a = Node::open(cfg_a.clone()).unwrap();
    assert_eq!(a.shared().layout.devices(), 3);
    let names: Vec<String> = (0..300).map(|i| format!("d/{i:04}")).collect();
    rt.block_on(async {
        a.create_container(DEV_ACCOUNT, "c", vec![("Team".into(), "devices".into())]).await.unwrap();
        for (i, n) in names.iter().enumerate() {
            // Empty, small, and of several 64 KiB chunks; a tenth the same bytes as another.
            let bytes = match i % 10 {
                0 => Vec::new(),
                1 => data(7, 3000, true),
                _ => data(i as u64, 100 + (i * 4099) % 300_000, i % 3 == 0),
            };
            a.put_blob(i % 3, key("c", n), body(&bytes), BlobProps::default(), Conditions::default()).await.unwrap();
        }
    });
    let epoch = rt.block_on(a.tier_epoch()).unwrap();
    assert_eq!(epoch.counts.blobs, 300, "{epoch:?}");
    let before: BTreeMap<String, Seen> = rt
        .block_on(async { futures::future::join_all(names.iter().map(|n| seen(&a, "c", n))).await })
        .into_iter()
        .zip(&names)
        .map(|(s, n)| (n.clone(), s))
        .collect();
    a.stop();

    let one = on_devices("one", 1);
    let err = rt.block_on(edgeblob_engine::tier::restore::restore(&one, None, None)).unwrap_err().to_string();
    assert!(err.contains("3 devices") && err.contains("names 1"), "{err}");
    assert!(!one.data_path.exists(), "nothing written for a refused restore");

    let cfg_b = on_devices("b", 3);
    // A file in the way that is no device's: refused, left as it was.
    std::fs::write(&cfg_b.devices[1], b"someone's notes").unwrap();
    let err = rt.block_on(edgeblob_engine::tier::restore::restore(&cfg_b, None, None)).unwrap_err().to_string();
    assert!(err.contains("holds data"), "{err}");
    assert_eq!(std::fs::read(&cfg_b.devices[1]).unwrap(), b"someone's notes");
    assert!(!cfg_b.devices[0].exists());
    std::fs::remove_file(&cfg_b.devices[1]).unwrap();
    let report = rt.block_on(edgeblob_engine::tier::restore::restore(&cfg_b, None, None)).unwrap();
    assert_eq!((report.blobs, report.blobs_left_out, report.containers), (300, 0, 1), "{report:?}");
    for p in files_from(&data_path(cfg_b.data_path.parent().unwrap()), 3) {
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 256 << 20, "{}", p.display());
    }
    let b = Node::open(cfg_b.clone()).unwrap();
    assert_eq!(b.shared().layout.devices(), 3);
    // Devices a running node holds are no restore's to write, whatever they hold.
    let err = rt.block_on(edgeblob_engine::tier::restore::restore(&cfg_b, None, None)).unwrap_err().to_string();
    assert!(err.contains(&cfg_b.devices[0].display().to_string()), "{err}");
    rt.block_on(async {
        for (n, want) in &before {
            assert_eq!(&seen(&b, "c", n).await, want, "{n}");
        }
        // It writes again, on every device.
        for i in 0..3 {
            b.put_blob(i, key("c", &format!("after-{i}")), body(b"after"), BlobProps::default(), Conditions::default())
                .await
                .unwrap();
        }
    });
    b.stop();
}

/// Loop devices over files in `dir`, detached when dropped: raw block devices for a test.
struct Loops(Vec<String>);

impl Loops {
    /// `n` loop devices of `len` bytes each; None where this host cannot make them (not root,
    /// no loop driver).
    fn new(dir: &Path, n: usize, len: u64) -> Option<Loops> {
        let mut loops = Loops(Vec::new());
        for i in 0..n {
            let backing = dir.join(format!("loop-{i}.img"));
            std::fs::File::create(&backing).and_then(|f| f.set_len(len)).ok()?;
            let out = std::process::Command::new("losetup").args(["--find", "--show"]).arg(&backing).output().ok()?;
            if !out.status.success() {
                return None;
            }
            loops.0.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
        }
        Some(loops)
    }
}

impl Drop for Loops {
    fn drop(&mut self) {
        for l in &self.0 {
            let _ = std::process::Command::new("losetup").args(["-d", l]).status();
        }
    }
}

/// After an Azure redeploy the node's local NVMe are blank raw devices: a restore formats them
/// in place (as many as the node had, at least as large) and the node serves from them; a
/// device that holds a node is refused. Runs on loop devices where the host can make them.
#[test]
fn a_node_is_restored_onto_blank_raw_devices() {
    use edgeblob_testkit::engine::files_from;
    let dir = tempfile::tempdir().unwrap();
    let Some(loops) = Loops::new(dir.path(), 2, 256 << 20) else {
        eprintln!("no loop devices on this host (root and the loop driver are needed): nothing to run");
        return;
    };
    let remote = InProcess::start(&dir.path().join("remote"), 1 << 30, 1, |_| {});
    let origin = format!("http://{}", remote.addr);
    let cfg_a = small_node(dir.path(), "a", &origin);
    let cfg_a = EngineConfig { devices: files_from(&cfg_a.data_path, 2), shards: Some(2), ..cfg_a };
    let rt = rt();
    let a = Node::open(cfg_a).unwrap();
    let blobs: Vec<(String, Vec<u8>)> =
        (0..40).map(|i| (format!("r/{i:03}"), data(i, 1000 + i as usize * 5000, false))).collect();
    rt.block_on(async {
        a.create_container(DEV_ACCOUNT, "c", vec![]).await.unwrap();
        for (i, (n, b)) in blobs.iter().enumerate() {
            a.put_blob(i % 2, key("c", n), body(b), BlobProps::default(), Conditions::default()).await.unwrap();
        }
        a.tier_epoch().await.unwrap();
    });
    a.stop();
    let cfg_b = small_node(dir.path(), "b", &origin);
    let cfg_b =
        EngineConfig { devices: loops.0.iter().map(std::path::PathBuf::from).collect(), shards: Some(2), ..cfg_b };
    let report = rt.block_on(edgeblob_engine::tier::restore::restore(&cfg_b, None, None)).unwrap();
    assert_eq!((report.blobs, report.blobs_left_out), (40, 0), "{report:?}");
    let again = rt.block_on(edgeblob_engine::tier::restore::restore(&cfg_b, None, None)).unwrap_err().to_string();
    assert!(again.contains("holds data"), "a device that holds a node: {again}");
    let b = Node::open(cfg_b).unwrap();
    rt.block_on(async {
        for (n, bytes) in &blobs {
            let (_, _, got) = b.read_blob(0, key("c", n), None, Conditions::default()).await.unwrap();
            assert_eq!(&got[..], &bytes[..], "{n}");
        }
    });
    b.stop();
}

/// The names a flat listing of container `c` gives, page by page.
async fn listed(node: &Node) -> Vec<String> {
    use edgeblob_meta::listing::{ListEntry, ListQuery};
    let mut out = Vec::new();
    let mut marker = None;
    loop {
        let q = ListQuery { marker, max: 37, ..ListQuery::default() };
        let page = node.list_blobs(DEV_ACCOUNT, "c", q).await.unwrap();
        for e in page.entries {
            if let ListEntry::Blob(b) = e {
                out.push(b.name.clone());
            }
        }
        match page.next_marker {
            Some(m) => marker = Some(m),
            None => return out,
        }
    }
}

/// One device of three lost: it is replaced from the tier while the other two keep everything
/// they changed after the epoch. The new device's shards hold their blobs as the epoch has them
/// (changes after it on that device are lost, and reported as such by their absence), the
/// counts of every shard are exact at the next start (debug builds check them against every
/// reference), and the node writes, deletes and takes epochs as before.
#[test]
fn a_lost_device_is_replaced_from_the_tier_and_the_kept_ones_keep_their_changes() {
    use edgeblob_engine::tier::replace::replace;
    use edgeblob_engine::EngineError;
    use edgeblob_testkit::engine::files_from;
    let dir = tempfile::tempdir().unwrap();
    let remote = InProcess::start(&dir.path().join("remote"), 1 << 30, 1, |_| {});
    let origin = format!("http://{}", remote.addr);
    let cfg = small_node(dir.path(), "a", &origin);
    let cfg = EngineConfig { devices: files_from(&cfg.data_path, 3), shards: Some(3), ..cfg };
    let rt = rt();
    let a = Node::open(cfg.clone()).unwrap();
    let shared = a.shared().clone();
    let device = |n: &str| shared.device_of(shared.owner_of(&key("c", n)));
    let bytes_of = |i: usize, round: u64| match i % 7 {
        0 => Vec::new(),
        // The same bytes under several names (deduplicated within a device).
        1 => data(7 + round, 3000, true),
        _ => data(i as u64 + 1000 * round, 100 + (i * 4099) % 300_000, i.is_multiple_of(3)),
    };
    let names: Vec<String> = (0..120).map(|i| format!("e/{i:03}")).collect();
    // What each name should hold after the replacement (None: absent).
    let mut want: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    rt.block_on(async {
        a.create_container(DEV_ACCOUNT, "c", vec![("Team".into(), "devices".into())]).await.unwrap();
        for (i, n) in names.iter().enumerate() {
            let b = bytes_of(i, 0);
            a.put_blob(i % 3, key("c", n), body(&b), BlobProps::default(), Conditions::default()).await.unwrap();
            want.insert(n.clone(), Some(b));
        }
    });
    assert!((0..3).all(|d| names.iter().filter(|n| device(n) == d).count() > 20), "blobs on every device");
    let epoch = rt.block_on(a.tier_epoch()).unwrap();
    assert_eq!(epoch.counts.blobs, 120, "{epoch:?}");
    // After the epoch, on every device: overwrites, deletes and new blobs.
    rt.block_on(async {
        for (i, n) in names.iter().enumerate() {
            let lost = device(n) == 2;
            match i % 5 {
                0 => {
                    let b = bytes_of(i, 1);
                    a.put_blob(0, key("c", n), body(&b), BlobProps::default(), Conditions::default()).await.unwrap();
                    if !lost {
                        want.insert(n.clone(), Some(b));
                    }
                }
                1 => {
                    a.delete_blob(key("c", n), Conditions::default()).await.unwrap();
                    if !lost {
                        want.insert(n.clone(), None);
                    }
                }
                _ => {}
            }
        }
        for i in 0..30 {
            let n = format!("late/{i:02}");
            let b = bytes_of(i, 2);
            a.put_blob(1, key("c", &n), body(&b), BlobProps::default(), Conditions::default()).await.unwrap();
            want.insert(n.clone(), (device(&n) != 2).then_some(b));
        }
    });
    let on_lost = names.iter().filter(|n| device(n) == 2).count() as u64;
    a.stop();
    std::fs::remove_file(&cfg.devices[2]).unwrap();

    // Refused: another device while one is missing, a device that holds data, a node of one
    // device.
    let err = rt.block_on(replace(&cfg, 1, None)).unwrap_err().to_string();
    assert!(err.contains("edgeblob-2.dat (kept)"), "only one device is replaced at a time: {err}");
    let one = EngineConfig { devices: vec![cfg.devices[0].clone()], ..cfg.clone() };
    assert!(rt.block_on(replace(&one, 0, None)).is_err());
    assert!(!cfg.devices[2].exists(), "nothing written for a refused replacement");

    let report = rt.block_on(replace(&cfg, 2, None)).unwrap();
    assert_eq!((report.device, report.epoch), (2, epoch.epoch), "{report:?}");
    assert_eq!((report.blobs, report.blobs_left_out, report.lost_count), (on_lost, 0, 0), "{report:?}");
    assert!(report.chunks > 0, "{report:?}");
    for d in [1, 2] {
        let err = rt.block_on(replace(&cfg, d, None)).unwrap_err().to_string();
        assert!(err.contains("holds data"), "device {d}: {err}");
    }
    // The epoch's state of the lost device: what changed on it since is gone.
    for (i, n) in names.iter().enumerate() {
        if device(n) == 2 {
            want.insert(n.clone(), Some(bytes_of(i, 0)));
        }
    }

    let check = |node: &Node, want: &BTreeMap<String, Option<Vec<u8>>>| {
        rt.block_on(async {
            for (n, b) in want {
                let got = node.read_blob(0, key("c", n), None, Conditions::default()).await;
                match b {
                    Some(b) => assert_eq!(&got.unwrap().2[..], &b[..], "{n}"),
                    None => assert!(matches!(got, Err(EngineError::BlobNotFound)), "{n}: {:?}", got.map(|_| ())),
                }
            }
            let present: Vec<String> = want.iter().filter(|(_, b)| b.is_some()).map(|(n, _)| n.clone()).collect();
            assert_eq!(listed(node).await, present);
        })
    };
    let b = Node::open(cfg.clone()).unwrap();
    assert!(b.shared().read_only().is_none());
    check(&b, &want);
    // Changes on every device, then a restart: the counts stay exact, and the tier takes an epoch.
    rt.block_on(async {
        for (i, n) in names.iter().enumerate().filter(|(i, _)| i % 5 == 2) {
            let bytes = bytes_of(i, 3);
            b.put_blob(2, key("c", n), body(&bytes), BlobProps::default(), Conditions::default()).await.unwrap();
            want.insert(n.clone(), Some(bytes));
        }
        for n in names.iter().filter(|n| n.ends_with('3')) {
            b.delete_blob(key("c", n), Conditions::default()).await.unwrap();
            want.insert(n.clone(), None);
        }
    });
    b.stop();
    let b = Node::open(cfg.clone()).unwrap();
    check(&b, &want);
    let next = rt.block_on(b.tier_epoch()).unwrap();
    assert!(next.epoch > epoch.epoch, "{next:?}");
    // Then device 0, which holds the container catalog: the epoch's containers come back with
    // their properties, one created after it (named by the kept devices' blobs) without.
    let on_zero: Vec<String> = want.keys().filter(|n| device(n) == 0).cloned().collect();
    rt.block_on(async {
        b.create_container(DEV_ACCOUNT, "later", vec![("Made".into(), "after".into())]).await.unwrap();
        for i in 0..12 {
            let n = format!("l{i}");
            b.put_blob(
                0,
                edgeblob_testkit::engine::key("later", &n),
                body(b"later"),
                BlobProps::default(),
                Conditions::default(),
            )
            .await
            .unwrap();
        }
        // Gone with device 0: a new blob; back: a deleted one (as the epoch has it).
        let fresh = (0..).map(|i| format!("z/{i}")).find(|n| device(n) == 0).unwrap();
        b.put_blob(0, key("c", &fresh), body(b"z"), BlobProps::default(), Conditions::default()).await.unwrap();
        let back = on_zero.iter().find(|n| want[*n].is_some()).unwrap();
        b.delete_blob(key("c", back), Conditions::default()).await.unwrap();
    });
    b.stop();
    std::fs::remove_file(&cfg.devices[0]).unwrap();
    let report = rt.block_on(replace(&cfg, 0, None)).unwrap();
    assert_eq!((report.device, report.epoch, report.containers), (0, next.epoch, 2), "{report:?}");
    assert_eq!((report.blobs_left_out, report.lost_count), (0, 0), "{report:?}");
    let b = Node::open(cfg.clone()).unwrap();
    check(&b, &want);
    let c = b.shared().container(DEV_ACCOUNT, "c").unwrap();
    assert_eq!(c.metadata, vec![("Team".to_owned(), "devices".to_owned())]);
    assert!(b.shared().container(DEV_ACCOUNT, "later").unwrap().metadata.is_empty(), "made after the epoch");
    rt.block_on(async {
        for i in 0..12 {
            let k = edgeblob_testkit::engine::key("later", &format!("l{i}"));
            let got = b.read_blob(0, k.clone(), None, Conditions::default()).await;
            match b.shared().device_of(b.shared().owner_of(&k)) {
                0 => assert!(matches!(got, Err(EngineError::BlobNotFound)), "l{i}"),
                _ => assert_eq!(&got.unwrap().2[..], b"later"),
            }
        }
    });
    b.stop();
}

/// Chunks cross devices only when a device is full (they spill to the next with room): a
/// replaced device takes back the blobs whose chunks it spilled onto a kept device, frees on the
/// kept devices what its blobs written after the epoch had spilled there, brings back from the
/// tier the chunks of a kept device's blobs that spilled onto it before the epoch, and deletes
/// and reports the kept devices' blobs whose chunks spilled onto it after the epoch (their
/// bytes are gone with it). Every count is exact at the next start (checked in debug builds).
#[test]
fn a_replaced_device_takes_back_its_spills_and_reports_blobs_whose_chunks_it_held() {
    use edgeblob_engine::tier::replace::replace;
    use edgeblob_engine::EngineError;
    use edgeblob_testkit::engine::{chunks_of, files_from};
    let dir = tempfile::tempdir().unwrap();
    let remote = InProcess::start(&dir.path().join("remote"), 1 << 30, 1, |_| {});
    let origin = format!("http://{}", remote.addr);
    let cfg = small_node(dir.path(), "a", &origin);
    let mut cfg = EngineConfig { devices: files_from(&cfg.data_path, 3), shards: Some(3), data_size: 64 << 20, ..cfg };
    // Nothing is released for room: the devices fill, and chunks spill.
    cfg.tier.as_mut().unwrap().release_idle_secs = 86_400;
    let rt = rt();
    let a = Node::open(cfg.clone()).unwrap();
    let shared = a.shared().clone();
    let device = |n: &str| shared.device_of(shared.owner_of(&key("c", n)));
    let names_on = |d: usize, prefix: &str| {
        let prefix = prefix.to_owned();
        (0..).map(move |i| format!("{prefix}/{i:03}")).filter(move |n| device(n) == d)
    };
    let on_device = |c: &edgeblob_meta::model::ChunkRef| edgeblob_io::volume::split(c.offset).0;
    let mut want: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    let mut seed = 0;
    // Puts 4 MiB blobs owned by device `d` until one has a chunk on another device; returns it.
    let mut fill = |d: usize, prefix: &str, want: &mut BTreeMap<String, Option<Vec<u8>>>| -> String {
        for n in names_on(d, prefix).take(60) {
            seed += 1;
            let b = data(seed, 4 << 20, false);
            rt.block_on(a.put_blob(d, key("c", &n), body(&b), BlobProps::default(), Conditions::default())).unwrap();
            want.insert(n.clone(), Some(b));
            if chunks_of(&a, &key("c", &n)).iter().any(|c| on_device(c) != d) {
                return n;
            }
        }
        panic!("device {d} never spilled");
    };
    rt.block_on(a.create_container(DEV_ACCOUNT, "c", vec![])).unwrap();
    // Before the epoch: device 1 fills and spills onto device 2 (the next), then device 2 fills
    // and spills onto device 0.
    let k0 = fill(1, "one", &mut want);
    assert!(chunks_of(&a, &key("c", &k0)).iter().any(|c| on_device(c) == 2), "{k0}");
    let s2 = fill(2, "two", &mut want);
    assert!(chunks_of(&a, &key("c", &s2)).iter().any(|c| on_device(c) == 0), "{s2}");
    let epoch = rt.block_on(a.tier_epoch()).unwrap();
    // After it: device 2 spills once more onto device 0 (lost with device 2: its chunks on
    // device 0 must be freed), two of device 2's own blobs are deleted (they come back), and
    // device 1's next blob spills onto the room that made on device 2 (lost).
    let s2b = fill(2, "two-late", &mut want);
    want.insert(s2b.clone(), None);
    let gone: Vec<String> = names_on(2, "two").take(2).collect();
    for n in &gone {
        rt.block_on(a.delete_blob(key("c", n), Conditions::default())).unwrap();
    }
    let k1 = fill(1, "one-late", &mut want);
    assert!(chunks_of(&a, &key("c", &k1)).iter().any(|c| on_device(c) == 2), "{k1}");
    want.insert(k1.clone(), None);
    a.stop();
    std::fs::remove_file(&cfg.devices[2]).unwrap();

    let report = rt.block_on(replace(&cfg, 2, None)).unwrap();
    assert_eq!(report.lost, vec![format!("{DEV_ACCOUNT}/c/{k1}")], "{report:?}");
    assert_eq!((report.lost_count, report.blobs_left_out), (1, 0), "{report:?}");
    assert!(report.references_replaced > 0, "the refs of {s2} and {s2b} on device 0: {report:?}");
    assert!(epoch.counts.blobs >= report.blobs, "{report:?}");

    let check = |node: &Node, want: &BTreeMap<String, Option<Vec<u8>>>| {
        rt.block_on(async {
            for (n, b) in want {
                let got = node.read_blob(0, key("c", n), None, Conditions::default()).await;
                match b {
                    Some(b) => assert_eq!(&got.unwrap().2[..], &b[..], "{n}"),
                    None => assert!(matches!(got, Err(EngineError::BlobNotFound)), "{n}: {:?}", got.map(|_| ())),
                }
            }
        })
    };
    let b = Node::open(cfg.clone()).unwrap();
    check(&b, &want);
    // Blobs leave, on every device, and their chunks with them (counted exactly at the restart).
    rt.block_on(async {
        for n in [&k0, &s2, &gone[0]] {
            b.delete_blob(key("c", n), Conditions::default()).await.unwrap();
            want.insert(n.clone(), None);
        }
    });
    b.stop();
    let b = Node::open(cfg.clone()).unwrap();
    check(&b, &want);
    b.stop();
}
