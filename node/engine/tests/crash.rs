//! Crash test: a separate process writes through the engine and is killed with SIGKILL in the
//! middle of its load, over and over. The process is this test binary run again with
//! `EDGEBLOB_CRASH_LOAD` set ([`load_process`]): the load lives with the test that kills it. After each kill the data file is opened again and every
//! acknowledged write must be there byte for byte; a write in flight at the kill must be wholly
//! there or wholly absent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use std::io::Write;
use std::path::Path;

use edgeblob_engine::config::EngineConfig;
use edgeblob_engine::{BlockListItem, EngineError, Node};
use edgeblob_meta::model::BlobKey;
use edgeblob_testkit::crash::{version_bytes, Expect, Version};

/// The load the crash test kills, when this binary was started as its process: blob writes and
/// deletes through the engine, each reported on stdout before it starts (`BEGIN`) and once
/// acknowledged (`ACK`). Bounded: it stops by itself after its time. Run by the suite without
/// `EDGEBLOB_CRASH_LOAD`, it does nothing.
#[test]
fn load_process() {
    let Ok(spec) = std::env::var("EDGEBLOB_CRASH_LOAD") else { return };
    let f: Vec<&str> = spec.split('\t').collect();
    let [data, seed, first, secs, tier, writers] = f[..] else { panic!("EDGEBLOB_CRASH_LOAD: {spec:?}") };
    let load = Load::parse(tier, writers);
    run(
        &config(Path::new(data), &load),
        seed.parse().unwrap(),
        first.parse().unwrap(),
        secs.parse().unwrap(),
        load.writers,
    );
}

/// What a cycle's load is: its tier, and how many writers run at once (each with blobs of its
/// own, so that what one name must hold follows from one writer's order).
struct Load<'a> {
    tier: Option<&'a str>,
    writers: usize,
}

