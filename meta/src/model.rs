//! The metadata model: account -> containers -> blobs. A blob is its committed block list; a
//! block is a list of chunk references. These types are also the rkyv record payloads, so every
//! field here is an on-disk byte (docs/format.md).

use std::sync::Arc;

use edgeblob_io::page::pages_for;
use edgeblob_io::{Extent, PAGE_SIZE};
use rkyv::{Archive, Deserialize, Serialize};

/// Azure's limits for block blobs.
pub mod limits {
    pub const MAX_UNCOMMITTED_BLOCKS: usize = 100_000;
    pub const MAX_COMMITTED_BLOCKS: usize = 50_000;
    pub const MAX_BLOCK_SIZE: u64 = 4000 * 1024 * 1024;
    /// A single Put Blob (service version 2019-12-12 and later).
    pub const MAX_PUT_BLOB_SIZE: u64 = 5000 * 1024 * 1024;
    /// 50,000 blocks of 4000 MiB (about 190.7 TiB).
    pub const MAX_BLOB_SIZE: u64 = MAX_COMMITTED_BLOCKS as u64 * MAX_BLOCK_SIZE;
    /// A block id is at most 64 bytes before base64 encoding.
    pub const MAX_BLOCK_ID_LEN: usize = 64;
    /// Uncommitted blocks are dropped after this long without a commit.
    pub const UNCOMMITTED_TTL_NS: i64 = 7 * 24 * 3600 * 1_000_000_000;
}

pub const CHUNK_COMPRESSED: u8 = 1;
/// The chunk is in its hash owner's dedup index; its reference count lives on that shard.
/// Without this flag the count lives on the shard whose region holds the chunk.
pub const CHUNK_DEDUP: u8 = 2;

/// Where one chunk of a block lies and how to check it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkRef {
    /// xxh3-128 of the chunk's logical bytes, keyed with the node secret.
    pub hash: [u8; 16],
    /// Device offset of the chunk's first page.
    pub offset: u64,
    /// Bytes of the stored stream (compressed or raw), framed into pages.
    pub stored_len: u32,
    /// Logical bytes of the chunk.
    pub len: u32,
    pub flags: u8,
}

impl ChunkRef {
    pub fn is_compressed(&self) -> bool {
        self.flags & CHUNK_COMPRESSED != 0
    }

    pub fn is_dedup(&self) -> bool {
        self.flags & CHUNK_DEDUP != 0
    }

    pub fn pages(&self) -> u64 {
        pages_for(self.stored_len as usize) as u64
    }

    pub fn extent(&self) -> Extent {
        Extent { offset: self.offset, len: self.pages() * PAGE_SIZE as u64 }
    }

    /// The page checksum seed: names the content that belongs in these pages.
    pub fn seed(&self) -> u32 {
        u32::from_le_bytes([self.hash[0], self.hash[1], self.hash[2], self.hash[3]])
    }

    pub fn hash_u128(&self) -> u128 {
        u128::from_le_bytes(self.hash)
    }

    /// The chunk's id: where it was first written and what it holds.
    pub fn id(&self) -> ChunkId {
        ChunkId { offset: self.offset, hash: self.hash }
    }
}

/// A chunk's identity, which stays when its location changes (the tier moves chunks: local,
/// remote, or both). It is the place of the chunk's first write and its hash: two live chunks
/// never share a place, and a place written again later holds another id unless it holds the
/// same bytes, which are then the same chunk. Blobs keep naming chunks by their `ChunkRef` (the
/// id and the place first written); the chunk table says where the chunk is now.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkId {
    pub offset: u64,
    pub hash: [u8; 16],
}

/// Where a chunk's bytes are now.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// On this node's flash only, at this device offset.
    Local { offset: u64 },
    /// On flash and in a pack of the tier: its local space may be released (a later step).
    Both { offset: u64, packed: Packed },
    /// In a pack of the tier only.
    Tiered { packed: Packed },
}

impl Location {
    /// The device offset of its local copy, if it has one.
    pub fn local(&self) -> Option<u64> {
        match *self {
            Location::Local { offset } | Location::Both { offset, .. } => Some(offset),
            Location::Tiered { .. } => None,
        }
    }

    /// Its place in the tier, if it has one.
    pub fn packed(&self) -> Option<Packed> {
        match *self {
            Location::Local { .. } => None,
            Location::Both { packed, .. } | Location::Tiered { packed } => Some(packed),
        }
    }
}

/// A chunk's place in a pack of the tier: the pack (by its number on the counting shard, the
/// key of its [`PackInfo`]), the chunk's entry in it, and where its sealed bytes start.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packed {
    pub pack: u64,
    pub entry: u32,
    pub at: u64,
}

/// A pack a shard committed to the tier: what names it there and opens its chunks.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PackInfo {
    /// Its number on the shard that wrote it (the sequence number in its name).
    pub number: u64,
    /// The shard's tier generation when it was written (`Record::TierStarted`).
    pub generation: u64,
    /// The shard that wrote it.
    pub shard: u32,
    /// Its bytes in the tier.
    pub len: u64,
    /// Its entries (chunks), live or not.
    pub entries: u32,
    pub committed_ns: i64,
    /// Its header as uploaded (the data key, wrapped by the node key): a read of one chunk
    /// needs no read of the header first.
    pub header: Vec<u8>,
}

/// A chunk a pack holds (`Record::PackCommitted`): its id and its place.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedChunk {
    pub offset: u64,
    pub hash: [u8; 16],
    pub entry: u32,
    pub at: u64,
}

