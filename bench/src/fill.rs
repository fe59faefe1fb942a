//! The metadata-at-scale benchmark of issue 10, through the engine (no HTTP): a node on one data
//! file is filled with `--blobs` zero-byte and small blobs (every other one empty) over
//! `--containers` containers by `--clients` concurrent writers, in a child process that reports
//! the ingest rate of every million, its resident memory and the index's size; the child is then
//! killed (SIGKILL) the moment the last Put is acknowledged, and this process opens the node,
//! times how long until it serves, reads random blobs' properties with a cold cache, and lists
//! every blob of every container a page at a time. Prints what docs/performance.md records.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use bytes::Bytes;
use edgeblob_engine::config::EngineConfig;
use edgeblob_engine::Node;
use edgeblob_meta::listing::ListQuery;
use edgeblob_meta::model::BlobKey;
use futures::StreamExt;
use hdrhistogram::Histogram;

const ACCOUNT: &str = "devstoreaccount1";

#[derive(clap::Args, Clone)]
pub struct Args {
    /// The data file (created, and removed at the end).
    #[arg(long, default_value = "bench-data/fill.dat")]
    file: PathBuf,
    #[arg(long, default_value = "32G", value_parser = edgeblob_engine::config::parse_size)]
    data_size: u64,
    #[arg(long, default_value_t = 10_000_000)]
    blobs: u64,
    #[arg(long, default_value_t = 100)]
    containers: u64,
    /// Bytes of the small blobs (every other blob is empty).
    #[arg(long, default_value = "1K", value_parser = edgeblob_engine::config::parse_size)]
    size: u64,
    /// Requests in flight.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Shards (default: one per core).
    #[arg(long)]
    shards: Option<usize>,
    /// Random blobs whose properties are read after the restart.
    #[arg(long, default_value_t = 20_000)]
    heads: u64,
    /// Entries per listing page.
    #[arg(long, default_value_t = 5000)]
    page: usize,
    /// Internal: run the fill in this process and report on stdout.
    #[arg(long, hide = true)]
    child: bool,
    /// Keep the data file at the end, for `--reopen`.
    #[arg(long)]
    keep: bool,
    /// Skip the fill: open the data file a `--keep` run left (as after its SIGKILL) and take the
    /// restart, HEAD and listing figures again (ingest figures are then blank).
    #[arg(long)]
    reopen: bool,
}

fn config(a: &Args) -> EngineConfig {
    EngineConfig {
        data_path: a.file.clone(),
        data_size: a.data_size,
        shards: a.shards,
        pin_threads: false,
        format_version: 2,
        ..EngineConfig::default()
    }
    .with_reduction(false)
}

fn container(c: u64) -> String {
    format!("dataset-{c:03}")
}

/// Blob `i`: in container `i % containers`, named as a dataset's shards are.
fn key(i: u64, containers: u64) -> BlobKey {
    BlobKey::new(ACCOUNT, &container(i % containers), &format!("train/part-{:06}/sample-{i:010}.jpg", i / 100_000))
}

/// Every other blob is empty; the rest hold distinct bytes.
fn payload(i: u64, size: u64) -> Bytes {
    if i.is_multiple_of(2) {
        Bytes::new()
    } else {
        super::small::payload(i, size)
    }
}

pub fn run(a: Args) -> Result<(), String> {
    if a.child {
        return fill(&a);
    }
    if let Some(dir) = a.file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    if !a.reopen {
        let _ = std::fs::remove_file(&a.file);
    }
    let result = measure(&a);
    if !a.keep {
        let _ = std::fs::remove_file(&a.file);
    }
    result
}

/// The child: fills, reports each million and its memory, then says `filled` and waits to be
/// killed (nothing is flushed or stopped cleanly).
fn fill(a: &Args) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let node = Node::open(config(a)).map_err(|e| e.to_string())?;
    for c in 0..a.containers {
        rt.block_on(node.create_container(ACCOUNT, &container(c), vec![])).map_err(|e| e.to_string())?;
    }
    let shards = node.shards();
    let rss_open = super::index::rss_mib();
    let step = (a.blobs / 10).clamp(1, 1_000_000);
    let start = Instant::now();
    let mut at = 0;
    while at < a.blobs {
        let n = step.min(a.blobs - at);
        let t = Instant::now();
        let puts = futures::stream::iter(at..at + n)
            .map(|i| {
                // Arrivals spread over the shards apart from which blobs are empty (every other).
                let put = node.put_blob(
                    (i / 2) as usize % shards,
                    key(i, a.containers),
                    vec![payload(i, a.size)],
                    Default::default(),
                    Default::default(),
                );
                async move { put.await.map(|_| ()).map_err(|e| format!("blob {i}: {e}")) }
            })
            .buffer_unordered(a.clients);
        rt.block_on(puts.fold(Ok(()), |acc: Result<(), String>, r| async move { acc.and(r) }))?;
        let rate = n as f64 / t.elapsed().as_secs_f64();
        // Where each shard's region goes: free, held by the index, in limbo.
        let space: Vec<String> = (0..shards)
            .map(|i| {
                let of = node.on(i, |s| async move {
                    let space = s.space.borrow();
                    let index = s.index_space.as_ref().map_or(0, |x| x.bytes());
                    (space.alloc.free_bytes() >> 20, index >> 20, space.in_limbo() >> 20)
                });
                rt.block_on(of).map(|(f, x, l)| format!("free={f}M index={x}M limbo={l}M")).unwrap_or_default()
            })
            .collect();
        println!("step {} {rate:.0} {}", at + n, space.join(" | "));
        at += n;
    }
    let secs = start.elapsed().as_secs_f64();
    let index_bytes: u64 = (0..shards)
        .map(|i| {
            rt.block_on(node.on(i, |s| async move { s.index_space.as_ref().map_or(0, |x| x.bytes()) })).unwrap_or(0)
        })
        .sum();
    let cache = node.shared().config.meta_cache_bytes + node.shared().config.index_cache_bytes;
    let cache = cache * shards + node.shared().config.read_cache_bytes;
    println!("filled {secs:.1} {} {index_bytes} {cache} {rss_open}", super::index::rss_mib());
    loop {
        std::thread::park();
    }
}

