//! Linked containers end to end over HTTP: `--size` bytes of blobs of `--blob` bytes in a lake
//! (another edgeblob in this process, or `--remote`: Azurite's origin, the development account),
//! read whole one after another straight from the lake, then through a node whose container is
//! linked to it (the first read fetches, the second is from flash), a 4 KiB range of each on a
//! node that has none of them (answered from the lake, the whole fetched behind it), then
//! prefetched by another node (`--parallel` at once); and a checkpoint of `--checkpoint` bytes in 4 MiB blocks written
//! to a write-back container and timed until the lake holds it. Prints a Markdown table
//! (docs/performance.md): first-byte latency p50 / p99 and MiB/s of each read, the prefetch's
//! MiB/s, the checkpoint's write MiB/s and its lag to the lake.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use edgeblob::link_config::{LinkConfig, Revalidate};
use edgeblob_engine::Node;
use hdrhistogram::Histogram;
use http::Method;

use crate::client::{consume, Conn, Request};
use crate::target::{Credential, Endpoint};

const ACCOUNT: &str = "devstoreaccount1";
const DEV_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

#[derive(clap::Args)]
pub struct Args {
    /// Directory for the data files (removed at the end).
    #[arg(long, default_value = "bench-data")]
    dir: PathBuf,
    /// Bytes of blobs in the lake.
    #[arg(long, default_value = "256M", value_parser = edgeblob_engine::config::parse_size)]
    size: u64,
    #[arg(long, default_value = "16M", value_parser = edgeblob_engine::config::parse_size)]
    blob: u64,
    /// Bytes of the checkpoint written back.
    #[arg(long, default_value = "256M", value_parser = edgeblob_engine::config::parse_size)]
    checkpoint: u64,
    /// Blobs the prefetch fetches at once.
    #[arg(long, default_value_t = 8)]
    parallel: usize,
    /// The lake's origin (`http://127.0.0.1:10000`, development account); by default another
    /// edgeblob in this process.
    #[arg(long)]
    remote: Option<String>,
}

fn link(name: &str, lake: &str, prefix: &str) -> LinkConfig {
    LinkConfig {
        remote_account: Some(ACCOUNT.into()),
        remote_key: Some(DEV_KEY.into()),
        revalidate: Revalidate::Never,
        upload_after_secs: 0,
        max_fetches: 16,
        ..LinkConfig::new(name, &format!("{lake}/{ACCOUNT}/linkbench/{prefix}"))
    }
}

/// A node in this process on `file` with `links`; its Blob endpoint and shared state.
fn node(
    file: PathBuf,
    size: u64,
    links: Vec<LinkConfig>,
) -> Result<(Arc<Node>, String, edgeblob::http::Shared), String> {
    let mut cfg = edgeblob::config::Config { listen: Some("127.0.0.1".into()), port: 0, links, ..Default::default() };
    cfg.engine.data_path = file;
    cfg.engine.data_size = (size * 3).max(4 << 30);
    cfg.engine.pin_threads = false;
    let node = Node::open(cfg.engine.clone()).map_err(|e| e.to_string())?;
    let bound = edgeblob::http::serve(&node, &cfg).map_err(|e| e.to_string())?;
    Ok((Arc::new(node), format!("http://{}", bound.http), bound.shared))
}

fn endpoint(origin: &str) -> Result<Arc<Endpoint>, String> {
    let key = base64::engine::general_purpose::STANDARD.decode(DEV_KEY).map_err(|e| e.to_string())?;
    Ok(Arc::new(Endpoint::new(&format!("{origin}/{ACCOUNT}"), Some(ACCOUNT), Credential::Key(key))?))
}

/// Each blob read whole once, one after another: first-byte latencies (µs) and MiB/s.
async fn read_all(ep: &Arc<Endpoint>, container: &str, names: &[String]) -> Result<(Histogram<u64>, f64), String> {
    let mut conn = Conn::new(ep.clone());
    let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string())?;
    let (start, mut bytes) = (Instant::now(), 0);
    for n in names {
        let t = Instant::now();
        let resp = conn.send(Request::new(Method::GET, container, Some(n), "")).await.map_err(|e| format!("{e:?}"))?;
        h.record(t.elapsed().as_micros() as u64).map_err(|e| e.to_string())?;
        bytes += consume(resp, None).await.map_err(|e| format!("{e:?}"))?.0;
    }
    Ok((h, mibs(bytes, start.elapsed())))
}

