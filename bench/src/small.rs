//! Small objects through the engine in each on-disk format, side by side in one run: `--blobs`
//! Put Blobs of `--size` bytes by `--clients` concurrent writers, then as many Get Blobs and Get
//! Blob Properties of random blobs, then the same reads after a restart (cold: the v2 working set
//! starts empty), and the time the restart took. Prints a Markdown table (docs/performance.md)
//! with each phase's rate, latencies and the process's CPU time per operation (steadier than a
//! rate on a shared machine: the work done, not the time waited).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgeblob_engine::config::EngineConfig;
use edgeblob_engine::Node;
use edgeblob_meta::model::BlobKey;
use futures::StreamExt;
use hdrhistogram::Histogram;

#[derive(clap::Args)]
pub struct Args {
    /// Directory for the data files (one per format, removed at the end).
    #[arg(long, default_value = "bench-data")]
    dir: PathBuf,
    #[arg(long, default_value_t = 100_000)]
    blobs: u64,
    /// Bytes per blob (K, M suffixes).
    #[arg(long, default_value = "4K", value_parser = edgeblob_engine::config::parse_size)]
    size: u64,
    /// Requests in flight.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Shards (default: one per core).
    #[arg(long)]
    shards: Option<usize>,
    /// Size of each data file.
    #[arg(long, default_value = "8G", value_parser = edgeblob_engine::config::parse_size)]
    data_size: u64,
    /// Bytes of metadata records after which a v2 shard flushes to its index.
    #[arg(long, default_value = "8M", value_parser = edgeblob_engine::config::parse_size)]
    meta_flush_bytes: u64,
    /// Formats to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    formats: Vec<u32>,
    /// Rewrite each data file's every byte in place once formatted, so that no extent of it is
    /// left unwritten (as on a raw device): on a fallocated file, the first write to an extent
    /// makes the next fdatasync commit the file system's journal.
    #[arg(long)]
    prewrite: bool,
}

/// Rewrites every byte of the file at `path` in place (read back and written again, then
/// synced), converting its unwritten extents into written ones; drops its pages from the cache.
fn prewrite(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    use std::os::unix::io::AsRawFd;
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(err)?;
    let len = file.metadata().map_err(err)?.len();
    let mut buf = vec![0u8; 8 << 20];
    let mut at = 0;
    while at < len {
        let n = buf.len().min((len - at) as usize);
        file.read_exact_at(&mut buf[..n], at).map_err(err)?;
        file.write_all_at(&buf[..n], at).map_err(err)?;
        at += n as u64;
    }
    file.sync_all().map_err(err)?;
    // Its pages out of the cache: the node's direct I/O would otherwise invalidate each one.
    nix::fcntl::posix_fadvise(file.as_raw_fd(), 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED)
        .map_err(|e| err(e.into()))?;
    Ok(())
}

pub(crate) struct Phase {
    pub ops_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// The tail a stall shows in (a flush's encoding, a checkpoint), which p99 hides.
    pub p999_us: u64,
    pub max_us: u64,
    /// The process's CPU time (all threads) per operation.
    pub cpu_us: f64,
}

fn key(i: u64) -> BlobKey {
    BlobKey::new("devstoreaccount1", "small", &format!("obj/{:04}/{i:09}", i % 1000))
}

