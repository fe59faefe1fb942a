//! Epochs: the node's metadata in the tier, and the manifest that makes a restore point of it
//! (docs/architecture.md, "Restore and fencing").
//!
//! An epoch, run on the catalog shard (every `epoch_interval`, or when asked):
//! 1. notes its cut (now), then waits until every shard has counted every change so far and
//!    has every chunk it counts in a committed pack;
//! 2. each shard exports its containers (the catalog shard) and committed blobs, with their
//!    blocks, as sealed parts;
//! 3. waits as in 1 again: a chunk of a blob committed while 2 ran is packed too;
//! 4. each shard exports the places of the chunks it counts that are in packs, and those packs;
//! 5. writes the manifest, create-only, naming every part and pack: the epoch's commit point.
//!
//! A blob committed before the cut and not changed until the manifest is written is in it,
//! with every chunk it names placed (steps 1 and 4). One changed meanwhile is in it as either
//! version, or, when its exported version's chunks were freed before step 4, left out by the
//! restore (which checks every blob's chunks). Nothing of an epoch is ever rewritten: a failed
//! one leaves parts no manifest names, which the collection removes.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use edgeblob_meta::export::{push_item, ExportItem, Geometry, Manifest, ManifestCounts, PackRef, PartRef};
use edgeblob_meta::index::shard::{scan_blobs, scan_chunks_seen};
use edgeblob_tier::ObjectKind;

use super::objects::Written;
use super::Tier;
use crate::error::{EngineError, Result};
use crate::shard::{now_ns, Shard};

/// Plaintext bytes of a part before it is cut (an item is never split).
pub const PART_BYTES: usize = 16 << 20;
/// The most plaintext a part may open to (one item past the cut at most).
pub const MAX_PART_PLAIN: usize = 64 << 20;

/// What an epoch wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochReport {
    pub epoch: u64,
    pub manifest: String,
    pub parts: usize,
    pub packs: usize,
    pub counts: ManifestCounts,
}

/// A manifest's name: generation first, so that the newest writer's come last in a listing.
pub fn manifest_name(generation: u64, epoch: u64) -> String {
    format!("manifest/{generation:016x}-{epoch:016x}")
}

/// A manifest's name parsed: (generation, epoch).
pub fn parse_manifest_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("manifest/")?;
    let (g, e) = rest.split_once('-')?;
    Some((u64::from_str_radix(g, 16).ok()?, u64::from_str_radix(e, 16).ok()?))
}

/// Every manifest in the tier, oldest first: (generation, epoch, name under the node's prefix).
pub async fn manifests(tier: &Tier) -> Result<Vec<(u64, u64, String)>> {
    let prefix = super::remote::node_prefix(&tier.node);
    tier.run(move |remote, _| async move {
        super::restore::list_manifests(&remote, &prefix).await.map_err(|e| e.to_string())
    })
    .await
    .map_err(EngineError::Tier)
}

/// Writes a shard's export as parts of [`PART_BYTES`].
struct PartWriter {
    tier: std::sync::Arc<Tier>,
    base: String,
    shard: u32,
    chunks: bool,
    buf: Vec<u8>,
    parts: Vec<PartRef>,
}

impl PartWriter {
    fn new(tier: std::sync::Arc<Tier>, base: String, shard: u32, chunks: bool) -> PartWriter {
        PartWriter { tier, base, shard, chunks, buf: Vec::new(), parts: Vec::new() }
    }

    async fn push(&mut self, item: &ExportItem) -> Result<()> {
        push_item(&mut self.buf, item);
        if self.buf.len() >= PART_BYTES {
            self.cut().await?;
        }
        Ok(())
    }

    async fn cut(&mut self) -> Result<()> {
        let kind = if self.chunks { 'c' } else { 'b' };
        let name = format!("{}/{:04}/{kind}{:08}", self.base, self.shard, self.parts.len());
        let plain = std::mem::take(&mut self.buf);
        let Written { len, digest } =
            self.tier.put_object(ObjectKind::MetaPart, name.clone(), plain).await.map_err(EngineError::Tier)?;
        self.parts.push(PartRef { shard: self.shard, name, len, digest, chunks: self.chunks });
        Ok(())
    }

    async fn finish(mut self) -> Result<Vec<PartRef>> {
        if !self.buf.is_empty() {
            self.cut().await?;
        }
        Ok(self.parts)
    }
}

fn tier_of(s: &Shard) -> Result<std::sync::Arc<Tier>> {
    s.node.tier.clone().ok_or_else(|| EngineError::Tier("no tier is configured".into()))
}

