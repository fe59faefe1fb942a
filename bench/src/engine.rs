//! The engine benchmark: sequential write and read of `--size` bytes as blobs of `--blob-size`,
//! and 4 KiB random reads within them, for each data-reduction case; fio on the same directory
//! in the same run. Prints a Markdown table (figures, and the engine/fio ratio).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgeblob_engine::config::EngineConfig;
use edgeblob_engine::Node;
use edgeblob_meta::model::BlobKey;
use hdrhistogram::Histogram;

use crate::fio;

#[derive(clap::Args)]
pub struct Args {
    /// Directory for the data files (engine and fio); on the disk to measure.
    #[arg(long, default_value = "bench-data")]
    dir: PathBuf,
    /// Bytes written and read per case (K, M, G suffixes).
    #[arg(long, default_value = "1G", value_parser = edgeblob_engine::config::parse_size)]
    size: u64,
    #[arg(long, default_value = "64M", value_parser = edgeblob_engine::config::parse_size)]
    blob_size: u64,
    /// On-disk chunk size.
    #[arg(long, default_value = "1M", value_parser = edgeblob_engine::config::parse_size)]
    chunk_size: u64,
    /// Shards (default: one per core).
    #[arg(long)]
    shards: Option<usize>,
    /// Blobs written or read at once.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Seconds of 4 KiB random reads per case.
    #[arg(long, default_value_t = 10)]
    rand_secs: u64,
    /// 4 KiB reads in flight.
    #[arg(long, default_value_t = 32)]
    rand_depth: usize,
    /// Cases to run: off-random, on-random, on-compressible.
    #[arg(long, value_delimiter = ',', default_value = "off-random,on-random,on-compressible")]
    cases: Vec<String>,
    /// Skip fio.
    #[arg(long)]
    no_fio: bool,
}

struct Row {
    case: String,
    write_mib_s: f64,
    read_mib_s: f64,
    rand_iops: f64,
    rand_p50_us: f64,
    rand_p99_us: f64,
    ratio: f64,
}

