//! The metadata index benchmark (format v2, issue 10): one shard's metadata over its log and its
//! index on a data file, without HTTP or data. `--blobs` zero-byte blobs over `--containers`
//! containers, committed by `--clients` concurrent writers (each: make the key resident, commit,
//! wait until durable); then a restart, cold point reads of random blobs, and a listing of
//! everything. Prints what docs/performance.md records.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgeblob_io::sync_device::SyncDevice;
use edgeblob_io::uring::{Ring, UringDevice};
use edgeblob_io::{BlockDevice, DeviceFile};
use edgeblob_meta::index::db::Index;
use edgeblob_meta::index::region::{IndexPlace, RegionBackend, Segments, SharedDevice};
use edgeblob_meta::index::shard::{ensure, list_blobs, IndexConfig, ShardIndex, Want};
use edgeblob_meta::index::thread::IndexThread;
use edgeblob_meta::listing::ListQuery;
use edgeblob_meta::model::{Blob, BlobKey, BlobProps};
use edgeblob_meta::replay::format_log;
use edgeblob_meta::wal::LogPlace;
use edgeblob_meta::Record;
use hdrhistogram::Histogram;

#[derive(clap::Args)]
pub struct Args {
    /// The data file (created, and removed at the end).
    #[arg(long, default_value = "index-bench.dat")]
    file: PathBuf,
    /// Its size (K, M, G suffixes).
    #[arg(long, default_value = "16G", value_parser = edgeblob_engine::config::parse_size)]
    size: u64,
    #[arg(long, default_value_t = 1_000_000)]
    blobs: u64,
    #[arg(long, default_value_t = 100)]
    containers: u64,
    /// Writers committing at once (a group commit's worth).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// The working set's cache and redb's, each (K, M, G suffixes).
    #[arg(long, default_value = "64M", value_parser = edgeblob_engine::config::parse_size)]
    cache: u64,
    /// Random cold point reads after the restart.
    #[arg(long, default_value_t = 20_000)]
    reads: u64,
}

const MIB: u64 = 1 << 20;
const HALF: u64 = 64 * MIB;
const SEGMENT: u64 = 64 * MIB;

fn log_place() -> LogPlace {
    LogPlace { shard: 0, uuid: [7; 16], halves: [(MIB, HALF), (MIB + HALF, HALF)] }
}

fn index_place() -> IndexPlace {
    IndexPlace { shard: 0, uuid: [7; 16], header: MIB + 2 * HALF, segment_len: SEGMENT }
}

fn key(i: u64, containers: u64) -> BlobKey {
    BlobKey::new("devstoreaccount1", &format!("container-{:03}", i % containers), &format!("dataset/shard-{i:010}.tar"))
}

fn blob(i: u64) -> Blob {
    Blob {
        container_id: 1,
        etag: i,
        created_ns: i as i64,
        modified_ns: i as i64,
        size: 0,
        props: BlobProps { content_type: Some("application/x-tar".into()), ..Default::default() },
        blocks: Vec::new(),
        single_put: true,
    }
}

pub(crate) fn rss_mib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        >> 10
}

/// CPU seconds this process has used, every thread (the engine's shards and index threads run
/// in it, and so do io_uring's workers). From /proc, in USER_HZ ticks, which are 1/100 s.
pub(crate) fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name may hold spaces; the fields after it do not: utime and stime are the
    // 12th and 13th of those.
    let fields: Vec<&str> = s.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    tick(11) + tick(12)
}

async fn open(file: &Arc<DeviceFile>, cache: usize) -> Result<RefCell<ShardIndex>, String> {
    let segments = Arc::new(Segments::default());
    let dev: SharedDevice = Arc::new(SyncDevice::new(file.clone()));
    let backend = RegionBackend::open(dev, index_place(), segments.clone()).map_err(|e| e.to_string())?;
    let held = backend.segments();
    let first = index_place().header + 2 * edgeblob_meta::index::region::HEADER_LEN as u64;
    let first = first.next_multiple_of(SEGMENT);
    segments.grant((first..file.len() - SEGMENT).step_by(SEGMENT as usize).filter(|s| !held.contains(s)));
    let index = Index::open(backend, cache).map_err(|e| e.to_string())?;
    let ix = IndexThread::spawn("index-bench".into(), index).map_err(|e| e.to_string())?;
    let log: Rc<dyn BlockDevice> = match Ring::new(256, usize::MAX) {
        Ok(ring) => {
            tokio::task::spawn_local(ring.driver());
            Rc::new(UringDevice::new(ring, file.clone(), false))
        }
        Err(_) => Rc::new(SyncDevice::new(file.clone())),
    };
    let cfg = IndexConfig { cache_bytes: cache, ..IndexConfig::default() };
    let (m, _) = ShardIndex::open(log_place(), log, ix, cfg).await.map_err(|e| e.to_string())?;
    Ok(RefCell::new(m))
}

pub fn run(a: Args) -> Result<(), String> {
    let _ = std::fs::remove_file(&a.file);
    let file = Arc::new(DeviceFile::create(&a.file, a.size).map_err(|e| e.to_string())?);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&rt, bench(&a, &file));
    drop(file);
    let _ = std::fs::remove_file(&a.file);
    result
}

