//! A node restored from its tier: `--blobs` blobs of `--size` bytes in all (a tenth empty, a
//! tenth sharing bytes with another) written and tiered, an epoch written, then a new data file
//! restored from the tier alone, opened, and its first GET served. Times each step and the
//! metadata the restore read. Prints a Markdown table (docs/performance.md).

use std::time::{Duration, Instant};

use edgeblob_engine::config::EngineConfig;
use edgeblob_engine::Node;
use edgeblob_meta::model::BlobKey;

const ACCOUNT: &str = "devstoreaccount1";

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    on: crate::tier::TierBench,
    #[arg(long, default_value_t = 10_000)]
    blobs: u64,
}

fn key(i: u64) -> BlobKey {
    BlobKey::new(ACCOUNT, "restorebench", &format!("blob-{i:06}"))
}

pub fn run(a: Args) -> Result<(), String> {
    let (rt, local_remote, tier) = a.on.start()?;
    let data_size = (a.on.size * 2).max(4 << 30);
    let cfg = EngineConfig {
        data_path: a.on.dir.join("node.dat"),
        data_size,
        pin_threads: false,
        tier: Some(tier.clone()),
        ..EngineConfig::default()
    };
    let node = Node::open(cfg).map_err(|e| e.to_string())?;
    let per = a.on.size / a.blobs.max(1);
    let res = rt.block_on(async {
        node.create_container(ACCOUNT, "restorebench", vec![]).await.map_err(|e| e.to_string())?;
        for i in 0..a.blobs {
            let len = match i % 10 {
                0 => 0,
                _ => per,
            };
            let seed = if i % 10 == 1 { i - 1 + 2 } else { i };
            let body = vec![crate::small::payload(seed, len)];
            node.put_blob(i as usize % node.shards(), key(i), body, Default::default(), Default::default())
                .await
                .map_err(|e| e.to_string())?;
        }
        node.tier_flush().await.map_err(|e| e.to_string())?;
        let t = Instant::now();
        let epoch = node.tier_epoch().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((epoch, t.elapsed()))
    });
    node.stop();
    let (epoch, epoch_time) = res?;
    let restored_path = a.on.dir.join("restored.dat");
    let cfg_b = EngineConfig {
        data_path: restored_path.clone(),
        data_size,
        pin_threads: false,
        tier: Some(tier),
        ..EngineConfig::default()
    };
    let t = Instant::now();
    let report = rt.block_on(edgeblob_engine::tier::restore::restore(&cfg_b, None, None)).map_err(|e| e.to_string())?;
    let restore_time = t.elapsed();
    let t = Instant::now();
    let b = Node::open(cfg_b).map_err(|e| e.to_string())?;
    let open_time = t.elapsed();
    let t = Instant::now();
    let got = rt.block_on(b.read_blob(0, key(a.blobs / 2 + 3), None, Default::default())).map_err(|e| e.to_string());
    let first_get = t.elapsed();
    b.stop();
    if let Some(r) = local_remote {
        r.stop();
    }
    for f in ["node.dat", "restored.dat", "remote.dat"] {
        let _ = std::fs::remove_file(a.on.dir.join(f));
    }
    got?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("| remote | blobs | epoch s | metadata MiB | restore s | open s | first GET ms | to first GET s |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.2} |",
        a.on.remote.as_deref().unwrap_or("edgeblob (in process)"),
        epoch.counts.blobs,
        epoch_time.as_secs_f64(),
        report.metadata_bytes as f64 / (1 << 20) as f64,
        restore_time.as_secs_f64(),
        open_time.as_secs_f64(),
        ms(first_get),
        (restore_time + open_time + first_get).as_secs_f64(),
    );
    Ok(())
}
