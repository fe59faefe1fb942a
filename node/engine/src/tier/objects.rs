//! The tier's metadata objects (a part of a shard's export, a manifest): compressed with zstd,
//! sealed under the node key (`edgeblob-tier`'s objects, bound to their names), written
//! create-only, and checked by length and digest before they are opened.

use bytes::Bytes;
use edgeblob_remote::Remote;
use edgeblob_tier::{open_object, seal_object, NodeKey, ObjectKind};
use xxhash_rust::xxh3::xxh3_64;

/// Where an object is, and what checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub len: u64,
    pub digest: u64,
}

/// Seals `plaintext` as `name` (under the node's prefix) and writes it create-only.
pub async fn put(
    remote: &Remote,
    key: &NodeKey,
    node: &[u8; 16],
    kind: ObjectKind,
    name: &str,
    plaintext: &[u8],
) -> Result<Written, String> {
    let packed = zstd::bulk::compress(plaintext, 3).map_err(|e| format!("compressing {name}: {e}"))?;
    let sealed = seal_object(kind, node, name, key, &packed).map_err(|e| e.to_string())?;
    let written = Written { len: sealed.len() as u64, digest: xxh3_64(&sealed) };
    let full = format!("{}/{name}", super::remote::node_prefix(node));
    remote.put_blob(&full, Bytes::from(sealed), true).await.map_err(|e| e.to_string())?;
    Ok(written)
}

/// Reads `name`, checks it against `expect` (when the manifest that names it says), opens and
/// decompresses it (at most `max_plain` bytes).
pub async fn get(
    remote: &Remote,
    key: &NodeKey,
    node: &[u8; 16],
    kind: ObjectKind,
    name: &str,
    expect: Option<Written>,
    max_plain: usize,
) -> Result<Vec<u8>, String> {
    let full = format!("{}/{name}", super::remote::node_prefix(node));
    let sealed = remote.get(&full).await.map_err(|e| e.to_string())?;
    if let Some(w) = expect {
        let got = Written { len: sealed.len() as u64, digest: xxh3_64(&sealed) };
        if got != w {
            return Err(format!("{name}: {got:?} in the tier where its manifest says {w:?}"));
        }
    }
    let packed = open_object(kind, node, name, key, &sealed).map_err(|e| format!("{name}: {e}"))?;
    zstd::bulk::decompress(&packed, max_plain).map_err(|e| format!("{name}: {e}"))
}
