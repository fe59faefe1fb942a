//! The allocator's image (format v2, docs/format.md, table `space`): which pages of the device
//! hold chunks a shard counts, as of its index's LSN, one bit per 4 KiB page in groups of
//! [`GROUP_PAGES`]. Each flush changes it by the chunks counted and freed since the last one, in
//! the same transaction as the chunk table, so a start builds its allocator from these bits
//! (and the log after them) instead of reading every chunk entry.
//!
//! Setting and clearing are idempotent, which is what lets a flush apply a chunk's change without
//! knowing whether the index held the chunk before: a flush clears the pages of every chunk
//! freed since the last one and then sets those of every chunk counted now. Clears come first:
//! a chunk freed and a chunk written into its space since the last flush are both in one flush.

use std::collections::BTreeMap;

use edgeblob_io::{Extent, PAGE_SIZE};

/// Pages one group's value covers: 1 KiB of bits, 32 MiB of device (a few values to a page of
/// the index, so a flush rewrites little of it).
pub const GROUP_PAGES: u64 = 8 * GROUP_BYTES as u64;
const GROUP_BYTES: usize = 1024;
const PAGE: u64 = PAGE_SIZE as u64;

/// Pages in use, by group. A group with no page in use is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpaceMap {
    groups: BTreeMap<u64, Box<[u64]>>,
}

/// The key of group `g` in the `space` table: u64 big-endian, so the table is in device order.
pub fn group_key(g: u64) -> [u8; 8] {
    g.to_be_bytes()
}

/// The groups `e` touches.
pub fn groups_of(e: Extent) -> std::ops::RangeInclusive<u64> {
    let first = e.offset / PAGE / GROUP_PAGES;
    let last = (e.end().max(e.offset + 1) - 1) / PAGE / GROUP_PAGES;
    first..=last
}

/// What a flush changes in the allocator's image: pages to clear (chunks freed since the last
/// flush), then pages to set (chunks counted now); or, for an index written before the image was
/// kept, the image built whole from the chunk table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SpaceChanges {
    pub clear: Vec<Extent>,
    pub set: Vec<Extent>,
    pub rebuild: bool,
}

impl SpaceChanges {
    pub fn is_empty(&self) -> bool {
        self.clear.is_empty() && self.set.is_empty() && !self.rebuild
    }
}

impl SpaceMap {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Applies a flush's changes: clears first (see the module's comment), then sets.
    pub fn apply(&mut self, changes: &SpaceChanges) {
        for e in &changes.clear {
            self.clear(*e);
        }
        for e in &changes.set {
            self.set(*e);
        }
    }

    /// Marks the pages of `e` in use (page-aligned, as every chunk's extent is).
    pub fn set(&mut self, e: Extent) {
        self.each_word(e, true);
    }

    /// Marks the pages of `e` free.
    pub fn clear(&mut self, e: Extent) {
        self.each_word(e, false);
    }

    fn each_word(&mut self, e: Extent, used: bool) {
        debug_assert!(e.offset.is_multiple_of(PAGE) && e.len.is_multiple_of(PAGE), "{e:?} is not page-aligned");
        let (mut page, end) = (e.offset / PAGE, e.end() / PAGE);
        while page < end {
            let (g, at) = (page / GROUP_PAGES, page % GROUP_PAGES);
            let n = (end - page).min(GROUP_PAGES - at);
            if used {
                let words = self.groups.entry(g).or_insert_with(|| vec![0; GROUP_BYTES / 8].into_boxed_slice());
                apply(words, at, n, true);
            } else if let Some(words) = self.groups.get_mut(&g) {
                apply(words, at, n, false);
                if words.iter().all(|w| *w == 0) {
                    self.groups.remove(&g);
                }
            }
            page += n;
        }
    }

    /// The extents in use, in device order, each as long as it runs (across groups too).
    pub fn runs(&self) -> Vec<Extent> {
        let mut out: Vec<Extent> = Vec::new();
        let mut push = |first: u64, pages: u64| {
            let e = Extent { offset: first * PAGE, len: pages * PAGE };
            match out.last_mut() {
                Some(last) if last.end() == e.offset => last.len += e.len,
                _ => out.push(e),
            }
        };
        for (g, words) in &self.groups {
            for (i, &w) in words.iter().enumerate() {
                let base = g * GROUP_PAGES + 64 * i as u64;
                if w == u64::MAX {
                    push(base, 64);
                    continue;
                }
                // Runs of ones within the word.
                let mut rest = w;
                let mut bit = 0u32;
                while rest != 0 {
                    let zeros = rest.trailing_zeros();
                    rest >>= zeros;
                    bit += zeros;
                    let ones = rest.trailing_ones();
                    push(base + bit as u64, ones as u64);
                    rest = rest.checked_shr(ones).unwrap_or(0);
                    bit += ones;
                }
            }
        }
        out
    }

    /// Each group in use, as the `space` table holds it: its key and its bytes.
    pub fn encoded(&self) -> impl Iterator<Item = ([u8; 8], Vec<u8>)> + '_ {
        self.groups.keys().map(|&g| (group_key(g), self.encode_group(g).unwrap_or_default()))
    }

    /// Group `g`'s value (1,024 bytes: page `g * GROUP_PAGES + i` is bit `i % 8` of byte
    /// `i / 8`), or None when no page of it is in use.
    pub fn encode_group(&self, g: u64) -> Option<Vec<u8>> {
        self.groups.get(&g).map(|words| words.iter().flat_map(|w| w.to_le_bytes()).collect())
    }

    /// Takes in a group as the `space` table holds it.
    pub fn load_group(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        let g =
            key.try_into().map(u64::from_be_bytes).map_err(|_| format!("a space group key of {} bytes", key.len()))?;
        if value.len() != GROUP_BYTES {
            return Err(format!("space group {g} holds {} bytes, not {GROUP_BYTES}", value.len()));
        }
        let words: Box<[u64]> =
            value.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default())).collect();
        if words.iter().any(|w| *w != 0) {
            self.groups.insert(g, words);
        }
        Ok(())
    }

    /// Keeps only the pages within `area` (a region's data area), so that bits of another region's
    /// groups are not taken for this one's.
    pub fn within(&self, area: Extent) -> Vec<Extent> {
        self.runs()
            .into_iter()
            .filter_map(|e| {
                let offset = e.offset.max(area.offset);
                let end = e.end().min(area.end());
                (offset < end).then(|| Extent { offset, len: end - offset })
            })
            .collect()
    }
}

