//! How the index spells its keys and values (format v2, docs/format.md). Keys sort as the model
//! sorts: a blob key is `account 0 container 0 name`, and since none of the three holds a NUL
//! (account names are letters and digits, container names letters, digits and hyphens, blob
//! names refuse NUL), byte order is `BlobKey` order. Values are the model's rkyv records,
//! validated when read back.

use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::model::{Blob, BlobKey, BlobProps, Block, ChunkEntry, ChunkId, Container, PackInfo, RefChange, StagedBlock};

/// `account 0 container 0 name`.
pub fn blob(k: &BlobKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(k.account.len() + k.container.len() + k.name.len() + 2);
    out.extend_from_slice(k.account.as_bytes());
    out.push(0);
    out.extend_from_slice(k.container.as_bytes());
    out.push(0);
    out.extend_from_slice(k.name.as_bytes());
    out
}

/// Where the `blobs` table's entries are kept: one redb table per container name, named this
/// and then the entries' group ([`blob_group`]). Each container's names then sort in a tree of
/// their own, where names written in order append to the tree's last leaf, which redb leaves
/// packed; in one tree for every container, each container's appends landed mid-tree, whose
/// even splits left every leaf half full (docs/architecture.md, "Metadata at scale" 3).
pub const BLOB_TABLES: &str = "blobs\0";

/// A blob key's group: its `account 0 container`, up to the second NUL; None for a key that is
/// not a blob's (fewer than two NULs).
pub fn blob_group(key: &[u8]) -> Option<&[u8]> {
    let first = memchr::memchr(0, key)?;
    let second = first + 1 + memchr::memchr(0, &key[first + 1..])?;
    Some(&key[..second])
}

/// The name of the redb table that holds the blob keys of `group`. Table names sort as their
/// groups, and a group's keys lie in `[group, group 0x01)`: the tables, in name order, hold the
/// blob keys in key order.
pub fn blob_table(group: &[u8]) -> Option<String> {
    Some(format!("{BLOB_TABLES}{}", std::str::from_utf8(group).ok()?))
}

/// The blob key spelled by `bytes`, if it is one.
pub fn parse_blob(bytes: &[u8]) -> Option<BlobKey> {
    let mut parts = bytes.splitn(3, |&b| b == 0);
    let account = std::str::from_utf8(parts.next()?).ok()?;
    let container = std::str::from_utf8(parts.next()?).ok()?;
    let name = std::str::from_utf8(parts.next()?).ok()?;
    Some(BlobKey::new(account, container, name))
}

/// Where the staged blocks of blob `k` begin: its key and a 0.
pub fn staged_prefix(k: &BlobKey) -> Vec<u8> {
    let mut out = blob(k);
    out.push(0);
    out
}

/// The blob of a staged block's key (the id after it may hold any byte; the blob's key none).
pub fn parse_staged(bytes: &[u8]) -> Option<BlobKey> {
    let mut nuls = bytes.iter().enumerate().filter(|(_, &b)| b == 0).map(|(i, _)| i);
    let (_, _, end) = (nuls.next()?, nuls.next()?, nuls.next()?);
    parse_blob(&bytes[..end])
}

pub fn staged(k: &BlobKey, id: &[u8]) -> Vec<u8> {
    let mut out = staged_prefix(k);
    out.extend_from_slice(id);
    out
}

/// `account 0 name`.
pub fn container(account: &str, name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(account.len() + name.len() + 1);
    out.extend_from_slice(account.as_bytes());
    out.push(0);
    out.extend_from_slice(name.as_bytes());
    out
}

pub fn parse_container(bytes: &[u8]) -> Option<(String, String)> {
    let mut parts = bytes.splitn(2, |&b| b == 0);
    let account = std::str::from_utf8(parts.next()?).ok()?;
    let name = std::str::from_utf8(parts.next()?).ok()?;
    Some((account.to_owned(), name.to_owned()))
}

/// An uncommitted block as the index keeps it: with its blob's container incarnation and its
/// place in the staging order.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StagedEntry {
    pub container_id: u64,
    pub place: u64,
    pub block: StagedBlock,
}

macro_rules! value_codec {
    ($ty:ty, $enc:ident, $dec:ident) => {
        pub fn $enc(v: &$ty) -> Vec<u8> {
            rkyv::to_bytes::<rancor::Error>(v).expect("serializing into memory cannot fail").to_vec()
        }

        /// Decodes and validates a value read from the index.
        pub fn $dec(bytes: &[u8]) -> Result<$ty, String> {
            let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
            aligned.extend_from_slice(bytes);
            rkyv::from_bytes::<$ty, rancor::Error>(&aligned).map_err(|e| e.to_string())
        }
    };
}

value_codec!(Blob, encode_blob, decode_blob);
value_codec!(Vec<Block>, encode_blocks, decode_blocks);