/// Deterministic data: xorshift noise, or text that zstd level 1 shrinks about 3:1.
fn generate(seed: u64, len: usize, compressible: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let words: [&[u8]; 8] = [b"tensor ", b"gradient ", b"epoch ", b"shard ", b"weights ", b"loss=0.", b"step ", b"\n"];
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if compressible {
            out.extend_from_slice(words[(x % 8) as usize]);
            out.extend_from_slice(((x >> 40) % 90 + 10).to_string().as_bytes());
        } else {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

pub fn run(a: Args) -> Result<(), String> {
    std::fs::create_dir_all(&a.dir).map_err(|e| e.to_string())?;
    let shards = a.shards.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let blobs = (a.size / a.blob_size).max(1) as usize;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    println!("fio: {shards} jobs (one per shard), io_uring, O_DIRECT, the same total depth as the engine");
    println!("engine benchmark: {} bytes as {blobs} blobs of {} bytes, chunk {} bytes, {shards} shards, {} writers; random reads {}s at depth {}", a.size, a.blob_size, a.chunk_size, a.writers, a.rand_secs, a.rand_depth);
    let mut rows = Vec::new();
    for case in &a.cases {
        let (reduction, compressible) = match case.as_str() {
            "off-random" => (false, false),
            "on-random" => (true, false),
            "on-compressible" => (true, true),
            other => return Err(format!("unknown case {other}")),
        };
        eprintln!("generating data for {case}");
        let data: Vec<Bytes> =
            (0..blobs).map(|i| Bytes::from(generate(i as u64 + 1, a.blob_size as usize, compressible))).collect();
        let digests: Vec<u64> = data.iter().map(|d| xxhash_rust::xxh3::xxh3_64(d)).collect();
        let path = a.dir.join("engine.dat");
        let _ = std::fs::remove_file(&path);
        let cfg = EngineConfig {
            data_path: path.clone(),
            data_size: a.size + a.size / 4 + (256 << 20),
            shards: Some(shards),
            chunk_size: a.chunk_size as usize,
            ..EngineConfig::default()
        }
        .with_reduction(reduction);
        let node = Node::open(cfg).map_err(|e| e.to_string())?;
        let row = rt.block_on(measure(&node, &a, case, &data, &digests))?;
        node.stop();
        let _ = std::fs::remove_file(&path);
        eprintln!(
            "{case}: write {:.0} MiB/s, read {:.0} MiB/s, 4k {:.0} IOPS",
            row.write_mib_s, row.read_mib_s, row.rand_iops
        );
        rows.push(row);
    }
    let fio_rows = if a.no_fio {
        None
    } else {
        eprintln!("running fio");
        let seq = a.size.min(4 << 30);
        // The same number of 1 MiB I/Os in flight as the engine can have: writers x io_depth.
        let depth = a.writers * EngineConfig::default().io_depth;
        let job =
            |name, rw, bs, iodepth, runtime_s| fio::Job { name, rw, bs, size: seq, iodepth, jobs: shards, runtime_s };
        let w = fio::run(&a.dir, &job("seqwrite", "write", 1 << 20, depth, 0))?;
        let r = fio::run(&a.dir, &job("seqread", "read", 1 << 20, depth, 0))?;
        let rr = fio::run(&a.dir, &job("randread", "randread", 4096, a.rand_depth, a.rand_secs))?;
        let _ = std::fs::remove_file(a.dir.join("fio.dat"));
        Some((w, r, rr))
    };
    println!();
    println!("| case | seq write MiB/s | seq read MiB/s | 4 KiB rand read IOPS | p50 µs | p99 µs | reduction ratio |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    if let Some((w, r, rr)) = &fio_rows {
        println!(
            "| fio (io_uring, direct) | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | – |",
            w.mib_s, r.mib_s, rr.iops, rr.p50_us, rr.p99_us
        );
    }
    for row in &rows {
        println!(
            "| engine {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |",
            row.case, row.write_mib_s, row.read_mib_s, row.rand_iops, row.rand_p50_us, row.rand_p99_us, row.ratio
        );
    }
    if let Some((w, r, rr)) = &fio_rows {
        println!();
        println!("| case | write / fio | read / fio | 4 KiB IOPS / fio |");
        println!("|---|---:|---:|---:|");
        for row in &rows {
            println!(
                "| engine {} | {:.2} | {:.2} | {:.2} |",
                row.case,
                row.write_mib_s / w.mib_s,
                row.read_mib_s / r.mib_s,
                row.rand_iops / rr.iops
            );
        }
    }
    Ok(())
}

async fn measure(node: &Node, a: &Args, case: &str, data: &[Bytes], digests: &[u64]) -> Result<Row, String> {
    const ACCOUNT: &str = "devstoreaccount1";
    node.create_container(ACCOUNT, "bench", vec![]).await.map_err(|e| e.to_string())?;
    let key = |i: usize| BlobKey::new(ACCOUNT, "bench", &format!("blob-{i:05}"));
    let shards = node.shards();
    let total: u64 = data.iter().map(|d| d.len() as u64).sum();

    // Sequential write: `writers` blobs at a time, each body in 1 MiB pieces.
    let t = Instant::now();
    let mut next = 0;
    while next < data.len() {
        let batch: Vec<_> = (next..(next + a.writers).min(data.len()))
            .map(|i| {
                let body: Vec<Bytes> = (0..data[i].len())
                    .step_by(1 << 20)
                    .map(|o| data[i].slice(o..(o + (1 << 20)).min(data[i].len())))
                    .collect();
                node.put_blob(i % shards, key(i), body, Default::default(), Default::default())
            })
            .collect();
        for r in futures::future::join_all(batch).await {
            r.map_err(|e| e.to_string())?;
        }
        next += a.writers;
    }
    let write_s = t.elapsed().as_secs_f64();

    // Sequential read, verified against the written bytes.
    let t = Instant::now();
    let mut next = 0;
    while next < data.len() {
        let batch: Vec<_> = (next..(next + a.writers).min(data.len()))
            .map(|i| node.read_blob_digest(i % shards, key(i), None))
            .collect();
        for (j, r) in futures::future::join_all(batch).await.into_iter().enumerate() {
            let (n, digest) = r.map_err(|e| e.to_string())?;
            if n != data[next + j].len() as u64 || digest != digests[next + j] {
                return Err(format!("{case}: blob {} read back wrong", next + j));
            }
        }
        next += a.writers;
    }
    let read_s = t.elapsed().as_secs_f64();

    // 4 KiB random reads at a fixed depth for a fixed time, issued on the shards themselves (as
    // the HTTP server will), `rand_depth / shards` in flight on each.
    let secs = a.rand_secs;
    let per_shard = (a.rand_depth / shards).max(1);
    let pages_per_blob = data[0].len() as u64 / 4096;
    let nblobs = data.len() as u64;
    let t = Instant::now();
    let parts: Vec<_> = (0..shards)
        .map(|i| {
            node.on(i, move |s| async move {
                let deadline = Instant::now() + Duration::from_secs(secs);
                let workers: Vec<_> = (0..per_shard)
                    .map(|w| {
                        let s = s.clone();
                        let mut x = ((i * 1000 + w) as u64 + 1) * 0x2545_F491_4F6C_DD1D;
                        tokio::task::spawn_local(async move {
                            let mut hist = Histogram::<u64>::new(3).expect("histogram");
                            let mut n = 0u64;
                            while Instant::now() < deadline {
                                x ^= x << 13;
                                x ^= x >> 7;
                                x ^= x << 17;
                                let blob = BlobKey::new(ACCOUNT, "bench", &format!("blob-{:05}", x % nblobs));
                                let off = (x >> 20) % pages_per_blob * 4096;
                                let t = Instant::now();
                                let (len, _) = edgeblob_engine::read_digest(&s, blob, Some((off, Some(off + 4095))))
                                    .await
                                    .map_err(|e| e.to_string())?;
                                let _ = hist.record(t.elapsed().as_micros() as u64);
                                if len != 4096 {
                                    return Err(format!("short read: {len}"));
                                }
                                n += 1;
                            }
                            Ok::<_, String>((n, hist))
                        })
                    })
                    .collect();
                let mut hist = Histogram::<u64>::new(3).expect("histogram");
                let mut n = 0;
                for w in workers {
                    let (k, h) = w.await.map_err(|e| e.to_string())??;
                    n += k;
                    hist.add(h).map_err(|e| e.to_string())?;
                }
                Ok::<_, String>((n, hist))
            })
        })
        .collect();
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut reads = 0;
    for p in futures::future::join_all(parts).await {
        let (n, h) = p.map_err(|e| e.to_string())??;
        reads += n;
        hist.add(h).map_err(|e| e.to_string())?;
    }
    let rand_s = t.elapsed().as_secs_f64();
    let ratio = node.reduction().await.map_err(|e| e.to_string())?.ratio();
    Ok(Row {
        case: case.to_owned(),
        write_mib_s: total as f64 / (1 << 20) as f64 / write_s,
        read_mib_s: total as f64 / (1 << 20) as f64 / read_s,
        rand_iops: reads as f64 / rand_s,
        rand_p50_us: hist.value_at_quantile(0.5) as f64,
        rand_p99_us: hist.value_at_quantile(0.99) as f64,
        ratio,
    })
}
