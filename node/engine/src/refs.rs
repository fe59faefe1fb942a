//! Reference counts of chunks and the dedup index, and the rule that frees space.
//!
//! A chunk's count lives on one shard: the owner of its hash when the chunk is in the dedup index
//! (`CHUNK_DEDUP`), else the shard whose region holds it. Chunks are written into the region of
//! the shard that counts them, so the two rules agree for every chunk written since; a data file
//! written before may hold dedup chunks in other regions, which a free still reaches.
//!
//! What [`RefTable`] holds depends on the format. In v1 it is every reference, derived at start
//! from every shard's metadata. In v2 the index counts the references of durable records
//! (`counts.rs`) and this table holds only pins: the references of work the index has not counted
//! yet (a body being stored, a record until its changes are delivered). A v2 chunk is freed when
//! it has neither a count nor a pin; that is decided once, at the step that takes the last of
//! either away, with the chunk's entry resident (`Shard::give_back_local`, `counts::log_refs`).
//!
//! When a count reaches zero the extent goes back to the region's shard, which keeps it in limbo
//! until every read that began before the free has ended ([`ReadEpochs`]): a GET that resolved a
//! blob just before it was deleted still reads the bytes it resolved.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use edgeblob_io::{Extent, ExtentAllocator};
use edgeblob_meta::model::ChunkRef;

#[derive(Debug, Default)]
pub struct RefTable {
    counts: HashMap<u64, (ChunkRef, u32)>,
    index: HashMap<[u8; 16], u64>,
}

impl RefTable {
    /// The indexed chunk with this hash, with one more reference taken on it.
    pub fn lookup_take(&mut self, hash: &[u8; 16]) -> Option<ChunkRef> {
        let off = *self.index.get(hash)?;
        let e = self.counts.get_mut(&off).expect("indexed chunks have a count");
        e.1 += 1;
        Some(e.0)
    }

    /// A newly written chunk, with its first reference. Indexed for dedup when flagged so and no
    /// other chunk has the hash yet.
    pub fn register(&mut self, c: ChunkRef) {
        let prev = self.counts.insert(c.offset, (c, 1));
        debug_assert!(prev.is_none(), "chunk at {} registered twice", c.offset);
        if c.is_dedup() {
            self.index.entry(c.hash).or_insert(c.offset);
        }
    }

    /// Pins a chunk `n` more times, whether or not it has pins (format v2, where the table holds
    /// pins only: the chunk's count in the index keeps it meanwhile).
    pub fn pin(&mut self, c: ChunkRef, n: u32) {
        match self.counts.get_mut(&c.offset) {
            Some(e) => {
                debug_assert_eq!(e.0, c, "two chunks at one offset");
                e.1 = e.1.checked_add(n).expect("fewer than 4 billion pins on one chunk");
            }
            None => {
                self.counts.insert(c.offset, (c, n));
                if c.is_dedup() {
                    self.index.entry(c.hash).or_insert(c.offset);
                }
            }
        }
    }

    /// Takes `n` more references on a chunk that has some.
    pub fn take(&mut self, c: &ChunkRef, n: u32) {
        match self.counts.get_mut(&c.offset) {
            Some(e) => e.1 = e.1.checked_add(n).expect("fewer than 4 billion references to one chunk"),
            None => panic!("reference taken on a chunk nobody holds: {c:?}"),
        }
    }

    /// Drops `n` references; returns the chunk when they were the last.
    #[must_use]
    pub fn give_back(&mut self, c: &ChunkRef, n: u32) -> Option<ChunkRef> {
        let e = self.counts.get_mut(&c.offset).unwrap_or_else(|| panic!("reference given back twice: {c:?}"));
        debug_assert_eq!(e.0, *c, "two chunks at one offset");
        e.1 = e.1.checked_sub(n).unwrap_or_else(|| panic!("more references given back than taken: {c:?}"));
        if e.1 > 0 {
            return None;
        }
        let (chunk, _) = self.counts.remove(&c.offset).expect("present");
        if self.index.get(&chunk.hash) == Some(&chunk.offset) {
            self.index.remove(&chunk.hash);
        }
        Some(chunk)
    }

    /// Rebuild at start: `n` references found in metadata.
    pub fn rebuild_add(&mut self, c: &ChunkRef, n: u32) {
        match self.counts.get_mut(&c.offset) {
            Some(_) => self.take(c, n),
            None => {
                self.register(*c);
                if n > 1 {
                    self.take(c, n - 1);
                }
            }
        }
    }

    pub fn count(&self, offset: u64) -> Option<u32> {
        self.counts.get(&offset).map(|e| e.1)
    }