/// Step 2 on one shard: its containers (the catalog shard) and committed blobs.
async fn export_blobs(s: Rc<Shard>, base: String) -> Result<(Vec<PartRef>, ManifestCounts)> {
    let mut w = PartWriter::new(tier_of(&s)?, base, s.index as u32, false);
    let mut counts = ManifestCounts::default();
    // Everything committed before the cut is in the index, or resident and seen over it.
    s.flush_index().await?;
    if s.index == crate::CATALOG_SHARD {
        let containers = s.meta.borrow().state().containers.clone();
        for ((account, name), container) in containers {
            w.push(&ExportItem::Container { account, name, container }).await?;
            counts.containers += 1;
        }
    }
    let mut from = Some(Vec::new());
    while let Some(at) = from {
        let page = scan_blobs(&s.meta, at, 1024).await?;
        for (key, blob) in page.items {
            // A blob of a deleted container (its purge not done yet) is not the container's now.
            if s.node.container(&key.account, &key.container).map(|c| c.id) != Some(blob.container_id) {
                continue;
            }
            counts.blobs += 1;
            counts.bytes += blob.size;
            counts.blocks += blob.blocks.len() as u64;
            let head = ExportItem::Blob { key, blob: Box::new(blob.head()), blocks: blob.blocks.len() as u32 };
            w.push(&head).await?;
            for b in blob.blocks {
                w.push(&ExportItem::Block(b)).await?;
            }
        }
        from = page.next;
    }
    Ok((w.finish().await?, counts))
}

/// Step 4 on one shard: the places of the chunks it counts that are in packs, and those packs.
/// Also returns the bound below which this shard's pack numbers are covered by the epoch: every
/// pack committed before the scan began (numbers only grow within a process), whose chunks the
/// scan finds where that pack holds them.
async fn export_chunks(s: Rc<Shard>, base: String) -> Result<(Vec<PartRef>, Vec<PackRef>, u64, u64)> {
    let mut w = PartWriter::new(tier_of(&s)?, base, s.index as u32, true);
    s.flush_index().await?;
    let covers = s.meta.borrow().state().packs.keys().next_back().map_or(0, |n| n + 1);
    let mut used = BTreeSet::new();
    let mut chunks = 0;
    let mut from = Some(Vec::new());
    while let Some(at) = from {
        let page = scan_chunks_seen(&s.meta, at, 4096).await?;
        for e in page.items {
            if let Some(packed) = e.location.packed() {
                used.insert(packed.pack);
                chunks += 1;
                w.push(&ExportItem::Chunk { chunk: e.chunk, packed }).await?;
            }
        }
        from = page.next;
    }
    // Packs are forgotten only a grace after their last chunk left: those the scan found are
    // all still known.
    let packs: Vec<_> = {
        let meta = s.meta.borrow();
        used.iter().map(|n| meta.state().packs.get(n).cloned().ok_or(*n)).collect()
    };
    let mut refs = Vec::with_capacity(packs.len());
    for p in packs {
        let p = p.map_err(|n| EngineError::Tier(format!("shard {} forgot pack {n} during an epoch", s.index)))?;
        refs.push(PackRef { shard: s.index as u32, generation: p.generation, number: p.number, len: p.len });
        w.push(&ExportItem::Pack(p)).await?;
    }
    Ok((w.finish().await?, refs, chunks, covers))
}

/// Steps 1 and 3 on every shard: counted, then packed.
async fn settle(s: &Rc<Shard>) -> Result<()> {
    for i in 0..s.peers.len() {
        s.peers
            .call(i, |s| async move {
                crate::counts::drained(&s).await;
                super::flush(&s).await
            })
            .await??;
    }
    Ok(())
}

