//! A pack: a header, the sealed chunks one after another, a sealed footer listing them, and a
//! trailer that finds the footer. Written in one pass (the footer is last), read by ranges: the
//! trailer, then the footer or any one chunk. Every integer is little-endian. Layout: format.md,
//! "Tier packs".

use xxhash_rust::xxh3::xxh3_64;

use crate::keys::{open, seal, DataKey, NodeKey, TAG_LEN};
use crate::PackError;

pub const MAGIC: &[u8; 8] = b"EBPACK01";
pub const TRAILER_MAGIC: &[u8; 8] = b"EBPACKT1";
pub const VERSION: u32 = 1;
/// The header's bytes; the chunks start here.
pub const HEADER_LEN: usize = 256;
pub const TRAILER_LEN: usize = 32;
/// Bytes of a wrapped data key: nonce, ciphertext, tag.
const WRAPPED_LEN: usize = 12 + 32 + TAG_LEN;
/// Bytes of one footer row.
const ROW_LEN: usize = 48;

/// A pack's name in the tier: the node, its generation (a node restored or taken over writes
/// under a new one, so two writers never share a name), the shard and its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PackId {
    pub node: [u8; 16],
    pub generation: u64,
    pub shard: u32,
    pub seq: u64,
}

impl PackId {
    const LEN: usize = 36;

    fn bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..16].copy_from_slice(&self.node);
        b[16..24].copy_from_slice(&self.generation.to_le_bytes());
        b[24..28].copy_from_slice(&self.shard.to_le_bytes());
        b[28..36].copy_from_slice(&self.seq.to_le_bytes());
        b
    }

    /// The object's name under the node's prefix: no user's name or data is in it.
    pub fn name(&self) -> String {
        format!("packs/{:016x}/{:04}/{:016x}", self.generation, self.shard, self.seq)
    }
}

/// What a pack keeps of a chunk beside its bytes: what its references name it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkInfo {
    /// The chunk id's place part (the offset it was first written at).
    pub offset: u64,
    /// The keyed xxh3-128 of its logical bytes.
    pub hash: [u8; 16],
    pub len: u32,
    pub stored_len: u32,
    pub flags: u8,
}

/// A chunk's place in a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub index: u32,
    pub chunk: ChunkInfo,
    /// Where its sealed bytes start in the pack.
    pub at: u64,
}

impl Entry {
    /// Its sealed bytes: the stored stream and the tag.
    pub fn sealed_len(&self) -> u64 {
        self.chunk.stored_len as u64 + TAG_LEN as u64
    }

    /// The bytes of the pack a read of this chunk asks for.
    pub fn range(&self) -> std::ops::Range<u64> {
        self.at..self.at + self.sealed_len()
    }

    /// Opens this chunk's sealed bytes (read from [`Entry::range`]): its stored stream, as the
    /// node keeps it on flash. Fails if they are not exactly what this pack sealed at this place
    /// for this chunk.
    pub fn open(&self, id: &PackId, key: &DataKey, sealed: &[u8]) -> Result<Vec<u8>, PackError> {
        let stored = open(key.bytes(), &nonce(b'E', self.index), &entry_aad(id, self), sealed, "chunk")?;
        debug_assert_eq!(stored.len(), self.chunk.stored_len as usize);
        Ok(stored)
    }
}

/// Each seal's nonce: a domain byte (`E` a chunk, `F` the footer, `K` the data key) and a
/// number, unique within one key.
fn nonce(domain: u8, n: u32) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[0] = domain;
    b[8..].copy_from_slice(&n.to_le_bytes());
    b
}

/// What a chunk's seal is bound to: the pack, its place, and everything its references name it
/// by, so a sealed chunk moved to another place or pack, or shown for another chunk, does not
/// open.
fn entry_aad(id: &PackId, e: &Entry) -> Vec<u8> {
    let mut a = Vec::with_capacity(80);
    a.extend_from_slice(b"EBENT1");
    a.extend_from_slice(&id.bytes());
    a.extend_from_slice(&e.index.to_le_bytes());
    a.extend_from_slice(&e.chunk.offset.to_le_bytes());
    a.extend_from_slice(&e.chunk.hash);
    a.extend_from_slice(&e.chunk.len.to_le_bytes());
    a.extend_from_slice(&e.chunk.stored_len.to_le_bytes());
    a.push(e.chunk.flags);
    a
}

fn footer_aad(id: &PackId, count: u32) -> Vec<u8> {
    let mut a = Vec::with_capacity(46);
    a.extend_from_slice(b"EBFTR1");
    a.extend_from_slice(&id.bytes());
    a.extend_from_slice(&count.to_le_bytes());
    a
}

fn key_aad(id: &PackId, key_id: &[u8; 16]) -> Vec<u8> {
    let mut a = Vec::with_capacity(58);
    a.extend_from_slice(b"EBDEK1");
    a.extend_from_slice(&id.bytes());
    a.extend_from_slice(key_id);
    a
}

