//! A node's metadata as the tier keeps it (issue 11, DR): each shard's part of an epoch is a
//! stream of [`ExportItem`]s, and each epoch's [`Manifest`] names the parts and the packs that
//! restore it. Both are rkyv, validated when read; the tier seals them (`edgeblob-tier`'s
//! objects) so nothing here is ever in the clear remotely. Byte layouts: format.md, "Tier
//! metadata".

use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::model::{Blob, BlobKey, Block, ChunkRef, Container, PackInfo, Packed};

/// One item of a shard's metadata export.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ExportItem {
    /// A container (the catalog shard's part).
    Container { account: String, name: String, container: Container },
    /// A committed blob without its blocks (`blob.blocks` is empty): its `blocks` blocks follow
    /// as [`ExportItem::Block`] items, so that no item grows with a blob's size.
    Blob { key: BlobKey, blob: Box<Blob>, blocks: u32 },
    /// The next block of the blob before it.
    Block(Block),
    /// A pack this shard wrote that holds a chunk of the export.
    Pack(PackInfo),
    /// A chunk this shard counts, and its place in one of this shard's packs.
    Chunk { chunk: ChunkRef, packed: Packed },
}

/// Appends `item` to a part's stream: its length (u32, little-endian), then its rkyv bytes.
pub fn push_item(out: &mut Vec<u8>, item: &ExportItem) {
    let bytes = rkyv::to_bytes::<rancor::Error>(item).expect("serializing into memory cannot fail");
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&bytes);
}

/// The items of a part's stream, each validated; an error ends it.
pub fn items(mut bytes: &[u8]) -> impl Iterator<Item = Result<ExportItem, String>> + '_ {
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            return None;
        }
        let Some((len, rest)) = bytes.split_first_chunk::<4>() else {
            bytes = &[];
            return Some(Err("a part's stream ends inside an item's length".into()));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            bytes = &[];
            return Some(Err("a part's stream ends inside an item".into()));
        }
        let (item, rest) = rest.split_at(len);
        bytes = rest;
        let mut aligned = AlignedVec::<16>::with_capacity(len);
        aligned.extend_from_slice(item);
        Some(rkyv::from_bytes::<ExportItem, rancor::Error>(&aligned).map_err(|e| e.to_string()))
    })
}

/// The device a manifest's node was formatted as: a restored node is formatted alike, so that
/// every chunk id (its first place) and the shard that counts it mean what they meant.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    pub device_len: u64,
    pub shards: u32,
    pub format_version: u32,
}

/// A part of a shard's export, as the manifest names it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PartRef {
    pub shard: u32,
    /// Its name under the node's prefix.
    pub name: String,
    /// Its bytes in the tier, and their xxh3-64 (checked before it is opened).
    pub len: u64,
    pub digest: u64,
    /// What it holds: blobs (parts of blob owners) or chunks (parts of counting shards).
    pub chunks: bool,
}

/// A pack an epoch needs, by its name's parts.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PackRef {
    pub shard: u32,
    pub generation: u64,
    pub number: u64,
    pub len: u64,
}

/// What a manifest's epoch holds, for operators.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestCounts {
    pub containers: u64,
    pub blobs: u64,
    pub blocks: u64,
    pub chunks: u64,
    pub bytes: u64,
}

/// The commit point of an epoch: everything a restore needs besides the packs' bytes.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub version: u32,
    pub epoch: u64,
    /// The generation that wrote it (its name carries it too).
    pub generation: u64,
    /// When the epoch began: every blob committed before it and not changed until `written_ns`
    /// is in it.
    pub cut_ns: i64,
    pub written_ns: i64,
    pub geometry: Geometry,
    /// The node's chunk-hash secret: without it a restored node could neither check a chunk's
    /// keyed hash nor deduplicate against what it restored.
    pub secret: Vec<u8>,
    /// The highest tier generation any shard had logged: a restore starts above it.
    pub tier_generation: u64,
    pub parts: Vec<PartRef>,
    pub packs: Vec<PackRef>,
    /// The manifest before it, by name, if any (a chain an operator can walk).
    pub previous: Option<String>,
    pub counts: ManifestCounts,
    /// A node of several devices: each one's length, in order (`geometry.device_len` is the
    /// first's, `geometry.shards` counts them all); empty for a node of one. Not in the record:
    /// such a manifest carries them in a header before it ([`Manifest::encode`]), so that one
    /// of a node of one device stays byte for byte what version 1 was.
    #[rkyv(with = rkyv::with::Skip)]
    pub devices: Vec<u64>,
}

