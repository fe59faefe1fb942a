//! The changes the log has committed that the index does not hold yet: sorted per table, with
//! tombstones for deletions, consulted before the index by every read. A memtable is frozen
//! when it is handed to the index thread to be written; reads consult the frozen ones too until
//! the index has them (newest first).

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{Entry, Page, Table};

/// An entry's newest state: a value, or deleted.
pub type Change = Option<Vec<u8>>;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Memtable {
    tables: [BTreeMap<Vec<u8>, Change>; Table::COUNT],
    /// Bytes of keys and values held, for the flush threshold.
    bytes: usize,
    /// The LSN of the last record applied.
    last_lsn: u64,
}

/// What a memtable knows of a key: nothing (ask the next layer), a value, or that it is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    Unknown,
    Value(&'a [u8]),
    Deleted,
}

impl Memtable {
    pub fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.set(table, key, Some(value));
    }

    pub fn delete(&mut self, table: Table, key: Vec<u8>) {
        self.set(table, key, None);
    }

    fn set(&mut self, table: Table, key: Vec<u8>, change: Change) {
        let add = key.len() + change.as_ref().map_or(0, Vec::len);
        let klen = key.len();
        if let Some(old) = self.tables[table as usize].insert(key, change) {
            self.bytes -= klen + old.map_or(0, |v| v.len());
        }
        self.bytes += add;
    }

    /// Marks everything applied so far as coming from records up to `lsn`.
    pub fn applied(&mut self, lsn: u64) {
        debug_assert!(lsn >= self.last_lsn, "records are applied in LSN order");
        self.last_lsn = lsn;
    }

    pub fn last_lsn(&self) -> u64 {
        self.last_lsn
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.tables.iter().all(BTreeMap::is_empty)
    }

    pub fn get(&self, table: Table, key: &[u8]) -> Lookup<'_> {
        match self.tables[table as usize].get(key) {
            None => Lookup::Unknown,
            Some(Some(v)) => Lookup::Value(v),
            Some(None) => Lookup::Deleted,
        }
    }

    /// The changes of `table` with keys in `[from, to)` (`to` None: to the end), in key order.
    pub fn range<'a>(
        &'a self,
        table: Table,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> impl Iterator<Item = (&'a [u8], &'a Change)> + 'a {
        let hi = match to {
            Some(t) => Bound::Excluded(t.to_vec()),
            None => Bound::Unbounded,
        };
        self.tables[table as usize]
            .range::<Vec<u8>, _>((Bound::Included(from.to_vec()), hi))
            .map(|(k, v)| (k.as_slice(), v))
    }

    /// Every change, table by table, in key order: what a flush writes.
    pub fn changes(&self) -> impl Iterator<Item = (Table, &[u8], &Change)> {
        Table::ALL.into_iter().flat_map(move |t| self.tables[t as usize].iter().map(move |(k, v)| (t, k.as_slice(), v)))
    }
}

/// The newest state of `key` over layers ordered newest first, or `Unknown` if none knows it.
pub fn lookup<'a>(layers: &[&'a Memtable], table: Table, key: &[u8]) -> Lookup<'a> {
    layers.iter().map(|m| m.get(table, key)).find(|l| *l != Lookup::Unknown).unwrap_or(Lookup::Unknown)
}

/// Merges a page of the index's entries of one key range with the layers' changes over the same span: the newest layer wins,
/// tombstones hide entries. Returns the live entries, sorted, and the key to continue after
/// (None when the range is exhausted). Changes past the last index entry are only merged when
/// the index part is complete, so that a later page cannot list a key twice or out of order.
pub fn merge_page(
    layers: &[&Memtable],
    table: Table,
    from: &[u8],
    to: Option<&[u8]>,
    index: Page,
) -> (Vec<Entry>, Option<Vec<u8>>) {
    let Page { entries: index, complete } = index;
    let span_end: Option<Vec<u8>> = if complete {
        to.map(<[u8]>::to_vec)
    } else {
        // Up to and including the last index key.
        index.last().map(|(k, _)| successor(k))
    };
    let mut merged: BTreeMap<Vec<u8>, Change> = index.into_iter().map(|(k, v)| (k, Some(v))).collect();
    for layer in layers.iter().rev() {
        for (k, v) in layer.range(table, from, span_end.as_deref()) {
            merged.insert(k.to_vec(), v.clone());
        }
    }
    let next = if complete { None } else { span_end };
    (merged.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect(), next)
}

/// The smallest key after `k`.
pub fn successor(k: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(k.len() + 1);
    s.extend_from_slice(k);
    s.push(0);
    s
}

/// The smallest key after every key that starts with `prefix` (None: no such bound, all 0xFF).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn kv(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
        (k.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    #[test]
    fn newest_layer_wins_and_tombstones_hide() {
        let mut old = Memtable::default();
        old.put(Table::Blobs, b"a".to_vec(), b"1".to_vec());
        old.put(Table::Blobs, b"b".to_vec(), b"1".to_vec());
        let mut new = Memtable::default();
        new.delete(Table::Blobs, b"a".to_vec());
        new.put(Table::Staged, b"a".to_vec(), b"s".to_vec());
        let layers = [&new, &old];
        assert_eq!(lookup(&layers, Table::Blobs, b"a"), Lookup::Deleted);
        assert_eq!(lookup(&layers, Table::Blobs, b"b"), Lookup::Value(b"1"));
        assert_eq!(lookup(&layers, Table::Blobs, b"c"), Lookup::Unknown);
        assert_eq!(lookup(&layers, Table::Staged, b"a"), Lookup::Value(b"s"), "tables are apart");
    }

    #[test]
    fn bytes_follow_replacements() {
        let mut m = Memtable::default();
        m.put(Table::Blobs, b"key".to_vec(), vec![0; 10]);
        m.put(Table::Blobs, b"key".to_vec(), vec![0; 4]);
        assert_eq!(m.bytes(), 7);
        m.delete(Table::Blobs, b"key".to_vec());
        assert_eq!(m.bytes(), 3);
    }

    #[test]
    fn pages_merge_without_repeating_or_skipping() {
        // The index holds a..h; the memtable deletes c, changes e, adds d and z.
        let index: Vec<_> = ["a", "b", "c", "e", "f", "h"].iter().map(|k| kv(k, "old")).collect();
        let mut m = Memtable::default();
        m.delete(Table::Blobs, b"c".to_vec());
        m.put(Table::Blobs, b"e".to_vec(), b"new".to_vec());
        m.put(Table::Blobs, b"d".to_vec(), b"new".to_vec());
        m.put(Table::Blobs, b"z".to_vec(), b"new".to_vec());
        let layers = [&m];
        let mut from = b"".to_vec();
        let mut seen = Vec::new();
        // Pages of two index entries at a time.
        loop {
            let start = index.partition_point(|(k, _)| k.as_slice() < from.as_slice());
            let page: Vec<_> = index[start..].iter().take(2).cloned().collect();
            let complete = start + page.len() == index.len();
            let (live, next) = merge_page(&layers, Table::Blobs, &from, None, Page { entries: page, complete });
            seen.extend(
                live.into_iter()
                    .map(|(k, v)| format!("{}={}", String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap())),
            );
            match next {
                Some(n) => from = n,
                None => break,
            }
        }
        assert_eq!(seen, ["a=old", "b=old", "d=new", "e=new", "f=old", "h=old", "z=new"]);
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
        assert_eq!(successor(b"a"), b"a\0".to_vec());
    }
}