fn measure(a: &Args) -> Result<(), String> {
    let (steps, filled) = if a.reopen { (Vec::new(), Vec::new()) } else { run_fill()? };
    let num = |i: usize| filled.get(i).and_then(|w| w.parse::<f64>().ok()).unwrap_or(0.0);
    let (secs, rss, index_bytes, cache, rss_open) = (num(1), num(2), num(3), num(4), num(5));

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let t = Instant::now();
    let node = Node::open(config(a)).map_err(|e| e.to_string())?;
    rt.block_on(node.head_blob(key(a.blobs - 1, a.containers), Default::default())).map_err(|e| e.to_string())?;
    let restart = t.elapsed().as_secs_f64();

    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let heads = futures::stream::iter(0..a.heads)
        .map(|i| {
            let j = i.wrapping_mul(0x2545_F491_4F6C_DD1D).rotate_left(17) % a.blobs;
            let head = node.head_blob(key(j, a.containers), Default::default());
            async move {
                let t = Instant::now();
                head.await.map(|_| t.elapsed()).map_err(|e| format!("blob {j}: {e}"))
            }
        })
        .buffer_unordered(a.clients);
    for r in rt.block_on(heads.collect::<Vec<_>>()) {
        let _ = h.record(r?.as_micros().max(1) as u64);
    }
    let heads_s = a.heads as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut listed = 0u64;
    for c in 0..a.containers {
        let mut q = ListQuery { prefix: String::new(), delimiter: None, marker: None, max: a.page, uncommitted: false };
        loop {
            let page = rt.block_on(node.list_blobs(ACCOUNT, &container(c), q.clone())).map_err(|e| e.to_string())?;
            listed += page.entries.len() as u64;
            match page.next_marker {
                Some(m) => q.marker = Some(m),
                None => break,
            }
        }
    }
    let list_s = listed as f64 / t.elapsed().as_secs_f64();
    node.stop();
    if listed != a.blobs {
        return Err(format!("listed {listed} blobs of {}", a.blobs));
    }

    let first = steps.first().map_or(0.0, |s| s.1);
    let last = steps.last().map_or(0.0, |s| s.1);
    println!("| blobs | ingest/s | first tenth/s | last tenth/s | last/first | RSS open → end MiB | caches MiB | RSS growth B/blob | index B/blob | restart after SIGKILL s | cold HEAD/s | p50/p99 µs | list/s |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {:.0} | {first:.0} | {last:.0} | {:.2} | {rss_open:.0} → {rss:.0} | {:.0} | {:.1} | {:.0} | {restart:.2} | {heads_s:.0} | {}/{} | {list_s:.0} |",
        a.blobs,
        a.blobs as f64 / secs,
        last / first.max(1.0),
        cache / (1 << 20) as f64,
        (rss - rss_open) * (1 << 20) as f64 / a.blobs as f64,
        index_bytes / a.blobs as f64,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
    );
    Ok(())
}

/// What the child said: each step's blobs and rate, and the words of its `filled` line.
type Filled = (Vec<(u64, f64)>, Vec<String>);

/// Runs the fill in a child process and kills it when it says `filled`.
fn run_fill() -> Result<Filled, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    args.push("--child".into());
    let mut child = Command::new(exe).args(&args).stdout(Stdio::piped()).spawn().map_err(|e| e.to_string())?;
    let out = child.stdout.take().ok_or("no pipe from the child")?;
    let mut steps: Vec<(u64, f64)> = Vec::new();
    let mut filled: Option<Vec<String>> = None;
    for line in BufReader::new(out).lines() {
        let line = line.map_err(|e| e.to_string())?;
        let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        match words.first().map(String::as_str) {
            Some("step") => {
                let n: u64 = words.get(1).and_then(|w| w.parse().ok()).unwrap_or(0);
                let rate: f64 = words.get(2).and_then(|w| w.parse().ok()).unwrap_or(0.0);
                eprintln!("{n} blobs: {rate:.0} Put/s; {}", words[3..].join(" "));
                steps.push((n, rate));
            }
            Some("filled") => {
                // SIGKILL at once: what the log made durable is all the next start has.
                child.kill().map_err(|e| e.to_string())?;
                filled = Some(words);
                break;
            }
            _ => eprintln!("child: {line}"),
        }
    }
    let _ = child.wait();
    Ok((steps, filled.ok_or("the fill failed (see above)")?))
}
