//! Eviction of cached lake blobs: when the node's data areas together are fuller than a
//! read-through link's `evict_above`, the blobs of its container that are the lake's version
//! (`$lake`: fetched, or uploaded) are deleted here, those not read since the node started first (oldest first), then
//! the least recently read, until their bytes bring the node to `evict_below`. Each delete is of
//! the version seen (If-Match): one written meanwhile stays. A blob not in the lake is never
//! evicted. Runs on the links' thread every few seconds.

use std::sync::Arc;
use std::time::Duration;

use edgeblob_engine::reserved_metadata::lake_etag;
use edgeblob_engine::{ops, EngineError, CATALOG_SHARD};
use edgeblob_meta::model::BlobKey;
use edgeblob_proto::conditions::{Conditions, ETagMatch};

use crate::link::{Link, Links};
use crate::link_upload::{Engine, Stop};

const EVERY: Duration = Duration::from_secs(2);

/// What eviction did, for a link's status.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Evicted {
    pub blobs: u64,
    pub bytes: u64,
}

pub(crate) async fn run(engine: Engine, links: Arc<Links>) {
    loop {
        tokio::time::sleep(EVERY).await;
        // Only where a read fetches it back: a write-back-only container's uploaded blobs stay
        // (`delete_after_upload` is how those go).
        for link in links.iter().filter(|l| l.cfg.read_through) {
            match pass(&engine, link).await {
                Ok(()) => {}
                Err(Stop::Gone) => return,
                Err(Stop::Failed(why)) => tracing::warn!(container = %link.cfg.container, %why, "eviction failed"),
            }
        }
    }
}

/// The node's data areas: bytes in all, and bytes in use.
async fn used(engine: &Engine) -> Result<(u64, u64), Stop> {
    let (mut total, mut used) = (0, 0);
    for i in 0..engine.shards {
        let space = engine.on(i, |s| async move { edgeblob_engine::stats::ShardSpace::of(&s) }).await?;
        let (region, free) = (space.region_bytes, space.free_bytes);
        total += region;
        used += region - free.min(region);
    }
    Ok((total, used))
}

async fn pass(engine: &Engine, link: &Arc<Link>) -> Result<(), Stop> {
    let (total, used) = used(engine).await?;
    if total == 0 || (used as f64) <= link.cfg.evict_above * total as f64 {
        return Ok(());
    }
    let mut to_free = used.saturating_sub((link.cfg.evict_below * total as f64) as u64);
    let mut cached = engine.blobs(link, |b| lake_etag(&b.props.metadata).is_some()).await?;
    let read = link.read_order();
    // Not read lately first (oldest first), then the least recently read.
    cached.sort_by_key(|b| (read.get(&b.name).map_or(0, |r| r + 1), b.modified_ns));
    for b in cached {
        if to_free == 0 {
            break;
        }
        let key = BlobKey::new(&link.cfg.account, &link.cfg.container, &b.name);
        let cond = Conditions {
            if_match: Some(ETagMatch::Tags(vec![edgeblob_proto::etag_string(b.etag)])),
            ..Conditions::default()
        };
        match engine.on(CATALOG_SHARD, move |s| async move { ops::delete_blob(&s, key, cond).await }).await? {
            Ok(()) => {
                to_free = to_free.saturating_sub(b.size);
                let mut e = link.evicted.lock().unwrap_or_else(|p| p.into_inner());
                e.blobs += 1;
                e.bytes += b.size;
            }
            Err(EngineError::ConditionNotMet | EngineError::BlobNotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(container = %link.cfg.container, used, total, "cached lake blobs evicted");
    Ok(())
}
