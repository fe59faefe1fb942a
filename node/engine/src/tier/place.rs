//! Where a chunk is now, as the shard that counts it says, and reading it from there.

use std::rc::Rc;

use bytes::Bytes;
use edgeblob_meta::index::shard::Want;
use edgeblob_meta::model::{ChunkRef, Location};
use edgeblob_meta::shard_store;
use edgeblob_tier::ChunkInfo;

use super::remote::TierPlace;
use crate::error::{EngineError, Result};
use crate::shard::Shard;

/// Where a chunk's bytes are.
#[derive(Debug, Clone)]
pub enum Where {
    /// On flash at this offset.
    Local(u64),
    /// In the tier only.
    Tier(TierPlace),
}

pub fn info(c: &ChunkRef) -> ChunkInfo {
    ChunkInfo { offset: c.offset, hash: c.hash, len: c.len, stored_len: c.stored_len, flags: c.flags }
}

/// On the chunk's counting shard: where it is. A chunk not in the chunk table (its count not
/// delivered yet, or a format 1 node) was never released: it is where it was written.
pub async fn locate(s: &Rc<Shard>, c: ChunkRef) -> Result<Where> {
    if !s.node.counts_kept() {
        return Ok(Where::Local(c.offset));
    }
    shard_store::resident(&s.meta, &[Want::Chunk(c.id())]).await?;
    let meta = s.meta.borrow();
    let Some(e) = meta.state().chunks.get(&c.id()) else { return Ok(Where::Local(c.offset)) };
    match e.location {
        Location::Local { offset } | Location::Both { offset, .. } => Ok(Where::Local(offset)),
        Location::Tiered { packed } => {
            let pack = meta.state().packs.get(&packed.pack).ok_or_else(|| {
                EngineError::Corrupt(format!(
                    "chunk at {} is in pack {}, which shard {} does not know",
                    c.offset, packed.pack, s.index
                ))
            })?;
            Ok(Where::Tier(TierPlace {
                header: pack.header.clone(),
                entry: packed.entry,
                at: packed.at,
                chunk: info(&c),
            }))
        }
    }
}

/// A chunk's logical bytes from the tier, checked: the seal (by the tier thread), then the
/// length and, where the reader knows the account the chunk was hashed for, its keyed hash,
/// before a byte is returned.
pub async fn read_from_tier(s: &Shard, c: &ChunkRef, place: TierPlace, account: Option<&str>) -> Result<Bytes> {
    let Some(tier) = &s.node.tier else {
        return Err(EngineError::Tier(format!(
            "the chunk at {} is in the tier, and this node has no tier configured",
            c.offset
        )));
    };
    let stored = tier.fetch(place).await.map_err(EngineError::Tier)?;
    let damaged = |why: String| {
        super::stats::TierStats::bump(&tier.stats.integrity_errors, 1);
        tracing::error!(offset = c.offset, %why, "a chunk from the tier is damaged");
        EngineError::Corrupt(why)
    };
    if stored.len() != c.stored_len as usize {
        return Err(damaged(format!("a chunk from the tier of {} stored bytes, not {}", stored.len(), c.stored_len)));
    }
    let data = if c.is_compressed() { Bytes::from(s.reducer.decompress(&stored, c.len as usize)?) } else { stored };
    if data.len() != c.len as usize {
        return Err(damaged(format!("a chunk from the tier of {} bytes, not {}", data.len(), c.len)));
    }
    if let Some(account) = account {
        if s.reducer.hash(account, &data) != c.hash {
            return Err(damaged(format!("the chunk at {} read from the tier does not match its hash", c.offset)));
        }
    }
    Ok(data)
}