    pub fn chunks(&self) -> impl Iterator<Item = (&ChunkRef, u32)> {
        self.counts.values().map(|(c, n)| (c, *n))
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// Node-wide read epochs. A read enters before it resolves a blob and leaves when it has read
/// everything; a free is stamped with an epoch and its extent is reusable once no read that
/// entered at or before that epoch is still active.
#[derive(Debug, Default)]
pub struct ReadEpochs {
    current: AtomicU64,
    active: Mutex<BTreeMap<u64, usize>>,
}

impl ReadEpochs {
    pub fn enter(self: &Arc<Self>) -> ReadGuard {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        let epoch = self.current.load(Ordering::SeqCst);
        *active.entry(epoch).or_default() += 1;
        ReadGuard { epochs: self.clone(), epoch }
    }

    /// The stamp for a free happening now.
    pub fn stamp(&self) -> u64 {
        self.current.fetch_add(1, Ordering::SeqCst)
    }

    /// Frees stamped below this are safe to reuse.
    pub fn horizon(&self) -> u64 {
        let active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        active.keys().next().copied().unwrap_or(u64::MAX)
    }
}

pub struct ReadGuard {
    epochs: Arc<ReadEpochs>,
    epoch: u64,
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        let mut active = self.epochs.active.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = active.get_mut(&self.epoch) {
            *n -= 1;
            if *n == 0 {
                active.remove(&self.epoch);
            }
        }
    }
}

/// A region's allocator with its limbo of freed extents waiting for reads to drain.
#[derive(Debug)]
pub struct Space {
    pub alloc: ExtentAllocator,
    limbo: VecDeque<(u64, Extent)>,
    /// The extents in limbo by offset (debug builds): a second free of an extent is caught
    /// where it is made, not when the first comes out of limbo.
    #[cfg(debug_assertions)]
    limbo_at: BTreeMap<u64, u64>,
}

impl Space {
    pub fn new(alloc: ExtentAllocator) -> Space {
        Space {
            alloc,
            limbo: VecDeque::new(),
            #[cfg(debug_assertions)]
            limbo_at: BTreeMap::new(),
        }
    }

    pub fn free_later(&mut self, stamp: u64, e: Extent) {
        debug_assert!(self.limbo.back().is_none_or(|(s, _)| *s <= stamp));
        #[cfg(debug_assertions)]
        {
            assert!(!self.any_free(e), "{e:?} freed again: it is free, or in limbo");
            self.limbo_at.insert(e.offset, e.len);
        }
        self.limbo.push_back((stamp, e));
    }

    /// Moves extents whose readers have all left back into the allocator.
    pub fn reclaim(&mut self, horizon: u64) {
        while self.limbo.front().is_some_and(|(s, _)| *s < horizon) {
            let (_, e) = self.limbo.pop_front().expect("checked");
            #[cfg(debug_assertions)]
            self.limbo_at.remove(&e.offset);
            self.alloc.free(e);
        }
    }

    /// Whether any part of `e` is free, or freed and waiting in limbo (debug builds' checks).
    #[cfg(debug_assertions)]
    pub fn any_free(&self, e: Extent) -> bool {
        let in_limbo = self.limbo_at.range(..e.end()).next_back().is_some_and(|(o, l)| o + l > e.offset);
        in_limbo || self.alloc.overlaps_free(e)
    }

    pub fn in_limbo(&self) -> u64 {
        self.limbo.iter().map(|(_, e)| e.len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeblob_meta::model::CHUNK_DEDUP;

    fn chunk(offset: u64, hash: u8, flags: u8) -> ChunkRef {
        ChunkRef { hash: [hash; 16], offset, stored_len: 100, len: 100, flags }
    }

    #[test]
    fn last_reference_frees_and_unindexes() {
        let mut t = RefTable::default();
        let c = chunk(4096, 1, CHUNK_DEDUP);
        t.register(c);
        assert_eq!(t.lookup_take(&c.hash), Some(c));
        assert_eq!(t.count(4096), Some(2));
        assert_eq!(t.give_back(&c, 1), None);
        assert_eq!(t.give_back(&c, 1), Some(c));
        assert_eq!(t.lookup_take(&c.hash), None, "a freed chunk is never a dedup hit");
    }

    #[test]
    fn a_second_chunk_with_the_same_hash_keeps_the_first_indexed() {
        let mut t = RefTable::default();
        let a = chunk(4096, 1, CHUNK_DEDUP);
        let b = chunk(8192, 1, CHUNK_DEDUP);
        t.register(a);
        t.register(b);
        assert_eq!(t.give_back(&b, 1), Some(b));
        assert_eq!(t.lookup_take(&a.hash), Some(a));
    }

    #[test]
    fn limbo_waits_for_earlier_reads() {
        let epochs = Arc::new(ReadEpochs::default());
        let mut space = Space::new(ExtentAllocator::new(Extent { offset: 0, len: 8192 }));
        let e = space.alloc.allocate(4096).unwrap();
        let reader = epochs.enter();
        space.free_later(epochs.stamp(), e);
        let later_reader = epochs.enter();
        space.reclaim(epochs.horizon());
        assert_eq!(space.alloc.free_bytes(), 4096, "still in limbo while the earlier read runs");
        drop(reader);
        space.reclaim(epochs.horizon());
        assert_eq!(space.alloc.free_bytes(), 8192, "a read that began after the free does not hold it");
        drop(later_reader);
    }
}
