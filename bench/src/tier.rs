//! The Azure tier, end to end through the engine: `--size` bytes written as blobs of `--blob`
//! bytes, then uploaded (tier-out: the time from the last write until every chunk is in a
//! committed pack), then released from flash and read back from the tier: the first byte of a
//! cold blob, `--ranges` 4 KiB ranges at random places (p50, p99), and every blob whole. The
//! remote is another edgeblob in this process unless `--remote` names one (Azurite's URL, with
//! the development account). Prints a Markdown table (docs/performance.md).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use edgeblob_engine::config::{EngineConfig, TierConfig};
use edgeblob_engine::Node;
use edgeblob_meta::model::BlobKey;
use hdrhistogram::Histogram;

const ACCOUNT: &str = "devstoreaccount1";
const DEV_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// What every tier benchmark is given: where its files go, how much it writes, and the remote.
#[derive(clap::Args)]
pub struct TierBench {
    /// Directory for the data files (removed at the end).
    #[arg(long, default_value = "bench-data")]
    pub dir: PathBuf,
    /// Bytes written in all (K, M, G suffixes).
    #[arg(long, default_value = "1G", value_parser = edgeblob_engine::config::parse_size)]
    pub size: u64,
    /// A remote Blob endpoint's origin (`http://127.0.0.1:10000`, development account); by
    /// default another edgeblob in this process.
    #[arg(long)]
    pub remote: Option<String>,
}

impl TierBench {
    /// Its directory made, a runtime, the remote (in process unless named: kept running while
    /// held), and the tier on it.
    pub fn start(&self) -> Result<(tokio::runtime::Runtime, Option<Node>, TierConfig), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let (origin, local_remote) = remote(&self.dir, self.remote.as_deref(), self.size)?;
        Ok((rt, local_remote, tier_config(&self.dir, &origin)?))
    }
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    on: TierBench,
    /// Bytes per blob.
    #[arg(long, default_value = "64M", value_parser = edgeblob_engine::config::parse_size)]
    blob: u64,
    /// 4 KiB ranges read from the tier at random.
    #[arg(long, default_value_t = 1000)]
    ranges: u64,
    /// Text-like bytes (the reduction carries into the tier) rather than random ones.
    #[arg(long)]
    compressible: bool,
}

fn key(i: u64) -> BlobKey {
    BlobKey::new(ACCOUNT, "tierbench", &format!("blob-{i:05}"))
}

fn body(i: u64, len: u64, compressible: bool) -> Vec<bytes::Bytes> {
    let piece = 4 << 20;
    (0..len.div_ceil(piece))
        .map(|p| {
            let n = piece.min(len - p * piece);
            if compressible {
                let words = [&b"alpha "[..], b"beta ", b"gamma ", b"delta\n"];
                let mut out = Vec::with_capacity(n as usize + 8);
                let mut x = (i * 1_000_003 + p) | 1;
                while (out.len() as u64) < n {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    out.extend_from_slice(words[(x % 4) as usize]);
                }
                out.truncate(n as usize);
                bytes::Bytes::from(out)
            } else {
                crate::small::payload(i * 1_000_003 + p, n)
            }
        })
        .collect()
}

/// The remote: another edgeblob in this process (kept running while its node is held), unless
/// `named` names one. Its origin.
pub(crate) fn remote(dir: &std::path::Path, named: Option<&str>, size: u64) -> Result<(String, Option<Node>), String> {
    if let Some(o) = named {
        return Ok((o.to_owned(), None));
    }
    let mut cfg = edgeblob::config::Config { listen: Some("127.0.0.1".into()), port: 0, ..Default::default() };
    cfg.engine.data_path = dir.join("remote.dat");
    cfg.engine.data_size = (size * 2).max(4 << 30);
    cfg.engine.pin_threads = false;
    let node = Node::open(cfg.engine.clone()).map_err(|e| e.to_string())?;
    let bound = edgeblob::http::serve(&node, &cfg).map_err(|e| e.to_string())?;
    Ok((format!("http://{}", bound.http), Some(node)))
}