/// A pack being written.
pub struct PackWriter {
    id: PackId,
    key: DataKey,
    out: Vec<u8>,
    entries: Vec<Entry>,
}

impl PackWriter {
    /// Starts pack `id` under a fresh data key, wrapped by `node_key`.
    pub fn start(id: PackId, created_ns: i64, node_key: &NodeKey) -> Result<PackWriter, PackError> {
        let mut wrap_nonce = [0u8; 12];
        getrandom::getrandom(&mut wrap_nonce).map_err(|e| PackError::Random(e.to_string()))?;
        Ok(PackWriter::with_keys(id, created_ns, node_key, DataKey::generate()?, wrap_nonce))
    }

    /// As [`PackWriter::start`], with the data key and the wrapping's nonce given (tests' fixed
    /// bytes). The wrapping's nonce must never repeat under one node key.
    pub fn with_keys(
        id: PackId,
        created_ns: i64,
        node_key: &NodeKey,
        key: DataKey,
        wrap_nonce: [u8; 12],
    ) -> PackWriter {
        let mut h = vec![0u8; HEADER_LEN];
        h[..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[16..52].copy_from_slice(&id.bytes());
        h[56..64].copy_from_slice(&created_ns.to_le_bytes());
        h[64..80].copy_from_slice(&node_key.id);
        let wrapped = seal(node_key.bytes(), &wrap_nonce, &key_aad(&id, &node_key.id), key.bytes());
        debug_assert_eq!(wrapped.len(), 32 + TAG_LEN);
        h[80..92].copy_from_slice(&wrap_nonce);
        h[92..80 + WRAPPED_LEN].copy_from_slice(&wrapped);
        let sum = xxh3_64(&h[..140]);
        h[140..148].copy_from_slice(&sum.to_le_bytes());
        PackWriter { id, key, out: h, entries: Vec::new() }
    }

    /// Seals `stored` (the chunk's stored stream, exactly `chunk.stored_len` bytes) as the next
    /// entry.
    pub fn add(&mut self, chunk: ChunkInfo, stored: &[u8]) -> Result<Entry, PackError> {
        if stored.len() != chunk.stored_len as usize {
            return Err(PackError::Length { got: stored.len(), want: chunk.stored_len });
        }
        let index = u32::try_from(self.entries.len()).map_err(|_| PackError::Malformed("too many entries"))?;
        let e = Entry { index, chunk, at: self.out.len() as u64 };
        let sealed = seal(self.key.bytes(), &nonce(b'E', index), &entry_aad(&self.id, &e), stored);
        debug_assert_eq!(sealed.len() as u64, e.sealed_len());
        self.out.extend_from_slice(&sealed);
        self.entries.push(e);
        Ok(e)
    }

    /// Bytes so far (the pack is cut when this reaches its target size).
    pub fn len(&self) -> usize {
        self.out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The whole pack, and its entries.
    pub fn finish(mut self) -> (Vec<u8>, Vec<Entry>) {
        let count = self.entries.len() as u32;
        let mut rows = Vec::with_capacity(4 + self.entries.len() * ROW_LEN);
        rows.extend_from_slice(&count.to_le_bytes());
        for e in &self.entries {
            let mut r = [0u8; ROW_LEN];
            r[..8].copy_from_slice(&e.chunk.offset.to_le_bytes());
            r[8..24].copy_from_slice(&e.chunk.hash);
            r[24..28].copy_from_slice(&e.chunk.len.to_le_bytes());
            r[28..32].copy_from_slice(&e.chunk.stored_len.to_le_bytes());
            r[32] = e.chunk.flags;
            r[36..44].copy_from_slice(&e.at.to_le_bytes());
            rows.extend_from_slice(&r);
        }
        let footer_at = self.out.len() as u64;
        let sealed = seal(self.key.bytes(), &nonce(b'F', 0), &footer_aad(&self.id, count), &rows);
        self.out.extend_from_slice(&sealed);
        let mut t = [0u8; TRAILER_LEN];
        t[..8].copy_from_slice(&footer_at.to_le_bytes());
        t[8..12].copy_from_slice(&(sealed.len() as u32).to_le_bytes());
        t[12..16].copy_from_slice(&count.to_le_bytes());
        t[16..24].copy_from_slice(&xxh3_64(&self.out).to_le_bytes());
        t[24..32].copy_from_slice(TRAILER_MAGIC);
        self.out.extend_from_slice(&t);
        (self.out, self.entries)
    }
}

/// A pack's header: which pack it is, and its data key, wrapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub id: PackId,
    pub created_ns: i64,
    /// The node key that wrapped the data key.
    pub key_id: [u8; 16],
    wrapped: [u8; WRAPPED_LEN],
}

fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap_or_default())
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().unwrap_or_default())
}

