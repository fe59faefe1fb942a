//! The extent allocator of one shard's data area. Only its shard touches it, so it needs no lock.
//! It keeps free space as extents indexed both by offset (to merge neighbours on free) and by
//! length (best fit, which keeps large extents whole for large chunks). It is never persisted:
//! at start it is rebuilt from the extents that metadata refers to.

use std::collections::{BTreeMap, BTreeSet};

use crate::buf::PAGE_SIZE;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
}

impl Extent {
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

#[derive(Debug)]
pub struct ExtentAllocator {
    area: Extent,
    by_offset: BTreeMap<u64, u64>,
    by_len: BTreeSet<(u64, u64)>,
    free_bytes: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AllocError {
    #[error("extent {0:?} lies outside the area or overlaps space already in use")]
    NotFree(Extent),
}

impl ExtentAllocator {
    /// An allocator over `area`, all of it free.
    pub fn new(area: Extent) -> ExtentAllocator {
        assert_eq!(area.offset % PAGE_SIZE as u64, 0);
        assert_eq!(area.len % PAGE_SIZE as u64, 0);
        let mut a = ExtentAllocator { area, by_offset: BTreeMap::new(), by_len: BTreeSet::new(), free_bytes: 0 };
        if area.len > 0 {
            a.insert(area.offset, area.len);
        }
        a
    }

    pub fn free_bytes(&self) -> u64 {
        self.free_bytes
    }

    pub fn area(&self) -> Extent {
        self.area
    }

    /// An extent of exactly `len` bytes (a page multiple), or None when no free extent is large
    /// enough.
    pub fn allocate(&mut self, len: u64) -> Option<Extent> {
        debug_assert!(len > 0 && len.is_multiple_of(PAGE_SIZE as u64));
        let &(flen, off) = self.by_len.range((len, 0)..).next()?;
        self.remove(off, flen);
        if flen > len {
            self.insert(off + len, flen - len);
        }
        Some(Extent { offset: off, len })
    }

    /// Returns an extent; merges it with free neighbours.
    pub fn free(&mut self, e: Extent) {
        debug_assert!(e.offset >= self.area.offset && e.end() <= self.area.end(), "{e:?} outside {:?}", self.area);
        debug_assert!(!self.overlaps_free(e), "double free of {e:?}");
        let (mut off, mut len) = (e.offset, e.len);
        if let Some((&poff, &plen)) = self.by_offset.range(..off).next_back() {
            if poff + plen == off {
                self.remove(poff, plen);
                off = poff;
                len += plen;
            }
        }
        if let Some(&nlen) = self.by_offset.get(&(e.end())) {
            self.remove(e.end(), nlen);
            len += nlen;
        }
        self.insert(off, len);
    }

    /// Marks an extent as in use (rebuilding from metadata at start). Fails if any part of it is
    /// not free: two records claiming the same space is corruption.
    pub fn reserve(&mut self, e: Extent) -> Result<(), AllocError> {
        let Some((&foff, &flen)) = self.by_offset.range(..=e.offset).next_back() else {
            return Err(AllocError::NotFree(e));
        };
        if foff + flen < e.end() {
            return Err(AllocError::NotFree(e));
        }
        self.remove(foff, flen);
        if foff < e.offset {
            self.insert(foff, e.offset - foff);
        }
        if e.end() < foff + flen {
            self.insert(e.end(), foff + flen - e.end());
        }
        Ok(())
    }

    /// Marks in use whatever part of `e` is free (at start, for space that more than one record
    /// of what must be kept may name: a chunk in the allocator's image that an undelivered
    /// change also adds to).
    pub fn reserve_free_parts(&mut self, e: Extent) {
        let first = self.by_offset.range(..=e.offset).next_back().map_or(e.offset, |(&o, _)| o);
        let overlapping: Vec<(u64, u64)> =
            self.by_offset.range(first..e.end()).filter(|(&o, &l)| o + l > e.offset).map(|(&o, &l)| (o, l)).collect();
        for (off, len) in overlapping {
            self.remove(off, len);
            if off < e.offset {
                self.insert(off, e.offset - off);
            }
            if e.end() < off + len {
                self.insert(e.end(), off + len - e.end());
            }
        }
    }

