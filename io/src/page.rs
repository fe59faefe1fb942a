//! Self-checking pages: every 4096-byte page on disk carries 4092 bytes of payload followed by a
//! CRC-32C of that payload, seeded with a value that names what should be there (the chunk's hash
//! and the page's index within the chunk). A page read from the wrong place, a stale page from a
//! freed extent, a torn write or a flipped bit all fail the check: a read returns an error, never
//! wrong bytes. Random reads need only the pages they touch, so a 4 KiB read costs one or two
//! pages and never a whole chunk.

use crate::buf::PAGE_SIZE;

pub const PAGE_PAYLOAD: usize = PAGE_SIZE - 4;

/// Pages needed to hold `len` payload bytes.
pub fn pages_for(len: usize) -> usize {
    len.div_ceil(PAGE_PAYLOAD)
}

/// The page holding payload byte `pos`, and the offset within that page's payload.
pub fn locate(pos: u64) -> (u64, usize) {
    (pos / PAGE_PAYLOAD as u64, (pos % PAGE_PAYLOAD as u64) as usize)
}

fn page_crc(seed: u32, index: u64, payload: &[u8]) -> u32 {
    let start = seed ^ (index as u32).wrapping_mul(0x9E37_79B9);
    crc32c::crc32c_append(start, payload)
}

/// Frames `data` into pages in `out` (which must hold `pages_for(data.len())` pages). The unused
/// tail of the last page is zeroed so that nothing of a previous buffer reaches the disk.
pub fn encode(data: &[u8], seed: u32, out: &mut [u8]) {
    let pages = pages_for(data.len());
    assert!(out.len() >= pages * PAGE_SIZE, "output holds {} bytes, need {}", out.len(), pages * PAGE_SIZE);
    for (i, page) in out[..pages * PAGE_SIZE].chunks_exact_mut(PAGE_SIZE).enumerate() {
        let from = i * PAGE_PAYLOAD;
        let n = (data.len() - from).min(PAGE_PAYLOAD);
        page[..n].copy_from_slice(&data[from..from + n]);
        page[n..PAGE_PAYLOAD].fill(0);
        let crc = page_crc(seed, i as u64, &page[..PAGE_PAYLOAD]);
        page[PAGE_PAYLOAD..].copy_from_slice(&crc.to_le_bytes());
    }
}

/// A page whose checksum does not match what should be there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("page {page} of the chunk fails its checksum")]
pub struct PageCorrupt {
    pub page: u64,
}

/// Verifies the pages in `pages` (page `first_page` onwards of a chunk) and copies payload bytes
/// `[skip, skip + out.len())` of them (counted from the start of `first_page`) into `out`.
pub fn decode(pages: &[u8], seed: u32, first_page: u64, skip: usize, out: &mut [u8]) -> Result<(), PageCorrupt> {
    debug_assert_eq!(pages.len() % PAGE_SIZE, 0);
    let mut written = 0;
    let mut pos = 0; // payload position relative to first_page
    for (i, page) in pages.chunks_exact(PAGE_SIZE).enumerate() {
        let index = first_page + i as u64;
        let stored = u32::from_le_bytes(page[PAGE_PAYLOAD..].try_into().expect("4 bytes"));
        if page_crc(seed, index, &page[..PAGE_PAYLOAD]) != stored {
            return Err(PageCorrupt { page: index });
        }
        let page_end = pos + PAGE_PAYLOAD;
        if written < out.len() && page_end > skip {
            let from = skip.max(pos) - pos;
            let n = (PAGE_PAYLOAD - from).min(out.len() - written);
            out[written..written + n].copy_from_slice(&page[from..from + n]);
            written += n;
        }
        pos = page_end;
    }
    debug_assert_eq!(written, out.len(), "pages did not cover the requested bytes");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(data: &[u8], seed: u32) -> Vec<u8> {
        let mut out = vec![0xAA; pages_for(data.len()) * PAGE_SIZE];
        encode(data, seed, &mut out);
        out
    }

    #[test]
    fn roundtrip_any_subrange() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let pages = framed(&data, 42);
        assert_eq!(pages.len(), 5 * PAGE_SIZE);
        for (a, b) in [(0, data.len()), (1, 2), (4090, 4100), (8184, 12_000), (19_999, 20_000)] {
            let (p0, skip) = locate(a as u64);
            let (p1, _) = locate(b as u64 - 1);
            let slice = &pages[p0 as usize * PAGE_SIZE..(p1 as usize + 1) * PAGE_SIZE];
            let mut out = vec![0; b - a];
            decode(slice, 42, p0, skip, &mut out).unwrap();
            assert_eq!(out, &data[a..b], "range {a}..{b}");
        }
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let data = vec![7u8; 9000];
        let pages = framed(&data, 1);
        let mut out = vec![0; data.len()];
        for pos in [0, 100, 4091, 4092, 4095, 4096, 12_287] {
            let mut bad = pages.clone();
            bad[pos] ^= 0x10;
            let err = decode(&bad, 1, 0, 0, &mut out).unwrap_err();
            assert_eq!(err.page, (pos / PAGE_SIZE) as u64);
        }
    }

    #[test]
    fn wrong_seed_or_wrong_place_is_detected() {
        let data = vec![3u8; 100];
        let pages = framed(&data, 5);
        let mut out = vec![0; 100];
        assert!(decode(&pages, 6, 0, 0, &mut out).is_err(), "another chunk's seed");
        assert!(decode(&pages, 5, 1, 0, &mut out).is_err(), "page read as if it were page 1");
        assert!(decode(&pages, 5, 0, 0, &mut out).is_ok());
    }

    #[test]
    fn unused_tail_is_zeroed() {
        let pages = framed(&[1, 2, 3], 0);
        assert!(pages[3..PAGE_PAYLOAD].iter().all(|&b| b == 0));
    }
}