impl Header {
    /// Reads a header from a pack's first [`HEADER_LEN`] bytes.
    pub fn parse(h: &[u8]) -> Result<Header, PackError> {
        if h.len() < HEADER_LEN || &h[..8] != MAGIC {
            return Err(PackError::Malformed("no pack header"));
        }
        if le32(&h[8..]) != VERSION {
            return Err(PackError::Malformed("a pack version this build does not read"));
        }
        if le64(&h[140..]) != xxh3_64(&h[..140]) {
            return Err(PackError::Checksum);
        }
        let mut node = [0u8; 16];
        node.copy_from_slice(&h[16..32]);
        let id = PackId { node, generation: le64(&h[32..]), shard: le32(&h[40..]), seq: le64(&h[44..]) };
        let mut key_id = [0u8; 16];
        key_id.copy_from_slice(&h[64..80]);
        let mut wrapped = [0u8; WRAPPED_LEN];
        wrapped.copy_from_slice(&h[80..80 + WRAPPED_LEN]);
        Ok(Header { id, created_ns: le64(&h[56..]) as i64, key_id, wrapped })
    }

    /// The pack's data key, unwrapped by the node key that wrapped it.
    pub fn data_key(&self, node_key: &NodeKey) -> Result<DataKey, PackError> {
        if node_key.id != self.key_id {
            return Err(PackError::Sealed("data key (another node key wrapped it)"));
        }
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&self.wrapped[..12]);
        let key = open(node_key.bytes(), &nonce, &key_aad(&self.id, &self.key_id), &self.wrapped[12..], "data key")?;
        let key: [u8; 32] = key.try_into().map_err(|_| PackError::Sealed("data key"))?;
        Ok(DataKey::new(key))
    }
}

/// A pack's last [`TRAILER_LEN`] bytes: where its footer is, and a checksum of everything
/// before them (checked by [`verify`] without any key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    pub footer_at: u64,
    pub footer_len: u32,
    pub count: u32,
    pub checksum: u64,
}

impl Trailer {
    pub fn parse(t: &[u8]) -> Result<Trailer, PackError> {
        if t.len() != TRAILER_LEN || &t[24..32] != TRAILER_MAGIC {
            return Err(PackError::Malformed("no pack trailer"));
        }
        let trailer =
            Trailer { footer_at: le64(t), footer_len: le32(&t[8..]), count: le32(&t[12..]), checksum: le64(&t[16..]) };
        if trailer.footer_at < HEADER_LEN as u64 || (trailer.footer_len as usize) < 4 + TAG_LEN {
            return Err(PackError::Malformed("a trailer that points outside the pack"));
        }
        Ok(trailer)
    }

    /// The bytes of the pack a read of the footer asks for.
    pub fn footer_range(&self) -> std::ops::Range<u64> {
        self.footer_at..self.footer_at + self.footer_len as u64
    }

    /// The entries, from the footer's sealed bytes (read from [`Trailer::footer_range`]).
    pub fn entries(&self, id: &PackId, key: &DataKey, sealed: &[u8]) -> Result<Vec<Entry>, PackError> {
        let rows = open(key.bytes(), &nonce(b'F', 0), &footer_aad(id, self.count), sealed, "footer")?;
        if rows.len() != 4 + self.count as usize * ROW_LEN || le32(&rows) != self.count {
            return Err(PackError::Malformed("a footer of another length than its count"));
        }
        let mut out = Vec::with_capacity(self.count as usize);
        for (i, r) in rows[4..].chunks_exact(ROW_LEN).enumerate() {
            let mut hash = [0u8; 16];
            hash.copy_from_slice(&r[8..24]);
            let chunk =
                ChunkInfo { offset: le64(r), hash, len: le32(&r[24..]), stored_len: le32(&r[28..]), flags: r[32] };
            out.push(Entry { index: i as u32, chunk, at: le64(&r[36..]) });
        }
        Ok(out)
    }
}

/// Checks a whole pack's structure and checksum, needing no key (a scrub can run where the
/// keys are not): its header, its trailer, and that the footer ends where the trailer starts.
pub fn verify(pack: &[u8]) -> Result<Trailer, PackError> {
    if pack.len() < HEADER_LEN + TRAILER_LEN {
        return Err(PackError::Malformed("shorter than a header and a trailer"));
    }
    Header::parse(&pack[..HEADER_LEN])?;
    let body = pack.len() - TRAILER_LEN;
    let t = Trailer::parse(&pack[body..])?;
    if t.footer_range().end != body as u64 {
        return Err(PackError::Malformed("the footer does not end at the trailer"));
    }
    if xxh3_64(&pack[..body]) != t.checksum {
        return Err(PackError::Checksum);
    }
    Ok(t)
}
