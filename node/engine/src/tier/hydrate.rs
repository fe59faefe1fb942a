//! Promotion: a chunk in the tier only that a random read touched goes back to flash, to the
//! place its id names (its first page is still held for it: `ChunkEntry::local_extent`), when
//! the rest of that place is free; it is then in the tier and on flash (`Location::Both`), and
//! may be released again like any. A read smaller than its chunk is taken as random access; a
//! read of whole chunks (a sequential scan, a whole GET) promotes nothing. Best effort and
//! bounded: at most [`IN_FLIGHT`] promotions per shard at once, the rest skipped.

use std::rc::Rc;

use edgeblob_io::{page, Extent, PAGE_SIZE};
use edgeblob_meta::index::shard::Want;
use edgeblob_meta::model::{ChunkRef, Location};
use edgeblob_meta::wal::AppendError;
use edgeblob_meta::{shard_store, Record};

use super::remote::TierPlace;
use crate::error::Result;
use crate::shard::Shard;

/// Promotions a shard runs at once.
pub const IN_FLIGHT: usize = 8;

/// Whether a read of `[from, to)` of chunk `c` asks for its promotion.
pub fn wanted(c: &ChunkRef, from: u32, to: u32) -> bool {
    to - from < c.len
}

/// On the chunk's counting shard: starts its promotion unless as many run already.
pub fn start(s: &Rc<Shard>, c: ChunkRef, place: TierPlace) {
    if s.tier.promoting.get() >= IN_FLIGHT {
        return;
    }
    s.tier.promoting.set(s.tier.promoting.get() + 1);
    let s = s.clone();
    tokio::task::spawn_local(async move {
        if let Err(e) = promote(&s, c, place).await {
            tracing::debug!(shard = s.index, offset = c.offset, %e, "a chunk was not promoted to flash");
        }
        s.tier.promoting.set(s.tier.promoting.get() - 1);
    });
}

fn still_tiered(s: &Shard, c: &ChunkRef) -> bool {
    matches!(s.meta.borrow().state().chunks.get(&c.id()).map(|e| e.location), Some(Location::Tiered { .. }))
}

/// Writes chunk `c`'s stored stream back to its first place and logs `ChunkHydrated`.
pub(crate) async fn promote(s: &Rc<Shard>, c: ChunkRef, place: TierPlace) -> Result<bool> {
    let Some(tier) = s.node.tier.clone() else { return Ok(false) };
    // A node short of a device writes nothing; its reads are served from the tier as they are.
    if s.node.read_only().is_some() {
        return Ok(false);
    }
    shard_store::resident(&s.meta, &[Want::Chunk(c.id())]).await?;
    if !still_tiered(s, &c) {
        return Ok(false);
    }
    // The first page is the chunk's own; the rest of its place must be free.
    let rest = Extent { offset: c.offset + PAGE_SIZE as u64, len: (c.pages() - 1) * PAGE_SIZE as u64 };
    if rest.len > 0 {
        let mut space = s.space.borrow_mut();
        // Space freed by the release waits until no read that began before it runs.
        space.reclaim(s.node.epochs.horizon());
        if space.alloc.reserve(rest).is_err() {
            return Ok(false);
        }
    }
    let give_back = |s: &Shard| {
        if rest.len > 0 {
            s.space.borrow_mut().alloc.free(rest);
        }
    };
    // From the tier thread's recent chunks when the read that asked has just fetched it.
    let stored = match tier.fetch(place).await {
        Ok(b) if b.len() == c.stored_len as usize => b,
        _ => {
            give_back(s);
            return Ok(false);
        }
    };
    let pages = c.pages() as usize;
    let mut buf = s.pool.get(pages * PAGE_SIZE);
    page::encode(&stored, c.seed(), &mut buf);
    let (res, _) = s.dev.write(buf, c.offset).await;
    if let Err(e) = res {
        give_back(s);
        return Err(e.into());
    }
    s.dev.flush().await.inspect_err(|_| give_back(s))?;
    // Checked and committed with no await between: a chunk freed or changed meanwhile keeps
    // its state, and the space goes back.
    loop {
        if let Err(e) = s.log_ready().await {
            give_back(s);
            return Err(e);
        }
        shard_store::resident(&s.meta, &[Want::Chunk(c.id())]).await.inspect_err(|_| give_back(s))?;
        if !still_tiered(s, &c) {
            give_back(s);
            return Ok(false);
        }
        let commit = match s.meta.borrow_mut().commit(Record::ChunkHydrated { chunk: c.id() }) {
            Ok(commit) => commit,
            Err(AppendError::Busy) => continue,
            Err(e) => {
                give_back(s);
                return Err(e.into());
            }
        };
        commit.durable.await?;
        if let Some(t) = &s.node.tier {
            super::stats::TierStats::bump(&t.stats.promotions, 1);
        }
        return Ok(true);
    }
}
