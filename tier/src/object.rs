//! A sealed object: the tier's metadata (a part of a shard's metadata export, or a manifest)
//! under a fresh data key wrapped by the node key, bound to its kind, its node and its name, so
//! that an object copied under another name, or shown as another kind, does not open. Layout:
//! format.md, "Tier objects".

use xxhash_rust::xxh3::xxh3_64;

use crate::keys::{open, seal, DataKey, NodeKey, TAG_LEN};
use crate::PackError;

pub const OBJECT_MAGIC: &[u8; 8] = b"EBOBJ001";
pub const OBJECT_VERSION: u32 = 1;
/// The header's bytes; the sealed body follows.
pub const OBJECT_HEADER_LEN: usize = 124;
const WRAPPED_LEN: usize = 32 + TAG_LEN;

/// What an object holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ObjectKind {
    /// A part of one shard's metadata export.
    MetaPart = 1,
    /// A manifest: the commit point of an epoch.
    Manifest = 2,
}

fn aad(kind: ObjectKind, node: &[u8; 16], name: &str, header: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(8 + 4 + 16 + name.len() + header.len());
    a.extend_from_slice(b"EBOBJ1");
    a.extend_from_slice(&(kind as u32).to_le_bytes());
    a.extend_from_slice(node);
    a.extend_from_slice(&(name.len() as u32).to_le_bytes());
    a.extend_from_slice(name.as_bytes());
    a.extend_from_slice(header);
    a
}

/// `plaintext` sealed as object `name` of node `node`, under a fresh data key.
pub fn seal_object(
    kind: ObjectKind,
    node: &[u8; 16],
    name: &str,
    key: &NodeKey,
    plaintext: &[u8],
) -> Result<Vec<u8>, PackError> {
    let mut nonce = [0u8; 12];
    getrandom::getrandom(&mut nonce).map_err(|e| PackError::Random(e.to_string()))?;
    Ok(seal_object_with(kind, node, name, key, DataKey::generate()?, nonce, plaintext))
}

/// As [`seal_object`], with the data key and the wrapping's nonce given (tests' fixed bytes).
pub fn seal_object_with(
    kind: ObjectKind,
    node: &[u8; 16],
    name: &str,
    key: &NodeKey,
    data_key: DataKey,
    wrap_nonce: [u8; 12],
    plaintext: &[u8],
) -> Vec<u8> {
    let mut h = vec![0u8; OBJECT_HEADER_LEN];
    h[..8].copy_from_slice(OBJECT_MAGIC);
    h[8..12].copy_from_slice(&OBJECT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(kind as u32).to_le_bytes());
    h[16..32].copy_from_slice(node);
    h[32..48].copy_from_slice(&key.id);
    h[48..60].copy_from_slice(&wrap_nonce);
    let wrapped = seal(key.bytes(), &wrap_nonce, &aad(kind, node, name, &h[..48]), data_key.bytes());
    debug_assert_eq!(wrapped.len(), WRAPPED_LEN);
    h[60..108].copy_from_slice(&wrapped);
    h[108..116].copy_from_slice(&((plaintext.len() + TAG_LEN) as u64).to_le_bytes());
    let sum = xxh3_64(&h[..116]);
    h[116..124].copy_from_slice(&sum.to_le_bytes());
    // The data key is fresh for every object: one seal under it, so a fixed nonce is safe.
    let body = seal(data_key.bytes(), &[b'O'; 12], &aad(kind, node, name, &h), plaintext);
    h.extend_from_slice(&body);
    h
}

/// The plaintext of object `name`, if these are the bytes sealed under that name, as that kind,
/// for that node, and the node key opens them.
pub fn open_object(
    kind: ObjectKind,
    node: &[u8; 16],
    name: &str,
    key: &NodeKey,
    bytes: &[u8],
) -> Result<Vec<u8>, PackError> {
    if bytes.len() < OBJECT_HEADER_LEN + TAG_LEN || &bytes[..8] != OBJECT_MAGIC {
        return Err(PackError::Malformed("not a sealed object"));
    }
    let h = &bytes[..OBJECT_HEADER_LEN];
    let le32 = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let le64 = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().unwrap_or_default());
    if le32(8) != OBJECT_VERSION {
        return Err(PackError::Malformed("an object version this build does not read"));
    }
    if le64(116) != xxh3_64(&h[..116]) {
        return Err(PackError::Checksum);
    }
    if le32(12) != kind as u32 || h[16..32] != node[..] {
        return Err(PackError::Malformed("an object of another kind or node"));
    }
    if le64(108) != (bytes.len() - OBJECT_HEADER_LEN) as u64 {
        return Err(PackError::Malformed("an object of another length than its header says"));
    }
    if h[32..48] != key.id {
        return Err(PackError::Sealed("data key (another node key wrapped it)"));
    }
    let nonce: [u8; 12] = h[48..60].try_into().map_err(|_| PackError::Malformed("header"))?;
    let dk = open(key.bytes(), &nonce, &aad(kind, node, name, &h[..48]), &h[60..108], "data key")?;
    let dk: [u8; 32] = dk.try_into().map_err(|_| PackError::Sealed("data key"))?;
    let data_key = DataKey::new(dk);
    open(data_key.bytes(), &[b'O'; 12], &aad(kind, node, name, h), &bytes[OBJECT_HEADER_LEN..], "object")
}
