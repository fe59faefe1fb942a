//! The superblock: page 0 of every device. It names the format, identifies the device (uuid),
//! fixes the shard layout, and holds the node secret that keys chunk hashes. It is written once
//! by format and verified at every start; a mismatch is an error, never a reason to reformat.
//! Byte layout: docs/format.md.

use xxhash_rust::xxh3::xxh3_64;

use crate::buf::PAGE_SIZE;

pub const MAGIC: [u8; 8] = *b"EDGEBLOB";
/// The version this build formats: 2 adds each shard's metadata index (an index header area after
/// the log, and the length of the index's segments). Version 1 devices are still read and written
/// (their metadata lives in the log alone) until `edgeblob-admin upgrade` has moved them.
pub const FORMAT_VERSION: u32 = 2;
/// Every version this build reads.
pub const READABLE_VERSIONS: [u32; 2] = [1, 2];
/// Bytes after a v2 log that hold the index's two header slots (the rest is reserved).
pub const INDEX_AREA: u64 = 1 << 20;
pub const SECRET_LEN: usize = 192;
/// Regions start after the first MiB, which holds the superblock and room for later needs.
pub const REGIONS_START: u64 = 1 << 20;
/// What regions, logs and index segments are aligned to, and the smallest segment.
pub const ALIGN: u64 = 1 << 20;
const CHECKSUM_AT: usize = PAGE_SIZE - 8;
/// Flags bit 0: the device is one member of a node on several devices ([`Member`]). Every other
/// bit must be clear: a build that does not know a flag must not open the device.
pub const FLAG_MEMBER: u32 = 1;
/// Flags bit 1: a restore from the tier is writing this node and has not finished; no node opens
/// it, and the next restore starts over. On the device, not beside it, so that a raw device
/// whose restore was cut short by a reboot still says so.
pub const FLAG_RESTORING: u32 = 2;
const KNOWN_FLAGS: u32 = FLAG_MEMBER | FLAG_RESTORING;
/// The most devices a node has (a device's index is 16 bits of a node offset, `crate::volume`).
pub const MAX_DEVICES: u16 = 256;

#[derive(Debug, thiserror::Error)]
pub enum SuperblockError {
    #[error("no edgeblob superblock (magic {0:02x?}): not formatted, or not an edgeblob device")]
    NotFormatted([u8; 8]),
    #[error("format version {found} is not readable by this build (reads 1 and {FORMAT_VERSION})")]
    Version { found: u32 },
    #[error("superblock checksum mismatch: the superblock is damaged")]
    Checksum,
    #[error("the device holds {actual} bytes but was formatted for {formatted}")]
    Truncated { formatted: u64, actual: u64 },
    #[error("device of {len} bytes is too small for {shards} shard(s): need at least {need}")]
    TooSmall { len: u64, shards: u32, need: u64 },
    #[error("superblock describes an impossible layout: {0}")]
    Layout(String),
    #[error("superblock flags {0:#x} include ones this build does not know")]
    Flags(u32),
}

/// Where each shard's region, log and data area lie on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub shards: u32,
    pub regions_start: u64,
    pub region_len: u64,
    /// Bytes of each region given to the metadata log (two halves), at the region's start.
    pub log_len: u64,
    /// Bytes after the log for the index header ([`INDEX_AREA`] in v2, 0 in v1).
    pub index_area: u64,
    /// Length of each segment of the index's storage (v2; 0 in v1).
    pub segment_len: u64,
}

impl Layout {
    /// The smallest region that holds a log and some data.
    pub const MIN_REGION: u64 = 16 << 20;

    /// The layout of a new device of this build's [`FORMAT_VERSION`].
    pub fn for_device(len: u64, shards: u32) -> Result<Layout, SuperblockError> {
        Layout::for_version(len, shards, FORMAT_VERSION)
    }

    pub fn for_version(len: u64, shards: u32, version: u32) -> Result<Layout, SuperblockError> {
        let need = REGIONS_START + Self::MIN_REGION * shards as u64;
        if shards == 0 || len < need {
            return Err(SuperblockError::TooSmall { len, shards, need });
        }
        let region_len = (len - REGIONS_START) / shards as u64 / ALIGN * ALIGN;
        // A sixteenth of the region for metadata, at least 4 MiB and at most 1 GiB.
        let log_len = (region_len / 16 / ALIGN * ALIGN).clamp(4 << 20, 1 << 30);
        let mut l = Layout { shards, regions_start: REGIONS_START, region_len, log_len, index_area: 0, segment_len: 0 };
        if version >= 2 {
            l.index_area = INDEX_AREA;
            // A header names at most 2,038 segments: a thousandth of the data area each lets the
            // index grow to twice the data area, far past any real need, in few segments.
            let data = region_len - log_len - INDEX_AREA;
            l.segment_len = (data / 1024 / ALIGN * ALIGN).clamp(ALIGN, 64 << 20);
        }
        Ok(l)
    }

