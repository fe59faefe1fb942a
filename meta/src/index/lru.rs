//! Clean resident entries in the order they became clean, with the memory each takes: what a
//! shard evicts first when its cache is full. Dirty entries are never here (they cannot be
//! evicted), so eviction never walks past them.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

#[derive(Debug)]
pub struct Lru<K> {
    next: u64,
    order: BTreeMap<u64, K>,
    at: HashMap<K, (u64, usize)>,
    bytes: usize,
}

impl<K> Default for Lru<K> {
    fn default() -> Lru<K> {
        Lru { next: 0, order: BTreeMap::new(), at: HashMap::new(), bytes: 0 }
    }
}

impl<K: Clone + Eq + Hash> Lru<K> {
    /// Puts `k` last (newest), taking `size` bytes.
    pub fn insert(&mut self, k: K, size: usize) {
        self.remove(&k);
        let seq = self.next;
        self.next += 1;
        self.order.insert(seq, k.clone());
        self.at.insert(k, (seq, size));
        self.bytes += size;
    }

    pub fn remove(&mut self, k: &K) -> bool {
        match self.at.remove(k) {
            Some((seq, size)) => {
                self.order.remove(&seq);
                self.bytes -= size;
                true
            }
            None => false,
        }
    }

    pub fn contains(&self, k: &K) -> bool {
        self.at.contains_key(k)
    }

    /// Takes out the oldest entry, with the bytes it took.
    pub fn pop_oldest(&mut self) -> Option<(K, usize)> {
        let (_, k) = self.order.pop_first()?;
        let (_, size) = self.at.remove(&k)?;
        self.bytes -= size;
        Some((k, size))
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        debug_assert_eq!(self.order.len(), self.at.len());
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_goes_first_and_reinsertion_renews() {
        let mut l = Lru::default();
        l.insert("a", 10);
        l.insert("b", 20);
        l.insert("a", 5);
        assert_eq!(l.bytes(), 25);
        assert_eq!(l.pop_oldest(), Some(("b", 20)));
        assert!(l.remove(&"a"));
        assert!(!l.remove(&"a"));
        assert_eq!((l.bytes(), l.len(), l.pop_oldest()), (0, 0, None));
    }
}