/// Runs an epoch now (on the catalog shard; one at a time).
pub async fn take(s: &Rc<Shard>) -> Result<EpochReport> {
    let tier = tier_of(s)?;
    let _one = s.tier.epoch.lock().await;
    // A node just started claims its generation first.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while tier.generation().is_none() && tier.fenced().is_none() && std::time::Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let generation = match (tier.fenced(), tier.generation()) {
        (Some(why), _) => return Err(EngineError::Tier(why)),
        (None, Some(g)) => g,
        (None, None) => return Err(EngineError::Tier("the tier's generation is not claimed yet".into())),
    };
    let cut_ns = now_ns();
    let started = std::time::Instant::now();
    let previous = manifests(&tier).await?.pop();
    let epoch = previous.as_ref().map_or(1, |(_, e, _)| e + 1);
    let base = format!("meta/{generation:016x}/{epoch:016x}");
    settle(s).await?;
    let mut parts = Vec::new();
    let mut counts = ManifestCounts::default();
    for i in 0..s.peers.len() {
        let base = base.clone();
        let (p, c) = s.peers.call(i, move |s| export_blobs(s, base)).await??;
        parts.extend(p);
        counts.containers += c.containers;
        counts.blobs += c.blobs;
        counts.blocks += c.blocks;
        counts.bytes += c.bytes;
    }
    settle(s).await?;
    let mut packs = Vec::new();
    let mut covers = Vec::new();
    for i in 0..s.peers.len() {
        let base = base.clone();
        let (p, k, chunks, c) = s.peers.call(i, move |s| export_chunks(s, base)).await??;
        parts.extend(p);
        packs.extend(k);
        counts.chunks += chunks;
        covers.push(c);
    }
    // A pack dead at step 4 is deleted only a grace later: an epoch that took longer might
    // name one already gone.
    if started.elapsed() >= tier.gc_grace / 2 {
        return Err(EngineError::Tier(format!(
            "epoch {epoch} took {:?}, past half the collection's grace ({:?}); it is not committed",
            started.elapsed(),
            tier.gc_grace
        )));
    }
    let mut tier_generation = 0;
    for i in 0..s.peers.len() {
        tier_generation =
            tier_generation.max(s.peers.call(i, |s| async move { s.meta.borrow().state().tier_generation }).await?);
    }
    let sb = &s.node.sb;
    let layout = &s.node.layout;
    let devices: Vec<u64> = match layout.devices() {
        1 => Vec::new(),
        n => (0..n).map(|d| layout.device_len(d)).collect(),
    };
    let manifest = Manifest {
        version: Manifest::version_for(&devices),
        epoch,
        generation,
        cut_ns,
        written_ns: now_ns(),
        geometry: Geometry { device_len: sb.device_len, shards: s.node.layout.shards(), format_version: sb.version },
        secret: sb.secret.to_vec(),
        tier_generation,
        parts: parts.clone(),
        packs: packs.clone(),
        previous: previous.map(|(_, _, name)| name),
        counts: counts.clone(),
        devices,
    };
    let name = manifest_name(generation, epoch);
    tier.put_object(ObjectKind::Manifest, name.clone(), manifest.encode()).await.map_err(EngineError::Tier)?;
    // Only now may the shards release local copies of what these packs hold.
    for (i, c) in covers.into_iter().enumerate() {
        s.peers.call(i, move |s| async move { s.tier.covered_below.set(s.tier.covered_below.get().max(c)) }).await?;
    }
    tier.stats.last_epoch_cut_ns.fetch_max(manifest.cut_ns.max(0) as u64, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(epoch, manifest = %name, parts = parts.len(), packs = packs.len(), blobs = counts.blobs, "epoch committed to the tier");
    Ok(EpochReport { epoch, manifest: name, parts: parts.len(), packs: packs.len(), counts })
}

/// Reads and opens manifest `name`.
pub async fn read_manifest(tier: &Tier, name: &str) -> Result<Manifest> {
    let bytes = tier.get_object(ObjectKind::Manifest, name.to_owned(), None).await.map_err(EngineError::Tier)?;
    Manifest::decode(&bytes).map_err(|e| EngineError::Tier(format!("{name}: {e}")))
}

/// The restore points kept of `all` (oldest first, as [`manifests`] lists them): the newest
/// `kept`. The collection keeps what they name, the pruning deletes the rest, `tier verify`
/// checks them: one rule for the three.
fn kept_of(all: &[(u64, u64, String)], kept: usize) -> &[(u64, u64, String)] {
    &all[all.len().saturating_sub(kept)..]
}

/// The packs the newest `kept` manifests name, by shard: the collection never deletes them. An
/// error (a failed listing or read) means nothing may be deleted.
pub async fn retained_packs(tier: &Tier, kept: usize) -> Result<BTreeMap<u32, BTreeSet<(u64, u64)>>> {
    let all = manifests(tier).await?;
    let mut out: BTreeMap<u32, BTreeSet<(u64, u64)>> = BTreeMap::new();
    for (_, _, name) in kept_of(&all, kept) {
        for p in read_manifest(tier, name).await?.packs {
            out.entry(p.shard).or_default().insert((p.generation, p.number));
        }
    }
    Ok(out)
}