fn mibs(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

async fn put(conn: &mut Conn, container: &str, name: &str, query: &str, body: Bytes) -> Result<(), String> {
    let req = Request::new(Method::PUT, container, Some(name), query).header("x-ms-blob-type", "BlockBlob").body(body);
    conn.send(req).await.map(|_| ()).map_err(|e| format!("{e:?}"))
}

pub fn run(a: Args) -> Result<(), String> {
    std::fs::create_dir_all(&a.dir).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (lake, local_lake) = crate::tier::remote(&a.dir, a.remote.as_deref(), a.size + a.checkpoint)?;
    let links = vec![
        link("cache", &lake, "data"),
        LinkConfig { read_through: false, write_back: true, ..link("ckpt", &lake, "ckpt") },
    ];
    let (reader, reader_ep, _) = node(a.dir.join("node.dat"), a.size + a.checkpoint, links)?;
    let (warmer, _, warmer_shared) = node(a.dir.join("prefetch.dat"), a.size, vec![link("cache", &lake, "data")])?;
    let (ranger, ranger_ep, ranger_shared) =
        node(a.dir.join("ranges.dat"), a.size, vec![link("cache", &lake, "data")])?;
    let names: Vec<String> = (0..a.size.div_ceil(a.blob)).map(|i| format!("blob-{i:05}")).collect();
    let res = rt.block_on(async {
        let lake_ep = endpoint(&lake)?;
        let mut conn = Conn::new(lake_ep.clone());
        let created = conn.send(Request::new(Method::PUT, "linkbench", None, "restype=container")).await;
        created.map_err(|e| format!("{e:?}"))?;
        for (i, n) in names.iter().enumerate() {
            let len = a.blob.min(a.size - i as u64 * a.blob);
            put(&mut conn, "linkbench", &format!("data/{n}"), "", crate::small::payload(i as u64, len)).await?;
        }
        let lake_names: Vec<String> = names.iter().map(|n| format!("data/{n}")).collect();
        let direct = read_all(&lake_ep, "linkbench", &lake_names).await?;
        // A 4 KiB range from the middle of each blob, on a node that has none of them yet; each
        // blob's fetch behind its range ends before the next range (the latency of one reader).
        let ranges = {
            let ep = endpoint(&ranger_ep)?;
            let link = ranger_shared.links.get(ACCOUNT, "cache").cloned().ok_or("no link")?;
            let mut conn = Conn::new(ep);
            let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string())?;
            for (i, n) in names.iter().enumerate() {
                let at = a.blob.min(a.size) / 2;
                let req = Request::new(Method::GET, "cache", Some(n), "")
                    .header("x-ms-range", format!("bytes={at}-{}", at + 4095));
                let t = Instant::now();
                let resp = conn.send(req).await.map_err(|e| format!("{e:?}"))?;
                consume(resp, None).await.map_err(|e| format!("{e:?}"))?;
                h.record(t.elapsed().as_micros() as u64).map_err(|e| e.to_string())?;
                while link.stats.fetched.load(std::sync::atomic::Ordering::Relaxed) <= i as u64 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            h
        };
        let node_ep = endpoint(&reader_ep)?;
        let first = read_all(&node_ep, "cache", &names).await?;
        let second = read_all(&node_ep, "cache", &names).await?;

        // The prefetch, on a second node.
        let link = warmer_shared.links.get(ACCOUNT, "cache").cloned().ok_or("no link")?;
        let t = Instant::now();
        edgeblob::link_prefetch::start(
            warmer.clone(),
            warmer_shared.links.clone(),
            link.clone(),
            String::new(),
            a.parallel,
            None,
        )?;
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let p = link.prefetch.lock().map_err(|e| e.to_string())?.clone().ok_or("no prefetch")?;
            if !p.running {
                if p.errors > 0 {
                    return Err(format!("the prefetch failed: {:?}", p.last_error));
                }
                break;
            }
        }
        let prefetch = mibs(a.size, t.elapsed());

        // A checkpoint written back: 4 MiB blocks, committed, then until the lake holds it.
        let mut conn = Conn::new(node_ep.clone());
        let block = 4u64 << 20;
        let t = Instant::now();
        let mut list = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for i in 0..a.checkpoint.div_ceil(block) {
            let id = base64::engine::general_purpose::STANDARD.encode(format!("{i:08}"));
            let q = format!(
                "comp=block&blockid={}",
                percent_encoding::utf8_percent_encode(&id, percent_encoding::NON_ALPHANUMERIC)
            );
            let len = block.min(a.checkpoint - i * block);
            put(&mut conn, "ckpt", "step-1", &q, crate::small::payload(1_000 + i, len)).await?;
            list.push_str(&format!("<Latest>{id}</Latest>"));
        }
        list.push_str("</BlockList>");
        put(&mut conn, "ckpt", "step-1", "comp=blocklist", Bytes::from(list)).await?;
        let written = t.elapsed();
        let committed = Instant::now();
        let mut lake_conn = Conn::new(lake_ep.clone());
        loop {
            match lake_conn.send(Request::new(Method::HEAD, "linkbench", Some("ckpt/step-1"), "")).await {
                Ok(_) => break,
                Err(e) if crate::client::is_not_found(&e) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => return Err(format!("{e:?}")),
            }
            if committed.elapsed() > Duration::from_secs(600) {
                return Err("the checkpoint did not reach the lake in 10 minutes".into());
            }
        }
        let lag = committed.elapsed();
        Ok::<_, String>((direct, ranges, first, second, prefetch, written, lag))
    });
    for n in [reader, warmer, ranger] {
        if let Ok(n) = Arc::try_unwrap(n) {
            n.stop();
        }
    }
    if let Some(r) = local_lake {
        r.stop();
    }
    for f in ["node.dat", "prefetch.dat", "ranges.dat", "remote.dat"] {
        let _ = std::fs::remove_file(a.dir.join(f));
    }
    let (direct, ranges, first, second, prefetch, written, lag) = res?;
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let lake = a.remote.as_deref().unwrap_or("edgeblob (in process)");
    println!("| lake | read | first byte p50 / p99 ms | MiB/s |");
    println!("|---|---|---:|---:|");
    for (what, (h, rate)) in
        [("straight from the lake", &direct), ("through the link, first", &first), ("through the link, again", &second)]
    {
        println!("| {lake} | {what} | {:.2} / {:.2} | {rate:.0} |", ms(h, 0.5), ms(h, 0.99));
    }
    println!(
        "| {lake} | a 4 KiB range of a blob not here yet | {:.2} / {:.2} | |",
        ms(&ranges, 0.5),
        ms(&ranges, 0.99)
    );
    println!("| {lake} | prefetch, {} at once | | {prefetch:.0} |", a.parallel);
    println!();
    println!("| lake | checkpoint MiB | written here MiB/s | in the lake after the commit s | write-back MiB/s |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| {lake} | {} | {:.0} | {:.2} | {:.0} |",
        a.checkpoint >> 20,
        mibs(a.checkpoint, written),
        lag.as_secs_f64(),
        mibs(a.checkpoint, lag),
    );
    Ok(())
}
