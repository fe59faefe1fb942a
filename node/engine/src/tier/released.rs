//! Which chunks may no longer be on flash, known to every shard without asking.
//!
//! A blob names its chunks by id (the place each was first written, and its hash); only the
//! counting shard's chunk table says where a chunk is now. Asking it on every read would add a
//! hop between shards to every GET. Instead the node keeps one bit for each 64 KiB of the
//! device: set, before a release is logged, for the granule a released chunk was first written
//! in. A read whose chunk's bit is clear reads the flash at the chunk's offset, as before the
//! tier; a set bit (the chunk, or another of its granule, was released) sends the read to the
//! counting shard to learn where the chunk is. Bits are never cleared while the node runs (a
//! false "maybe" costs a hop, never a wrong byte); a start sets them again from the chunk
//! tables, and until a shard has done so every chunk it counts is a "maybe".
//!
//! Why a read of a clear bit is safe: a reader enters its read guard before it resolves a blob,
//! and a release sets the bit before it logs, then frees the space only past every reader that
//! entered before the free. A reader that saw the bit clear either read before the release, or
//! reads space that is still in limbo and still holds the chunk's own checked pages.

use edgeblob_io::volume::NodeLayout;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Bytes of the device one bit stands for.
pub const GRANULE: u64 = 64 << 10;

pub struct ReleasedMap {
    bits: Vec<AtomicU64>,
    layout: NodeLayout,
    /// Per counting shard: whether its released chunks are all marked since this start.
    ready: Vec<AtomicBool>,
    /// Whether every shard's are (the common case, asked first).
    all_ready: AtomicBool,
}

impl ReleasedMap {
    /// A map of the node laid out as `layout` (by position over all its devices).
    pub fn new(layout: &NodeLayout) -> ReleasedMap {
        let granules = layout.total_len().div_ceil(GRANULE);
        let shards = layout.shards() as usize;
        ReleasedMap {
            layout: layout.clone(),
            bits: (0..granules.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            ready: (0..shards).map(|_| AtomicBool::new(false)).collect(),
            all_ready: AtomicBool::new(false),
        }
    }

    fn slot(&self, offset: u64) -> Option<(&AtomicU64, u64)> {
        let g = self.layout.linear(offset)? / GRANULE;
        Some((self.bits.get((g / 64) as usize)?, 1u64 << (g % 64)))
    }

    /// Marks the chunk first written at `offset` as possibly released.
    pub fn mark(&self, offset: u64) {
        if let Some((word, bit)) = self.slot(offset) {
            word.fetch_or(bit, Ordering::SeqCst);
        }
    }

    /// Every released chunk counting shard `shard` holds is marked.
    pub fn set_ready(&self, shard: usize) {
        if let Some(r) = self.ready.get(shard) {
            r.store(true, Ordering::SeqCst);
        }
        if self.ready.iter().all(|r| r.load(Ordering::SeqCst)) {
            self.all_ready.store(true, Ordering::SeqCst);
        }
    }

    /// Whether the chunk first written at `offset`, counted by shard `counter()` (asked only
    /// while some shard's marks are incomplete), may not be on flash there any more.
    pub fn maybe(&self, offset: u64, counter: impl FnOnce() -> usize) -> bool {
        if !self.all_ready.load(Ordering::SeqCst)
            && !self.ready.get(counter()).is_some_and(|r| r.load(Ordering::SeqCst))
        {
            return true;
        }
        self.slot(offset).is_none_or(|(word, bit)| word.load(Ordering::SeqCst) & bit != 0)
    }
}

/// At start, on every shard: marks the chunks it counts that are only in the tier, then says
/// the shard's marks are complete. A shard that holds no pack has none (no scan); until one that
/// does has finished, a read of any chunk it counts asks it where the chunk is.
pub async fn mark_at_start(s: std::rc::Rc<crate::shard::Shard>) {
    let holds_packs = s.node.counts_kept() && !s.meta.borrow().state().packs.is_empty();
    if holds_packs {
        let marked = super::each_chunk(&s, |e| {
            if e.location.local().is_none() {
                s.node.released.mark(e.chunk.offset);
            }
        })
        .await;
        if let Err(e) = marked {
            // Left unready: every read of its chunks asks it (slower, never wrong).
            return tracing::error!(shard = s.index, %e, "the released chunks could not be marked");
        }
    }
    s.node.released.set_ready(s.index);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_covers_its_granule_and_an_unready_shard_covers_everything() {
        let sbs = edgeblob_io::superblock::Superblock::new_node(&[1 << 30], 2, 2).unwrap();
        let m = ReleasedMap::new(&NodeLayout::of(&sbs).unwrap());
        assert!(m.maybe(0, || 0) && m.maybe(1 << 29, || 1), "nothing is known before a shard is ready");
        m.set_ready(0);
        assert!(!m.maybe(4096, || 0) && m.maybe(4096, || 1), "a ready shard's chunks, and not another's");
        m.set_ready(1);
        assert!(!m.maybe(4096, || 1));
        m.mark(GRANULE + 4096);
        assert!(m.maybe(GRANULE, || 0) && m.maybe(2 * GRANULE - 4096, || 1), "the granule it lies in");
        assert!(!m.maybe(0, || 0) && !m.maybe(2 * GRANULE, || 0), "and no other");
        assert!(m.maybe(1 << 40, || 0), "past the device: never assumed on flash");
    }
}