    /// Whether any part of `e` is free.
    pub fn overlaps_free(&self, e: Extent) -> bool {
        if let Some((&o, &l)) = self.by_offset.range(..e.end()).next_back() {
            return o + l > e.offset;
        }
        false
    }

    fn insert(&mut self, off: u64, len: u64) {
        self.by_offset.insert(off, len);
        self.by_len.insert((len, off));
        self.free_bytes += len;
    }

    fn remove(&mut self, off: u64, len: u64) {
        self.by_offset.remove(&off);
        self.by_len.remove(&(len, off));
        self.free_bytes -= len;
    }

    /// Free extents in offset order (for tests and fsck).
    pub fn free_extents(&self) -> impl Iterator<Item = Extent> + '_ {
        self.by_offset.iter().map(|(&offset, &len)| Extent { offset, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    const P: u64 = PAGE_SIZE as u64;

    #[test]
    fn allocate_free_merges_back_to_one_extent() {
        let area = Extent { offset: 10 * P, len: 100 * P };
        let mut a = ExtentAllocator::new(area);
        let x = a.allocate(10 * P).unwrap();
        let y = a.allocate(20 * P).unwrap();
        let z = a.allocate(70 * P).unwrap();
        assert!(a.allocate(P).is_none());
        assert_eq!(a.free_bytes(), 0);
        a.free(y);
        a.free(x);
        a.free(z);
        assert_eq!(a.free_extents().collect::<Vec<_>>(), vec![area]);
    }

    #[test]
    fn reserving_free_parts_takes_what_is_free_and_leaves_the_rest() {
        let area = Extent { offset: 0, len: 100 * P };
        let mut a = ExtentAllocator::new(area);
        a.reserve(Extent { offset: 10 * P, len: 10 * P }).unwrap();
        a.reserve(Extent { offset: 30 * P, len: 10 * P }).unwrap();
        // Over a used extent, a free gap and half of another used one.
        a.reserve_free_parts(Extent { offset: 5 * P, len: 30 * P });
        assert_eq!(
            a.free_extents().collect::<Vec<_>>(),
            vec![Extent { offset: 0, len: 5 * P }, Extent { offset: 40 * P, len: 60 * P }]
        );
        a.reserve_free_parts(Extent { offset: 10 * P, len: 10 * P });
        assert_eq!(a.free_bytes(), 65 * P, "space already in use is left as it is");
    }

    #[test]
    fn reserve_rejects_overlap() {
        let mut a = ExtentAllocator::new(Extent { offset: 0, len: 10 * P });
        a.reserve(Extent { offset: 2 * P, len: 2 * P }).unwrap();
        assert!(a.reserve(Extent { offset: 3 * P, len: 2 * P }).is_err());
        assert!(a.reserve(Extent { offset: 9 * P, len: 2 * P }).is_err());
        a.reserve(Extent { offset: 4 * P, len: 6 * P }).unwrap();
        assert_eq!(a.free_bytes(), 2 * P);
    }

    #[test]
    fn random_workload_never_hands_out_overlapping_extents() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let area = Extent { offset: 0, len: 1000 * P };
        let mut a = ExtentAllocator::new(area);
        let mut live: Vec<Extent> = Vec::new();
        for _ in 0..20_000 {
            if rng.gen_bool(0.55) {
                if let Some(e) = a.allocate(rng.gen_range(1..20) * P) {
                    assert!(live.iter().all(|l| l.end() <= e.offset || e.end() <= l.offset), "{e:?} overlaps");
                    live.push(e);
                }
            } else if !live.is_empty() {
                let e = live.swap_remove(rng.gen_range(0..live.len()));
                a.free(e);
            }
            let used: u64 = live.iter().map(|e| e.len).sum();
            assert_eq!(used + a.free_bytes(), area.len);
        }
        for e in live.drain(..) {
            a.free(e);
        }
        assert_eq!(a.free_extents().collect::<Vec<_>>(), vec![area]);
    }
}
