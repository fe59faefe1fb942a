//! Space for a shard's metadata index (format v2): the index grows into segments of its shard's
//! data area that the shard grants it ahead of need, so that a flush never finds the device
//! full. Data writes leave a reserve of the area free for that; when even the reserve cannot give
//! the next flush its room, the shard admits only changes that shrink its metadata (deletes),
//! which is how it makes room again (docs/architecture.md, "Metadata at scale").

use std::cell::Cell;
use std::sync::Arc;

use edgeblob_io::ExtentAllocator;
use edgeblob_meta::index::region::Segments;

/// Pages a flush may write per entry: its leaf and, rarely all new, the branches above it.
const BYTES_PER_ENTRY: u64 = 2 * 4096;

pub struct IndexSpace {
    pub segments: Arc<Segments>,
    pub segment_len: u64,
    /// The segments the index held when the shard opened: the allocator reserves them at start.
    pub held: Vec<u64>,
    /// Bytes of the data area that data writes leave free for the index.
    pub reserve: u64,
    /// Segments granted since the shard opened.
    granted: Cell<usize>,
}

impl IndexSpace {
    pub fn new(segments: Arc<Segments>, segment_len: u64, held: Vec<u64>, data_len: u64) -> IndexSpace {
        let reserve = (4 * segment_len).max(data_len / 64);
        IndexSpace { segments, segment_len, held, reserve, granted: Cell::new(0) }
    }

    /// Bytes of the data area given to the index: held, taken, or granted and spare.
    pub fn bytes(&self) -> u64 {
        (self.held.len() + self.granted.get()) as u64 * self.segment_len
    }

    /// Bytes the index takes on the device now, about (segments held or taken since).
    fn in_use(&self) -> u64 {
        let taken = self.granted.get().saturating_sub(self.segments.spare());
        (self.held.len() + taken) as u64 * self.segment_len
    }

    /// Spare segments the next flush may need: one page path per entry it writes, but never more
    /// than rewriting the whole index and the new bytes twice over (copy-on-write frees the old
    /// pages only after the commit), and two segments besides.
    pub fn wanted(&self, dirty_entries: usize, dirty_bytes: usize) -> usize {
        let by_entries = dirty_entries as u64 * BYTES_PER_ENTRY;
        let by_size = self.in_use() + 4 * dirty_bytes as u64;
        (by_entries.min(by_size).div_ceil(self.segment_len) + 2) as usize
    }

    /// Grants segments from `alloc` until `want` are spare; false when the area cannot give them.
    pub fn top_up(&self, alloc: &mut ExtentAllocator, want: usize) -> bool {
        let mut spare = self.segments.spare();
        while spare < want {
            let Some(e) = alloc.allocate(self.segment_len) else { return false };
            debug_assert_eq!(e.len, self.segment_len);
            self.segments.grant([e.offset]);
            self.granted.set(self.granted.get() + 1);
            spare += 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use edgeblob_io::Extent;

    use super::*;

    #[test]
    fn grants_follow_the_next_flush_and_stop_at_a_full_area() {
        const SEG: u64 = 1 << 20;
        let space = IndexSpace::new(Arc::new(Segments::default()), SEG, vec![0], 64 * SEG);
        assert_eq!(space.reserve, 4 * SEG);
        assert_eq!(space.wanted(0, 0), 2, "an idle index keeps two spare");
        assert_eq!(space.wanted(1000, 100_000), 4, "a small index needs no more than its size and its new bytes");
        assert_eq!(space.wanted(10, 100_000), 3, "nor more than a page path per entry");
        let mut alloc = ExtentAllocator::new(Extent { offset: 16 * SEG, len: 8 * SEG });
        assert!(space.top_up(&mut alloc, 5));
        assert_eq!((space.segments.spare(), alloc.free_bytes()), (5, 3 * SEG));
        assert!(space.top_up(&mut alloc, 5), "nothing more when the want is met");
        assert_eq!(alloc.free_bytes(), 3 * SEG);
        assert!(!space.top_up(&mut alloc, 9), "a full area says so");
        assert_eq!((space.segments.spare(), alloc.free_bytes()), (8, 0));
    }
}
