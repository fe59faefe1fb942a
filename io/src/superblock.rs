//! The superblock: page 0 of every device. It names the format, identifies the device (uuid),
//! fixes the shard layout, and holds the node secret that keys chunk hashes. It is written once
//! by format and verified at every start; a mismatch is an error, never a reason to reformat.
//! Byte layout: docs/format.md.

use xxhash_rust::xxh3::xxh3_64;

use crate::buf::PAGE_SIZE;

pub const MAGIC: [u8; 8] = *b"EDGEBLOB";
pub const FORMAT_VERSION: u32 = 1;
pub const SECRET_LEN: usize = 192;
/// Regions start after the first MiB, which holds the superblock and room for later needs.
pub const REGIONS_START: u64 = 1 << 20;
const ALIGN: u64 = 1 << 20;
const CHECKSUM_AT: usize = PAGE_SIZE - 8;

#[derive(Debug, thiserror::Error)]
pub enum SuperblockError {
    #[error("no edgeblob superblock (magic {0:02x?}): not formatted, or not an edgeblob device")]
    NotFormatted([u8; 8]),
    #[error("format version {found} is not readable by this build (reads {FORMAT_VERSION})")]
    Version { found: u32 },
    #[error("superblock checksum mismatch: the superblock is damaged")]
    Checksum,
    #[error("the device holds {actual} bytes but was formatted for {formatted}")]
    Truncated { formatted: u64, actual: u64 },
    #[error("device of {len} bytes is too small for {shards} shard(s): need at least {need}")]
    TooSmall { len: u64, shards: u32, need: u64 },
    #[error("superblock describes an impossible layout: {0}")]
    Layout(String),
}

/// Where each shard's region, log and data area lie on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub shards: u32,
    pub regions_start: u64,
    pub region_len: u64,
    /// Bytes of each region given to the metadata log (two halves), at the region's start.
    pub log_len: u64,
}

impl Layout {
    /// The smallest region that holds a log and some data.
    pub const MIN_REGION: u64 = 16 << 20;

    pub fn for_device(len: u64, shards: u32) -> Result<Layout, SuperblockError> {
        let need = REGIONS_START + Self::MIN_REGION * shards as u64;
        if shards == 0 || len < need {
            return Err(SuperblockError::TooSmall { len, shards, need });
        }
        let region_len = (len - REGIONS_START) / shards as u64 / ALIGN * ALIGN;
        // A sixteenth of the region for metadata, at least 4 MiB and at most 1 GiB.
        let log_len = (region_len / 16 / ALIGN * ALIGN).clamp(4 << 20, 1 << 30);
        Ok(Layout { shards, regions_start: REGIONS_START, region_len, log_len })
    }

    pub fn region_start(&self, shard: u32) -> u64 {
        debug_assert!(shard < self.shards);
        self.regions_start + shard as u64 * self.region_len
    }

    /// The log half `half` (0 or 1) of a shard: (offset, length).
    pub fn log_half(&self, shard: u32, half: u8) -> (u64, u64) {
        let half_len = self.log_len / 2;
        (self.region_start(shard) + half as u64 * half_len, half_len)
    }

    /// The data area of a shard: (offset, length).
    pub fn data_area(&self, shard: u32) -> (u64, u64) {
        (self.region_start(shard) + self.log_len, self.region_len - self.log_len)
    }

    /// The shard whose region holds `offset`, if any.
    pub fn shard_of(&self, offset: u64) -> Option<u32> {
        let s = offset.checked_sub(self.regions_start)? / self.region_len;
        (s < self.shards as u64).then_some(s as u32)
    }

    fn check(&self, device_len: u64) -> Result<(), SuperblockError> {
        let bad = |m: &str| Err(SuperblockError::Layout(m.to_owned()));
        if self.shards == 0 || self.region_len == 0 {
            return bad("no shards");
        }
        if self.log_len >= self.region_len || !self.log_len.is_multiple_of(2 * PAGE_SIZE as u64) {
            return bad("log does not fit its region");
        }
        let end = self.regions_start.checked_add(self.region_len.saturating_mul(self.shards as u64));
        match end {
            Some(end) if end <= device_len => Ok(()),
            _ => bad("regions run past the device"),
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct Superblock {
    pub version: u32,
    pub uuid: [u8; 16],
    pub device_len: u64,
    pub layout: Layout,
    pub created_unix: u64,
    /// Key of the chunk hash (xxh3 secret). Never leaves the device.
    pub secret: [u8; SECRET_LEN],
}

impl std::fmt::Debug for Superblock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Superblock")
            .field("version", &self.version)
            .field("uuid", &uuid::Uuid::from_bytes(self.uuid))
            .field("device_len", &self.device_len)
            .field("layout", &self.layout)
            .field("created_unix", &self.created_unix)
            .finish_non_exhaustive()
    }
}

impl Superblock {
    /// A new superblock for a device of `device_len` bytes split into `shards` regions, with a
    /// fresh uuid and secret from the OS random source.
    pub fn new(device_len: u64, shards: u32) -> Result<Superblock, SuperblockError> {
        let layout = Layout::for_device(device_len, shards)?;
        let mut secret = [0u8; SECRET_LEN];
        getrandom::getrandom(&mut secret).map_err(|e| SuperblockError::Layout(format!("no randomness: {e}")))?;
        let created_unix =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Ok(Superblock {
            version: FORMAT_VERSION,
            uuid: *uuid::Uuid::new_v4().as_bytes(),
            device_len,
            layout,
            created_unix,
            secret,
        })
    }