/// Sets or clears `n` bits of `words` from bit `at`.
fn apply(words: &mut [u64], at: u64, n: u64, used: bool) {
    let (mut bit, end) = (at, at + n);
    while bit < end {
        let (i, shift) = ((bit / 64) as usize, bit % 64);
        let take = (64 - shift).min(end - bit);
        let mask = if take == 64 { u64::MAX } else { ((1u64 << take) - 1) << shift };
        debug_assert!(i < words.len());
        if used {
            words[i] |= mask;
        } else {
            words[i] &= !mask;
        }
        bit += take;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeSet;

    use rand::{Rng, SeedableRng};

    use super::*;

    fn pages_of(runs: &[Extent]) -> BTreeSet<u64> {
        runs.iter().flat_map(|e| e.offset / PAGE..e.end() / PAGE).collect()
    }

    #[test]
    fn sets_and_clears_agree_with_a_set_of_pages_and_runs_are_maximal() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut map = SpaceMap::default();
        let mut model = BTreeSet::new();
        // Around group boundaries, and across them.
        let span = 3 * GROUP_PAGES;
        for _ in 0..4000 {
            let first = rng.gen_range(0..span);
            let pages = rng.gen_range(1..=200).min(span - first);
            let e = Extent { offset: first * PAGE, len: pages * PAGE };
            if rng.gen_bool(0.6) {
                map.set(e);
                model.extend(first..first + pages);
            } else {
                map.clear(e);
                model.retain(|p| !(first..first + pages).contains(p));
            }
        }
        let runs = map.runs();
        assert_eq!(pages_of(&runs), model);
        assert!(runs.windows(2).all(|w| w[0].end() < w[1].offset), "runs are apart and in order");
        // Encoded and loaded back, group by group.
        let mut back = SpaceMap::default();
        for (k, v) in map.encoded() {
            back.load_group(&k, &v).unwrap();
        }
        assert_eq!(back, map);
        for e in runs {
            map.clear(e);
        }
        assert!(map.is_empty(), "a group with no page in use is dropped");
    }

    #[test]
    fn a_run_continues_across_groups_and_words() {
        let mut map = SpaceMap::default();
        let e = Extent { offset: (GROUP_PAGES - 70) * PAGE, len: 140 * PAGE };
        map.set(e);
        assert_eq!(map.runs(), vec![e]);
        assert_eq!(groups_of(e), 0..=1);
        let area = Extent { offset: GROUP_PAGES * PAGE, len: GROUP_PAGES * PAGE };
        assert_eq!(map.within(area), vec![Extent { offset: GROUP_PAGES * PAGE, len: 70 * PAGE }]);
    }

    #[test]
    fn a_group_is_bits_in_page_order_little_endian() {
        let mut map = SpaceMap::default();
        map.set(Extent { offset: 9 * PAGE, len: 2 * PAGE });
        let v = map.encode_group(0).unwrap();
        assert_eq!(v.len(), 1024);
        assert_eq!(&v[..3], &[0, 0b0000_0110, 0]);
        assert!(map.load_group(&group_key(0), &v[..100]).is_err());
    }
}
