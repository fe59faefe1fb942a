//! Log records: every change to a shard's metadata is one of these, rkyv-encoded, and validated
//! (bytecheck) whenever read back from disk.

use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::model::{
    Blob, BlobKey, BlobProps, ChunkId, Container, ListedBlock, PackInfo, PackedChunk, RefChange, RestoredChunk,
    StagedBlock,
};

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Ends the checkpoint at the start of a log half: the records before it are a complete
    /// image of the shard's metadata.
    CheckpointEnd,
    /// Creates a container or replaces its properties (catalog shard only).
    ContainerPut { account: String, name: String, container: Container },
    /// Removes a container from the catalog (catalog shard only).
    ContainerDelete { account: String, name: String, id: u64 },
    /// Drops every blob and staged block of container incarnation `id` (every shard).
    ContainerPurge { account: String, name: String, id: u64 },
    /// Stages an uncommitted block, replacing a staged block of the same id.
    BlockStaged { key: BlobKey, container_id: u64, block: StagedBlock },
    /// Commits a blob (Put Blob, Put Block List): replaces it whole and drops its staged blocks.
    BlobPut { key: BlobKey, blob: Blob },
    /// Replaces a blob's properties and metadata.
    BlobPropsSet { key: BlobKey, etag: u64, modified_ns: i64, props: BlobProps },
    /// Deletes a blob and its staged blocks.
    BlobDelete { key: BlobKey },
    /// Drops the staged blocks of a blob (expired after 7 days without commit).
    StagedDropped { key: BlobKey },
    /// Commits a blob from a block list (Put Block List): `blob` without its blocks, and the
    /// blocks by place, resolved against the blob's committed and staged blocks as they are
    /// before this record; then it is a `BlobPut` of the blob with those blocks. Naming blocks
    /// rather than copying their chunk lists keeps the record small however large the blocks:
    /// 50,000 take 400 KB, where their chunk lists may take hundreds of megabytes. The blob is
    /// boxed so that the record keeps its archived size (see `ARCHIVED_RECORD_LEN`).
    BlockListPut { key: BlobKey, blob: Box<Blob>, list: Vec<ListedBlock> },
    /// The reference changes that record `lsn` of shard `source` (this shard's own records
    /// included) made to chunks this shard counts, in its chunk table: a chunk gains its entry
    /// with its first reference and loses it with its last. Each source's changes are logged in
    /// its LSN order, once: the shard keeps the last LSN it logged per source, and a change
    /// delivered again after a crash is not logged twice. **v2 logs only.**
    RefsApplied { source: u32, lsn: u64, changes: Vec<RefChange> },
    /// Starts a tier generation on this shard (at every start with a tier): the packs it names
    /// from now on carry it, so a pack uploaded before a crash but never recorded shares its
    /// name with no later one (names are create-only). **v2 logs only.**
    TierStarted { generation: u64 },
    /// A pack is committed in the tier (its Put Block List answered): the chunks of it that this
    /// shard still counts, with their copy on flash and in no pack yet, are now in it too; and
    /// those still in one of the packs `replaces` (a repack of their live chunks) move to it.
    /// The pack is boxed so that the record keeps its archived size. **v2 logs only.**
    PackCommitted { pack: Box<PackInfo>, chunks: Vec<PackedChunk>, replaces: Vec<u64> },
    /// Chunks this shard counts, on flash and in the tier, keep only their place in the tier:
    /// their local space is freed once the record is durable (and no read that began before
    /// it still runs). **v2 logs only.**
    ChunksReleased { chunks: Vec<ChunkId> },
    /// A pack no chunk is in any more was deleted from the tier. **v2 logs only.**
    PackDeleted { number: u64 },
    /// A node restored from the tier (`edgeblob-admin restore`): chunks this shard counts, in
    /// pack `pack` (logged before, by a `PackCommitted` of no chunks) and nowhere else. Each
    /// gains its entry with no reference yet: the blobs restored after it add their references
    /// as any blob does, and the restore logs no chunk that no restored blob names. **v2 logs
    /// only.**
    ChunksRestored { pack: u64, chunks: Vec<RestoredChunk> },
    /// A chunk this shard counts, in the tier only, is on flash again (a random read promoted
    /// it): its stored stream was written back to the place its id names, durably before this
    /// record, and it is in the tier and there (`Location::Both`). **v2 logs only.**
    ChunkHydrated { chunk: ChunkId },
    /// A device of the node was replaced from the tier (`edgeblob-admin replace-device`): the
    /// references that the lost shards `sources` had counted here are replaced by those of what
    /// was restored in their place (`changes`, each chunk's references added and dropped at
    /// once, so none is freed on the way), and each source's last logged LSN becomes the one
    /// given (its log started over on the new device). **v2 logs only.**
    RefsReplaced { sources: Vec<(u32, u64)>, changes: Vec<RefChange> },
}

/// Bytes an rkyv encoder starts with (a record here, an index value in `index::keys`): most
/// fit (the archived enum is 216 bytes, then a small blob's strings and its one block), where an
/// empty buffer would grow five or six times on the way. The bytes are those of rkyv's aligned
/// buffer whatever the buffer: its padding follows the position, not the buffer's address.
pub(crate) const ENCODE_START: usize = 512;

/// The archived size of a record. rkyv finds a buffer's root object at its end, by the root
/// type's size, so a record type that grew would make every record already written unreadable.
pub const ARCHIVED_RECORD_LEN: usize = std::mem::size_of::<ArchivedRecord>();
const _: () = assert!(ARCHIVED_RECORD_LEN == 216, "records written before keep their size");

impl Record {
    /// The largest stamp of the node's clock the record carries (an ETag, a container
    /// incarnation), 0 when none: the clock starts past every stamp a shard has applied.
    pub fn stamp(&self) -> u64 {
        match self {
            Record::ContainerPut { container, .. } => container.id.max(container.etag),
            Record::BlobPut { blob, .. } => blob.etag,
            Record::BlockListPut { blob, .. } => blob.etag,
            Record::BlobPropsSet { etag, .. } => *etag,
            _ => 0,
        }
    }

    pub fn encode(&self) -> AlignedVec {
        rkyv::api::high::to_bytes_in::<_, rancor::Error>(self, AlignedVec::with_capacity(ENCODE_START))
            .expect("serializing into memory cannot fail")
    }

    /// Decodes and validates a payload read from disk.
    pub fn decode(bytes: &[u8]) -> Result<Record, String> {
        let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        rkyv::from_bytes::<Record, rancor::Error>(&aligned).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Block, ChunkRef};

    #[test]
    fn records_roundtrip_and_garbage_is_rejected() {
        let rec = Record::BlockStaged {
            key: BlobKey::new("acct", "c", "dir/ü name"),
            container_id: 9,
            block: StagedBlock {
                block: Block {
                    id: b"blk-0001".to_vec(),
                    size: 5,
                    chunks: vec![ChunkRef { hash: [7; 16], offset: 1 << 20, stored_len: 5, len: 5, flags: 0 }].into(),
                },
                staged_ns: 1,
            },
        };
        let bytes = rec.encode();
        assert_eq!(Record::decode(&bytes).unwrap(), rec);
        assert!(Record::decode(&bytes[..bytes.len() / 2]).is_err());
        assert!(Record::decode(&[0xFF; 64]).is_err());
    }
}
