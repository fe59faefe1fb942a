//! The read data path: any shard reads any region (reads need no ownership). Only the pages that
//! cover the requested bytes are read for a raw chunk; a compressed chunk is read whole and
//! decompressed. Every page is verified before a byte of it is returned.

use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;
use edgeblob_io::page;
use edgeblob_io::PAGE_SIZE;
use edgeblob_meta::model::ChunkRef;
use tokio::task::JoinHandle;

use super::error::{EngineError, Result};
use super::ops::at;
use super::plan::Segments;
use super::refs::ReadGuard;
use super::shard::Shard;
use super::tier::hydrate;
use super::tier::place::{self, Where};

/// Logical bytes `[from, to)` of a chunk, from flash or, once released, from the tier.
/// `account`, where known, is the account the chunk was hashed for: a chunk from the tier is
/// checked against its hash with it.
pub async fn read_chunk(shard: &Rc<Shard>, c: &ChunkRef, from: u32, to: u32, account: Option<&str>) -> Result<Bytes> {
    debug_assert!(from < to && to <= c.len, "range {from}..{to} of a {}-byte chunk", c.len);
    shard.node.policy.touch(c.offset);
    if let Some(whole) = shard.cache.get(c).filter(|_| cache_may_serve(shard, c)) {
        return Ok(whole.slice(from as usize..to as usize));
    }
    let keep = shard.cache.wants(c);
    let mut offset = c.offset;
    if shard.node.released.maybe(c.offset, || shard.node.ref_owner(c)) {
        let counter = shard.node.ref_owner(c);
        let chunk = *c;
        match at(shard, counter, move |s| async move { place::locate(&s, chunk).await }).await?? {
            Where::Local(o) => offset = o,
            Where::Tier(p) => {
                if hydrate::wanted(c, from, to) {
                    // Random access: the chunk goes back to flash, behind this read.
                    let (place, chunk, s) = (p.clone(), *c, shard.clone());
                    tokio::task::spawn_local(async move {
                        let _ = at(&s, counter, move |s| async move { hydrate::start(&s, chunk, place) }).await;
                    });
                }
                let whole = place::read_from_tier(shard, c, p, account).await?;
                if keep {
                    shard.cache.insert(c, whole.clone());
                }
                return Ok(whole.slice(from as usize..to as usize));
            }
        }
    }
    if c.is_compressed() {
        let data = read_compressed(shard, c, offset).await?;
        if keep {
            shard.cache.insert(c, data.clone());
        }
        return Ok(data.slice(from as usize..to as usize));
    }
    if keep {
        // A chunk the cache keeps is read whole, so the next read of any part of it hits. If a
        // page elsewhere in it is damaged, the pages asked for may still be whole: read those.
        if let Ok(whole) = read_plain(shard, c, offset, 0, c.len).await {
            shard.cache.insert(c, whole.clone());
            return Ok(whole.slice(from as usize..to as usize));
        }
    }
    read_plain(shard, c, offset, from, to).await
}

/// Whether a cached copy of `c` may answer: not one that may have come from the tier while the
/// tier is closed (its key revoked makes every tiered chunk unreadable, decoded copies too).
fn cache_may_serve(shard: &Shard, c: &ChunkRef) -> bool {
    // The released map first: one atomic load, where the tier's state takes a lock.
    shard
        .node
        .tier
        .as_ref()
        .is_none_or(|tier| !shard.node.released.maybe(c.offset, || shard.node.ref_owner(c)) || tier.is_ready())
}

fn corrupt(c: &ChunkRef, e: page::PageCorrupt) -> EngineError {
    tracing::error!(offset = c.offset, page = e.page, "chunk fails its checksum");
    EngineError::Corrupt(format!("chunk at device offset {}: {e}", c.offset))
}

