//! Which keys the index may hold: a Bloom filter over every key written to it since the shard
//! started (and every key it held then), so that a change to a key the index has never held (a
//! new blob, the staged blocks of a blob that has none) needs no read of the index at all. A
//! "maybe" is read as before; a "no" is certain. Keys are never removed (a deleted key stays a
//! "maybe" until the next start rebuilds the filter from the index).
//!
//! Sized at start for twice the keys found (and at least a floor: two million blob keys, 128 Ki
//! keys of blobs with uncommitted blocks, a million chunk ids, 256 Ki dedup hashes) at ten bits
//! each, rounded up to a power of two, with seven probes per key: under 1% false "maybe"s until
//! the keys double, rising slowly past that; 2.5 to 5 bytes per key held at start, 6.75 MiB per
//! shard at the least (4 MiB, 256 KiB, 2 MiB and 512 KiB).

use xxhash_rust::xxh3::xxh3_64;

const BITS_PER_KEY: usize = 10;
const PROBES: u64 = 7;

#[derive(Debug, Clone)]
pub struct KeyFilter {
    words: Vec<u64>,
}

/// The hash a filter probes with (keep it to insert later without the key).
pub fn hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

impl KeyFilter {
    /// A filter for twice `keys` keys (at least `floor`), holding `hashes`.
    pub fn with_hashes(keys: usize, floor: usize, hashes: impl IntoIterator<Item = u64>) -> KeyFilter {
        let bits = ((keys * 2).max(floor).max(64) * BITS_PER_KEY).next_power_of_two();
        let mut f = KeyFilter { words: vec![0; bits / 64] };
        for h in hashes {
            f.insert_hash(h);
        }
        f
    }

    fn probes(&self, h: u64) -> impl Iterator<Item = usize> {
        // Double hashing: h1 + i * h2 over a power-of-two table.
        let mask = (self.words.len() * 64 - 1) as u64;
        let h2 = h.rotate_left(32).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..PROBES).map(move |i| (h.wrapping_add(i.wrapping_mul(h2)) & mask) as usize)
    }

    pub fn insert_hash(&mut self, h: u64) {
        let bits: Vec<usize> = self.probes(h).collect();
        for b in bits {
            self.words[b / 64] |= 1 << (b % 64);
        }
    }

    pub fn insert(&mut self, key: &[u8]) {
        self.insert_hash(hash(key));
    }

    /// False only for a key never inserted.
    pub fn may_hold(&self, key: &[u8]) -> bool {
        self.probes(hash(key)).all(|b| self.words[b / 64] & (1 << (b % 64)) != 0)
    }

    pub fn bytes(&self) -> usize {
        self.words.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_keys_are_always_maybe_and_most_others_no() {
        let keys: Vec<Vec<u8>> = (0..200_000u32).map(|i| format!("acct\0box\0name-{i}").into_bytes()).collect();
        let mut f = KeyFilter::with_hashes(100_000, 1 << 21, keys[..100_000].iter().map(|k| hash(k)));
        for k in &keys[100_000..150_000] {
            f.insert(k);
        }
        assert!(keys[..150_000].iter().all(|k| f.may_hold(k)), "no false no");
        let false_maybe = keys[150_000..].iter().filter(|k| f.may_hold(k)).count();
        assert!(false_maybe < 500, "{false_maybe} of 50,000 absent keys read as maybe");
        assert_eq!(f.bytes(), (1 << 25) / 8, "the floor's worth at least");
        let small = KeyFilter::with_hashes(3, 0, [hash(b"a")]);
        assert!(small.may_hold(b"a") && small.bytes() >= 8);
    }
}