/// Checks the newest `kept` manifests (the restore points): each opens, each part it names is
/// in the tier with its length and digest and opens, and each pack it names is there with its
/// length. Returns the manifests checked and what is wrong, one line each; an error only when
/// the tier cannot be listed.
pub async fn check_restore_points(tier: &Tier, kept: usize) -> Result<(usize, Vec<String>)> {
    let all = manifests(tier).await?;
    let mut problems = Vec::new();
    let newest = kept_of(&all, kept);
    let prefix = super::remote::node_prefix(&tier.node);
    for (_, _, name) in newest {
        let m = match read_manifest(tier, name).await {
            Ok(m) => m,
            Err(e) => {
                problems.push(format!("{name}: {e}"));
                continue;
            }
        };
        for p in &m.parts {
            let expect = Some(Written { len: p.len, digest: p.digest });
            if let Err(e) = tier.get_object(ObjectKind::MetaPart, p.name.clone(), expect).await {
                problems.push(format!("{name}: part {}: {e}", p.name));
            }
        }
        for p in &m.packs {
            let id = edgeblob_tier::PackId { node: tier.node, generation: p.generation, shard: p.shard, seq: p.number };
            let full = format!("{prefix}/{}", id.name());
            let got = tier
                .run(move |remote, _| async move { remote.properties(&full).await.map_err(|e| e.to_string()) })
                .await;
            match got {
                Ok(Some(props)) if props.len == p.len => {}
                Ok(Some(props)) => {
                    problems.push(format!("{name}: pack {} is {} bytes, not {}", id.name(), props.len, p.len))
                }
                Ok(None) => problems.push(format!("{name}: pack {} is missing", id.name())),
                Err(e) => problems.push(format!("{name}: pack {}: {e}", id.name())),
            }
        }
    }
    Ok((newest.len(), problems))
}

/// What a pruning of restore points deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub manifests: u64,
    pub parts: u64,
}

/// A part's name parsed: (generation, epoch).
fn parse_part_name(name: &str) -> Option<(u64, u64)> {
    let mut it = name.strip_prefix("meta/")?.split('/');
    Some((u64::from_str_radix(it.next()?, 16).ok()?, u64::from_str_radix(it.next()?, 16).ok()?))
}

/// Deletes the manifests past the newest `kept`, and every metadata part that no kept manifest
/// names and that is older than the newest manifest (a part of a pruned epoch, or of one that
/// failed before its manifest; parts of an epoch newer than every manifest may be one being
/// written). The packs the deleted manifests alone named are then the collection's to take. On
/// the catalog shard, within its collection; a failed listing or read deletes nothing.
pub async fn prune(tier: &Tier, kept: usize) -> Result<Pruned> {
    let all = manifests(tier).await?;
    let Some(newest) = all.last().map(|(g, e, _)| (*g, *e)) else { return Ok(Pruned::default()) };
    let split = all.len() - kept_of(&all, kept).len();
    let mut named = std::collections::HashSet::new();
    for (_, _, name) in kept_of(&all, kept) {
        named.extend(read_manifest(tier, name).await?.parts.into_iter().map(|p| p.name));
    }
    let prefix = super::remote::node_prefix(&tier.node);
    let parts = tier.list(&format!("{prefix}/meta/")).await.map_err(EngineError::Tier)?;
    let mut pruned = Pruned::default();
    for full in parts {
        let Some(name) = full.strip_prefix(&prefix).and_then(|n| n.strip_prefix('/')) else { continue };
        let old = parse_part_name(name).is_some_and(|at| at < newest);
        if old && !named.contains(name) {
            tier.delete(&full).await.map_err(EngineError::Tier)?;
            pruned.parts += 1;
        }
    }
    for (_, _, name) in &all[..split] {
        tier.delete(&format!("{prefix}/{name}")).await.map_err(EngineError::Tier)?;
        pruned.manifests += 1;
    }
    Ok(pruned)
}

/// The catalog shard's loop: an epoch every `epoch_interval` (none when it is zero).
pub async fn run(s: Rc<Shard>) {
    let Some(tier) = s.node.tier.clone().filter(|t| !t.passive) else { return };
    if tier.epoch_interval.is_zero() {
        return;
    }
    let mut last: Option<std::time::Instant> = None;
    loop {
        // Early when a shard past its high watermark has nothing covered to release, but not
        // sooner than a minute after the last: an epoch rewrites all metadata.
        tokio::select! {
            _ = tokio::time::sleep(tier.epoch_interval) => {}
            _ = async {
                tier.epoch_wanted.notified().await;
                let spacing = std::time::Duration::from_secs(60).min(tier.epoch_interval);
                if let Some(t) = last {
                    tokio::time::sleep(spacing.saturating_sub(t.elapsed())).await;
                }
            } => {}
        }
        last = Some(std::time::Instant::now());
        if tier.fenced().is_some() {
            return;
        }
        if let Err(e) = take(&s).await {
            tracing::warn!(%e, "an epoch of the tier failed; the next one tries again");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn manifest_names_sort_by_generation_then_epoch() {
        let a = super::manifest_name(2, 0x10);
        let b = super::manifest_name(3, 1);
        assert!(a < b);
        assert_eq!(super::parse_manifest_name(&a), Some((2, 0x10)));
        assert_eq!(super::parse_manifest_name("manifest/zz-1"), None);
    }
}
