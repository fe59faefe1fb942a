//! Room for the index's next flushes: how many of the spare segments its shard has set aside a
//! flush may take, and so which changes the shard may admit (docs/architecture.md, "Metadata at
//! scale", room).
//!
//! What redb needs is known only to redb: a flush reuses the pages earlier flushes freed inside
//! the index (after deletes, many) before it grows. So the bound is a worst case, and it is
//! checked against the spares the shard holds *now*, at every commit, rather than predicted: in a
//! region with no contiguous room left to grant, flushes that reuse freed pages take no spare,
//! the spares stay, and changes keep being admitted; flushes that must grow take spares, and when
//! too few are left for the worst case, growth is refused while deletes still fit.

use std::sync::Arc;

use super::region::Segments;

/// Bytes of storage a flush may write per entry: its leaf and, rarely all new, the branches above.
const BYTES_PER_ENTRY: u64 = 2 * 4096;

/// Bytes a flush writes besides its entries' page paths: redb's table roots, its list of freed
/// pages and its header.
const COMMIT_BYTES: u64 = 64 << 10;

/// Spare segments growth leaves for deletes: the worst case of a flush of a few of them (a
/// segment's worth of page paths at most, which may straddle two segments). With one, a shard
/// that growth had brought down to its reserve refused every delete as busy.
pub const DELETE_ROOM: usize = 2;

/// A change beyond the next flush that the spares a shard tops up to should also cover, so
/// that a shard does not ask again at every commit.
const HEADROOM: Load = Load::new(256, 64 << 10);

/// What a flush writes: index entries, bytes of the records behind them, and bytes of values
/// too large for a leaf, which take pages of their own beside their entry's page path (a blob
/// of 50,000 distinct blocks: 200 MB in one entry, from a Put Block List record of 400 KB).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    pub entries: usize,
    pub bytes: usize,
    pub large: usize,
}

impl Load {
    pub const fn new(entries: usize, bytes: usize) -> Load {
        Load { entries, bytes, large: 0 }
    }

    pub fn plus(self, other: Load) -> Load {
        Load { entries: self.entries + other.entries, bytes: self.bytes + other.bytes, large: self.large + other.large }
    }
}

/// Asks the shard to hold at least this many spare segments, as far as its region can.
pub type Grow = Box<dyn Fn(usize)>;

/// A shard index's spare segments and their size.
#[derive(Debug, Clone)]
pub struct Room {
    pub segments: Arc<Segments>,
    pub segment_len: u64,
}

impl Room {
    pub fn new(segments: Arc<Segments>, segment_len: u64) -> Room {
        debug_assert!(segment_len > 0);
        Room { segments, segment_len }
    }

    /// Storage bytes a flush of `load` may write that are new to the index at most: a page
    /// path per entry and its large values, but never more than rewriting the whole index and
    /// its new bytes twice over (copy-on-write frees the old pages only after the commit), and
    /// redb's own pages. An empty flush writes nothing.
    pub fn flush_bytes(&self, load: Load) -> u64 {
        if load.entries == 0 {
            return 0;
        }
        let by_entries = load.entries as u64 * BYTES_PER_ENTRY + load.large as u64;
        let by_size = self.segments.taken() as u64 * self.segment_len + 4 * (load.bytes + load.large) as u64;
        by_entries.min(by_size) + COMMIT_BYTES
    }

    /// Spare segments the flush in flight and the next may take at most: their bytes, and one
    /// segment more where new storage straddles two.
    pub fn need(&self, flight: Load, next: Load) -> usize {
        match self.flush_bytes(flight) + self.flush_bytes(next) {
            0 => 0,
            bytes => bytes.div_ceil(self.segment_len) as usize + 1,
        }
    }

    /// Spares the shard should hold for the flush in flight and the next: their worst case
    /// with room for a further change, and for deletes.
    pub fn wanted(&self, flight: Load, next: Load) -> usize {
        self.need(flight, next.plus(HEADROOM)) + DELETE_ROOM
    }

    /// Whether the spares cover the flush in flight, the next one, and `margin` besides, when
    /// the flush in flight has taken `taken` segments of its need already.
    pub fn fits(&self, flight: Load, next: Load, margin: usize, taken: usize) -> bool {
        self.segments.spare() + taken >= self.need(flight, next) + margin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 1 << 20;
    const MIB: usize = 1 << 20;

    #[test]
    fn a_flush_needs_a_page_path_per_entry_bounded_by_the_index_and_its_new_bytes() {
        let room = Room::new(Arc::new(Segments::default()), SEG);
        let none = Load::default();
        assert_eq!(room.need(none, none), 0, "nothing to write takes nothing");
        let one = Load::new(1, 100);
        assert_eq!(room.flush_bytes(one), 4 * 100 + COMMIT_BYTES, "an empty index: four times its new bytes");
        assert_eq!(room.need(one, one), 2, "well within a segment, which may straddle two");
        let full = Load::new(120, MIB);
        assert_eq!(room.need(full, none), 1 + 1, "120 page paths and redb's pages: a segment");
        assert_eq!(room.need(full, full), 2 + 1);
        // An empty index (no segment taken) rewrites at most its new bytes, four times.
        assert_eq!(room.flush_bytes(Load::new(10_000, 300_000)), 1_200_000 + COMMIT_BYTES);
        // One entry of a large value: its page path and its bytes, not a page path alone.
        let blob = Load { entries: 1, bytes: 400 << 10, large: 200 * MIB };
        assert!(room.flush_bytes(blob) >= 200 * MIB as u64);
        assert!(room.need(blob, none) >= 200, "{}", room.need(blob, none));
    }

    #[test]
    fn growth_leaves_room_for_deletes_and_the_flush_in_flight() {
        let room = Room::new(Arc::new(Segments::default()), SEG);
        room.segments.grant((1..=4).map(|i| i * SEG));
        let one = Load::new(1, 100);
        assert!(room.fits(one, one, DELETE_ROOM, 0), "2 + 2 of 4");
        let more = Load::new(240, MIB);
        assert!(!room.fits(one, more, DELETE_ROOM, 0), "4, and deletes' 2");
        assert!(room.fits(one, more, 0, 0), "a delete still fits");
        assert!(room.fits(one, more, DELETE_ROOM, 2), "when the flush in flight took two of its own");
        assert!(room.wanted(one, more) > 4, "a shard short of room asks for more than it holds");
        assert_eq!(room.segments.give_back(3).len(), 3);
        assert!(!room.fits(none(), one, 0, 0), "one spare is less than a flush that may straddle two");
    }

    #[test]
    fn the_reserve_for_deletes_covers_a_flush_of_them_at_the_smallest_segment() {
        // A dozen deletes as `ShardIndex::commit` sizes each (7 entries of a 250-byte record),
        // at the smallest segment a layout gives (its alignment), whatever the index's size (a
        // page path per entry bounds the flush of any index).
        let room = Room::new(Arc::new(Segments::default()), edgeblob_io::superblock::ALIGN);
        let deletes = Load::new(12 * 7, 12 * 250);
        assert!(room.flush_bytes(deletes) <= 12 * 7 * BYTES_PER_ENTRY + COMMIT_BYTES);
        assert!(room.need(none(), deletes) <= DELETE_ROOM, "{} segments", room.need(none(), deletes));
    }

    fn none() -> Load {
        Load::default()
    }
}