/// The chunk references (over all its blocks, each shared list counted each time it is named)
/// past which a blob's blocks are kept apart from its entry, in the `blocks` table. A listing, a
/// key-filter build and a walk of heads then read a small entry, not megabytes of chunk lists
/// (a blob of 50,000 blocks of 8 MiB names 400,000 chunks: a 17.6 MB entry, 34 ms to decode even
/// for its head; performance.md, "A blob of many blocks"). Most blobs stay whole: one read finds
/// them.
pub const INLINE_CHUNKS: usize = 256;

/// Whether `b`'s blocks are kept apart from its entry.
pub fn blocks_apart(b: &Blob) -> bool {
    let mut refs = 0usize;
    b.blocks.iter().any(|bl| {
        refs += bl.chunks.len();
        refs > INLINE_CHUNKS
    })
}

/// Whether a decoded entry is a head whose blocks are apart: only a blob of no bytes has no
/// blocks otherwise.
pub fn is_head_only(b: &Blob) -> bool {
    b.blocks.is_empty() && b.size > 0
}
value_codec!(ChunkEntry, encode_chunk, decode_chunk);
value_codec!(PackInfo, encode_pack, decode_pack);
value_codec!(Vec<RefChange>, encode_changes, decode_changes);

/// A chunk's key in the chunk table, and a dedup entry's value: `offset` (u64 big-endian, so
/// the table is in region order) then the hash.
pub fn chunk(id: &ChunkId) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    out.extend_from_slice(&id.offset.to_be_bytes());
    out.extend_from_slice(&id.hash);
    out
}

pub fn parse_chunk(bytes: &[u8]) -> Option<ChunkId> {
    let offset = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let hash: [u8; 16] = bytes.get(8..)?.try_into().ok()?;
    Some(ChunkId { offset, hash })
}

/// Where the meta table keeps, per source shard, the last LSN whose reference changes the
/// shard has logged: this prefix, then the source (u32 big-endian); the value is the LSN (u64
/// little-endian, as the index's own LSN).
pub const APPLIED: &[u8] = b"applied/";

pub fn applied(source: u32) -> Vec<u8> {
    let mut out = APPLIED.to_vec();
    out.extend_from_slice(&source.to_be_bytes());
    out
}

pub fn parse_applied(key: &[u8], value: &[u8]) -> Option<(u32, u64)> {
    let source = u32::from_be_bytes(key.strip_prefix(APPLIED)?.try_into().ok()?);
    Some((source, u64::from_le_bytes(value.try_into().ok()?)))
}

/// Where the meta table keeps the shard's clock floor ([`crate::ShardMeta::clock`]) as of the
/// index's LSN: u64 little-endian.
pub const CLOCK: &[u8] = b"clock";

/// The key in `meta` of the shard's tier generation (u64 little-endian).
pub const TIER_GENERATION: &[u8] = b"tier-generation";

/// A pack's key in `packs`: its number, big-endian (packs sort in the order they were made).
pub fn pack(number: u64) -> Vec<u8> {
    number.to_be_bytes().to_vec()
}

pub fn encode_clock(floor: u64) -> Vec<u8> {
    floor.to_le_bytes().to_vec()
}

pub fn decode_clock(value: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(value.try_into().ok()?))
}

/// Where the meta table marks that the index holds the allocator's image (table `space`, see
/// [`super::space`]); the value is the image's version, [`SPACE_VERSION`].
pub const SPACE: &[u8] = b"space";
pub const SPACE_VERSION: &[u8] = &[1];

/// A blob value's head ([`Blob::head`]): validated whole, but its blocks are not decoded, so a
/// listing of blobs of 50,000 blocks does not rebuild their chunk lists.
pub fn decode_blob_head(bytes: &[u8]) -> Result<Blob, String> {
    let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    let a = rkyv::access::<rkyv::Archived<Blob>, rancor::Error>(&aligned).map_err(|e| e.to_string())?;
    Ok(Blob {
        container_id: a.container_id.to_native(),
        etag: a.etag.to_native(),
        created_ns: a.created_ns.to_native(),
        modified_ns: a.modified_ns.to_native(),
        size: a.size.to_native(),
        props: rkyv::deserialize::<BlobProps, rancor::Error>(&a.props).map_err(|e| e.to_string())?,
        blocks: Vec::new(),
        single_put: a.single_put,
    })
}
value_codec!(StagedEntry, encode_staged, decode_staged);
value_codec!(Container, encode_container, decode_container);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_sort_as_blob_keys_and_parse_back() {
        let mut keys = vec![
            BlobKey::new("ab", "c", "x"),
            BlobKey::new("abc", "c", "a"),
            BlobKey::new("ab", "c-d", "a"),
            BlobKey::new("ab", "c", "x/é"),
            BlobKey::new("ab", "c", "x/"),
            BlobKey::new("ab", "c", ""),
        ];
        let mut bytes: Vec<Vec<u8>> = keys.iter().map(blob).collect();
        keys.sort();
        bytes.sort();
        assert_eq!(bytes.iter().map(|b| parse_blob(b).unwrap()).collect::<Vec<_>>(), keys);
        assert!(staged_prefix(&keys[0]) < staged(&keys[0], b"id"));
        assert_eq!(parse_container(&container("acct", "box")), Some(("acct".into(), "box".into())));
    }
}