    /// Device offset of a v2 shard's index header slots; None in v1.
    pub fn index_header(&self, shard: u32) -> Option<u64> {
        (self.index_area > 0).then(|| self.region_start(shard) + self.log_len)
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
        let meta = self.log_len + self.index_area;
        (self.region_start(shard) + meta, self.region_len - meta)
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
        if self.log_len + self.index_area >= self.region_len || !self.index_area.is_multiple_of(ALIGN) {
            return bad("index area does not fit its region");
        }
        if (self.index_area == 0) != (self.segment_len == 0) || !self.segment_len.is_multiple_of(PAGE_SIZE as u64) {
            return bad("an index area needs a segment length, in pages");
        }
        let end = self.regions_start.checked_add(self.region_len.saturating_mul(self.shards as u64));
        match end {
            Some(end) if end <= device_len => Ok(()),
            _ => bad("regions run past the device"),
        }
    }
}

/// Where a device stands in a node on several devices. Every member carries the node's uuid,
/// secret, version and creation time; the shards are spread evenly, `layout.shards` on each, the
/// member with index `i` holding shards `i * layout.shards ..`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub index: u16,
    pub count: u16,
    /// This device's own identity (the node's is `Superblock::uuid`): what the ledger records by
    /// serial, and what tells two members apart.
    pub uuid: [u8; 16],
}

#[derive(Clone, PartialEq, Eq)]
pub struct Superblock {
    pub version: u32,
    /// The node's identity: the same on every device of a node, and in every log and index
    /// header (a single device's own identity too).
    pub uuid: [u8; 16],
    pub device_len: u64,
    pub layout: Layout,
    pub created_unix: u64,
    /// Key of the chunk hash (xxh3 secret). Never leaves the device.
    pub secret: [u8; SECRET_LEN],
    /// Its place in a node on several devices; None for a node on one device (whose superblock
    /// is then byte-identical to one written before nodes had several).
    pub member: Option<Member>,
    /// A restore into the device has not finished ([`FLAG_RESTORING`]).
    pub restoring: bool,
}

impl std::fmt::Debug for Superblock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Superblock")
            .field("version", &self.version)
            .field("uuid", &uuid::Uuid::from_bytes(self.uuid))
            .field("device_len", &self.device_len)
            .field("layout", &self.layout)
            .field("created_unix", &self.created_unix)
            .field("member", &self.member)
            .field("restoring", &self.restoring)
            .finish_non_exhaustive()
    }
}

impl Superblock {
    /// A new superblock for a device of `device_len` bytes split into `shards` regions, with a
    /// fresh uuid and secret from the OS random source.
    pub fn new(device_len: u64, shards: u32) -> Result<Superblock, SuperblockError> {
        Superblock::new_version(device_len, shards, FORMAT_VERSION)
    }

    /// A new superblock of an older readable version (tests and upgrades make v1 devices).
    pub fn new_version(device_len: u64, shards: u32, version: u32) -> Result<Superblock, SuperblockError> {
        if !READABLE_VERSIONS.contains(&version) {
            return Err(SuperblockError::Version { found: version });
        }
        let layout = Layout::for_version(device_len, shards, version)?;
        let mut secret = [0u8; SECRET_LEN];
        getrandom::getrandom(&mut secret).map_err(|e| SuperblockError::Layout(format!("no randomness: {e}")))?;
        let created_unix =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Ok(Superblock {
            version,
            uuid: *uuid::Uuid::new_v4().as_bytes(),
            device_len,
            layout,
            created_unix,
            secret,
            member: None,
            restoring: false,
        })
    }

    /// The superblocks of a new node on devices of `lens` bytes with `shards` shards on each
    /// (one device: a plain superblock, with no [`Member`]).
    pub fn new_node(lens: &[u64], shards: u32, version: u32) -> Result<Vec<Superblock>, SuperblockError> {
        let count = u16::try_from(lens.len())
            .ok()
            .filter(|&n| n > 0 && n <= MAX_DEVICES)
            .ok_or_else(|| SuperblockError::Layout(format!("{} devices: a node has 1 to {MAX_DEVICES}", lens.len())))?;
        let first = Superblock::new_version(lens[0], shards, version)?;
        if count == 1 {
            return Ok(vec![first]);
        }
        (0..count).map(|index| first.sibling(index, count, lens[index as usize])).collect()
    }