impl PackedChunk {
    pub fn id(&self) -> ChunkId {
        ChunkId { offset: self.offset, hash: self.hash }
    }
}

/// A chunk of a restored node (`Record::ChunksRestored`): the chunk as its references name it,
/// and its entry in the pack and where the entry starts.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoredChunk {
    pub chunk: ChunkRef,
    pub entry: u32,
    pub at: u64,
}

/// A chunk's entry in the chunk table of the shard that counts it (format v2): the chunk as
/// written, where it is, and how many references the shards' durable metadata holds to it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkEntry {
    pub chunk: ChunkRef,
    pub location: Location,
    pub refs: u32,
}

impl ChunkEntry {
    /// The space the chunk holds on this node's device (the allocator's image marks it in use):
    /// its pages while it is on flash; once released to the tier, the first page of the place
    /// it was first written, which its id names. Keeping that page keeps the id unique: no later
    /// chunk starts there, so the same bytes written again while this one lives (it is no dedup
    /// candidate once released) are never a second chunk of the same id.
    pub fn local_extent(&self) -> Option<Extent> {
        Some(match self.location.local() {
            Some(offset) => Extent { offset, len: self.chunk.extent().len },
            None => Extent { offset: self.chunk.offset, len: PAGE_SIZE as u64 },
        })
    }
}

/// One chunk's reference change made by one record: references added, then dropped.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefChange {
    pub chunk: ChunkRef,
    pub add: u32,
    pub drop: u32,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub id: Vec<u8>,
    pub size: u64,
    /// Shared, not copied, by every list that names the block: a list of 50,000 blocks may name
    /// one block of 100 MiB each time, and its chunk list is then held (and stored: rkyv writes
    /// a shared pointer's target once) once, not 50,000 times. Archived exactly as a `Vec`.
    pub chunks: Arc<[ChunkRef]>,
}

/// A block a Put Block List names, by its place among the blob's blocks as they were when the
/// list was committed (never by content: see `Record::BlockListPut`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListedBlock {
    /// The n-th block of the committed list.
    Committed(u32),
    /// The n-th uncommitted block, in staging order.
    Uncommitted(u32),
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StagedBlock {
    pub block: Block,
    pub staged_ns: i64,
}

/// User metadata: names keep their case as sent and are matched without case.
pub type Metadata = Vec<(String, String)>;

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct BlobProps {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub content_disposition: Option<String>,
    pub cache_control: Option<String>,
    pub content_md5: Option<[u8; 16]>,
    pub metadata: Metadata,
    /// Set when the blob was made by a copy (Copy Blob, Put Blob From URL).
    pub copy: Option<CopyInfo>,
}

/// The completed copy that made a blob (copies finish before they are acknowledged).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CopyInfo {
    pub id: String,
    pub source: String,
    pub completed_ns: i64,
    pub bytes: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// The incarnation of the container the blob was written into.
    pub container_id: u64,
    pub etag: u64,
    pub created_ns: i64,
    pub modified_ns: i64,
    pub size: u64,
    pub props: BlobProps,
    pub blocks: Vec<Block>,
    /// Written by Put Blob: its one block has no id and is not listed by Get Block List.
    pub single_put: bool,
}

impl Blob {
    pub fn chunks(&self) -> impl Iterator<Item = &ChunkRef> {
        self.blocks.iter().flat_map(|b| b.chunks.iter())
    }

    /// The blob without its blocks: what a listing shows, at a cost that does not grow with the
    /// blob's size.
    pub fn head(&self) -> Blob {
        Blob {
            container_id: self.container_id,
            etag: self.etag,
            created_ns: self.created_ns,
            modified_ns: self.modified_ns,
            size: self.size,
            props: self.props.clone(),
            blocks: Vec::new(),
            single_put: self.single_put,
        }
    }

    /// The references the blob holds, counted a chunk list at a time.
    pub fn refs(&self) -> crate::refs::RefCounts {
        crate::refs::RefCounts::of_blocks(&self.blocks)
    }
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Unique per creation, so blobs of a deleted container never appear in a new one of the
    /// same name.
    pub id: u64,
    pub etag: u64,
    pub created_ns: i64,
    pub modified_ns: i64,
    pub metadata: Metadata,
    pub public_access: PublicAccess,
}

impl Container {
    /// A container known only by the id its blobs carry (its catalog entry was lost with a
    /// device): no properties, metadata or public access.
    pub fn found(id: u64) -> Container {
        Container {
            id,
            etag: id,
            created_ns: 0,
            modified_ns: 0,
            metadata: Vec::new(),
            public_access: PublicAccess::None,
        }
    }
}

/// Anonymous read access to a container (Azure's `x-ms-blob-public-access`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PublicAccess {
    #[default]
    None,
    /// Blobs can be read anonymously, but not listed.
    Blob,
    /// Blobs can be read and the container listed anonymously.
    Container,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobKey {
    pub account: String,
    pub container: String,
    pub name: String,
}

impl BlobKey {
    pub fn new(account: &str, container: &str, name: &str) -> BlobKey {
        BlobKey { account: account.to_owned(), container: container.to_owned(), name: name.to_owned() }
    }
}

/// Case-insensitive lookup in user metadata.
pub fn metadata_get<'a>(md: &'a Metadata, name: &str) -> Option<&'a str> {
    md.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}
