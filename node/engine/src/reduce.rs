//! Data reduction of one chunk: a keyed hash (its identity for dedup and the seed of its page
//! checksums), a cheap compressibility probe, and zstd.

use std::cell::RefCell;

use edgeblob_io::page::pages_for;
use edgeblob_io::superblock::SECRET_LEN;

use super::error::{EngineError, Result};

pub struct Reducer {
    secret: [u8; SECRET_LEN],
    compression: bool,
    cctx: RefCell<zstd::bulk::Compressor<'static>>,
    dctx: RefCell<zstd::bulk::Decompressor<'static>>,
}

/// Bits of entropy per byte above which a chunk is taken as incompressible (already compressed
/// or encrypted data sits near 8).
const INCOMPRESSIBLE_BITS: f64 = 7.5;
const SAMPLE: usize = 1024;
const SAMPLES: usize = 4;

impl Reducer {
    pub fn new(secret: [u8; SECRET_LEN], compression: bool, level: i32) -> Result<Reducer> {
        let mut cctx = zstd::bulk::Compressor::new(level)?;
        // A frame checksum too: pages catch damage on disk, this catches a codec fault.
        cctx.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
        let dctx = zstd::bulk::Decompressor::new()?;
        Ok(Reducer { secret, compression, cctx: RefCell::new(cctx), dctx: RefCell::new(dctx) })
    }

    /// xxh3-128 keyed with the node secret, over the account's name and then the bytes: without
    /// the secret, a client cannot aim for a collision with data it has not seen; with the
    /// account in it, identical data of two accounts never shares a chunk, so no account learns
    /// from space or time whether another stores some data (dedup is within an account).
    pub fn hash(&self, account: &str, data: &[u8]) -> [u8; 16] {
        let mut h = xxhash_rust::xxh3::Xxh3::with_secret(self.secret);
        h.update(&(account.len() as u64).to_le_bytes());
        h.update(account.as_bytes());
        h.update(data);
        h.digest128().to_le_bytes()
    }

    /// The zstd frame for `data` when compression saves at least one page, else None.
    pub fn compress(&self, data: &[u8]) -> Result<Option<Vec<u8>>> {
        if !self.compression || data.len() < 2 * SAMPLE || !probe_compressible(data) {
            return Ok(None);
        }
        let out = self.cctx.borrow_mut().compress(data)?;
        Ok((pages_for(out.len()) < pages_for(data.len())).then_some(out))
    }

    pub fn decompress(&self, frame: &[u8], len: usize) -> Result<Vec<u8>> {
        let out = self
            .dctx
            .borrow_mut()
            .decompress(frame, len)
            .map_err(|e| EngineError::Corrupt(format!("zstd frame does not decompress: {e}")))?;
        if out.len() != len {
            return Err(EngineError::Corrupt(format!("chunk decompresses to {} bytes, expected {len}", out.len())));
        }
        Ok(out)
    }
}

/// Estimates byte entropy from a few samples spread over the chunk.
pub fn probe_compressible(data: &[u8]) -> bool {
    let mut hist = [0u32; 256];
    let step = (data.len() - SAMPLE) / (SAMPLES - 1).max(1);
    let mut n = 0u32;
    for i in 0..SAMPLES {
        let at = i * step;
        for &b in &data[at..at + SAMPLE] {
            hist[b as usize] += 1;
        }
        n += SAMPLE as u32;
    }
    let n = n as f64;
    let bits: f64 = hist.iter().filter(|&&c| c > 0).map(|&c| -(c as f64 / n) * (c as f64 / n).log2()).sum();
    bits < INCOMPRESSIBLE_BITS
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng};

    fn reducer() -> Reducer {
        Reducer::new([3; SECRET_LEN], true, 1).unwrap()
    }

    #[test]
    fn random_data_is_stored_raw_and_text_is_compressed() {
        let r = reducer();
        let mut random = vec![0u8; 1 << 20];
        rand::rngs::StdRng::seed_from_u64(1).fill_bytes(&mut random);
        assert!(!probe_compressible(&random));
        assert!(r.compress(&random).unwrap().is_none());
        let text: Vec<u8> =
            b"the quick brown fox jumps over the lazy dog ".iter().cycle().take(1 << 20).copied().collect();
        let z = r.compress(&text).unwrap().unwrap();
        assert!(z.len() < text.len() / 10);
        assert_eq!(r.decompress(&z, text.len()).unwrap(), text);
    }

    #[test]
    fn hash_depends_on_the_secret_and_the_account() {
        // Secrets are random in practice (format draws them from the OS).
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let (mut s1, mut s2) = ([0u8; SECRET_LEN], [0u8; SECRET_LEN]);
        rng.fill_bytes(&mut s1);
        rng.fill_bytes(&mut s2);
        let a = Reducer::new(s1, false, 1).unwrap();
        let b = Reducer::new(s2, false, 1).unwrap();
        for input in [&b"x"[..], b"four", b"a longer input of more than sixteen bytes", &[7u8; 5000]] {
            assert_eq!(a.hash("acct", input), a.hash("acct", input));
            assert_ne!(a.hash("acct", input), b.hash("acct", input));
            assert_ne!(a.hash("acct", input), a.hash("other", input));
            // The name is length-prefixed: no shift of bytes between name and data collides.
            assert_ne!(a.hash("ab", input), a.hash("a", &[b"b", input].concat()));
        }
    }

    #[test]
    fn damaged_frames_are_errors() {
        let r = reducer();
        let text = vec![b'a'; 100_000];
        let mut z = r.compress(&text).unwrap().unwrap();
        let mid = z.len() / 2;
        z[mid] ^= 0xFF;
        assert!(r.decompress(&z, text.len()).is_err());
        assert!(r.decompress(&z[..3], text.len()).is_err());
    }
}
