//! The Azure tier (issue 11; docs/architecture.md, "The tier"): every chunk a shard counts is
//! uploaded soon after it is written, sealed in packs (`edgeblob-tier`), to a remote Blob
//! container (`edgeblob-remote`), and its chunk entry then names its place in the pack beside its
//! local copy (`Location::Both`).
//!
//! Two halves:
//! - on each shard, [`upload::run`] finds the chunks it counts that are only local (a bounded
//!   queue of those newly counted, and a scan of its chunk table at start or when the queue
//!   overflowed), reads their stored streams, cuts them into packs and, once a pack is committed
//!   remotely, logs `Record::PackCommitted`;
//! - one tier thread ([`remote::Tier`]) holds the remote client and the node key: it seals each
//!   pack and uploads it (Put Block of 8 MiB with their MD5, then a create-only Put Block List),
//!   so that neither the sealing nor the network ever runs on a shard's thread.
//!
//! A chunk in the tier may then be released from flash ([`release`]: on request, or past the
//! capacity watermarks); a read of it finds where it is ([`released`], [`place`]) and fetches
//! just that chunk from its pack, once for every reader at the same time.

pub mod epoch;
pub mod fence;
pub mod fetch;
pub mod gc;
pub mod guard;
pub mod hydrate;
pub mod manage;
pub mod objects;
pub mod place;
pub mod policy;
pub mod release;
pub mod released;
pub mod remote;
pub mod replace;
pub mod restore;
pub mod stats;
pub mod upload;
pub mod verify;

pub use released::ReleasedMap;

use std::collections::HashSet;
use std::rc::Rc;

use edgeblob_meta::index::shard::{scan_chunks, wants_of};
use edgeblob_meta::model::ChunkEntry;
use edgeblob_meta::wal::AppendError;
use edgeblob_meta::{shard_store, Record};

use crate::error::Result;
use crate::shard::Shard;

/// Every chunk shard `s` counts, a page of the chunk table at a time; the resident entries,
/// which shadow the index's, come with the last page. Exact on a quiet shard; on a busy one a
/// view that may miss or repeat an entry changed meanwhile (callers check what they act on).
pub(crate) async fn each_chunk(s: &Rc<Shard>, mut f: impl FnMut(&ChunkEntry)) -> Result<()> {
    let mut from = Some(Vec::new());
    while let Some(at) = from {
        let (entries, next) = scan_chunks(&s.meta, at, 4096).await?;
        let resident: Vec<ChunkEntry> = match next {
            None => s.meta.borrow().state().chunks.values().copied().collect(),
            Some(_) => Vec::new(),
        };
        let mut seen = HashSet::new();
        for e in resident.iter().chain(entries.iter()) {
            if seen.insert(e.chunk.id()) {
                f(e);
            }
        }
        from = next;
    }
    Ok(())
}

/// Logs one of the tier's records on shard `s` (its entries made resident first) and waits
/// until it is durable.
pub(crate) async fn log(s: &Rc<Shard>, rec: Record) -> Result<()> {
    log_all(s, vec![rec]).await
}

/// Logs `recs` on shard `s` in order, and waits until the last is durable (and so all: the log
/// is one sequence), so that they share their group commits.
pub(crate) async fn log_all(s: &Rc<Shard>, recs: Vec<Record>) -> Result<()> {
    let mut last = None;
    for rec in recs {
        let wants = wants_of(&rec);
        loop {
            s.log_ready().await?;
            shard_store::resident(&s.meta, &wants).await?;
            match s.meta.borrow_mut().commit(rec.clone()) {
                Ok(c) => last = Some(c.durable),
                Err(AppendError::Busy) => continue,
                Err(e) => return Err(e.into()),
            };
            break;
        }
    }
    if let Some(durable) = last {
        durable.await?;
    }
    Ok(())
}
pub use remote::Tier;
pub use upload::{flush, status, ShardTier, TierStatus};
