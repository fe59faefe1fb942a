//! The write data path, on the shard that received the request: cut the body into chunks, hash,
//! dedup, compress, frame into pages and write into this shard's own region. Several chunks of one
//! body are in flight at once; the body is never held whole.

use std::collections::VecDeque;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use edgeblob_io::page;
use edgeblob_io::{Extent, PAGE_SIZE};
use edgeblob_meta::model::{ChunkRef, CHUNK_COMPRESSED, CHUNK_DEDUP};
use edgeblob_meta::refs::RefCounts;
use futures::{Stream, StreamExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinHandle;

use super::error::{EngineError, Result};
use super::ops::at;
use super::read::read_chunk;
use super::shard::{NodeShared, Shard};

/// The chunks a body was stored as; one reference is held on each for the caller.
#[derive(Debug, Default)]
pub struct Stored {
    pub chunks: Vec<ChunkRef>,
    pub len: u64,
}

impl Stored {
    /// Gives back the references the body's chunks hold (a body refused after it was stored).
    pub fn give_back(self, shard: &Rc<Shard>) {
        shard.give_back_refs(RefCounts::one_each(self.chunks));
    }
}

/// Stores a body of at most `max_len` bytes for `account` (dedup is within an account) on the
/// device of shard `owner` (the blob's owner: a blob's bytes lie where its metadata does, so a
/// lost device takes no other device's blobs). On error, every reference taken is given back.
pub async fn store_body<S>(shard: &Rc<Shard>, account: &str, owner: usize, body: S, max_len: u64) -> Result<Stored>
where
    S: Stream<Item = std::io::Result<Bytes>> + Unpin,
{
    // Chunks are cut at whole pages of payload, so a chunk fills its pages exactly.
    let chunk_size = logical_chunk_size(shard.node.config.chunk_size);
    let depth = shard.node.config.io_depth;
    let mut body = body;
    let account: Rc<str> = account.into();
    let mut acc = BytesMut::new();
    // The budget held for the bytes in `acc`: a partial chunk counts as much as a whole one in
    // flight, so a thousand slow uploads cannot each hold a chunk's worth outside the budget.
    let mut held = Budget::new(shard);
    let mut inflight: VecDeque<JoinHandle<Result<ChunkRef>>> = VecDeque::new();
    let mut out = Stored::default();
    let mut failure: Option<EngineError> = None;

    'body: loop {
        let piece = match body.next().await {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                failure = Some(EngineError::Body(e.to_string()));
                break;
            }
            None => break,
        };
        out.len += piece.len() as u64;
        if out.len > max_len {
            failure = Some(EngineError::BodyTooLarge);
            break;
        }
        // Waits for room before taking the bytes: past the budget the upload stops here, and so
        // stops reading its socket (TCP backpressure).
        held.cover(acc.len() + piece.len()).await;
        acc.extend_from_slice(&piece);
        while acc.len() >= chunk_size {
            let chunk = acc.split_to(chunk_size).freeze();
            let permit = held.split_off(acc.len());
            inflight.push_back(tokio::task::spawn_local(budgeted(
                shard.clone(),
                account.clone(),
                owner,
                chunk,
                permit,
            )));
            if inflight.len() >= depth {
                if let Err(e) = collect(inflight.pop_front(), &mut out.chunks).await {
                    failure = Some(e);
                    break 'body;
                }
            }
        }
    }
    if failure.is_none() && !acc.is_empty() {
        let permit = held.split_off(0);
        inflight.push_back(tokio::task::spawn_local(budgeted(
            shard.clone(),
            account.clone(),
            owner,
            acc.freeze(),
            permit,
        )));
    }
    while let Some(h) = inflight.pop_front() {
        if let Err(e) = collect(Some(h), &mut out.chunks).await {
            failure.get_or_insert(e);
        }
    }
    match failure {
        None => {
            debug_assert_eq!(out.chunks.iter().map(|c| c.len as u64).sum::<u64>(), out.len);
            Ok(out)
        }
        Some(e) => {
            shard.give_back_refs(RefCounts::one_each(std::mem::take(&mut out.chunks)));
            Err(e)
        }
    }
}

/// Stores a chunk while holding its share of the shard's write budget.
async fn budgeted(
    shard: Rc<Shard>,
    account: Rc<str>,
    owner: usize,
    data: Bytes,
    _permit: Option<OwnedSemaphorePermit>,
) -> Result<ChunkRef> {
    store_chunk(shard, &account, owner, data).await
}

/// The write budget is counted in units of this many bytes.
pub const BUDGET_UNIT: usize = 1024;

/// Units of the write budget that cover `bytes`.
pub fn budget_units(bytes: usize) -> usize {
    bytes.div_ceil(BUDGET_UNIT)
}

/// A request's share of its shard's write budget for the bytes it holds but has not stored yet.
struct Budget {
    sem: std::sync::Arc<tokio::sync::Semaphore>,
    held: Option<OwnedSemaphorePermit>,
}

impl Budget {
    fn new(shard: &Shard) -> Budget {
        Budget { sem: shard.write_budget.clone(), held: None }
    }

