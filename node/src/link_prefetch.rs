//! `edgeblob-admin link prefetch`: every blob of a linked container's lake under a prefix made
//! current on flash before a job reads it, `parallel` at a time, spread over the shards, each as
//! a first read would fetch it (one fetch per blob with any reader meanwhile), within a cap on
//! bytes per second where one is given. Runs in the background on the admin listener's thread;
//! its progress is in the link's status.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use edgeblob_engine::Node;
use edgeblob_meta::model::BlobKey;
use futures::StreamExt;

use crate::link::{update, Link, Links};

/// Blobs listed per page of the lake's listing.
const PAGE: u32 = 5000;

/// Starts a prefetch of `link` under `prefix`; `Err` when one is running already.
pub fn start(
    node: Arc<Node>,
    links: Arc<Links>,
    link: Arc<Link>,
    prefix: String,
    parallel: usize,
    bytes_per_sec: Option<u64>,
) -> Result<(), String> {
    crate::link::begin(&link.prefetch, &prefix, "prefetch")?;
    tokio::task::spawn(async move {
        let res = run(&node, &links, &link, &prefix, parallel.max(1), bytes_per_sec).await;
        crate::link::end(&link.prefetch, res);
    });
    Ok(())
}

async fn run(
    node: &Arc<Node>,
    links: &Arc<Links>,
    link: &Arc<Link>,
    prefix: &str,
    parallel: usize,
    bytes_per_sec: Option<u64>,
) -> Result<(), String> {
    let shards = node.shards().max(1);
    // The cap paces the start of each fetch by the bytes the link fetched since the last start
    // (blobs already here cost nothing), so the prefetch leaves the rest of the link to readers.
    let pace = bytes_per_sec.map(|cap| (edgeblob_remote::Throttle::new(cap), AtomicU64::new(fetched(link))));
    let pace = &pace;
    let mut marker: Option<String> = None;
    let mut n = 0usize;
    loop {
        let page =
            link.remote.list_in(prefix, None, marker.as_deref(), PAGE, false).await.map_err(|e| e.to_string())?;
        update(&link.prefetch, |p| {
            p.counts.listed += page.blobs.len() as u64;
            p.counts.listed_bytes += page.blobs.iter().map(|b| b.len).sum::<u64>();
        });
        let jobs = page.blobs.into_iter().map(|b| {
            let key = BlobKey::new(&link.cfg.account, &link.cfg.container, &b.name);
            let (links, node, via) = (links.clone(), node.clone(), n % shards);
            n += 1;
            async move {
                if let Some((throttle, taken)) = pace {
                    let now = fetched(link);
                    throttle.take(now.saturating_sub(taken.swap(now, Relaxed))).await;
                }
                let read = node.on(via, move |s| async move {
                    crate::http::read_through::before_read(&s, &links, &key).await.map_err(|e| e.message)
                });
                (b.len, read.await.map_err(|e| e.to_string()).and_then(|r| r))
            }
        });
        let mut running = futures::stream::iter(jobs).buffer_unordered(parallel);
        while let Some((len, res)) = running.next().await {
            match res {
                Ok(()) => update(&link.prefetch, |p| {
                    p.counts.done += 1;
                    p.counts.done_bytes += len;
                }),
                Err(e) => crate::link::failed(&link.prefetch, e),
            }
        }
        match page.next {
            Some(m) => marker = Some(m),
            None => return Ok(()),
        }
    }
}

/// Bytes the link fetched from the lake since the node started.
fn fetched(link: &Link) -> u64 {
    link.stats.fetched_bytes.load(Relaxed)
}