    /// Device `index` of `count` of this superblock's node: its identity, secret and version,
    /// with a layout for `device_len` bytes and a fresh device uuid.
    pub fn sibling(&self, index: u16, count: u16, device_len: u64) -> Result<Superblock, SuperblockError> {
        let layout = Layout::for_version(device_len, self.layout.shards, self.version)?;
        let member = Member { index, count, uuid: *uuid::Uuid::new_v4().as_bytes() };
        Ok(Superblock { device_len, layout, member: Some(member), ..self.clone() })
    }

    /// The device's index in its node (0 for a node on one device).
    pub fn index(&self) -> usize {
        self.member.map_or(0, |m| m.index as usize)
    }

    /// How many devices its node has.
    pub fn devices(&self) -> usize {
        self.member.map_or(1, |m| m.count as usize)
    }

    /// The device's own identity.
    pub fn device_uuid(&self) -> [u8; 16] {
        self.member.map_or(self.uuid, |m| m.uuid)
    }

    pub fn encode(&self) -> [u8; PAGE_SIZE] {
        let mut p = [0u8; PAGE_SIZE];
        p[0..8].copy_from_slice(&MAGIC);
        p[8..12].copy_from_slice(&self.version.to_le_bytes());
        let flags =
            if self.member.is_some() { FLAG_MEMBER } else { 0 } | if self.restoring { FLAG_RESTORING } else { 0 };
        p[12..16].copy_from_slice(&flags.to_le_bytes());
        p[16..32].copy_from_slice(&self.uuid);
        p[32..40].copy_from_slice(&self.device_len.to_le_bytes());
        p[40..44].copy_from_slice(&self.layout.shards.to_le_bytes());
        // 44..48 reserved
        p[48..56].copy_from_slice(&self.layout.regions_start.to_le_bytes());
        p[56..64].copy_from_slice(&self.layout.region_len.to_le_bytes());
        p[64..72].copy_from_slice(&self.layout.log_len.to_le_bytes());
        p[72..80].copy_from_slice(&self.created_unix.to_le_bytes());
        p[80..80 + SECRET_LEN].copy_from_slice(&self.secret);
        p[272..280].copy_from_slice(&self.layout.index_area.to_le_bytes());
        p[280..288].copy_from_slice(&self.layout.segment_len.to_le_bytes());
        if let Some(m) = self.member {
            p[288..290].copy_from_slice(&m.index.to_le_bytes());
            p[290..292].copy_from_slice(&m.count.to_le_bytes());
            p[292..308].copy_from_slice(&m.uuid);
        }
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
        if !READABLE_VERSIONS.contains(&version) {
            return Err(SuperblockError::Version { found: version });
        }
        let flags = u32_at(12);
        if flags & !KNOWN_FLAGS != 0 {
            return Err(SuperblockError::Flags(flags));
        }
        let member = (flags & FLAG_MEMBER != 0).then(|| Member {
            index: u16::from_le_bytes([p[288], p[289]]),
            count: u16::from_le_bytes([p[290], p[291]]),
            uuid: p[292..308].try_into().expect("16 bytes"),
        });
        if let Some(m) = member.filter(|m| m.index >= m.count || m.count > MAX_DEVICES) {
            return Err(SuperblockError::Layout(format!("device {} of {}", m.index, m.count)));
        }
        let device_len = u64_at(32);
        if device_len > actual_len {
            return Err(SuperblockError::Truncated { formatted: device_len, actual: actual_len });
        }
        let layout = Layout {
            shards: u32_at(40),
            regions_start: u64_at(48),
            region_len: u64_at(56),
            log_len: u64_at(64),
            index_area: u64_at(272),
            segment_len: u64_at(280),
        };
        if (version >= 2) != (layout.index_area > 0) {
            return Err(SuperblockError::Layout(format!(
                "a version {version} superblock with an index area of {}",
                layout.index_area
            )));
        }
        layout.check(device_len)?;
        if device_len > crate::volume::DEVICE_SPAN {
            return Err(SuperblockError::Layout(format!("a device of {device_len} bytes: at most 2^48")));
        }
        Ok(Superblock {
            version,
            uuid: p[16..32].try_into().expect("16 bytes"),
            device_len,
            layout,
            created_unix: u64_at(72),
            secret: p[80..80 + SECRET_LEN].try_into().expect("secret"),
            member,
            restoring: flags & FLAG_RESTORING != 0,
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
        assert_eq!(d0 + l0 + back.layout.log_len + INDEX_AREA, d1, "regions are contiguous");
        let h = back.layout.index_header(0).unwrap();
        assert_eq!(
            (h, h + INDEX_AREA),
            (back.layout.region_start(0) + back.layout.log_len, d0),
            "the index header lies between log and data"
        );
    }

    #[test]
    fn version_1_devices_still_decode_with_no_index() {
        let sb = Superblock::new_version(1 << 30, 2, 1).unwrap();
        let back = Superblock::decode(&sb.encode(), 1 << 30).unwrap();
        assert_eq!((back.version, back.layout.index_header(0), back.layout.segment_len), (1, None, 0));
        let (d0, l0) = back.layout.data_area(0);
        assert_eq!((d0, d0 + l0), (back.layout.region_start(0) + back.layout.log_len, back.layout.region_start(1)));
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
        let mut v3 = page;
        v3[8] = 3;
        let sum = xxh3_64(&v3[..CHECKSUM_AT]);
        v3[CHECKSUM_AT..].copy_from_slice(&sum.to_le_bytes());
        assert!(matches!(Superblock::decode(&v3, 1 << 30), Err(SuperblockError::Version { found: 3 })));
        let mut v1_with_index = page;
        v1_with_index[8] = 1;
        let sum = xxh3_64(&v1_with_index[..CHECKSUM_AT]);
        v1_with_index[CHECKSUM_AT..].copy_from_slice(&sum.to_le_bytes());
        assert!(matches!(Superblock::decode(&v1_with_index, 1 << 30), Err(SuperblockError::Layout(_))));
    }

    #[test]
    fn members_of_a_node_share_its_identity_and_secret_and_say_where_they_stand() {
        let sbs = Superblock::new_node(&[1 << 30, 1 << 30, 2 << 30], 2, FORMAT_VERSION).unwrap();
        assert_eq!(sbs.len(), 3);
        for (i, sb) in sbs.iter().enumerate() {
            let back = Superblock::decode(&sb.encode(), sb.device_len).unwrap();
            assert_eq!(&back, sb);
            assert_eq!((back.index(), back.devices(), back.uuid, back.secret), (i, 3, sbs[0].uuid, sbs[0].secret));
            assert_eq!(back.layout.shards, 2, "shards per device");
        }
        assert_ne!(sbs[0].device_uuid(), sbs[1].device_uuid());
        assert_ne!(sbs[0].layout.region_len, sbs[2].layout.region_len, "each laid out for its own length");
        let one = Superblock::new_node(&[1 << 30], 2, FORMAT_VERSION).unwrap();
        assert_eq!((one[0].member, one[0].index(), one[0].devices(), one[0].device_uuid()), (None, 0, 1, one[0].uuid));
        assert_eq!(one[0].encode()[12..16], [0; 4], "a node on one device has no flags");
    }

    #[test]
    fn a_restore_in_progress_is_a_flag_beside_the_member_one() {
        let sbs = Superblock::new_node(&[1 << 30, 1 << 30], 2, FORMAT_VERSION).unwrap();
        let restoring = Superblock { restoring: true, ..sbs[1].clone() };
        let p = restoring.encode();
        assert_eq!(p[12..16], (FLAG_MEMBER | FLAG_RESTORING).to_le_bytes());
        assert_eq!(Superblock::decode(&p, 1 << 30).unwrap(), restoring);
        let done = Superblock { restoring: false, ..restoring };
        assert_eq!(done.encode(), sbs[1].encode(), "cleared, the superblock it was");
    }

    #[test]
    fn unknown_flags_and_impossible_members_are_refused() {
        let sbs = Superblock::new_node(&[1 << 30, 1 << 30], 2, FORMAT_VERSION).unwrap();
        let reseal = |mut p: [u8; PAGE_SIZE]| {
            let sum = xxh3_64(&p[..CHECKSUM_AT]);
            p[CHECKSUM_AT..].copy_from_slice(&sum.to_le_bytes());
            p
        };
        let mut flags = sbs[0].encode();
        flags[12] |= 4;
        assert!(matches!(Superblock::decode(&reseal(flags), 1 << 30), Err(SuperblockError::Flags(5))));
        let mut past = sbs[1].encode();
        past[288] = 2;
        assert!(matches!(Superblock::decode(&reseal(past), 1 << 30), Err(SuperblockError::Layout(_))));
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