/// Bytes `[from, to)` of an uncompressed chunk at `offset`: only the pages that hold them.
async fn read_plain(shard: &Shard, c: &ChunkRef, offset: u64, from: u32, to: u32) -> Result<Bytes> {
    let (first, skip) = page::locate(from as u64);
    let (last, _) = page::locate(to as u64 - 1);
    let n = (last - first + 1) as usize;
    let buf = shard.pool.get(n * PAGE_SIZE);
    let (res, buf) = shard.dev.read(buf, offset + first * PAGE_SIZE as u64).await;
    res?;
    let mut out = vec![0u8; (to - from) as usize];
    page::decode(&buf[..n * PAGE_SIZE], c.seed(), first, skip, &mut out).map_err(|e| corrupt(c, e))?;
    Ok(Bytes::from(out))
}

/// All logical bytes of a compressed chunk at `offset`.
async fn read_compressed(shard: &Shard, c: &ChunkRef, offset: u64) -> Result<Bytes> {
    let frame = read_stored(shard, c, offset).await?;
    Ok(Bytes::from(shard.reducer.decompress(&frame, c.len as usize)?))
}

/// A chunk's stored stream (its zstd frame, or its raw bytes), read from its pages at `offset`
/// and checked: what the tier uploads, as it is.
pub async fn read_stored(shard: &Shard, c: &ChunkRef, offset: u64) -> Result<Vec<u8>> {
    let n = c.pages() as usize;
    let buf = shard.pool.get(n * PAGE_SIZE);
    let (res, buf) = shard.dev.read(buf, offset).await;
    res?;
    let mut stored = vec![0u8; c.stored_len as usize];
    page::decode(&buf[..n * PAGE_SIZE], c.seed(), 0, 0, &mut stored).map_err(|e| corrupt(c, e))?;
    Ok(stored)
}

/// Streams the segments of a read with read-ahead. Holds a read guard so that no extent it may
/// read is reused before it is done.
pub struct BlobReader {
    shard: Rc<Shard>,
    /// The account the blob is in: its chunks were hashed for it.
    account: Rc<str>,
    plan: Segments,
    inflight: VecDeque<JoinHandle<Result<Bytes>>>,
    depth: usize,
    _guard: ReadGuard,
}

impl BlobReader {
    pub fn new(shard: Rc<Shard>, account: Rc<str>, segments: Segments, guard: ReadGuard) -> BlobReader {
        let depth = shard.node.config.io_depth;
        BlobReader { shard, account, plan: segments, inflight: VecDeque::new(), depth, _guard: guard }
    }

    /// The next piece of the blob, in order; None at the end.
    pub async fn next(&mut self) -> Option<Result<Bytes>> {
        if self.inflight.is_empty() && self.plan.at_most_one_left() {
            // Nothing to overlap with (small reads, or the last piece): read in place.
            let (c, from, to) = self.plan.pop_front()?;
            return Some(read_chunk(&self.shard, &c, from, to, Some(&self.account)).await);
        }
        while self.inflight.len() < self.depth {
            let Some((c, from, to)) = self.plan.pop_front() else { break };
            let (shard, account) = (self.shard.clone(), self.account.clone());
            self.inflight.push_back(tokio::task::spawn_local(async move {
                read_chunk(&shard, &c, from, to, Some(&account)).await
            }));
        }
        let h = self.inflight.pop_front()?;
        Some(h.await.unwrap_or_else(|e| Err(EngineError::Io(std::io::Error::other(e.to_string())))))
    }

    /// The pieces as a stream, for response bodies and copies.
    pub fn into_stream(self) -> impl futures::Stream<Item = std::io::Result<Bytes>> + 'static {
        futures::stream::unfold(self, |mut r| async move {
            let piece = r.next().await?;
            Some((piece.map_err(|e| std::io::Error::other(e.to_string())), r))
        })
    }

    /// Reads everything left into one buffer (tests and small objects).
    pub async fn read_all(mut self) -> Result<Bytes> {
        let mut out = Vec::new();
        while let Some(piece) = self.next().await {
            out.extend_from_slice(&piece?);
        }
        Ok(Bytes::from(out))
    }
}

impl Drop for BlobReader {
    fn drop(&mut self) {
        for h in &self.inflight {
            h.abort();
        }
    }
}
