//! Chunk references counted: what a change takes, drops or releases.
//!
//! A block list may name one block many times (Azure allows it; a 4 TiB blob of 50,000 blocks
//! may be one staged block of 100 MiB listed 50,000 times), and the block's chunk list is then
//! shared, not copied. Counting references a chunk list at a time keeps the work and the memory
//! proportional to the distinct chunk lists, not to the blob's size: such a blob releases 100
//! chunks with 50,000 references each, not five million references one by one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::model::{Block, ChunkId, ChunkRef, RefChange};

/// Chunks, each with a number of references (at least one). A chunk may appear more than once;
/// its references are then the sum.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RefCounts(Vec<(ChunkRef, u32)>);

impl RefCounts {
    /// One reference on each chunk.
    pub fn one_each(chunks: impl IntoIterator<Item = ChunkRef>) -> RefCounts {
        RefCounts(chunks.into_iter().map(|c| (c, 1)).collect())
    }

    /// One reference per chunk of one block (nothing to group: one list).
    pub fn of_block(b: &Block) -> RefCounts {
        RefCounts::one_each(b.chunks.iter().copied())
    }

    /// One reference per chunk of each block, counted a chunk list at a time.
    pub fn of_blocks<'a>(blocks: impl IntoIterator<Item = &'a Block>) -> RefCounts {
        let mut out = RefCounts::default();
        out.add_blocks(blocks);
        out
    }

    pub fn add(&mut self, c: ChunkRef, n: u32) {
        debug_assert!(n > 0, "a count holds at least one reference");
        self.0.push((c, n));
    }

    pub fn add_blocks<'a>(&mut self, blocks: impl IntoIterator<Item = &'a Block>) {
        // By the list's address, in first-seen order (frees then happen in block order).
        let mut lists: Vec<(&'a Arc<[ChunkRef]>, u32)> = Vec::new();
        let mut seen: HashMap<*const ChunkRef, usize> = HashMap::new();
        for b in blocks {
            if b.chunks.is_empty() {
                continue;
            }
            let at = *seen.entry(b.chunks.as_ptr()).or_insert_with(|| {
                lists.push((&b.chunks, 0));
                lists.len() - 1
            });
            lists[at].1 += 1;
        }
        for (list, n) in lists {
            self.0.extend(list.iter().map(|c| (*c, n)));
        }
    }

    pub fn append(&mut self, mut other: RefCounts) {
        self.0.append(&mut other.0);
    }

    pub fn iter(&self) -> impl Iterator<Item = &(ChunkRef, u32)> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One record's adds and drops as one net change per chunk, in the order chunks first
    /// appear; a chunk the record adds as often as it drops has none. Netting is exact within
    /// one record: what it drops, its shard held before it, so the count was at least that
    /// (never across records: a chunk one record adds and a later one drops must still reach
    /// its counting shard, whose count for it may go from none to none, a free).
    pub fn changes(adds: &RefCounts, drops: &RefCounts) -> Vec<RefChange> {
        let adds = adds.iter().map(|(c, n)| RefChange { chunk: *c, add: *n, drop: 0 });
        let drops = drops.iter().map(|(c, n)| RefChange { chunk: *c, add: 0, drop: *n });
        let mut out = merge_changes(adds.chain(drops));
        for c in &mut out {
            let both = c.add.min(c.drop);
            (c.add, c.drop) = (c.add - both, c.drop - both);
        }
        out.retain(|c| c.add > 0 || c.drop > 0);
        out
    }

    /// Every reference, one by one (tests and small lists).
    pub fn total(&self) -> u64 {
        self.0.iter().map(|(_, n)| *n as u64).sum()
    }

    /// Split by `key` (the shard that counts each chunk, or holds it).
    pub fn split_by<K: Ord>(self, key: impl Fn(&ChunkRef) -> K) -> BTreeMap<K, RefCounts> {
        let mut out: BTreeMap<K, RefCounts> = BTreeMap::new();
        for (c, n) in self.0 {
            out.entry(key(&c)).or_default().0.push((c, n));
        }
        out
    }
}

/// The net change of reference counts between the references a change adds and those it drops.
/// References added are taken before the change is logged (the chunks are alive: held by the
/// old version or by staged blocks); references dropped are given back only once the change is
/// durable, so space is never reused while a durable record may still point at it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RefDelta {
    pub take: RefCounts,
    pub give_back: RefCounts,
}

