//! Which keys the index may hold: a Bloom filter over every key written to it since the shard
//! started (and every key it held then), so that a change to a key the index has never held (a
//! new blob, the staged blocks of a blob that has none) needs no read of the index at all. A
//! "maybe" is read as before; a "no" is certain. Keys are never removed (a deleted key stays a
//! "maybe" until the next start rebuilds the filter from the index).
//!
//! Sized at start for twice the keys found (and at least a floor: two million blob keys, 128 Ki
//! keys of blobs with uncommitted blocks, a million chunk ids, 256 Ki dedup hashes) at ten bits
//! each, rounded up to a power of two, with seven probes per key, all in one 64-byte block:
//! about 1% false "maybe"s when the keys have doubled (far fewer before), rising slowly past
//! that; 2.5 to 5 bytes per key held at start, 6.75 MiB per shard at the least (4 MiB, 256 KiB,
//! 2 MiB and 512 KiB).

use xxhash_rust::xxh3::xxh3_64;

const BITS_PER_KEY: usize = 10;
const PROBES: usize = 7;
/// Bits of a block: all of a key's probes fall in one block of one cache line.
const BLOCK_BITS: usize = 512;

/// One cache line of the filter.
#[derive(Debug, Clone, Copy)]
#[repr(align(64))]
struct Block([u64; BLOCK_BITS / 64]);

#[derive(Debug, Clone)]
pub struct KeyFilter {
    blocks: Vec<Block>,
}

/// The hash a filter probes with (keep it to insert later without the key).
pub fn hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

impl KeyFilter {
    /// A filter for twice `keys` keys (at least `floor`), holding `hashes`.
    pub fn with_hashes(keys: usize, floor: usize, hashes: impl IntoIterator<Item = u64>) -> KeyFilter {
        let bits = ((keys * 2).max(floor).max(64) * BITS_PER_KEY).next_power_of_two().max(BLOCK_BITS);
        let mut f = KeyFilter { blocks: vec![Block([0; BLOCK_BITS / 64]); bits / BLOCK_BITS] };
        for h in hashes {
            f.insert_hash(h);
        }
        f
    }

    /// A key's block and its probes' bits in it. A filter whose probes spread over the whole
    /// table pays a cache miss for each of them: seven for every "maybe", and seven for every
    /// key inserted (ten million of them at the start of a full shard). In one block they cost
    /// one, for a slightly higher false "maybe" rate at the same bits (RocksDB's cache-local
    /// Bloom filter). The block comes from the hash's low bits, the bits from a remix of all of
    /// it: the fences pick keys by the hash's top bits ([`super::fences`]), which must not
    /// crowd them into a few blocks.
    fn probes(&self, h: u64) -> (usize, impl Iterator<Item = usize>) {
        debug_assert!(self.blocks.len().is_power_of_two());
        let block = (h as usize) & (self.blocks.len() - 1);
        let mut x = h;
        let bits = (0..PROBES).map(move |_| {
            x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
            (x >> (64 - 9)) as usize
        });
        (block, bits)
    }

    pub fn insert_hash(&mut self, h: u64) {
        let (block, bits) = self.probes(h);
        let words = &mut self.blocks[block].0;
        for b in bits {
            words[b / 64] |= 1 << (b % 64);
        }
    }

    pub fn insert(&mut self, key: &[u8]) {
        self.insert_hash(hash(key));
    }

    /// False only for a key never inserted.
    pub fn may_hold(&self, key: &[u8]) -> bool {
        let (block, mut bits) = self.probes(hash(key));
        let words = &self.blocks[block].0;
        bits.all(|b| words[b / 64] & (1 << (b % 64)) != 0)
    }

    pub fn bytes(&self) -> usize {
        self.blocks.len() * BLOCK_BITS / 8
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
        assert!(small.may_hold(b"a") && small.bytes() >= 64);
    }

    /// Filled to the keys it was sized for (twice those found at start), the blocked filter
    /// still answers "no" for all but about 1% of absent keys; at the load it starts with, for
    /// nearly all.
    #[test]
    fn false_maybes_at_full_and_half_load() {
        let key = |i: u32| format!("devstoreaccount1\0small\0obj/{:04}/{i:09}", i % 1000).into_bytes();
        let mut f = KeyFilter::with_hashes(50_000, 0, std::iter::empty());
        for i in 0..50_000 {
            f.insert(&key(i));
        }
        let absent = |f: &KeyFilter| (1_000_000..1_100_000).filter(|&i| f.may_hold(&key(i))).count();
        let half = absent(&f);
        for i in 50_000..100_000 {
            f.insert(&key(i));
        }
        assert!((0..100_000).all(|i| f.may_hold(&key(i))), "no false no");
        let full = absent(&f);
        eprintln!("false maybes of 100,000: {half} at half load, {full} at full load");
        assert!(half < 100, "{half} of 100,000 absent keys read as maybe at half load");
        assert!(full < 1_500, "{full} of 100,000 absent keys read as maybe at full load");
    }
}
