//! Space for a shard's metadata index (format v2): the index grows into segments of its shard's
//! data area that the shard sets aside ahead of need (spares), so that a flush never finds the
//! device full. A reserve of spares is kept from data whatever happens, and kept across a
//! restart (the index header names the spares); spares above what the index may need are given
//! back to data only when data has no other room. Which changes are admitted is decided by the
//! index against the spares it holds ([`edgeblob_meta::index::room`]; docs/architecture.md,
//! "Metadata at scale").

use edgeblob_io::{Extent, ExtentAllocator};
use edgeblob_meta::index::room::{Load, Room};

/// The fewest spares kept: two small flushes (in flight and next), each of which may straddle
/// a segment, and room for deletes.
const MIN_RESERVE: usize = 4;

pub struct IndexSpace {
    pub room: Room,
    /// The segments the index held when the shard opened: the allocator reserves them at start.
    pub held: Vec<u64>,
    /// The spares the index header named when the shard opened: granted again at start where
    /// they are still free.
    pub spares_at_open: Vec<u64>,
    /// Spare segments kept from data: a sixty-fourth of the data area, and never fewer than
    /// [`MIN_RESERVE`].
    pub reserve: usize,
}

impl IndexSpace {
    pub fn new(room: Room, held: Vec<u64>, spares_at_open: Vec<u64>, data_len: u64) -> IndexSpace {
        let reserve = (data_len / 64).div_ceil(room.segment_len).max(MIN_RESERVE as u64) as usize;
        IndexSpace { room, held, spares_at_open, reserve }
    }

    pub fn segment_len(&self) -> u64 {
        self.room.segment_len
    }

    /// Bytes of the data area the index holds: taken, or spare.
    pub fn bytes(&self) -> u64 {
        let s = &self.room.segments;
        (s.taken() + s.spare()) as u64 * self.room.segment_len
    }

    /// Spares to hold for the flush in flight and the next ([`Room::wanted`]), and never fewer
    /// than the reserve.
    pub fn wanted(&self, flight: Load, next: Load) -> usize {
        self.room.wanted(flight, next).max(self.reserve)
    }

    /// Grants segments from `alloc` until `want` are spare; false when the area cannot give them.
    pub fn top_up(&self, alloc: &mut ExtentAllocator, want: usize) -> bool {
        let seg = self.room.segment_len;
        let mut spare = self.room.segments.spare();
        while spare < want {
            let Some(e) = alloc.allocate(seg) else { return false };
            debug_assert_eq!(e.len, seg);
            self.room.segments.grant([e.offset]);
            spare += 1;
        }
        true
    }

    /// Gives the spares above `keep` back to `alloc` (for data). Only while no flush of the
    /// index runs: a flush may take any spare.
    pub fn give_back(&self, alloc: &mut ExtentAllocator, keep: usize) -> usize {
        let spare = self.room.segments.spare();
        let back = self.room.segments.give_back(spare.saturating_sub(keep));
        for &offset in &back {
            alloc.free(Extent { offset, len: self.room.segment_len });
        }
        back.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use edgeblob_meta::index::region::Segments;
    use edgeblob_meta::index::room::DELETE_ROOM;

    use super::*;

    #[test]
    fn spares_follow_the_next_flush_keep_the_reserve_and_stop_at_a_full_area() {
        const SEG: u64 = 1 << 20;
        let space = IndexSpace::new(Room::new(Arc::new(Segments::default()), SEG), vec![], vec![], 64 * SEG);
        assert_eq!(space.reserve, MIN_RESERVE, "a small area keeps two small flushes' worth");
        let idle = Load::default();
        assert_eq!(space.wanted(idle, idle), 4, "an idle index keeps its reserve");
        // A new index's flush rewrites at most four times its new bytes: 8 MiB for each of two
        // flushes of 2 MiB of records, and the next change's; a straddle, and deletes.
        let busy = Load::new(20_000, 2 << 20);
        assert_eq!(space.wanted(busy, busy), 17 + 1 + DELETE_ROOM);
        let mut alloc = ExtentAllocator::new(Extent { offset: 16 * SEG, len: 8 * SEG });
        assert!(space.top_up(&mut alloc, 5));
        assert_eq!((space.room.segments.spare(), alloc.free_bytes()), (5, 3 * SEG));
        assert!(space.top_up(&mut alloc, 5), "nothing more when the want is met");
        assert_eq!(alloc.free_bytes(), 3 * SEG);
        assert!(!space.top_up(&mut alloc, 9), "a full area says so");
        assert_eq!((space.room.segments.spare(), alloc.free_bytes()), (8, 0));
        assert_eq!(space.bytes(), 8 * SEG);
        assert_eq!(space.give_back(&mut alloc, 4), 4, "what is above the keep goes back to data");
        assert_eq!((space.room.segments.spare(), alloc.free_bytes()), (4, 4 * SEG));
        assert_eq!(space.give_back(&mut alloc, 4), 0);
    }
}
