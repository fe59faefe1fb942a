//! Releasing local copies: a chunk on flash and in the tier keeps only its place in the tier,
//! and its space goes back to the allocator.
//!
//! A released chunk keeps the first page of its place (`ChunkEntry::local_extent`), so that no
//! chunk of the same id is written there while it lives; a chunk of one page is not released.
//! A chunk is released on the shard that counts it, by one record (`ChunksReleased`), never
//! while something holds a pin on it (a write that found it as a duplicate, a record whose count
//! is not delivered yet): a pinned chunk's space is freed by its pin's owner, which must find it
//! still there. The granule of each chunk is marked in the node's released map before the
//! record is logged, and its space freed only once the record is durable, through the read
//! epochs (reads that began before keep it until they end).
//!
//! Only chunks of packs a committed manifest names are released (`ShardTier::covered_below`):
//! a copy released before a manifest named its pack would be in no restore point's packs while
//! the blobs that hold it already are in the next one. A shard past its watermark with nothing
//! covered asks for an epoch early; an explicit release ([`crate::Node::tier_release`]) takes
//! one first.

use std::rc::Rc;

use edgeblob_io::{Extent, PAGE_SIZE};
use edgeblob_meta::index::shard::{scan_chunks, Want};
use edgeblob_meta::model::{ChunkEntry, ChunkId, Location};
use edgeblob_meta::wal::AppendError;
use edgeblob_meta::{shard_store, Record};

use crate::error::Result;
use crate::shard::Shard;

/// Chunks one record releases at most (its record stays small: 24 bytes a chunk).
const BATCH: usize = 4096;

/// Releases the local copies of chunks this shard counts that are also in the tier, the coldest
/// first (see [`super::policy`]), until `bytes` of space are freed (None: every one idle for
/// `release_idle_secs`). Returns the bytes freed.
///
/// Bounded: one scan of the chunk table counts what each access stamp could free and picks the
/// newest stamp that must go; then every chunk older than it is released, and chunks of that
/// stamp until enough is (two more scans, not a sort of the table in memory).
pub async fn release(s: &Rc<Shard>, bytes: Option<u64>) -> Result<u64> {
    if !s.node.counts_kept() || !s.node.policy.kept_ready() {
        return Ok(0);
    }
    let idle_below = s.node.policy.idle_below();
    let Some(want) = bytes else {
        return release_where(s, None, |stamp| stamp <= idle_below).await;
    };
    let mut by_stamp = std::collections::BTreeMap::<u16, u64>::new();
    super::each_chunk(s, |e| {
        if let Some((_, rest)) = releasable(s, e) {
            *by_stamp.entry(s.node.policy.stamp(e.chunk.offset)).or_default() += rest.len;
        }
    })
    .await?;
    let mut sum = 0;
    let Some(edge) = by_stamp.range(..=idle_below).find_map(|(&stamp, &n)| {
        sum += n;
        (sum >= want).then_some(stamp)
    }) else {
        // Not enough idle: all of it.
        return release_where(s, None, |stamp| stamp <= idle_below).await;
    };
    let mut freed = 0;
    if by_stamp.range(..edge).next().is_some() {
        freed = release_where(s, None, |stamp| stamp < edge).await?;
    }
    if freed < want {
        freed += release_where(s, Some(want - freed), |stamp| stamp == edge).await?;
    }
    Ok(freed)
}