/// The benchmarks' tier at `origin`: uploads within a second, released only when asked (not
/// by the watermarks while writing), epochs only when asked.
fn tier_config(dir: &std::path::Path, origin: &str) -> Result<TierConfig, String> {
    let key_file = dir.join("customer.key");
    std::fs::write(&key_file, [0x42u8; 32]).map_err(|e| e.to_string())?;
    Ok(TierConfig {
        url: format!("{origin}/{ACCOUNT}/tierbench/site-{}", std::process::id()),
        account: Some(ACCOUNT.into()),
        account_key: Some(DEV_KEY.into()),
        key_file,
        upload_after_secs: 1,
        release_above: 1.0,
        release_below: 1.0,
        epoch_interval_secs: 0,
        ..TierConfig::default()
    })
}

pub fn run(a: Args) -> Result<(), String> {
    let (rt, local_remote, tier) = a.on.start()?;
    let cfg = EngineConfig {
        data_path: a.on.dir.join("node.dat"),
        data_size: (a.on.size * 2).max(4 << 30),
        pin_threads: false,
        tier: Some(tier),
        ..EngineConfig::default()
    };
    let node = Node::open(cfg).map_err(|e| e.to_string())?;
    let blobs = a.on.size.div_ceil(a.blob);
    let res = rt.block_on(async {
        node.create_container(ACCOUNT, "tierbench", vec![]).await.map_err(|e| e.to_string())?;
        let start = Instant::now();
        for i in 0..blobs {
            let len = a.blob.min(a.on.size - i * a.blob);
            let props = Default::default();
            node.put_blob(i as usize % node.shards(), key(i), body(i, len, a.compressible), props, Default::default())
                .await
                .map_err(|e| e.to_string())?;
        }
        let written = start.elapsed();
        let upload = Instant::now();
        node.tier_flush().await.map_err(|e| e.to_string())?;
        let tier_out = upload.elapsed();
        let status = node.tier_status().await.map_err(|e| e.to_string())?;
        let pack_bytes: u64 = status.iter().map(|s| s.pack_bytes).sum();
        let freed = node.tier_release(None).await.map_err(|e| e.to_string())?;
        // The first byte of a blob no one has read since its release.
        let t = Instant::now();
        node.read_blob(0, key(0), Some((0, Some(4095))), Default::default()).await.map_err(|e| e.to_string())?;
        let first_byte = t.elapsed();
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..a.ranges {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = x % blobs;
            let len = a.blob.min(a.on.size - i * a.blob);
            let at = (x >> 20) % len.saturating_sub(4096).max(1);
            let t = Instant::now();
            node.read_blob(1, key(i), Some((at, Some(at + 4095))), Default::default())
                .await
                .map_err(|e| e.to_string())?;
            h.record(t.elapsed().as_micros() as u64).map_err(|e| e.to_string())?;
        }
        let whole = Instant::now();
        let mut read = 0;
        for i in 0..blobs {
            let (n, _) =
                node.read_blob_digest(i as usize % node.shards(), key(i), None).await.map_err(|e| e.to_string())?;
            read += n;
        }
        let read_back = whole.elapsed();
        Ok::<_, String>((written, tier_out, pack_bytes, freed, first_byte, h, read, read_back))
    });
    node.stop();
    if let Some(r) = local_remote {
        r.stop();
    }
    let _ = std::fs::remove_file(a.on.dir.join("node.dat"));
    let _ = std::fs::remove_file(a.on.dir.join("remote.dat"));
    let (written, tier_out, pack_bytes, freed, first_byte, h, read, read_back) = res?;
    let mibs = |bytes: u64, d: Duration| bytes as f64 / (1 << 20) as f64 / d.as_secs_f64();
    // Uploads run while the blobs are written (upload early): the tier-out rate is the packs'
    // bytes over the time from the first write until the last pack is committed.
    println!("| remote | written MiB/s | drain after the last write s | tier-out MiB/s | tier bytes / logical | released MiB | first byte ms | 4 KiB range p50 / p99 ms | read back MiB/s |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {:.0} | {:.2} | {:.0} | {:.3} | {} | {:.1} | {:.2} / {:.2} | {:.0} |",
        a.on.remote.as_deref().unwrap_or("edgeblob (in process)"),
        mibs(a.on.size, written),
        tier_out.as_secs_f64(),
        mibs(pack_bytes, written + tier_out),
        pack_bytes as f64 / a.on.size as f64,
        freed >> 20,
        first_byte.as_secs_f64() * 1000.0,
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        mibs(read, read_back),
    );
    Ok(())
}
