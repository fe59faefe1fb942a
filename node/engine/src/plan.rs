//! Which bytes of which chunks a read covers, walked lazily.
//!
//! A blob of 50,000 blocks of 100 MiB has five million chunks. A plan that listed them all would
//! hold 240 MB for one GET of the whole blob, and finding a range by walking every chunk would
//! cost a shard milliseconds per request. So the plan keeps the blocks the range spans (each a
//! shared chunk list, found by their sizes) and yields chunk segments as the reader asks for them.

use std::sync::Arc;

use edgeblob_meta::model::{Block, ChunkRef};

/// Logical bytes `[from, to)` of a chunk.
pub type Segment = (ChunkRef, u32, u32);

/// The segments covering logical bytes `[start, end)` of a blob, in order.
#[derive(Debug, Clone, Default)]
pub struct Segments {
    /// The blocks the range spans, each with the bytes of it wanted: `[from, to)` of the block.
    blocks: Vec<(Arc<[ChunkRef]>, u64, u64)>,
    /// Where the walk is: the block, the next chunk in it, and that chunk's first byte in it.
    cursor: Cursor,
}

#[derive(Debug, Clone, Copy, Default)]
struct Cursor {
    block: usize,
    chunk: usize,
    at: u64,
}

impl Segments {
    pub fn new(blocks: &[Block], start: u64, end: u64) -> Segments {
        let mut out = Vec::new();
        let mut pos = 0u64;
        for b in blocks {
            let (bs, be) = (pos, pos + b.size);
            pos = be;
            if be <= start || b.size == 0 {
                continue;
            }
            if bs >= end {
                break;
            }
            out.push((b.chunks.clone(), start.max(bs) - bs, end.min(be) - bs));
        }
        Segments { blocks: out, cursor: Cursor::default() }
    }

    /// The next segment, if any.
    pub fn pop_front(&mut self) -> Option<Segment> {
        let (seg, next) = self.step(self.cursor)?;
        self.cursor = next;
        Some(seg)
    }

    /// Whether at most one segment is left (then a read has nothing to overlap with).
    pub fn at_most_one_left(&self) -> bool {
        self.step(self.cursor).is_none_or(|(_, next)| self.step(next).is_none())
    }

    pub fn is_empty(&self) -> bool {
        self.step(self.cursor).is_none()
    }

    fn step(&self, mut cur: Cursor) -> Option<(Segment, Cursor)> {
        loop {
            let (chunks, from, to) = self.blocks.get(cur.block)?;
            let Some(c) = chunks.get(cur.chunk) else {
                debug_assert!(cur.at >= *to, "a block's chunks cover its size");
                cur = Cursor { block: cur.block + 1, chunk: 0, at: 0 };
                continue;
            };
            let (cs, ce) = (cur.at, cur.at + c.len as u64);
            cur.chunk += 1;
            cur.at = ce;
            if ce <= *from {
                continue;
            }
            if cs >= *to {
                cur = Cursor { block: cur.block + 1, chunk: 0, at: 0 };
                continue;
            }
            let seg = (*c, (from.max(&cs) - cs) as u32, (to.min(&ce) - cs) as u32);
            return Some((seg, cur));
        }
    }
}

impl Iterator for Segments {
    type Item = Segment;

    fn next(&mut self) -> Option<Segment> {
        self.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(len: u32, offset: u64) -> ChunkRef {
        ChunkRef { hash: [0; 16], offset, stored_len: len, len, flags: 0 }
    }

    fn block(chunks: Vec<ChunkRef>) -> Block {
        Block { id: Vec::new(), size: chunks.iter().map(|c| c.len as u64).sum(), chunks: chunks.into() }
    }

    fn spans(blocks: &[Block], start: u64, end: u64) -> Vec<(u64, u32, u32)> {
        Segments::new(blocks, start, end).map(|(c, a, b)| (c.offset, a, b)).collect()
    }

    #[test]
    fn a_plan_covers_exactly_the_range() {
        let blocks = [block(vec![c(10, 0), c(10, 4096)]), block(vec![]), block(vec![c(5, 8192)])];
        assert_eq!(spans(&blocks, 8, 22), [(0, 8, 10), (4096, 0, 10), (8192, 0, 2)]);
        assert_eq!(spans(&blocks, 0, 25).len(), 3);
        assert!(spans(&blocks, 25, 25).is_empty());
        assert_eq!(spans(&blocks, 10, 20), [(4096, 0, 10)]);
        assert_eq!(spans(&blocks, 21, 23), [(8192, 1, 3)]);
        // Every byte range of the blob, against a walk of every chunk.
        let flat: Vec<(u64, u64, u64)> = [(0u64, 0u64, 10u64), (10, 4096, 10), (20, 8192, 5)].to_vec();
        for start in 0..=25 {
            for end in start..=25 {
                let want: Vec<(u64, u32, u32)> = flat
                    .iter()
                    .filter(|(cs, _, len)| cs + len > start && *cs < end)
                    .map(|(cs, off, len)| (*off, (start.max(*cs) - cs) as u32, (end.min(cs + len) - cs) as u32))
                    .collect();
                assert_eq!(spans(&blocks, start, end), want, "{start}..{end}");
            }
        }
    }

    #[test]
    fn a_block_listed_many_times_is_walked_without_copies() {
        let one = block(vec![c(10, 0), c(10, 4096)]);
        let blocks: Vec<Block> = (0..50_000).map(|_| one.clone()).collect();
        let mut p = Segments::new(&blocks, 499_995, 500_015);
        assert!(!p.at_most_one_left());
        assert_eq!(p.pop_front().map(|(c, a, b)| (c.offset, a, b)), Some((4096, 5, 10)));
        assert_eq!(p.pop_front().map(|(c, a, b)| (c.offset, a, b)), Some((0, 0, 10)));
        assert!(p.at_most_one_left() && !p.is_empty());
        assert_eq!(p.pop_front().map(|(c, a, b)| (c.offset, a, b)), Some((4096, 0, 5)));
        assert!(p.is_empty() && p.pop_front().is_none());
    }
}