impl RefDelta {
    pub fn between(added: RefCounts, dropped: RefCounts) -> RefDelta {
        // By offset, in first-seen order, so that frees are deterministic.
        let mut net: Vec<(ChunkRef, i64)> = Vec::new();
        let mut at: HashMap<u64, usize> = HashMap::new();
        let signed =
            added.0.into_iter().map(|(c, n)| (c, n as i64)).chain(dropped.0.into_iter().map(|(c, n)| (c, -(n as i64))));
        for (c, n) in signed {
            let i = *at.entry(c.offset).or_insert_with(|| {
                net.push((c, 0));
                net.len() - 1
            });
            debug_assert_eq!(net[i].0, c, "two chunks at one offset");
            net[i].1 += n;
        }
        let mut d = RefDelta::default();
        for (c, n) in net {
            match n {
                0 => {}
                n if n > 0 => d.take.add(c, n as u32),
                n => d.give_back.add(c, n.unsigned_abs() as u32),
            }
        }
        d
    }
}

/// Changes merged into one per chunk (adds summed, drops summed), in the order chunks first
/// appear.
pub fn merge_changes(changes: impl IntoIterator<Item = RefChange>) -> Vec<RefChange> {
    let mut at: HashMap<ChunkId, usize> = HashMap::new();
    let mut out: Vec<RefChange> = Vec::new();
    for c in changes {
        match at.get(&c.chunk.id()) {
            Some(&i) => {
                let m = &mut out[i];
                let sum = |a: u32, b: u32| a.checked_add(b).expect("fewer than 4 billion references to one chunk");
                (m.add, m.drop) = (sum(m.add, c.add), sum(m.drop, c.drop));
            }
            None => {
                at.insert(c.chunk.id(), out.len());
                out.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(offset: u64) -> ChunkRef {
        ChunkRef { hash: [offset as u8; 16], offset, stored_len: 10, len: 10, flags: 0 }
    }

    fn block(chunks: &Arc<[ChunkRef]>) -> Block {
        Block { id: b"x".to_vec(), size: 10 * chunks.len() as u64, chunks: chunks.clone() }
    }

    #[test]
    fn a_block_listed_many_times_is_counted_once_per_chunk() {
        let a: Arc<[ChunkRef]> = vec![chunk(4096), chunk(8192)].into();
        let b: Arc<[ChunkRef]> = vec![chunk(8192)].into();
        let blocks: Vec<Block> = (0..50_000).map(|i| if i % 2 == 0 { block(&a) } else { block(&b) }).collect();
        let counts = RefCounts::of_blocks(&blocks);
        assert_eq!(
            counts.iter().copied().collect::<Vec<_>>(),
            vec![(chunk(4096), 25_000), (chunk(8192), 25_000), (chunk(8192), 25_000)]
        );
        assert_eq!(counts.total(), blocks.iter().map(|b| b.chunks.len() as u64).sum::<u64>());
    }

    #[test]
    fn one_records_changes_net_out() {
        let (a, b, c) = (chunk(4096), chunk(8192), chunk(12288));
        // A block list over staged blocks: each chunk added to the blob and dropped from the
        // staged list, nothing to count; a chunk listed twice, one more.
        let got =
            RefCounts::changes(&RefCounts(vec![(a, 1), (b, 2), (c, 1)]), &RefCounts(vec![(a, 1), (b, 1), (c, 3)]));
        assert_eq!(got, vec![RefChange { chunk: b, add: 1, drop: 0 }, RefChange { chunk: c, add: 0, drop: 2 }]);
    }

    #[test]
    fn ref_delta_cancels_shared_references() {
        let (a, b, c) = (chunk(4096), chunk(8192), chunk(12288));
        let d = RefDelta::between(RefCounts::one_each([a, b, b]), RefCounts::one_each([b, c]));
        assert_eq!(d.take, RefCounts(vec![(a, 1), (b, 1)]));
        assert_eq!(d.give_back, RefCounts(vec![(c, 1)]));
        let d = RefDelta::between(RefCounts(vec![(a, 3)]), RefCounts(vec![(a, 1), (a, 2)]));
        assert!(d.take.is_empty() && d.give_back.is_empty());
    }
}
