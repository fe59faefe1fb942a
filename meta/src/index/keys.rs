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
            let mut bytes =
                rkyv::api::high::to_bytes_in::<_, rancor::Error>(v, Vec::with_capacity(crate::record::ENCODE_START))
                    .expect("serializing into memory cannot fail");
            // Cut to size: a flush holds every value it writes until the index has them.
            bytes.shrink_to_fit();
            bytes
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

/// The chunk references a piece of blocks apart stores at most (a chunk list named by several
/// of its blocks stored, and counted, once), unless one block alone names more. A piece is then
/// at most about 160 KB of chunk references: a ranged read of a blob of 4 TiB in chunks of
/// 1 MiB decodes one piece of a thousand, not 4 million references (160 MB, a third of a
/// second). Azure's largest block, 4,000 MiB, is one piece at that chunk size.
pub const PIECE_REFS: usize = 4096;

/// The pieces of a blob read whole, and held in memory as any blob (up to 64 Ki chunk
/// references, about 2.6 MB; 64 GiB in chunks of 1 MiB): a read of a larger one reads the pieces
/// that cover its bytes, each time.
pub const WHOLE_PIECES: usize = 16;

/// The blocks a piece holds at most (their ids are up to 64 bytes each), however few chunks
/// they name.
pub const PIECE_BLOCKS: usize = 4096;

/// A piece's key in the `blocks` table: the blob's key, a 0, and the blob byte offset of the
/// piece's first block (u64 big-endian, so a blob's pieces sort in its byte order). A blob name
/// holds no NUL, so `[blob key, blob key 1)` holds the blob's pieces and nothing else's.
pub fn piece(blob_key: &[u8], offset: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(blob_key.len() + 9);
    out.extend_from_slice(blob_key);
    out.push(0);
    out.extend_from_slice(&offset.to_be_bytes());
    out
}

/// The first byte offset a piece's key names, or None for the key of a blob's blocks kept
/// whole, as builds before pieces wrote them (the blob's key alone).
pub fn parse_piece(blob_key: &[u8], key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(blob_key)?.strip_prefix(&[0])?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

/// Where a blob's blocks are cut into pieces: each piece's first byte offset and its blocks.
/// A piece holds whole blocks, at most [`PIECE_BLOCKS`] and, unless it is one block, chunk
/// lists of at most [`PIECE_REFS`] references (a list named again in the piece is stored once,
/// so it counts once). A piece is cut only after some bytes, so the offsets rise strictly.
pub fn pieces(blocks: &[Block]) -> Vec<(u64, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let (mut first, mut start, mut at) = (0u64, 0usize, 0u64);
    let mut refs = 0usize;
    let mut lists: std::collections::HashSet<*const crate::model::ChunkRef> = std::collections::HashSet::new();
    for (i, b) in blocks.iter().enumerate() {
        let named = |lists: &std::collections::HashSet<_>| {
            if lists.contains(&b.chunks.as_ptr()) {
                0
            } else {
                b.chunks.len()
            }
        };
        if at > first && (refs + named(&lists) > PIECE_REFS || i - start == PIECE_BLOCKS) {
            out.push((first, start..i));
            (first, start, refs) = (at, i, 0);
            lists.clear();
        }
        refs += named(&lists);
        lists.insert(b.chunks.as_ptr());
        at += b.size;
    }
    if !blocks.is_empty() {
        out.push((first, start..blocks.len()));
    }
    out
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

/// Where the meta table keeps the blob keys the shard held in memory at its last clean stop, for
/// the next start to read back in the background ([`encode_warm`]): a restart then serves its
/// working set from memory again, as InnoDB reloads the pages its buffer pool held. A hint, never
/// a fact: a key no longer held is read as absent. The first flush after the start deletes it,
/// so a crash later never reloads a list from before it.
pub const WARM: &[u8] = b"warm";

/// Bytes of keys the list holds at most: about 100,000 keys of 40 bytes, a shard's share of a
/// working set of small blobs, read back in a second or so.
pub const WARM_BYTES: usize = 4 << 20;

/// Bytes a key takes in the list.
pub fn warm_len(k: &BlobKey) -> usize {
    2 + k.account.len() + k.container.len() + k.name.len() + 2
}

/// The list: each key as [`blob`] spells it, after its length (u16 little-endian), in the order
/// given, until the next would pass [`WARM_BYTES`].
pub fn encode_warm<'a>(keys: impl Iterator<Item = &'a BlobKey>) -> Vec<u8> {
    let mut out = Vec::new();
    for k in keys {
        let key = blob(k);
        debug_assert_eq!(warm_len(k), 2 + key.len());
        // Azure's names are far shorter (1,024 characters at most): never true of a key stored.
        let Ok(len) = u16::try_from(key.len()) else { continue };
        if out.len() + 2 + key.len() > WARM_BYTES {
            break;
        }
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&key);
    }
    out
}