    fn units(&self) -> usize {
        self.held.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Grows the share to cover `bytes`, waiting for room.
    async fn cover(&mut self, bytes: usize) {
        let need = budget_units(bytes).saturating_sub(self.units());
        if need == 0 {
            return;
        }
        let more = self.sem.clone().acquire_many_owned(need as u32).await.expect("the budget is never closed");
        match self.held.as_mut() {
            Some(p) => p.merge(more),
            None => self.held = Some(more),
        }
    }

    /// Hands over all of the share but what covers the `keep` bytes still held.
    fn split_off(&mut self, keep: usize) -> Option<OwnedSemaphorePermit> {
        let give = self.units().saturating_sub(budget_units(keep));
        debug_assert!(budget_units(keep) <= self.units(), "bytes held beyond the budget taken");
        if give == self.units() {
            self.held.take()
        } else {
            self.held.as_mut().and_then(|p| p.split(give))
        }
    }
}

/// Logical bytes per chunk for a configured on-disk chunk size.
pub fn logical_chunk_size(chunk_size: usize) -> usize {
    chunk_size / PAGE_SIZE * page::PAGE_PAYLOAD
}

async fn collect(h: Option<JoinHandle<Result<ChunkRef>>>, into: &mut Vec<ChunkRef>) -> Result<()> {
    let Some(h) = h else { return Ok(()) };
    let c = h.await.map_err(|e| EngineError::Io(std::io::Error::other(e.to_string())))??;
    into.push(c);
    Ok(())
}

/// The shards a chunk tries after `first`'s region is full: the others on its device, then the
/// rest, each in turn from the next.
fn spill_order(node: &NodeShared, first: usize) -> impl Iterator<Item = usize> {
    let n = node.shards();
    let device = node.device_of(first);
    let next = (1..n).map(move |i| (first + i) % n);
    let (near, far): (Vec<usize>, Vec<usize>) = next.partition(|&s| node.device_of(s) == device);
    near.into_iter().chain(far)
}

/// Stores one chunk, or finds an identical one already stored; returns it with a reference
/// taken for the caller.
///
/// The chunk is written into the region of the shard that counts its references (its hash owner
/// on `owner`'s device with dedup on, else this shard or, when this shard is on another device,
/// `owner`), so a chunk's count, its dedup entry and its extent are facts
/// of one shard: freeing it touches no other shard, and its chunk table and the allocator's image
/// can be kept by that shard alone (docs/architecture.md, "Metadata at scale", item 6).
pub async fn store_chunk(shard: Rc<Shard>, account: &str, owner: usize, data: Bytes) -> Result<ChunkRef> {
    let hash = shard.reducer.hash(account, &data);
    let mut dedup = shard.node.config.dedup;
    let device = shard.node.device_of(owner);
    let mut counter = match dedup {
        true => shard.node.hash_owner(&hash, device),
        false if shard.node.device_of(shard.index) == device => shard.index,
        false => owner,
    };
    // Without dedup a chunk goes where its request arrived, if on the owner's device. When the
    // region it goes to is full, it goes to the next one with room, as a chunk that is not
    // deduplicated (counted where it lies): a single client's connection lands on one shard and
    // must not fill that region while the others stand empty, nor its hash owner's region refuse
    // it while others have room. The regions of the same device first: a blob spread over
    // devices is lost with any of them.
    let mut spill = None;
    // Room for the chunk uncompressed: compression runs only on a miss, after this hop, and
    // gives back what it saves.
    let room = (page::pages_for(data.len()) * PAGE_SIZE) as u64;
    let extent = loop {
        match at(&shard, counter, move |s| async move { s.place_chunk(&hash, dedup, room).await }).await?? {
            Placed::Room(e) => break e,
            Placed::Full => {
                dedup = false;
                let order = spill.get_or_insert_with(|| spill_order(&shard.node, counter));
                counter = order.next().ok_or(EngineError::OutOfSpace)?;
            }
            Placed::Found(existing) => {
                // A hash match is a candidate, not a proof: compare the bytes.
                match read_chunk(&shard, &existing, 0, existing.len, None).await {
                    Ok(bytes) if bytes == data => {
                        shard.node.policy.touch(existing.offset);
                        return Ok(existing);
                    }
                    Ok(_) => tracing::warn!(offset = existing.offset, "chunk hash collision; storing the chunk apart"),
                    Err(e) => {
                        tracing::error!(offset = existing.offset, %e, "dedup candidate unreadable; storing the chunk apart")
                    }
                }
                shard.give_back_refs(RefCounts::one_each([existing]));
                dedup = false;
            }
        }
    };
    let mut flags = if dedup { CHUNK_DEDUP } else { 0 };
    let compressed = shard.reducer.compress(&data)?;
    if compressed.is_some() {
        flags |= CHUNK_COMPRESSED;
    }
    let stored: &[u8] = compressed.as_deref().unwrap_or(&data);
    let pages = page::pages_for(stored.len());
    let used = Extent { offset: extent.offset, len: (pages * PAGE_SIZE) as u64 };
    let spare = Extent { offset: used.end(), len: extent.len - used.len };
    let chunk = ChunkRef { hash, offset: used.offset, stored_len: stored.len() as u32, len: data.len() as u32, flags };
    debug_assert_eq!(shard.node.ref_owner(&chunk), counter, "a chunk lies in the region of the shard that counts it");
    let mut buf = shard.pool.get(pages * PAGE_SIZE);
    page::encode(stored, chunk.seed(), &mut buf);
    let (res, _) = shard.dev.write(buf, used.offset).await;
    if let Err(e) = res {
        // Nothing refers to the extent yet: it can go straight back.
        let _ = at(&shard, counter, move |s| async move { s.unplace(extent, None) }).await;
        return Err(e.into());
    }
    shard.node.policy.touch(chunk.offset);
    // Awaited: the count must exist before any other shard can give back a reference to it.
    at(&shard, counter, move |s| async move { s.unplace(spare, Some(chunk)) }).await?;
    Ok(chunk)
}

/// Where a chunk goes, as its counting shard answers.
#[derive(Debug)]
pub enum Placed {
    /// A stored chunk with the same hash, with a reference taken for the caller.
    Found(ChunkRef),
    /// Room in the counting shard's region.
    Room(Extent),
    /// The region has no room.
    Full,
}
