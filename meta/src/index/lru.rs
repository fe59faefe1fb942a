//! Clean resident entries in the order they became clean, with the memory each takes: what a
//! shard evicts first when its cache is full. Dirty entries are never here (they cannot be
//! evicted), so eviction never walks past them.

use std::hash::Hash;

/// The order and the sizes, each key held once (`lru`'s linked hash map): a working set of
/// blob keys held each key twice, in an order map and a size map, and a small Put's flush
/// cloned every key it made clean into both.
///
/// Keys are hashed with foldhash, seeded at random per process, not SipHash: every small Put
/// hashes its blob key here twice (out of the cache when dirtied, back when flushed), and
/// SipHash was most of that. The seed is what keeps names chosen to collide from piling into
/// one bucket; nothing of the cache's hashes or order reaches a client.
pub struct Lru<K> {
    entries: lru::LruCache<K, usize, foldhash::fast::RandomState>,
    bytes: usize,
}

impl<K: Hash + Eq> Default for Lru<K> {
    fn default() -> Lru<K> {
        Lru { entries: lru::LruCache::unbounded_with_hasher(foldhash::fast::RandomState::default()), bytes: 0 }
    }
}

impl<K: Hash + Eq + std::fmt::Debug> std::fmt::Debug for Lru<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lru").field("len", &self.entries.len()).field("bytes", &self.bytes).finish()
    }
}

impl<K: Hash + Eq> Lru<K> {
    /// Puts `k` last (newest), taking `size` bytes.
    pub fn insert(&mut self, k: K, size: usize) {
        if let Some((_, old)) = self.entries.push(k, size) {
            self.bytes -= old;
        }
        self.bytes += size;
    }

    pub fn remove(&mut self, k: &K) -> bool {
        match self.entries.pop(k) {
            Some(size) => {
                self.bytes -= size;
                true
            }
            None => false,
        }
    }

    pub fn contains(&self, k: &K) -> bool {
        self.entries.contains(k)
    }

    /// Takes out the oldest entry, with the bytes it took.
    pub fn pop_oldest(&mut self) -> Option<(K, usize)> {
        let (k, size) = self.entries.pop_lru()?;
        self.bytes -= size;
        Some((k, size))
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The keys, most recently inserted first.
    pub fn newest_first(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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
        assert_eq!(l.newest_first().copied().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(l.pop_oldest(), Some(("b", 20)));
        assert!(l.remove(&"a"));
        assert!(!l.remove(&"a"));
        assert_eq!((l.bytes(), l.len(), l.pop_oldest()), (0, 0, None));
    }
}