impl<'a> Load<'a> {
    fn parse(tier: &'a str, writers: &str) -> Load<'a> {
        Load { tier: (tier != "-").then_some(tier), writers: writers.parse().unwrap() }
    }

    fn spec(&self) -> String {
        format!("{}\t{}", self.tier.unwrap_or("-"), self.writers)
    }

    /// Many writers also run with a cache and flushes so small that every few records flush
    /// and most entries are read back from the index: a kill lands mid-flush, mid-read-back or
    /// mid-delivery of reference changes, with many records in each group commit.
    fn concurrent(&self) -> bool {
        self.writers > 1
    }
}

const ACCOUNT: &str = "devstoreaccount1";
const CONTAINER: &str = "crash";

/// The engine settings of the load (the verifier opens the same file with them); with a tier
/// at `tier` (an edgeblob's origin), one that uploads within a second and releases everything
/// it uploaded (watermarks at 0).
fn config(data: &Path, load: &Load) -> EngineConfig {
    let tier = load.tier.map(|origin| {
        let key_file = data.with_extension("key");
        std::fs::write(&key_file, [7u8; 32]).unwrap();
        edgeblob_engine::config::TierConfig {
            url: format!("{origin}/{ACCOUNT}/tier/crash"),
            account: Some(ACCOUNT.into()),
            account_key: Some(edgeblob::config::DEV_KEY.into()),
            key_file,
            pack_bytes: 1 << 20,
            upload_after_secs: 1,
            release_above: 0.0,
            release_below: 0.0,
            retry_budget_secs: 10,
            // Restore points in the background too: kills land mid-epoch.
            epoch_interval_secs: 2,
            manifests_kept: 3,
            ..Default::default()
        }
    });
    let base = EngineConfig::default();
    // Many writers: every few records a flush, and most entries read back from the index.
    let (cache, flush) =
        if load.concurrent() { (16 << 10, 16 << 10) } else { (base.meta_cache_bytes, base.meta_flush_bytes) };
    EngineConfig {
        data_path: data.to_owned(),
        data_size: 512 << 20,
        shards: Some(2),
        pin_threads: false,
        chunk_size: 64 * 1024,
        tier,
        meta_cache_bytes: cache,
        meta_flush_bytes: flush,
        ..base
    }
}

/// The bytes of version `v` of blob `name`: the crash test regenerates them to compare.
fn content(name: &str, v: u64) -> Vec<u8> {
    version_bytes(name, v, &[0, 1, 4091, 4092, 70_000, 300_000, 1_200_000])
}

/// Runs the load until killed or `max_secs` pass.
fn run(config: &EngineConfig, seed: u64, first_version: u64, max_secs: u64, writers: usize) {
    let node = Node::open(config.clone()).expect("open");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(max_secs);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let out = std::io::stdout();
    let say = |line: String| {
        let mut o = out.lock();
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    };
    rt.block_on(async {
        if node.get_container(ACCOUNT, CONTAINER).is_err() {
            node.create_container(ACCOUNT, CONTAINER, vec![]).await.expect("container");
        }
        let tier = config.tier.is_some();
        let me = |w: usize| Writer { w, writers, seed: seed.wrapping_add(w as u64 * 7919), first_version };
        futures::future::join_all((0..writers).map(|w| write(&node, tier, &say, deadline, me(w)))).await;
    });
}

/// Writer `w` of `writers`: blobs `blob-00` to `blob-23` alone, or `wW-blob-00` to `wW-blob-05`
/// among many (each name written by one writer alone).
struct Writer {
    w: usize,
    writers: usize,
    seed: u64,
    first_version: u64,
}

async fn write(node: &Node, tier: bool, say: &impl Fn(String), deadline: std::time::Instant, me: Writer) {
    let mut version = me.first_version;
    let (prefix, names) = if me.writers > 1 { (format!("w{}-", me.w), 6) } else { (String::new(), 24) };
    let mut x = me.seed | 1;
    let mut ops = 0u64;
    while std::time::Instant::now() < deadline {
        ops += 1;
        // With a tier, a restore point now and then, among the writes.
        if tier && me.w == 0 && ops.is_multiple_of(40) {
            match node.tier_epoch().await {
                Ok(r) => say(format!("EPOCH {}", r.epoch)),
                Err(e) => say(format!("EPOCH failed: {e}")),
            }
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let name = format!("{prefix}blob-{:02}", x % names);
        let key = BlobKey::new(ACCOUNT, CONTAINER, &name);
        version += 1;
        let via = (x >> 8) as usize % 2;
        match (x >> 16) % 10 {
            0 => {
                say(format!("BEGIN {name} delete"));
                match node.delete_blob(key, Default::default()).await {
                    // Either way the blob is now absent, durably.
                    Ok(()) | Err(EngineError::BlobNotFound) => say(format!("ACK {name} delete")),
                    Err(e) => say(format!("NACK {name} delete {e}")),
                }
            }
            1..=4 => {
                let data = content(&name, version);
                say(format!("BEGIN {name} {version}"));
                // Blocks of up to 100,000 bytes, committed as one list.
                let ids: Vec<Vec<u8>> = (0..data.len().div_ceil(100_000).max(1))
                    .map(|i| format!("{version:012}-{i:04}").into_bytes())
                    .collect();
                let mut ok = true;
                for (i, id) in ids.iter().enumerate() {
                    let piece = data[(i * 100_000).min(data.len())..((i + 1) * 100_000).min(data.len())].to_vec();
                    if node.put_block(via, key.clone(), id.clone(), vec![piece.into()]).await.is_err() {
                        ok = false;
                    }
                }
                let list = ids.into_iter().map(BlockListItem::Uncommitted).collect();
                match ok {
                    true => match node.commit_block_list(key, list, Default::default(), Default::default()).await {
                        Ok(_) => say(format!("ACK {name} {version}")),
                        Err(e) => say(format!("NACK {name} {version} {e}")),
                    },
                    false => say(format!("NACK {name} {version} put block failed")),
                }
            }
            _ => {
                let data = content(&name, version);
                say(format!("BEGIN {name} {version}"));
                match node.put_blob(via, key, vec![data.into()], Default::default(), Default::default()).await {
                    Ok(_) => say(format!("ACK {name} {version}")),
                    Err(e) => say(format!("NACK {name} {version} {e}")),
                }
            }
        }
    }
}

/// After the kills: replacing and deleting every blob the load could have written (and so their
/// uncommitted blocks) leaves no chunk stored, once the reference changes are counted. A reference that a
/// kill lost would free a chunk still read; one counted twice, or a pin never given back, leaks
/// its chunk, which this finds.
async fn nothing_left_after_deleting_all(node: &Node, writers: usize) {
    for w in 0..writers {
        for n in 0..6 {
            // A Put Blob first: it drops the blocks a killed Put Block List left uncommitted.
            let key = BlobKey::new(ACCOUNT, CONTAINER, &format!("w{w}-blob-{n:02}"));
            node.put_blob(0, key.clone(), Vec::new(), Default::default(), Default::default()).await.unwrap();
            node.delete_blob(key, Default::default()).await.unwrap();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let report = node.check_all().await.unwrap();
        if report.chunks == 0 && report.blobs == 0 && report.staged_blocks == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "something left after deleting every blob: {report:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn parse(line: &str) -> Option<(&str, &str, Version)> {
    let mut it = line.split(' ');
    let (kind, name, what) = (it.next()?, it.next()?, it.next()?);
    let v = if what == "delete" { Version::Deleted } else { Version::V(what.parse().ok()?) };
    Some((kind, name, v))
}

#[test]
fn acknowledged_writes_survive_sigkill_over_many_cycles() {
    let cycles: u64 = std::env::var("EDGEBLOB_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let dir = tempfile::tempdir().unwrap();
    cycle_and_check(&dir.path().join("crash.dat"), &Load { tier: None, writers: 1 }, cycles);
}

/// The same with a tier that uploads, releases and writes restore points as the load runs
/// (another edgeblob in this process): a kill lands mid-upload, between a remote commit and its
/// record, mid-release, mid-read of a released chunk, or mid-epoch; every acknowledged write
/// must still read back (much of it from the tier), and each check runs fsck and checks every
/// object the kept manifests name.
#[test]
fn acknowledged_writes_survive_sigkill_with_a_tier() {
    let cycles: u64 = std::env::var("EDGEBLOB_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(30) / 3;
    let dir = tempfile::tempdir().unwrap();
    // The tier keeps every pack a cycle uploads (about 20 MiB a cycle; what the kills orphaned
    // is collected only after its grace): an origin filled up answers 503 and each later cycle
    // waits out its uploads' back-off. Sized by the cycles (a sparse file).
    let origin_len = (2u64 << 30).max(cycles * (48 << 20));
    let remote = edgeblob_testkit::node::InProcess::start(&dir.path().join("remote"), origin_len, 1, |_| {});
    let origin = format!("http://{}", remote.addr);
    cycle_and_check(&dir.path().join("crash.dat"), &Load { tier: Some(&origin), writers: 1 }, cycles.max(3));
}

/// Many writers at once, with a metadata cache and flush threshold of 16 KiB (v2): each kill
/// lands with dozens of writes in flight, among flushes, read-backs of evicted entries and
/// deliveries of reference changes. After each kill every acknowledged write reads back and
/// fsck passes (the counts and the allocator were cross-checked as the node opened); after the
/// last, deleting everything leaves nothing stored.
#[test]
fn concurrent_writers_survive_sigkill_with_a_small_cache() {
    let cycles: u64 = std::env::var("EDGEBLOB_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(30) / 2;
    let dir = tempfile::tempdir().unwrap();
    cycle_and_check(&dir.path().join("crash.dat"), &Load { tier: None, writers: 12 }, cycles.max(3));
}

/// Runs the load `cycles` times, each killed with SIGKILL, and checks after each.
fn cycle_and_check(data: &Path, load: &Load, cycles: u64) {
    let tier = load.tier;
    let mut model: HashMap<String, Expect> = HashMap::new();
    let mut total_acks = 0;
    let mut released = 0;
    let mut points = 0;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for cycle in 0..cycles {
        let spec = format!("{}\t{}\t{}\t120\t{}", data.display(), cycle * 7919 + 1, cycle * 1_000_000, load.spec());
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["load_process", "--exact", "--nocapture", "--quiet", "--test-threads=1"])
            .env("EDGEBLOB_CRASH_LOAD", spec)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Kill after a varying number of acknowledgements, plus a varying delay, so the kill
        // lands at different points of a write.
        // With a tier, later kills: its uploads and releases run a second or more behind.
        // Many writers: later kills too, with many writes in flight at each.
        let want_acks = 3
            + (cycle * 5) % 17
            + if tier.is_some() { 40 + (cycle * 61) % 300 } else { 0 }
            + if load.concurrent() { 20 + (cycle * 29) % 200 } else { 0 };
        let started = Instant::now();
        let mut acks = 0;
        let mut lines = Vec::new();
        while acks < want_acks && started.elapsed() < Duration::from_secs(60) {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
                acks += l.starts_with("ACK ") as u64;
                lines.push(l);
            }
        }
        std::thread::sleep(Duration::from_millis((cycle * 37) % 90));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        assert!(acks > 0, "cycle {cycle}: the load made no progress");
        for l in &lines {
            assert!(!l.starts_with("NACK"), "the load saw an error: {l}");
            let Some((kind, name, v)) = parse(l) else { continue };
            let e = model.entry(name.to_owned()).or_default();
            match kind {
                "BEGIN" => e.in_flight = Some(v),
                "ACK" => {
                    assert_eq!(e.in_flight, Some(v));
                    e.durable = Some(v);
                    e.in_flight = None;
                    total_acks += 1;
                }
                _ => {}
            }
        }
        // Reopen and check every blob the load touched.
        let node = Node::open(config(data, load)).unwrap_or_else(|e| panic!("cycle {cycle}: reopen failed: {e}"));
        rt.block_on(async {
            for (name, e) in model.iter_mut() {
                let key = BlobKey::new(ACCOUNT, CONTAINER, name);
                let found = match node.read_blob(0, key, None, Default::default()).await {
                    Ok((_, _, bytes)) => Some(bytes),
                    Err(EngineError::BlobNotFound) => None,
                    Err(err) => panic!("cycle {cycle}: reading {name}: {err}"),
                };
                let len = found.as_ref().map(|b| b.len());
                assert!(
                    e.settle(found.as_deref(), |v| content(name, v)),
                    "cycle {cycle}: {name} holds no version it may hold ({e:?}; {len:?} bytes)"
                );
            }
            let report = node.check_all().await.unwrap();
            assert!(report.damaged.is_empty(), "cycle {cycle}: fsck: {:?}", report.damaged);
            if tier.is_some() {
                // Every object a kept manifest names is there, whole.
                let (kept, wrong) = node.tier_check_restore_points().await.unwrap();
                points += kept;
                assert!(wrong.is_empty(), "cycle {cycle}: restore points: {wrong:?}");
                released += report.tiered_chunks;
            }
        });
        if load.concurrent() && cycle + 1 == cycles {
            rt.block_on(nothing_left_after_deleting_all(&node, load.writers));
        }
        node.stop();
    }
    eprintln!("{cycles} cycles of {} writers: {total_acks} acknowledged writes", load.writers);
    assert!(total_acks >= cycles * 3, "too few acknowledged writes to mean anything: {total_acks}");
    assert!(tier.is_none() || released > 0, "no check found a released chunk: the tier was not exercised");
    assert!(tier.is_none() || points > 0, "no check found a restore point: no epoch was written");
}
