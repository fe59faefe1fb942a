//! Deterministic, seekable test data. Every byte of every blob is a function of the seed, the
//! blob's name and its offset, so a reader can check any range it gets back without keeping a
//! copy, and a run repeats exactly with the same seed.
//!
//! Data is made in units (the block size the blob is written with): a chosen share of units are
//! copies of one of a few shared units (duplicates that a deduplicating store keeps once, whole
//! blocks so they line up with its chunks), and within each 4 KiB of a unit only the first
//! `4096 / ratio` bytes are random, the rest zero, so zstd shrinks it by about `ratio`.

/// How blob contents are generated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pattern {
    pub seed: u64,
    /// 1.0: incompressible. 4.0: about a quarter of each 4 KiB is random.
    pub compress_ratio: f64,
    /// Share of units (0..=100) that duplicate a unit from the shared pool.
    pub dedupe_percentage: u32,
    /// Bytes per unit: the block size blobs are written with.
    pub unit: u64,
}

/// Distinct units that duplicates are drawn from.
const DEDUPE_POOL: u64 = 16;
const SEGMENT: usize = 4096;

/// SplitMix64's output function: counter-based, so word `i` of a stream needs no state.
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A stable 64-bit name for a blob.
pub fn name_key(seed: u64, name: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(name.as_bytes(), seed)
}

impl Pattern {
    /// The stream a unit's bytes come from (shared by all copies of a duplicate).
    fn unit_stream(&self, key: u64, unit: u64) -> u64 {
        let pick = mix(self.seed ^ mix(key ^ unit.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        if (pick % 100) < u64::from(self.dedupe_percentage) {
            mix(self.seed ^ 0xD0D0 ^ ((pick >> 32) % DEDUPE_POOL))
        } else {
            pick
        }
    }

    /// Random bytes at the start of each 4 KiB segment.
    fn random_per_segment(&self) -> usize {
        if self.compress_ratio <= 1.0 {
            SEGMENT
        } else {
            ((SEGMENT as f64 / self.compress_ratio).ceil() as usize).clamp(8, SEGMENT)
        }
    }

    /// Fills `out` with the blob's bytes from `offset`.
    pub fn fill(&self, key: u64, offset: u64, out: &mut [u8]) {
        debug_assert!(self.unit > 0);
        let random = self.random_per_segment();
        let mut pos = 0usize;
        while pos < out.len() {
            let at = offset + pos as u64;
            let (unit, in_unit) = (at / self.unit, at % self.unit);
            let take = ((self.unit - in_unit) as usize).min(out.len() - pos);
            let stream = self.unit_stream(key, unit);
            fill_unit(stream, in_unit, random, &mut out[pos..pos + take]);
            pos += take;
        }
    }

    pub fn generate(&self, key: u64, offset: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill(key, offset, &mut v);
        v
    }

    /// Where `got` (the blob's bytes from `offset`) first differs from what was written.
    pub fn first_mismatch(&self, key: u64, offset: u64, got: &[u8]) -> Option<u64> {
        let mut want = [0u8; 64 << 10];
        for (i, piece) in got.chunks(want.len()).enumerate() {
            let at = offset + (i * want.len()) as u64;
            let want = &mut want[..piece.len()];
            self.fill(key, at, want);
            if let Some(p) = piece.iter().zip(want.iter()).position(|(a, b)| a != b) {
                return Some(at + p as u64);
            }
        }
        None
    }
}

/// Bytes `[from, from + out.len())` of one unit's stream.
fn fill_unit(stream: u64, from: u64, random: usize, out: &mut [u8]) {
    let mut pos = 0usize;
    while pos < out.len() {
        let at = from + pos as u64;
        let in_seg = (at % SEGMENT as u64) as usize;
        if in_seg >= random {
            let zeros = (SEGMENT - in_seg).min(out.len() - pos);
            out[pos..pos + zeros].fill(0);
            pos += zeros;
            continue;
        }
        // Word-aligned random bytes up to the end of the segment's random part.
        let end = (random - in_seg).min(out.len() - pos);
        let mut word = at / 8;
        let mut skip = (at % 8) as usize;
        let mut done = 0;
        while done < end {
            let bytes = mix(stream.wrapping_add(word.wrapping_mul(0x9E37_79B9_7F4A_7C15))).to_le_bytes();
            let n = (8 - skip).min(end - done);
            out[pos + done..pos + done + n].copy_from_slice(&bytes[skip..skip + n]);
            done += n;
            skip = 0;
            word += 1;
        }
        pos += end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(ratio: f64, dup: u32) -> Pattern {
        Pattern { seed: 7, compress_ratio: ratio, dedupe_percentage: dup, unit: 1 << 20 }
    }

    #[test]
    fn any_range_equals_the_same_bytes_of_the_whole() {
        for p in [pattern(1.0, 0), pattern(3.0, 30)] {
            let whole = p.generate(11, 0, 3 << 20);
            for (off, len) in [(0u64, 1usize), (5, 4091), (4093, 10), (1048570, 20), ((2 << 20) + 3, 100_000)] {
                assert_eq!(p.generate(11, off, len), whole[off as usize..off as usize + len], "{off}+{len}");
            }
            assert_eq!(p.first_mismatch(11, 0, &whole), None);
        }
    }

    #[test]
    fn a_changed_byte_is_found_where_it_is() {
        let p = pattern(1.0, 0);
        let mut got = p.generate(3, 100, 200_000);
        got[150_000] ^= 1;
        assert_eq!(p.first_mismatch(3, 100, &got), Some(150_100));
    }

    #[test]
    fn seeds_and_names_give_different_data() {
        let p = pattern(1.0, 0);
        assert_ne!(p.generate(1, 0, 64), p.generate(2, 0, 64));
        let q = Pattern { seed: 8, ..p };
        assert_ne!(p.generate(1, 0, 64), q.generate(1, 0, 64));
    }

    #[test]
    fn compress_ratio_is_what_zstd_finds() {
        for ratio in [1.0, 2.0, 4.0] {
            let data = pattern(ratio, 0).generate(5, 0, 4 << 20);
            let packed = zstd::bulk::compress(&data, 1).unwrap();
            let got = data.len() as f64 / packed.len() as f64;
            assert!((got / ratio - 1.0).abs() < 0.15, "asked {ratio}, zstd gave {got:.2}");
        }
    }

    #[test]
    fn dedupe_percentage_is_the_share_of_repeated_units() {
        let p = Pattern { unit: 4096, ..pattern(1.0, 40) };
        let units = 4000u64;
        let data = p.generate(9, 0, (units * p.unit) as usize);
        let distinct: std::collections::HashSet<&[u8]> = data.chunks(p.unit as usize).collect();
        let dup_share = 1.0 - (distinct.len() as f64 - DEDUPE_POOL as f64) / units as f64;
        assert!((dup_share - 0.40).abs() < 0.04, "duplicate share {dup_share:.3}");
        let none = Pattern { dedupe_percentage: 0, ..p }.generate(9, 0, data.len());
        let distinct: std::collections::HashSet<&[u8]> = none.chunks(p.unit as usize).collect();
        assert_eq!(distinct.len() as u64, units);
    }
}