async fn bench(a: &Args, file: &Arc<DeviceFile>) -> Result<(), String> {
    let dev = SyncDevice::new(file.clone());
    format_log(&log_place(), &dev).await.map_err(|e| e.to_string())?;
    RegionBackend::format(&dev, &index_place()).map_err(|e| e.to_string())?;
    let cache = a.cache as usize;
    let store = Rc::new(open(file, cache).await?);
    let rss_start = rss_mib();

    // Ingest.
    let next = Rc::new(Cell::new(0u64));
    let tenth = (a.blobs / 10).max(1);
    let marks = Rc::new(RefCell::new(Vec::<(u64, Instant)>::new()));
    let started = Instant::now();
    let mut writers = Vec::new();
    for _ in 0..a.clients {
        let (store, next, marks, n, containers) = (store.clone(), next.clone(), marks.clone(), a.blobs, a.containers);
        writers.push(tokio::task::spawn_local(async move {
            loop {
                let i = next.get();
                if i >= n {
                    return Ok::<(), String>(());
                }
                next.set(i + 1);
                if i % tenth == 0 {
                    marks.borrow_mut().push((i, Instant::now()));
                }
                let k = key(i, containers);
                loop {
                    ensure(&store, &[Want::Blob(k.clone())]).await.map_err(|e| e.to_string())?;
                    let ready = store.borrow_mut().ready();
                    ready.await.map_err(|e| e.to_string())?;
                    ensure(&store, &[Want::Blob(k.clone())]).await.map_err(|e| e.to_string())?;
                    let commit = store.borrow_mut().commit(Record::BlobPut { key: k.clone(), blob: blob(i) });
                    match commit {
                        Ok(c) => {
                            c.durable.await.map_err(|e| e.to_string())?;
                            break;
                        }
                        Err(edgeblob_meta::wal::AppendError::Busy) => continue,
                        Err(e) => return Err(e.to_string()),
                    }
                }
            }
        }));
    }
    for w in writers {
        w.await.map_err(|e| e.to_string())??;
    }
    let ingest = started.elapsed();
    marks.borrow_mut().push((a.blobs, Instant::now()));
    let marks = marks.borrow().clone();
    let rate = |w: &[(u64, Instant)]| (w[1].0 - w[0].0) as f64 / w[1].1.duration_since(w[0].1).as_secs_f64();
    let first = rate(&marks[..2]);
    let last = rate(&marks[marks.len() - 2..]);
    store.borrow_mut().flush_now();
    let flushed = store.borrow().flushed();
    flushed.await;
    let rss_end = rss_mib();
    let resident = store.borrow().resident_bytes();
    drop(store);
    let index_bytes = {
        let dev: SharedDevice = Arc::new(SyncDevice::new(file.clone()));
        RegionBackend::open(dev, index_place(), Arc::new(Segments::default())).map_err(|e| e.to_string())?.header().len
    };

    // Restart: open the index and replay the log after it.
    let t = Instant::now();
    let store = open(file, cache).await?;
    let reopen = t.elapsed();

    // Cold point reads (O_DIRECT: no page cache; the caches start empty).
    let mut hist = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    let mut x = 0x9E3779B97F4A7C15u64;
    for _ in 0..a.reads {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let k = key(x % a.blobs, a.containers);
        let t = Instant::now();
        ensure(&store, &[Want::Blob(k.clone())]).await.map_err(|e| e.to_string())?;
        let found = store.borrow().state.blobs.contains_key(&k);
        hist.record(t.elapsed().as_nanos() as u64).map_err(|e| e.to_string())?;
        if !found {
            return Err(format!("{k:?} is missing"));
        }
    }

    // A listing of everything, container by container, in pages of 5,000.
    let t = Instant::now();
    let mut listed = 0u64;
    for c in 0..a.containers.min(a.blobs) {
        let container = format!("container-{c:03}");
        let mut q = ListQuery { max: 5000, ..Default::default() };
        loop {
            let (entries, more) =
                list_blobs(&store, "devstoreaccount1", &container, 1, &q).await.map_err(|e| e.to_string())?;
            listed += entries.len() as u64;
            match (more, entries.last()) {
                (true, Some(e)) => q.marker = Some(e.name().to_owned()),
                _ => break,
            }
        }
    }
    let list = t.elapsed();
    if listed != a.blobs {
        return Err(format!("listed {listed} of {} blobs", a.blobs));
    }
    let us = |ns: u64| Duration::from_nanos(ns).as_secs_f64() * 1e6;
    println!("| blobs | clients | ingest | first 10% | last 10% | RSS start → end | resident cache | index bytes/blob | reopen | cold get p50 | p99 | p99.9 | list |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {:.0}/s | {:.0}/s | {:.0}/s | {} → {} MiB | {:.1} MiB | {:.0} | {:.2} s | {:.0} µs | {:.0} µs | {:.0} µs | {:.0}/s |",
        a.blobs,
        a.clients,
        a.blobs as f64 / ingest.as_secs_f64(),
        first,
        last,
        rss_start,
        rss_end,
        resident as f64 / MIB as f64,
        index_bytes as f64 / a.blobs as f64,
        reopen.as_secs_f64(),
        us(hist.value_at_quantile(0.5)),
        us(hist.value_at_quantile(0.99)),
        us(hist.value_at_quantile(0.999)),
        listed as f64 / list.as_secs_f64(),
    );
    Ok(())
}
