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
}

pub const MANIFEST_VERSION: u32 = 1;

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        rkyv::to_bytes::<rancor::Error>(self).expect("serializing into memory cannot fail").to_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        let m = rkyv::from_bytes::<Manifest, rancor::Error>(&aligned).map_err(|e| e.to_string())?;
        if m.version != MANIFEST_VERSION {
            return Err(format!("a manifest of version {}, which this build does not read", m.version));
        }
        Ok(m)
    }
}
