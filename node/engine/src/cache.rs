//! A per-shard cache of decoded chunks, for what O_DIRECT leaves to us: small objects read over
//! and over (image datasets, every epoch) and compressed chunks (a 4 KiB range of one costs a
//! whole decompression). Large uncompressed chunks are not cached: sequential reads of them run
//! at the device's speed and would only push the small ones out.
//!
//! A chunk is named by its device offset and its keyed content hash together. Extents are
//! reused only after their chunk is freed, and a new chunk written there has a different hash
//! unless it holds the same bytes, so an entry can never answer for other data; stale entries
//! simply age out. Eviction is CLOCK (second chance): a hit sets a flag, the hand clears flags
//! and drops the first entry found without one. Cached bytes were checksum-verified when read.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use edgeblob_meta::model::ChunkRef;

/// Uncompressed chunks up to this size are cached.
pub const SMALL_CHUNK: u32 = 64 << 10;

type Key = (u64, [u8; 16]);

struct Entry {
    data: Bytes,
    referenced: Cell<bool>,
}

pub struct ChunkCache {
    capacity: usize,
    used: Cell<usize>,
    map: RefCell<HashMap<Key, Entry>>,
    hand: RefCell<VecDeque<Key>>,
    pub hits: Cell<u64>,
    pub misses: Cell<u64>,
}

fn key(c: &ChunkRef) -> Key {
    (c.offset, c.hash)
}

impl ChunkCache {
    pub fn new(capacity: usize) -> ChunkCache {
        ChunkCache {
            capacity,
            used: Cell::new(0),
            map: RefCell::default(),
            hand: RefCell::default(),
            hits: Cell::new(0),
            misses: Cell::new(0),
        }
    }

    /// Whether a whole chunk read of `c` should be kept.
    pub fn wants(&self, c: &ChunkRef) -> bool {
        self.capacity > 0 && (c.is_compressed() || c.len <= SMALL_CHUNK) && (c.len as usize) <= self.capacity / 8
    }

    /// The chunk's logical bytes, if cached.
    pub fn get(&self, c: &ChunkRef) -> Option<Bytes> {
        if self.capacity == 0 {
            return None;
        }
        let map = self.map.borrow();
        match map.get(&key(c)) {
            Some(e) => {
                e.referenced.set(true);
                self.hits.set(self.hits.get() + 1);
                debug_assert_eq!(e.data.len(), c.len as usize);
                Some(e.data.clone())
            }
            None => {
                self.misses.set(self.misses.get() + 1);
                None
            }
        }
    }

    /// Keeps a chunk's logical bytes (all of them), making room by CLOCK eviction.
    pub fn insert(&self, c: &ChunkRef, data: Bytes) {
        debug_assert_eq!(data.len(), c.len as usize, "only whole chunks are cached");
        if !self.wants(c) || data.len() != c.len as usize {
            return;
        }
        let mut map = self.map.borrow_mut();
        let mut hand = self.hand.borrow_mut();
        if map.contains_key(&key(c)) {
            return;
        }
        while self.used.get() + data.len() > self.capacity {
            let Some(k) = hand.pop_front() else { break };
            match map.get(&k) {
                Some(e) if e.referenced.get() => {
                    e.referenced.set(false);
                    hand.push_back(k);
                }
                Some(_) => {
                    if let Some(e) = map.remove(&k) {
                        self.used.set(self.used.get() - e.data.len());
                    }
                }
                None => {}
            }
        }
        self.used.set(self.used.get() + data.len());
        map.insert(key(c), Entry { data, referenced: Cell::new(false) });
        hand.push_back(key(c));
        debug_assert!(self.used.get() <= self.capacity, "cache over its capacity");
        debug_assert_eq!(map.len(), hand.len());
    }

    pub fn used(&self) -> usize {
        self.used.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(offset: u64, tag: u8, len: u32) -> ChunkRef {
        ChunkRef { hash: [tag; 16], offset, stored_len: len, len, flags: 0 }
    }

    #[test]
    fn a_chunk_is_found_only_under_its_offset_and_hash() {
        let cache = ChunkCache::new(1 << 20);
        let a = chunk(4096, 1, 4000);
        cache.insert(&a, Bytes::from(vec![7u8; 4000]));
        assert_eq!(cache.get(&a).map(|b| b.len()), Some(4000));
        // The same extent reused for other bytes: another hash, not found.
        assert!(cache.get(&chunk(4096, 2, 4000)).is_none());
        assert!(cache.get(&chunk(8192, 1, 4000)).is_none());
        assert_eq!((cache.hits.get(), cache.misses.get()), (1, 2));
    }

    #[test]
    fn capacity_holds_and_recently_read_chunks_stay() {
        let cache = ChunkCache::new(40_000);
        let chunks: Vec<ChunkRef> = (0..10).map(|i| chunk(i * 4096, i as u8, 4000)).collect();
        for c in &chunks {
            cache.insert(c, Bytes::from(vec![0u8; 4000]));
        }
        assert_eq!(cache.used(), 40_000);
        // Chunk 0 is read, then two more arrive: 0 gets a second chance, 1 and 2 go.
        assert!(cache.get(&chunks[0]).is_some());
        for i in 10..12 {
            let c = chunk(i * 4096, i as u8, 4000);
            cache.insert(&c, Bytes::from(vec![0u8; 4000]));
        }
        assert!(cache.used() <= 40_000);
        assert!(cache.get(&chunks[0]).is_some());
        assert!(cache.get(&chunks[1]).is_none() && cache.get(&chunks[2]).is_none());
        assert!(cache.get(&chunks[3]).is_some());
    }

    #[test]
    fn large_plain_chunks_and_a_zero_capacity_are_not_kept() {
        let cache = ChunkCache::new(64 << 20);
        let big = chunk(0, 1, 1 << 20);
        assert!(!cache.wants(&big));
        let compressed = ChunkRef { flags: edgeblob_meta::model::CHUNK_COMPRESSED, ..big };
        assert!(cache.wants(&compressed));
        let off = ChunkCache::new(0);
        off.insert(&chunk(0, 1, 10), Bytes::from_static(b"0123456789"));
        assert!(off.get(&chunk(0, 1, 10)).is_none());
    }
}