/// A blob's bytes: distinct per blob, so dedup stores each.
pub(crate) fn payload(i: u64, size: u64) -> Bytes {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// Runs `op(i)` for `count` indices with `clients` in flight; its rate and latencies.
pub(crate) async fn phase<F, Fut>(count: u64, clients: usize, op: F) -> Result<Phase, String>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    let cpu = crate::index::cpu_seconds();
    let start = Instant::now();
    let mut timed = futures::stream::iter(0..count)
        .map(|i| {
            let fut = op(i);
            async move {
                let t = Instant::now();
                fut.await.map(|()| t.elapsed())
            }
        })
        .buffer_unordered(clients);
    while let Some(r) = timed.next().await {
        let _ = h.record(r?.as_micros().max(1) as u64);
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu_us = (crate::index::cpu_seconds() - cpu) * 1e6 / count.max(1) as f64;
    Ok(Phase {
        ops_s: count as f64 / secs,
        p50_us: h.value_at_quantile(0.5),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
        cpu_us,
    })
}

/// A random blob index for read `i` (a fixed permutation-like walk, no RNG state to share).
pub(crate) fn pick(i: u64, blobs: u64) -> u64 {
    i.wrapping_mul(0x2545_F491_4F6C_DD1D).rotate_left(17) % blobs
}

fn reads(
    node: &Node,
    blobs: u64,
    size: u64,
    clients: usize,
    rt: &tokio::runtime::Runtime,
) -> Result<[Phase; 2], String> {
    let shards = node.shards();
    let get = rt.block_on(phase(blobs, clients, |i| {
        let j = pick(i, blobs);
        let read = node.read_blob(i as usize % shards, key(j), None, Default::default());
        async move {
            let (_, _, got) = read.await.map_err(|e| e.to_string())?;
            if got.len() as u64 != size {
                return Err(format!("blob {j}: {} bytes", got.len()));
            }
            Ok(())
        }
    }))?;
    let head = rt.block_on(phase(blobs, clients, |i| {
        let head = node.head_blob(key(pick(i + 7, blobs)), Default::default());
        async move { head.await.map(|_| ()).map_err(|e| e.to_string()) }
    }))?;
    Ok([get, head])
}

pub fn run(a: Args) -> Result<(), String> {
    std::fs::create_dir_all(&a.dir).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    println!(
        "{} blobs of {} bytes, {} in flight, {} shards\n",
        a.blobs,
        a.size,
        a.clients,
        a.shards.map_or("one per core".into(), |s| s.to_string())
    );
    println!("| format | PUT/s | PUT p50/p99 µs | PUT CPU µs | PUT p99.9/max µs | GET/s | GET p50/p99 µs | GET CPU µs | HEAD/s | HEAD p50/p99 µs | HEAD CPU µs | restart s | cold GET/s | cold GET p50/p99 µs | cold GET CPU µs | cold HEAD/s | cold HEAD p50/p99 µs | cold HEAD CPU µs |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &format_version in &a.formats {
        let path = a.dir.join(format!("small-v{format_version}.dat"));
        let _ = std::fs::remove_file(&path);
        let cfg = EngineConfig {
            data_path: path.clone(),
            data_size: a.data_size,
            shards: a.shards,
            pin_threads: false,
            format_version,
            meta_flush_bytes: a.meta_flush_bytes as usize,
            ..EngineConfig::default()
        }
        .with_reduction(false);
        let mut node = Node::open(cfg.clone()).map_err(|e| e.to_string())?;
        rt.block_on(node.create_container("devstoreaccount1", "small", vec![])).map_err(|e| e.to_string())?;
        if a.prewrite {
            node.stop();
            prewrite(&path)?;
            node = Node::open(cfg.clone()).map_err(|e| e.to_string())?;
        }
        let shards = node.shards();
        let put = rt.block_on(phase(a.blobs, a.clients, |i| {
            let put = node.put_blob(
                i as usize % shards,
                key(i),
                vec![payload(i, a.size)],
                Default::default(),
                Default::default(),
            );
            async move { put.await.map(|_| ()).map_err(|e| e.to_string()) }
        }))?;
        let [get, head] = reads(&node, a.blobs, a.size, a.clients, &rt)?;
        node.stop();
        let t = Instant::now();
        let node = Node::open(cfg).map_err(|e| e.to_string())?;
        let restart = t.elapsed();
        let [cold_get, cold_head] = reads(&node, a.blobs, a.size, a.clients, &rt)?;
        node.stop();
        let _ = std::fs::remove_file(&path);
        let cell = |p: &Phase| format!("{:.0} | {}/{} | {:.1}", p.ops_s, p.p50_us, p.p99_us, p.cpu_us);
        println!(
            "| v{format_version} | {} | {}/{} | {} | {} | {:.2} | {} | {} |",
            cell(&put),
            put.p999_us,
            put.max_us,
            cell(&get),
            cell(&head),
            restart.as_secs_f64(),
            cell(&cold_get),
            cell(&cold_head)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}