/// Releases, in the chunk table's order, the chunks whose access stamp passes `pick`, until
/// `bytes` are freed (None: all of them).
async fn release_where(s: &Rc<Shard>, bytes: Option<u64>, pick: impl Fn(u16) -> bool) -> Result<u64> {
    let mut freed = 0u64;
    let mut from = Some(Vec::new());
    let policy = &s.node.policy;
    while let Some(at) = from {
        let (entries, next) = scan_chunks(&s.meta, at, BATCH).await?;
        // Each with what it frees (its place but the first page).
        let chosen = |e: &ChunkEntry| {
            releasable(s, e).filter(|_| pick(policy.stamp(e.chunk.offset))).map(|(id, rest)| (id, rest.len))
        };
        let mut picked: Vec<(ChunkId, u64)> = entries.iter().filter_map(chosen).collect();
        if next.is_none() {
            let meta = s.meta.borrow();
            picked.extend(meta.state().chunks.values().filter_map(chosen));
            picked.sort_unstable_by_key(|(id, _)| *id);
            picked.dedup_by_key(|(id, _)| *id);
        }
        if let Some(b) = bytes {
            // No more than is wanted.
            let mut sum = freed;
            let n = picked
                .iter()
                .take_while(|(_, g)| {
                    let before = sum;
                    sum += g;
                    before < b
                })
                .count();
            picked.truncate(n);
        }
        let ids: Vec<ChunkId> = picked.into_iter().map(|(id, _)| id).collect();
        for batch in ids.chunks(BATCH) {
            freed += release_batch(s, batch).await?;
        }
        if bytes.is_some_and(|b| freed >= b) {
            return Ok(freed);
        }
        from = next;
    }
    Ok(freed)
}

/// The space chunk `e` would give back if released now, with its id: on flash and in a pack a
/// restore point names, not pinned by a write, not kept by a rule, and more than its first page
/// (which stays, holding the id's place: `ChunkEntry::local_extent`).
fn releasable(s: &Shard, e: &ChunkEntry) -> Option<(ChunkId, Extent)> {
    let len = e.chunk.extent().len.checked_sub(PAGE_SIZE as u64).filter(|l| *l > 0)?;
    match e.location {
        Location::Both { offset, packed } if offset == e.chunk.offset && packed.pack < s.tier.covered_below.get() => {
            let free = s.refs.borrow().count(e.chunk.offset).is_none() && s.node.policy.may_release(offset);
            free.then_some((e.chunk.id(), Extent { offset: offset + PAGE_SIZE as u64, len }))
        }
        _ => None,
    }
}

/// Releases those of `ids` that are still on flash and in the tier, and unpinned.
pub(crate) async fn release_batch(s: &Rc<Shard>, ids: &[ChunkId]) -> Result<u64> {
    release_chosen(s, ids, |e| releasable(s, e)).await
}

/// Releases those of `ids` that `choose` picks (each with the space it frees), in one record;
/// returns the bytes freed.
pub(crate) async fn release_chosen(
    s: &Rc<Shard>,
    ids: &[ChunkId],
    choose: impl Fn(&ChunkEntry) -> Option<(ChunkId, Extent)>,
) -> Result<u64> {
    let wants: Vec<Want> = ids.iter().map(|id| Want::Chunk(*id)).collect();
    loop {
        s.log_ready().await?;
        shard_store::resident(&s.meta, &wants).await?;
        let (commit, extents) = {
            let mut meta = s.meta.borrow_mut();
            let (chunks, extents): (Vec<ChunkId>, Vec<Extent>) =
                ids.iter().filter_map(|id| choose(meta.state().chunks.get(id)?)).unzip();
            if chunks.is_empty() {
                return Ok(0);
            }
            // Before the record: a reader that finds the mark clear began before the release.
            for id in &chunks {
                s.node.released.mark(id.offset);
            }
            match meta.commit(Record::ChunksReleased { chunks }) {
                Ok(c) => (c, extents),
                Err(AppendError::Busy) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        commit.durable.await?;
        let n = extents.iter().map(|e| e.len).sum();
        s.free_extents(extents.into_iter().filter(|e| e.len > 0).collect());
        return Ok(n);
    }
}

/// Whether this shard holds packs no manifest of this process names yet (their chunks' local
/// copies wait for the next epoch).
pub fn uncovered(s: &Shard) -> bool {
    s.meta.borrow().state().packs.keys().next_back().is_some_and(|n| *n >= s.tier.covered_below.get())
}

/// The bytes past which this shard releases (its region's data area in use above the high
/// watermark), down to the low one; 0 when below.
pub fn over_watermark(s: &Shard, high: f64, low: f64) -> u64 {
    let (_, area) = s.node.layout.data_area(s.index as u32);
    let free = s.space.borrow().alloc.free_bytes();
    let used = area.saturating_sub(free);
    if (used as f64) < high * area as f64 {
        return 0;
    }
    used.saturating_sub((low * area as f64) as u64)
}
