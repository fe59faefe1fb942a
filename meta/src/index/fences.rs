//! Where a scan of the blob table may be cut so that the shard's index readers walk its parts
//! side by side. A scan follows one leaf to the next, a device read at a time; cut at keys it is
//! known to pass, its parts are read at once. The cuts are blob keys whose hash falls in one
//! 128th of the hash space (about one key in 128, chosen by the key alone, so a flush and the
//! start-up scan agree on them), kept in memory: about half a byte per blob.
//!
//! A fence is a hint, never a fact: a scan is correct whatever the fences are (a stale one, of a
//! blob deleted while the start-up scan read it, is a cut like any other), and only its speed
//! depends on them.

use std::collections::BTreeSet;
use std::ops::Bound;

/// About one key in this many is a fence.
pub const EVERY: usize = 128;

/// Whether a key whose filter hash ([`super::filter::hash`]) is `hash` is a fence. The top bits:
/// the key filter probes with the low ones.
pub fn is_fence(hash: u64) -> bool {
    hash >> (64 - EVERY.trailing_zeros()) == 0
}

#[derive(Debug, Default)]
pub struct Fences {
    keys: BTreeSet<Vec<u8>>,
    bytes: usize,
}

impl Fences {
    /// Notes that the blob table now holds `key` (`held`) or not, if it is a fence.
    pub fn note(&mut self, key: &[u8], hash: u64, held: bool) {
        if !is_fence(hash) {
            return;
        }
        if held {
            if self.keys.insert(key.to_vec()) {
                self.bytes += key.len() + KEY_OVERHEAD;
            }
        } else if self.keys.remove(key) {
            self.bytes -= key.len() + KEY_OVERHEAD;
        }
    }

    /// Up to `parts - 1` fences strictly inside `(from, to)` that cut a scan of `limit` entries
    /// from `from` into `parts` of about equal size, in order: every `limit / parts / EVERY`th.
    pub fn cuts(&self, from: &[u8], to: Option<&[u8]>, limit: usize, parts: usize) -> Vec<Vec<u8>> {
        let stride = (limit / parts.max(1) / EVERY).max(1);
        self.keys
            .range::<[u8], _>((Bound::Excluded(from), Bound::Unbounded))
            .take_while(|k| to.is_none_or(|to| k.as_slice() < to))
            .skip(stride - 1)
            .step_by(stride)
            .take(parts.saturating_sub(1))
            .cloned()
            .collect()
    }

    /// Memory the fences take, about.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A B-tree set's cost per key beside the key's bytes, about: the `Vec` and its share of a node.
const KEY_OVERHEAD: usize = 24 + 16;

#[cfg(test)]
mod tests {
    use super::*;

    fn fenced(n: usize) -> (Fences, Vec<Vec<u8>>) {
        let mut f = Fences::default();
        let keys: Vec<Vec<u8>> = (0..n).map(|i| format!("key-{i:08}").into_bytes()).collect();
        for k in &keys {
            f.note(k, super::super::filter::hash(k), true);
        }
        (f, keys)
    }

    #[test]
    fn about_one_key_in_every_is_a_fence_and_cuts_fall_inside_the_range_in_order() {
        let (f, keys) = fenced(128_000);
        assert!((800..1200).contains(&f.len()), "{} fences of 128,000 keys", f.len());
        let (from, to) = (&keys[10_000], &keys[60_000]);
        let cuts = f.cuts(from, Some(to), 4096, 4);
        assert_eq!(cuts.len(), 3);
        assert!(cuts.windows(2).all(|w| w[0] < w[1]));
        assert!(cuts.iter().all(|c| c.as_slice() > from.as_slice() && c.as_slice() < to.as_slice()));
        // Each part is about a quarter of the scan: 8 fences (1,024 keys) apart.
        let at = |c: &Vec<u8>| keys.binary_search(c).unwrap();
        let gaps: Vec<usize> = cuts.windows(2).map(|w| at(&w[1]) - at(&w[0])).collect();
        assert!(gaps.iter().all(|g| (300..3000).contains(g)), "{gaps:?}");
        assert!(f.cuts(from, Some(&keys[10_010]), 4096, 4).len() <= 1, "a short range has few fences to cut at");
        assert!(f.cuts(from, None, 4096, 1).is_empty(), "one part, no cut");
    }

    #[test]
    fn a_fence_goes_with_its_key_and_takes_its_memory_with_it() {
        let (mut f, keys) = fenced(10_000);
        let before = (f.len(), f.bytes());
        let fence = keys.iter().find(|k| is_fence(super::super::filter::hash(k))).unwrap();
        f.note(fence, super::super::filter::hash(fence), false);
        assert_eq!((f.len(), f.bytes()), (before.0 - 1, before.1 - fence.len() - KEY_OVERHEAD));
        let other = keys.iter().find(|k| !is_fence(super::super::filter::hash(k))).unwrap();
        f.note(other, super::super::filter::hash(other), true);
        assert_eq!(f.len(), before.0 - 1, "a key that is no fence is not kept");
    }
}
