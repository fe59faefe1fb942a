//! Garbage in the tier: chunks deleted or overwritten leave dead bytes in their packs.
//!
//! A run on a shard (every `gc_interval`, or when asked) first lists the shard's packs in the
//! tier: if that listing fails, the run ends there and deletes nothing (a failed listing is
//! never "absent", tiering.md 5.9). Then, from one scan of the chunk table:
//! - a pack no chunk is in any more is deleted once it has been seen dead for `gc_grace` (a read
//!   that found a chunk's place before the chunk died may still be fetching), then forgotten
//!   (`Record::PackDeleted`);
//! - packs whose dead bytes are past `repack_above` of their bytes, most garbage first, up to
//!   one pack's worth of live chunks, are repacked: their live chunks (read from flash where
//!   they are there, else from the tier) go into a new pack whose record moves them
//!   (`PackCommitted` with `replaces`), which leaves the old packs dead for a later run;
//! - a pack of this shard under an earlier generation that its table does not hold is an
//!   orphan (uploaded before a crash took its record; its writer is gone) and is deleted.
//!
//! And one rule over all: never a pack one of the newest `manifests_kept` manifests names (a
//! restore point needs it), whoever's generation wrote it; a failed read of them deletes nothing.
//! The catalog shard's run then prunes the older manifests and their metadata
//! ([`super::epoch::prune`]): their packs are collected by later runs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::Instant;

use edgeblob_meta::index::shard::Want;
use edgeblob_meta::model::{ChunkId, ChunkRef, PackInfo};
use edgeblob_meta::shard_store;
use edgeblob_meta::Record;

use super::place::{self, Where};
use super::remote::{node_prefix, TierPlace};
use super::upload::{ship, Packer};
use super::Tier;
use crate::error::{EngineError, Result};
use crate::shard::Shard;

/// What a shard's collection remembers between runs.
#[derive(Debug, Default)]
pub struct GcState {
    pub last: Option<Instant>,
    /// Packs seen with no live chunk, since when.
    dead_since: HashMap<u64, Instant>,
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub packs_deleted: u64,
    pub orphans_deleted: u64,
    pub packs_repacked: u64,
    /// Bytes of the shard's packs in the tier after the run, and of their live chunks (sealed).
    pub pack_bytes: u64,
    pub live_bytes: u64,
    /// Restore points pruned (the catalog shard's run only).
    pub pruned: super::epoch::Pruned,
}

