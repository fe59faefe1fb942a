//! One blob of many distinct blocks through the engine (format v2): `--blocks` Put Blocks of
//! `--block-size` bytes each, in chunks of `--chunk-size`, one Put Block List, a restart, then
//! ranged Get Blobs of `--range` bytes at random offsets with `--clients` in flight, and Get Blob
//! Properties. The blocks are zeros but for a marker in each block's first bytes, so that dedup
//! stores a few chunks while every block names its own chunk list: the blob's metadata is as
//! large as a blob of distinct bytes of that size (a 4101-reference list per 16 MiB block in
//! 4 KiB chunks) on a data file of a few GiB. What it measures is what a read of a huge blob
//! pays for its metadata once the blob is not in memory (docs/performance.md).

use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use edgeblob_engine::config::EngineConfig;
use edgeblob_engine::{BlockListItem, Node};
use edgeblob_meta::model::BlobKey;

#[derive(clap::Args)]
pub struct Args {
    /// Directory for the data file (removed at the end).
    #[arg(long, default_value = "bench-data")]
    dir: PathBuf,
    #[arg(long, default_value_t = 1250)]
    blocks: u64,
    #[arg(long, default_value = "16M", value_parser = edgeblob_engine::config::parse_size)]
    block_size: u64,
    #[arg(long, default_value = "4K", value_parser = edgeblob_engine::config::parse_size)]
    chunk_size: u64,
    /// Bytes per ranged read.
    #[arg(long, default_value = "8M", value_parser = edgeblob_engine::config::parse_size)]
    range: u64,
    /// Ranged reads after the restart.
    #[arg(long, default_value_t = 200)]
    reads: u64,
    #[arg(long, default_value_t = 4)]
    clients: usize,
    #[arg(long, default_value = "8G", value_parser = edgeblob_engine::config::parse_size)]
    data_size: u64,
    /// Each shard's metadata cache while the blocks are staged (the reads after the restart run
    /// with the default).
    #[arg(long, value_parser = edgeblob_engine::config::parse_size)]
    stage_cache: Option<u64>,
    /// Milliseconds between two Put Blocks: a client slower than the node, whose blob's staged
    /// list goes clean (flushed) between blocks, as an upload over a long link does.
    #[arg(long, default_value_t = 0)]
    gap_ms: u64,
}

fn key() -> BlobKey {
    BlobKey::new("devstoreaccount1", "big", "checkpoint.bin")
}

fn block_id(i: u64) -> Vec<u8> {
    format!("{i:08}").into_bytes()
}

pub fn run(a: Args) -> Result<(), String> {
    std::fs::create_dir_all(&a.dir).map_err(|e| e.to_string())?;
    let path = a.dir.join("big-blob.dat");
    let _ = std::fs::remove_file(&path);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let cfg = EngineConfig {
        data_path: path.clone(),
        data_size: a.data_size,
        chunk_size: a.chunk_size as usize,
        pin_threads: false,
        ..EngineConfig::default()
    };
    let staging =
        EngineConfig { meta_cache_bytes: a.stage_cache.map_or(cfg.meta_cache_bytes, |c| c as usize), ..cfg.clone() };
    let node = Node::open(staging).map_err(|e| e.to_string())?;
    rt.block_on(node.create_container("devstoreaccount1", "big", vec![])).map_err(|e| e.to_string())?;
    let shards = node.shards();
    let t = Instant::now();
    if a.block_size < 4096 || a.blocks == 0 {
        return Err("--block-size must be at least 4K, and --blocks at least 1".into());
    }
    let zeros = Bytes::from(vec![0u8; a.block_size as usize - 4096]);
    for i in 0..a.blocks {
        let mut first = vec![0u8; 4096];
        first[..8].copy_from_slice(&(i + 1).to_le_bytes());
        let body = vec![Bytes::from(first), zeros.clone()];
        rt.block_on(node.put_block(i as usize % shards, key(), block_id(i), body)).map_err(|e| e.to_string())?;
        if a.gap_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(a.gap_ms));
        }
    }
    let staged = t.elapsed().saturating_sub(std::time::Duration::from_millis(a.gap_ms * a.blocks));
    let staged_rss = crate::index::rss_mib();
    let list = (0..a.blocks).map(|i| BlockListItem::Uncommitted(block_id(i))).collect();
    let t = Instant::now();
    let b = rt
        .block_on(node.commit_block_list(key(), list, Default::default(), Default::default()))
        .map_err(|e| e.to_string())?;
    let committed = t.elapsed();
    node.stop();
    let refs_per_block = a.block_size.div_ceil(a.chunk_size / 4096 * 4092);
    println!(
        "one blob of {} blocks of {} bytes ({:.2} GiB, about {} chunk references), chunks of {} bytes; staged in {:.1} s (gaps excluded), RSS {} MiB once staged; committed in {:.2} s\n",
        a.blocks,
        a.block_size,
        b.size as f64 / (1u64 << 30) as f64,
        refs_per_block * a.blocks,
        a.chunk_size,
        staged.as_secs_f64(),
        staged_rss,
        committed.as_secs_f64()
    );
    let t = Instant::now();
    let node = Node::open(cfg).map_err(|e| e.to_string())?;
    let restart = t.elapsed();
    let size = b.size;
    let range = a.range.min(size);
    let cpu = crate::index::cpu_seconds();
    let reads = rt.block_on(crate::small::phase(a.reads, a.clients, |i| {
        let at = crate::small::pick(i, size - range + 1);
        let read = node.read_blob(i as usize % shards, key(), Some((at, Some(at + range - 1))), Default::default());
        async move {
            let (_, _, got) = read.await.map_err(|e| e.to_string())?;
            if got.len() as u64 != range {
                return Err(format!("bytes {at}..: {} bytes", got.len()));
            }
            Ok(())
        }
    }))?;
    let read_cpu = crate::index::cpu_seconds() - cpu;
    let heads = rt.block_on(crate::small::phase(a.reads, a.clients, |_| {
        let head = node.head_blob(key(), Default::default());
        async move { head.await.map(|_| ()).map_err(|e| e.to_string()) }
    }))?;
    let rss = crate::index::rss_mib();
    node.stop();
    let _ = std::fs::remove_file(&path);
    println!("| restart s | ranged GET/s | p50/p99 ms | CPU ms a GET | HEAD/s | p50/p99 µs | RSS MiB at the end |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {:.2} | {:.1} | {:.1}/{:.1} | {:.2} | {:.0} | {}/{} | {rss} |",
        restart.as_secs_f64(),
        reads.ops_s,
        reads.p50_us as f64 / 1e3,
        reads.p99_us as f64 / 1e3,
        read_cpu * 1e3 / a.reads.max(1) as f64,
        heads.ops_s,
        heads.p50_us,
        heads.p99_us
    );
    Ok(())
}