/// The version of a manifest of a node on one device.
pub const MANIFEST_VERSION: u32 = 1;
/// The version of a manifest of a node on several devices: a build that reads only version 1
/// refuses it, rather than restore one device of it.
pub const MANIFEST_VERSION_DEVICES: u32 = 2;
/// The start of a manifest of version 2: its devices' header.
const DEVICES_MAGIC: &[u8; 8] = b"EBMANDEV";
/// The most devices a manifest names (`edgeblob_io::superblock::MAX_DEVICES`).
const MAX_MANIFEST_DEVICES: usize = 256;

impl Manifest {
    /// The version a manifest of `devices` (as [`Manifest::devices`] holds them) is written as.
    pub fn version_for(devices: &[u64]) -> u32 {
        if devices.len() > 1 {
            MANIFEST_VERSION_DEVICES
        } else {
            MANIFEST_VERSION
        }
    }

    /// The lengths of the node's devices, in order.
    pub fn device_lens(&self) -> Vec<u64> {
        match self.devices.is_empty() {
            true => vec![self.geometry.device_len],
            false => self.devices.clone(),
        }
    }

    /// Version 1: the record alone. Version 2: `EBMANDEV`, the device count (u32 LE), 4 zero
    /// bytes, each device's length (u64 LE), zeros to a multiple of 16 bytes, then the record.
    pub fn encode(&self) -> Vec<u8> {
        debug_assert_eq!(
            self.version,
            Manifest::version_for(&self.devices),
            "a manifest's version follows its devices"
        );
        debug_assert!(self.devices.is_empty() || self.devices[0] == self.geometry.device_len);
        let record = rkyv::to_bytes::<rancor::Error>(self).expect("serializing into memory cannot fail");
        if self.devices.len() <= 1 {
            return record.to_vec();
        }
        let mut out = Vec::with_capacity(16 + 8 * self.devices.len() + record.len() + 8);
        out.extend_from_slice(DEVICES_MAGIC);
        out.extend_from_slice(&(self.devices.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        for len in &self.devices {
            out.extend_from_slice(&len.to_le_bytes());
        }
        out.resize(out.len().next_multiple_of(16), 0);
        out.extend_from_slice(&record);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        let (devices, record) = match bytes.strip_prefix(DEVICES_MAGIC.as_slice()) {
            Some(rest) => {
                let le32 = |b: &[u8]| b.first_chunk::<4>().map(|c| u32::from_le_bytes(*c));
                let n = le32(rest).ok_or("a manifest's devices header is cut short")? as usize;
                if !(2..=MAX_MANIFEST_DEVICES).contains(&n) || rest.get(4..8) != Some(&[0; 4][..]) {
                    return Err(format!("a manifest's devices header names {n} devices"));
                }
                let lens = rest.get(8..8 + 8 * n).ok_or("a manifest's devices header is cut short")?;
                let devices: Vec<u64> =
                    lens.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
                let header = (DEVICES_MAGIC.len() + 8 + 8 * n).next_multiple_of(16);
                let record = bytes.get(header..).ok_or("a manifest's devices header is cut short")?;
                (devices, record)
            }
            None => (Vec::new(), bytes),
        };
        let mut aligned = AlignedVec::<16>::with_capacity(record.len());
        aligned.extend_from_slice(record);
        let mut m = rkyv::from_bytes::<Manifest, rancor::Error>(&aligned).map_err(|e| e.to_string())?;
        if m.version != Manifest::version_for(&devices) {
            return Err(match m.version {
                MANIFEST_VERSION | MANIFEST_VERSION_DEVICES => "a manifest whose version and devices disagree".into(),
                v => format!("a manifest of version {v}, which this build does not read"),
            });
        }
        if devices.first().is_some_and(|&d| d != m.geometry.device_len) {
            return Err("a manifest whose first device is not its geometry's".into());
        }
        if !devices.is_empty() && !(m.geometry.shards as usize).is_multiple_of(devices.len()) {
            return Err("a manifest whose shards do not spread evenly over its devices".into());
        }
        m.devices = devices;
        Ok(m)
    }
}