/// Asks shard `s`'s tier loop for a run now, and waits for its report.
pub async fn collect_now(s: &Rc<Shard>) -> Result<GcReport> {
    let Some(tier) = &s.node.tier else { return Err(EngineError::Tier("no tier is configured".into())) };
    // A fenced node's loop has ended: nothing would answer.
    if let Some(why) = tier.fenced() {
        return Err(EngineError::Tier(why));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    s.tier.gc_waiters.borrow_mut().push(tx);
    s.tier.wake.notify_one();
    rx.await.map_err(|_| EngineError::Stopped)?.map_err(EngineError::Tier)
}

/// A pack's name in the tier, parsed: (generation, shard, number).
fn parse_name(name: &str, prefix: &str) -> Option<(u64, u32, u64)> {
    let rest = name.strip_prefix(prefix)?.strip_prefix("/packs/")?;
    let mut parts = rest.split('/');
    let generation = u64::from_str_radix(parts.next()?, 16).ok()?;
    let shard = parts.next()?.parse().ok()?;
    let number = u64::from_str_radix(parts.next()?, 16).ok()?;
    parts.next().is_none().then_some((generation, shard, number))
}

/// One run on shard `s` (its tier loop calls it, between uploads).
pub async fn collect(
    s: &Rc<Shard>,
    tier: &Tier,
    generation: u64,
    next_number: &mut u64,
    max_entries: usize,
) -> Result<GcReport> {
    s.tier.gc.borrow_mut().last = Some(Instant::now());
    let prefix = node_prefix(&tier.node);
    // The listing first: without it, nothing is deleted.
    let listed = tier.list(&format!("{prefix}/packs/")).await.map_err(EngineError::Tier)?;
    let retained = super::epoch::retained_packs(tier, tier.manifests_kept).await?;
    let retained = retained.get(&(s.index as u32)).cloned().unwrap_or_default();
    let mut report = GcReport::default();
    // Live sealed bytes of each pack, from the chunk table.
    let mut live: BTreeMap<u64, u64> = BTreeMap::new();
    each_packed(s, |e, pack| *live.entry(pack).or_default() += e.stored_len as u64 + 16).await?;
    let packs: Vec<PackInfo> = s.meta.borrow().state().packs.values().cloned().collect();
    let now = Instant::now();
    // Dead packs, deleted once dead for the grace.
    for p in &packs {
        let number = p.number;
        if live.contains_key(&number) {
            s.tier.gc.borrow_mut().dead_since.remove(&number);
            continue;
        }
        let since = *s.tier.gc.borrow_mut().dead_since.entry(number).or_insert(now);
        if now.duration_since(since) < tier.gc_grace || retained.contains(&(p.generation, number)) {
            continue;
        }
        // A scan of a busy table may miss an entry: before the delete, every chunk the pack's
        // own footer lists is looked up, and one still placed in it keeps it.
        let entries = tier.footer(p.header.clone(), p.len).await.map_err(EngineError::Tier)?;
        if still_holds(s, number, &entries).await? {
            s.tier.gc.borrow_mut().dead_since.remove(&number);
            continue;
        }
        let id =
            edgeblob_tier::PackId { node: tier.node, generation: p.generation, shard: s.index as u32, seq: number };
        tier.delete(&format!("{prefix}/{}", id.name())).await.map_err(EngineError::Tier)?;
        super::log(s, Record::PackDeleted { number }).await?;
        s.tier.gc.borrow_mut().dead_since.remove(&number);
        report.packs_deleted += 1;
    }
    // Orphans: this shard's packs of an earlier generation that its table does not hold.
    let known: HashSet<(u64, u64)> = packs.iter().map(|p| (p.generation, p.number)).collect();
    for name in &listed {
        let Some((g, shard, number)) = parse_name(name, &prefix) else { continue };
        if shard == s.index as u32
            && g < generation
            && !known.contains(&(g, number))
            && !retained.contains(&(g, number))
        {
            tier.delete(name).await.map_err(EngineError::Tier)?;
            report.orphans_deleted += 1;
        }
    }
    // Repack: the packs with the most garbage past the threshold, one new pack's worth.
    let mut candidates: Vec<(f64, u64, u64)> = packs
        .iter()
        .filter_map(|p| {
            let alive = *live.get(&p.number)?;
            let garbage = 1.0 - alive as f64 / p.len.max(1) as f64;
            (garbage > tier.repack_above).then_some((garbage, p.number, alive))
        })
        .collect();
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut chosen: Vec<u64> = Vec::new();
    let mut budget = 0u64;
    for (_, number, alive) in candidates {
        if !chosen.is_empty() && budget + alive > tier.pack_bytes as u64 {
            break;
        }
        budget += alive;
        chosen.push(number);
    }
    if !chosen.is_empty() {
        let mut chunks: Vec<ChunkRef> = Vec::new();
        each_packed(s, |e, pack| {
            if chosen.contains(&pack) {
                chunks.push(*e);
            }
        })
        .await?;
        // One record must hold them: past that, the rest stay where they are (their packs are
        // then not dead, only less full, and a later run takes them).
        chunks.truncate(max_entries);
        let mut packer = Packer::new(usize::MAX, max_entries);
        let _guard = s.node.epochs.enter();
        for c in &chunks {
            let stored = match place::locate(s, *c).await? {
                Where::Local(offset) => crate::read::read_stored(s, c, offset).await?,
                Where::Tier(p) => fetch_stored(tier, p).await?,
            };
            packer.add_stored(c, stored);
        }
        if !packer.chunks.is_empty() {
            ship(s, tier, &mut packer, generation, next_number, chosen.clone()).await?;
            report.packs_repacked += chosen.len() as u64;
        }
    }
    if s.index == crate::CATALOG_SHARD {
        report.pruned = super::epoch::prune(tier, tier.manifests_kept).await?;
    }
    report.pack_bytes = s.meta.borrow().state().packs.values().map(|p| p.len).sum();
    // A repack moves live chunks and a deleted pack held none: what lives is what the scan found.
    report.live_bytes = live.values().sum();
    Ok(report)
}

async fn fetch_stored(tier: &Tier, p: TierPlace) -> Result<Vec<u8>> {
    Ok(tier.fetch(p).await.map_err(EngineError::Tier)?.to_vec())
}

/// Whether any chunk of `entries` is counted here with its place in pack `number`.
async fn still_holds(s: &Rc<Shard>, number: u64, entries: &[edgeblob_tier::Entry]) -> Result<bool> {
    for batch in entries.chunks(4096) {
        let ids: Vec<ChunkId> = batch.iter().map(|e| ChunkId { offset: e.chunk.offset, hash: e.chunk.hash }).collect();
        let wants: Vec<Want> = ids.iter().map(|id| Want::Chunk(*id)).collect();
        shard_store::resident(&s.meta, &wants).await?;
        let meta = s.meta.borrow();
        let placed = |id: &ChunkId| meta.state().chunks.get(id).and_then(|e| e.location.packed());
        if ids.iter().any(|id| placed(id).is_some_and(|p| p.pack == number)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Every chunk this shard counts that is in a pack, with the pack's number.
async fn each_packed(s: &Rc<Shard>, mut f: impl FnMut(&ChunkRef, u64)) -> Result<()> {
    super::each_chunk(s, |e| {
        if let Some(p) = e.location.packed() {
            f(&e.chunk, p.pack);
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn pack_names_parse_back() {
        let id = edgeblob_tier::PackId { node: [3; 16], generation: 0x1f, shard: 7, seq: 0x2a };
        let prefix = super::node_prefix(&id.node);
        assert_eq!(super::parse_name(&format!("{prefix}/{}", id.name()), &prefix), Some((0x1f, 7, 0x2a)));
        assert_eq!(super::parse_name(&format!("{prefix}/keys/node"), &prefix), None);
        assert_eq!(super::parse_name(&format!("other/{}", id.name()), &prefix), None);
    }
}
