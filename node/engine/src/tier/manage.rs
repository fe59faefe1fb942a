//! What an operator asks of the tier for a container (or the blobs under a prefix of it) while
//! the node serves: `now` moves its data to the tier at once (uploads what is pending, makes
//! the restore point that names it, and releases the local copies), `hydrate` brings every
//! chunk of it back to flash (before a job reads it at flash speed). Both walk the container a
//! listing page at a time, so what they hold is bounded by a page's chunks.

use std::collections::BTreeMap;
use std::rc::Rc;

use edgeblob_meta::listing::{ListEntry, ListQuery};
use edgeblob_meta::model::{BlobKey, ChunkRef};
use futures::StreamExt;

use crate::error::{EngineError, Result};
use crate::shard::Shard;
use crate::Node;

/// Blobs listed per round.
const PAGE: usize = 1000;

/// Promotions a shard runs at once for an operator's hydrate (each is one download and one
/// write).
const HYDRATE_IN_FLIGHT: usize = 8;

/// What an operator action did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManageReport {
    pub blobs: u64,
    /// Distinct chunks the blobs name (a chunk several blobs share counts once a page).
    pub chunks: u64,
    /// `now`: local bytes freed; `hydrate`: chunks written back to flash.
    pub done: u64,
    /// `now`: chunks a `keep` rule holds on flash (a blob elsewhere that shares one, or these
    /// blobs themselves), which stay.
    pub kept: u64,
}

/// Where a blob's bytes are now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Residency {
    /// Logical bytes of its distinct chunks on flash (and perhaps in the tier too).
    pub local: u64,
    /// Logical bytes of its distinct chunks only in the tier.
    pub tiered: u64,
}

/// The chunks of a page of blobs, by the shard that counts each.
async fn page_chunks(
    node: &Node,
    account: &str,
    container: &str,
    names: Vec<String>,
) -> Result<BTreeMap<usize, Vec<ChunkRef>>> {
    let mut by_counter: BTreeMap<usize, Vec<ChunkRef>> = BTreeMap::new();
    for name in names {
        let key = BlobKey { account: account.into(), container: container.into(), name };
        let owner = node.shared.owner_of(&key);
        let chunks = match node.on(owner, move |s| async move { crate::blob::chunks(&s, &key).await }).await? {
            Ok(c) => c,
            // Deleted since the listing: nothing of it to move.
            Err(EngineError::BlobNotFound) => continue,
            Err(e) => return Err(e),
        };
        for c in chunks {
            by_counter.entry(node.shared.ref_owner(&c)).or_default().push(c);
        }
    }
    for chunks in by_counter.values_mut() {
        chunks.sort_unstable_by_key(|c| c.id());
        chunks.dedup_by_key(|c| c.id());
    }
    Ok(by_counter)
}