/// The keys of a list; None if it is damaged.
pub fn decode_warm(mut bytes: &[u8]) -> Option<Vec<BlobKey>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = u16::from_le_bytes(bytes.get(..2)?.try_into().ok()?) as usize;
        out.push(parse_blob(bytes.get(2..2 + len)?)?);
        bytes = &bytes[2 + len..];
    }
    Some(out)
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

    fn block(chunks: &std::sync::Arc<[crate::model::ChunkRef]>) -> Block {
        Block { id: b"id".to_vec(), size: chunks.iter().map(|c| c.len as u64).sum(), chunks: chunks.clone() }
    }

    fn chunks(n: usize) -> std::sync::Arc<[crate::model::ChunkRef]> {
        let c = crate::model::ChunkRef { hash: [0; 16], offset: 0, stored_len: 10, len: 10, flags: 0 };
        vec![c; n].into()
    }

    /// Checks the invariants of a cut: every block in one piece, in order; offsets that rise
    /// strictly and are each piece's first byte; the bounds on blocks and stored references.
    fn check_cut(blocks: &[Block]) -> Vec<(u64, std::ops::Range<usize>)> {
        let cut = pieces(blocks);
        let mut next = 0;
        let mut at = 0u64;
        for (first, r) in &cut {
            assert_eq!(r.start, next, "pieces follow each other");
            assert!(r.end > r.start, "no empty piece");
            assert_eq!(*first, at, "a piece's offset is its first byte");
            let mut seen = std::collections::HashSet::new();
            let stored: usize =
                blocks[r.clone()].iter().filter(|b| seen.insert(b.chunks.as_ptr())).map(|b| b.chunks.len()).sum();
            // Only blocks of no bytes at a piece's start (no cut before them) run over its bound.
            let lead = r.len().saturating_sub(PIECE_BLOCKS);
            assert!(blocks[r.start..r.start + lead].iter().all(|b| b.size == 0), "{r:?}: {} blocks", r.len());
            let sized = blocks[r.clone()].iter().filter(|b| b.size > 0).count();
            assert!(stored <= PIECE_REFS || sized == 1, "{r:?}: {stored} refs");
            next = r.end;
            at += blocks[r.clone()].iter().map(|b| b.size).sum::<u64>();
        }
        assert_eq!(next, blocks.len());
        assert!(cut.windows(2).all(|w| w[0].0 < w[1].0), "offsets rise strictly");
        cut
    }

    #[test]
    fn blocks_are_cut_into_pieces_of_bounded_references() {
        assert!(check_cut(&[]).is_empty());
        // Distinct lists of 1,000: four a piece.
        let distinct: Vec<Block> = (0..10).map(|_| block(&chunks(1000))).collect();
        let cut = check_cut(&distinct);
        assert_eq!(cut.iter().map(|(_, r)| r.len()).collect::<Vec<_>>(), [4, 4, 2]);
        assert_eq!(cut[1].0, 40_000);
        // A block larger than a piece is one alone, between others.
        let big = vec![block(&chunks(10)), block(&chunks(5000)), block(&chunks(10))];
        assert_eq!(check_cut(&big).iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(), [0..1, 1..2, 2..3]);
        // One list named 50,000 times is stored once a piece: the block bound cuts.
        let one = chunks(100);
        let repeated: Vec<Block> = (0..50_000).map(|_| block(&one)).collect();
        assert_eq!(check_cut(&repeated).len(), 50_000usize.div_ceil(PIECE_BLOCKS));
        // Blocks of no bytes are never cut before: no two pieces share an offset.
        let empty = chunks(0);
        let mut zeros: Vec<Block> = (0..PIECE_BLOCKS + 10).map(|_| block(&empty)).collect();
        zeros.push(block(&chunks(1)));
        assert_eq!(check_cut(&zeros).len(), 1);
        let k = blob(&BlobKey::new("a", "c", "n"));
        assert_eq!(parse_piece(&k, &piece(&k, 77)), Some(77));
        assert_eq!(parse_piece(&k, &k), None, "a blob's blocks kept whole");
        assert!(
            piece(&k, u64::MAX) < blob(&BlobKey::new("a", "c", "n\u{1}")),
            "a blob's pieces sort before the next key"
        );
    }
}
