//! `edgeblob-admin link prefetch`: every blob of a linked container's lake under a prefix made
//! current on flash before a job reads it, `parallel` at a time, spread over the shards, each as
//! a first read would fetch it (one fetch per blob with any reader meanwhile). Runs in the
//! background on the admin listener's thread; its progress is in the link's status.

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
) -> Result<(), String> {
    crate::link::begin(&link.prefetch, &prefix, "prefetch")?;
    tokio::task::spawn(async move {
        let res = run(&node, &links, &link, &prefix, parallel.max(1)).await;
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
) -> Result<(), String> {
    let shards = node.shards().max(1);
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
            let (links, via) = (links.clone(), n % shards);
            n += 1;
            let read = node.on(via, move |s| async move {
                crate::http::read_through::before_read(&s, &links, &key).await.map_err(|e| e.message)
            });
            async move { (b.len, read.await.map_err(|e| e.to_string()).and_then(|r| r)) }
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