    pub fn encode(&self) -> [u8; PAGE_SIZE] {
        let mut p = [0u8; PAGE_SIZE];
        p[0..8].copy_from_slice(&MAGIC);
        p[8..12].copy_from_slice(&self.version.to_le_bytes());
        // 12..16 flags, zero
        p[16..32].copy_from_slice(&self.uuid);
        p[32..40].copy_from_slice(&self.device_len.to_le_bytes());
        p[40..44].copy_from_slice(&self.layout.shards.to_le_bytes());
        // 44..48 reserved
        p[48..56].copy_from_slice(&self.layout.regions_start.to_le_bytes());
        p[56..64].copy_from_slice(&self.layout.region_len.to_le_bytes());
        p[64..72].copy_from_slice(&self.layout.log_len.to_le_bytes());
        p[72..80].copy_from_slice(&self.created_unix.to_le_bytes());
        p[80..80 + SECRET_LEN].copy_from_slice(&self.secret);
        let sum = xxh3_64(&p[..CHECKSUM_AT]);
        p[CHECKSUM_AT..].copy_from_slice(&sum.to_le_bytes());
        p
    }

    /// Parses and verifies page 0 of a device of `actual_len` bytes.
    pub fn decode(p: &[u8], actual_len: u64) -> Result<Superblock, SuperblockError> {
        assert!(p.len() >= PAGE_SIZE);
        let u32_at = |o: usize| u32::from_le_bytes(p[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(p[o..o + 8].try_into().expect("8 bytes"));
        let magic: [u8; 8] = p[0..8].try_into().expect("8 bytes");
        if magic != MAGIC {
            return Err(SuperblockError::NotFormatted(magic));
        }
        if u64_at(CHECKSUM_AT) != xxh3_64(&p[..CHECKSUM_AT]) {
            return Err(SuperblockError::Checksum);
        }
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(SuperblockError::Version { found: version });
        }
        let device_len = u64_at(32);
        if device_len > actual_len {
            return Err(SuperblockError::Truncated { formatted: device_len, actual: actual_len });
        }
        let layout =
            Layout { shards: u32_at(40), regions_start: u64_at(48), region_len: u64_at(56), log_len: u64_at(64) };
        layout.check(device_len)?;
        Ok(Superblock {
            version,
            uuid: p[16..32].try_into().expect("16 bytes"),
            device_len,
            layout,
            created_unix: u64_at(72),
            secret: p[80..80 + SECRET_LEN].try_into().expect("secret"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let sb = Superblock::new(1 << 30, 2).unwrap();
        let back = Superblock::decode(&sb.encode(), 1 << 30).unwrap();
        assert_eq!(sb, back);
        assert_eq!(back.layout.shards, 2);
        let (d0, l0) = back.layout.data_area(0);
        let (d1, _) = back.layout.data_area(1);
        assert_eq!(d0 + l0 + back.layout.log_len, d1, "regions are contiguous");
    }

    #[test]
    fn every_damage_is_a_clear_error() {
        let sb = Superblock::new(1 << 30, 2).unwrap();
        let page = sb.encode();
        let mut bad = page;
        bad[100] ^= 1;
        assert!(matches!(Superblock::decode(&bad, 1 << 30), Err(SuperblockError::Checksum)));
        assert!(matches!(Superblock::decode(&[0; PAGE_SIZE], 1 << 30), Err(SuperblockError::NotFormatted(_))));
        assert!(matches!(Superblock::decode(&page, 1 << 29), Err(SuperblockError::Truncated { .. })));
        let mut v2 = page;
        v2[8] = 2;
        let sum = xxh3_64(&v2[..CHECKSUM_AT]);
        v2[CHECKSUM_AT..].copy_from_slice(&sum.to_le_bytes());
        assert!(matches!(Superblock::decode(&v2, 1 << 30), Err(SuperblockError::Version { found: 2 })));
    }

    #[test]
    fn too_small_devices_are_refused() {
        assert!(matches!(Layout::for_device(8 << 20, 1), Err(SuperblockError::TooSmall { .. })));
        assert!(Layout::for_device(64 << 20, 2).is_ok());
    }

    #[test]
    fn shard_of_maps_offsets_to_regions() {
        let l = Layout::for_device(1 << 30, 4).unwrap();
        assert_eq!(l.shard_of(0), None);
        for s in 0..4 {
            assert_eq!(l.shard_of(l.region_start(s)), Some(s));
            assert_eq!(l.shard_of(l.region_start(s) + l.region_len - 1), Some(s));
        }
    }
}