/// Runs `act` on each page of the blobs of `container` under `prefix`, by counting shard.
async fn each_page<F, Fut>(node: &Node, account: &str, container: &str, prefix: &str, act: F) -> Result<ManageReport>
where
    F: Fn(Rc<Shard>, Vec<ChunkRef>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(u64, u64)>> + 'static,
{
    let mut report = ManageReport::default();
    let mut marker = None;
    loop {
        let q = ListQuery { prefix: prefix.to_owned(), delimiter: None, marker, max: PAGE, uncommitted: false };
        let page = node.list_blobs(account, container, q).await?;
        let names: Vec<String> = page
            .entries
            .into_iter()
            .filter_map(|e| match e {
                ListEntry::Blob(b) => Some(b.name),
                ListEntry::Prefix(_) => None,
            })
            .collect();
        report.blobs += names.len() as u64;
        for (shard, chunks) in page_chunks(node, account, container, names).await? {
            report.chunks += chunks.len() as u64;
            let act = act.clone();
            let (done, kept) = node.on(shard, move |s| act(s, chunks)).await??;
            (report.done, report.kept) = (report.done + done, report.kept + kept);
        }
        match page.next_marker {
            Some(m) => marker = Some(m),
            None => return Ok(report),
        }
    }
}

/// Moves the blobs of `container` under `prefix` to the tier now: every pending chunk is
/// uploaded, an epoch names the packs, and these blobs' local copies are released.
pub async fn now(node: &Node, account: &str, container: &str, prefix: &str) -> Result<ManageReport> {
    tier_of(node)?;
    node.get_container(account, container)?;
    node.tier_flush().await?;
    // Released copies must be in a restore point: an epoch first where packs are not yet named.
    node.tier_cover().await?;
    each_page(node, account, container, prefix, |s, chunks| async move {
        let kept = chunks.iter().filter(|c| !s.node.policy.may_release(c.offset)).count() as u64;
        let ids: Vec<_> = chunks.iter().map(|c| c.id()).collect();
        let mut freed = 0;
        for batch in ids.chunks(4096) {
            freed += super::release::release_batch(&s, batch).await?;
        }
        Ok((freed, kept))
    })
    .await
}

/// Brings every chunk of the blobs of `container` under `prefix` that is only in the tier back
/// to flash; a chunk whose place on flash is taken stays in the tier (it is still read from
/// there).
pub async fn hydrate(node: &Node, account: &str, container: &str, prefix: &str) -> Result<ManageReport> {
    tier_of(node)?;
    node.get_container(account, container)?;
    each_page(node, account, container, prefix, |s, chunks| async move {
        let promoted = futures::stream::iter(chunks)
            .map(|c| {
                let s = s.clone();
                async move {
                    match super::place::locate(&s, c).await? {
                        super::place::Where::Tier(place) => super::hydrate::promote(&s, c, place).await,
                        super::place::Where::Local(_) => Ok(false),
                    }
                }
            })
            .buffer_unordered(HYDRATE_IN_FLIGHT)
            .collect::<Vec<Result<bool>>>()
            .await;
        let mut n = 0;
        for p in promoted {
            n += u64::from(p?);
        }
        Ok((n, 0))
    })
    .await
}

/// Brings every blob of `account` back to flash, a container at a time: the background
/// prefetch after a restore (the restored node serves from its first moment; this fills its
/// flash while it does, and a read of what is still only in the tier goes to the tier).
pub async fn hydrate_account(node: &Node, account: &str) -> Result<ManageReport> {
    tier_of(node)?;
    let mut report = ManageReport::default();
    let mut marker: Option<String> = None;
    loop {
        let (containers, next) = node.list_containers(account, "", marker.as_deref(), PAGE);
        for (name, _) in containers {
            let r = match hydrate(node, account, &name, "").await {
                // Deleted since the listing: nothing of it to bring back.
                Err(EngineError::ContainerNotFound) => continue,
                r => r?,
            };
            report.blobs += r.blobs;
            report.chunks += r.chunks;
            report.done += r.done;
        }
        match next {
            Some(m) => marker = Some(m),
            None => return Ok(report),
        }
    }
}

/// Where the bytes of blob `key` are now (each distinct chunk asked of the shard that counts it).
pub async fn residency(node: &Node, key: BlobKey) -> Result<Residency> {
    let owner = node.shared.owner_of(&key);
    let chunks = node.on(owner, move |s| async move { crate::blob::chunks(&s, &key).await }).await??;
    let mut by_counter: BTreeMap<usize, Vec<ChunkRef>> = BTreeMap::new();
    for c in chunks {
        by_counter.entry(node.shared.ref_owner(&c)).or_default().push(c);
    }
    let mut r = Residency::default();
    for (shard, chunks) in by_counter {
        let (local, tiered) = node
            .on(shard, move |s| async move {
                let (mut local, mut tiered) = (0, 0);
                for c in chunks {
                    match super::place::locate(&s, c).await? {
                        super::place::Where::Local(_) => local += u64::from(c.len),
                        super::place::Where::Tier(_) => tiered += u64::from(c.len),
                    }
                }
                Ok::<_, EngineError>((local, tiered))
            })
            .await??;
        (r.local, r.tiered) = (r.local + local, r.tiered + tiered);
    }
    Ok(r)
}

fn tier_of(node: &Node) -> Result<&std::sync::Arc<super::Tier>> {
    node.shared.tier.as_ref().ok_or_else(|| EngineError::Tier("no tier is configured".into()))
}
