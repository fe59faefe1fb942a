//! The keys: the node key wraps each pack's data key; the data key seals the pack's chunks and
//! its footer. Both are 256-bit AES-GCM keys, wiped from memory when dropped. (The node key is
//! itself wrapped by the customer's key: a local file's ([`WrappedNodeKey`]) or a Key Vault
//! key's ([`VaultWrappedNodeKey`]).)

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Key, KeyInit, Nonce};
use zeroize::Zeroizing;

use crate::PackError;

/// Bytes a seal adds: the GCM tag.
pub const TAG_LEN: usize = 16;

fn random<const N: usize>() -> Result<[u8; N], PackError> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).map_err(|e| PackError::Random(e.to_string()))?;
    Ok(b)
}

/// The node's key, named by an id that each pack records (keys rotate; old ones are kept
/// wrapped until no pack needs them).
pub struct NodeKey {
    pub id: [u8; 16],
    key: Zeroizing<[u8; 32]>,
}

impl NodeKey {
    pub fn new(id: [u8; 16], key: [u8; 32]) -> NodeKey {
        NodeKey { id, key: Zeroizing::new(key) }
    }

    pub fn generate() -> Result<NodeKey, PackError> {
        Ok(NodeKey::new(random()?, random()?))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// The key's bytes, only to hand to a key-wrapping service (Key Vault's `wrapKey`).
    pub fn secret_for_wrapping(&self) -> &[u8; 32] {
        &self.key
    }

    /// A check value of this key: the GCM tag of nothing sealed under it, bound to its id. It
    /// tells a key unwrapped elsewhere from a wrong one, and gives nothing of the key away.
    fn check(&self) -> [u8; 16] {
        let mut aad = b"EBNKCHK1".to_vec();
        aad.extend_from_slice(&self.id);
        let tag = seal(&self.key, &[0u8; 12], &aad, &[]);
        tag.try_into().unwrap_or([0u8; 16])
    }
}

/// One pack's key. A fresh one for every pack: the nonces of a pack's seals are their places
/// in it, which is safe only because no two packs share a key.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    pub fn new(key: [u8; 32]) -> DataKey {
        DataKey(Zeroizing::new(key))
    }

    pub fn generate() -> Result<DataKey, PackError> {
        Ok(DataKey::new(random()?))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// `plaintext` sealed: its ciphertext and tag.
pub(crate) fn seal(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
    // Encryption fails only for inputs past GCM's limit (64 GiB), which no chunk approaches.
    cipher.encrypt(Nonce::from_slice(nonce), Payload { msg: plaintext, aad }).unwrap_or_default()
}

/// The plaintext of `sealed`, if it opens under this key, nonce and associated data.
pub(crate) fn open(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    sealed: &[u8],
    what: &'static str,
) -> Result<Vec<u8>, PackError> {
    if sealed.len() < TAG_LEN {
        return Err(PackError::Sealed(what));
    }
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
    cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad }).map_err(|_| PackError::Sealed(what))
}

/// The customer's key, which wraps the node key: 256 bits from a key file, named by where it
/// came from. (An Azure Key Vault key, wrapping with RSA-OAEP-256 through its REST API, is the
/// other kind: a later step.)
pub struct CustomerKey {
    pub name: String,
    key: Zeroizing<[u8; 32]>,
}

impl CustomerKey {
    /// A key file's contents: 32 bytes, raw or in base64 (one line).
    pub fn from_file(name: &str, contents: &[u8]) -> Result<CustomerKey, PackError> {
        use base64::Engine;
        let raw: Zeroizing<Vec<u8>> = if contents.len() == 32 {
            Zeroizing::new(contents.to_vec())
        } else {
            let text = std::str::from_utf8(contents)
                .map_err(|_| PackError::Malformed("a key file of neither 32 bytes nor base64"))?;
            Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|_| PackError::Malformed("a key file of neither 32 bytes nor base64"))?,
            )
        };
        let key: [u8; 32] =
            raw.as_slice().try_into().map_err(|_| PackError::Malformed("a key file that does not hold 32 bytes"))?;
        Ok(CustomerKey { name: name.to_owned(), key: Zeroizing::new(key) })
    }
}

const WRAPPED_MAGIC: &[u8; 8] = b"EBNKEY01";

/// The node key sealed under a customer key: the one small object that rotating the customer's
/// key rewrites (no pack is touched: their data keys are wrapped by the node key, which stays).
/// Losing the customer's key, or its revocation, makes every pack unreadable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedNodeKey {
    pub node_key_id: [u8; 16],
    /// The customer key's name: which key opens this.
    pub customer_key: String,
    nonce: [u8; 12],
    sealed: Vec<u8>,
}

fn node_key_aad(node_key_id: &[u8; 16], customer_key: &str) -> Vec<u8> {
    let mut a = b"EBNKEY1".to_vec();
    a.extend_from_slice(node_key_id);
    a.extend_from_slice(customer_key.as_bytes());
    a
}

impl WrappedNodeKey {
    /// `node` sealed under `cmk`, with a fresh nonce.
    pub fn wrap(node: &NodeKey, cmk: &CustomerKey) -> Result<WrappedNodeKey, PackError> {
        Ok(WrappedNodeKey::wrap_with_nonce(node, cmk, random()?))
    }

    /// As [`WrappedNodeKey::wrap`] with the nonce given (tests' fixed bytes); a nonce must never
    /// repeat under one customer key.
    pub fn wrap_with_nonce(node: &NodeKey, cmk: &CustomerKey, nonce: [u8; 12]) -> WrappedNodeKey {
        let sealed = seal(&cmk.key, &nonce, &node_key_aad(&node.id, &cmk.name), node.bytes());
        WrappedNodeKey { node_key_id: node.id, customer_key: cmk.name.clone(), nonce, sealed }
    }

    pub fn unwrap(&self, cmk: &CustomerKey) -> Result<NodeKey, PackError> {
        if cmk.name != self.customer_key {
            return Err(PackError::Sealed("node key (another customer key wraps it)"));
        }
        let key = open(
            &cmk.key,
            &self.nonce,
            &node_key_aad(&self.node_key_id, &self.customer_key),
            &self.sealed,
            "node key",
        )?;
        let key: [u8; 32] = key.as_slice().try_into().map_err(|_| PackError::Sealed("node key"))?;
        Ok(NodeKey::new(self.node_key_id, key))
    }

    /// Its bytes: magic, node key id (16), the customer key's name (u16 length, UTF-8), nonce
    /// (12), the sealed key (48), xxh3-64 of all before.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(8 + 16 + 2 + self.customer_key.len() + 12 + 48 + 8);
        b.extend_from_slice(WRAPPED_MAGIC);
        b.extend_from_slice(&self.node_key_id);
        b.extend_from_slice(&(self.customer_key.len() as u16).to_le_bytes());
        b.extend_from_slice(self.customer_key.as_bytes());
        b.extend_from_slice(&self.nonce);
        b.extend_from_slice(&self.sealed);
        let sum = xxhash_rust::xxh3::xxh3_64(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<WrappedNodeKey, PackError> {
        let bad = PackError::Malformed("not a wrapped node key");
        if b.len() < 8 + 16 + 2 + 12 + 48 + 8 || &b[..8] != WRAPPED_MAGIC {
            return Err(bad);
        }
        let (body, sum) = b.split_at(b.len() - 8);
        if u64::from_le_bytes(sum.try_into().map_err(|_| PackError::Checksum)?) != xxhash_rust::xxh3::xxh3_64(body) {
            return Err(PackError::Checksum);
        }
        let name_len = u16::from_le_bytes([b[24], b[25]]) as usize;
        if body.len() != 26 + name_len + 12 + 48 {
            return Err(bad);
        }
        let mut node_key_id = [0u8; 16];
        node_key_id.copy_from_slice(&b[8..24]);
        let customer_key = std::str::from_utf8(&b[26..26 + name_len])
            .map_err(|_| PackError::Malformed("a key name that is not UTF-8"))?
            .to_owned();
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&b[26 + name_len..38 + name_len]);
        Ok(WrappedNodeKey { node_key_id, customer_key, nonce, sealed: b[38 + name_len..body.len()].to_vec() })
    }
}

const VAULT_MAGIC: &[u8; 8] = b"EBNKEY02";

/// The node key wrapped by a key in Azure Key Vault (RSA-OAEP-256 by the vault: the wrapping
/// happens there, these are its bytes), with the vault's key id (its version: the one that
/// unwraps) and a check value of the node key, so that an unwrapped key is known right before
/// any pack is opened with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultWrappedNodeKey {
    pub node_key_id: [u8; 16],
    /// The Key Vault key id (`https://<vault>/keys/<name>/<version>`).
    pub kid: String,
    check: [u8; 16],
    pub wrapped: Vec<u8>,
}

impl VaultWrappedNodeKey {
    /// `node`, as Key Vault version `kid` wrapped it into `wrapped`.
    pub fn new(node: &NodeKey, kid: &str, wrapped: Vec<u8>) -> VaultWrappedNodeKey {
        VaultWrappedNodeKey { node_key_id: node.id, kid: kid.to_owned(), check: node.check(), wrapped }
    }

    /// The node key from what Key Vault unwrapped, checked against the check value.
    pub fn node_key(&self, unwrapped: &[u8]) -> Result<NodeKey, PackError> {
        let key: [u8; 32] =
            unwrapped.try_into().map_err(|_| PackError::Sealed("node key (unwrapped to a wrong length)"))?;
        let node = NodeKey::new(self.node_key_id, key);
        match node.check() == self.check {
            true => Ok(node),
            false => Err(PackError::Sealed("node key (unwrapped to another key)")),
        }
    }

    /// Its bytes: magic `EBNKEY02`, node key id (16), key id (u16 length, UTF-8), check (16),
    /// wrapped (u16 length, bytes), xxh3-64 of all before.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(8 + 16 + 2 + self.kid.len() + 16 + 2 + self.wrapped.len() + 8);
        b.extend_from_slice(VAULT_MAGIC);
        b.extend_from_slice(&self.node_key_id);
        b.extend_from_slice(&(self.kid.len() as u16).to_le_bytes());
        b.extend_from_slice(self.kid.as_bytes());
        b.extend_from_slice(&self.check);
        b.extend_from_slice(&(self.wrapped.len() as u16).to_le_bytes());
        b.extend_from_slice(&self.wrapped);
        let sum = xxhash_rust::xxh3::xxh3_64(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<VaultWrappedNodeKey, PackError> {
        let bad = PackError::Malformed("not a vault-wrapped node key");
        if b.len() < 8 + 16 + 2 + 16 + 2 + 8 || &b[..8] != VAULT_MAGIC {
            return Err(bad);
        }
        let (body, sum) = b.split_at(b.len() - 8);
        if u64::from_le_bytes(sum.try_into().map_err(|_| PackError::Checksum)?) != xxhash_rust::xxh3::xxh3_64(body) {
            return Err(PackError::Checksum);
        }
        let mut at = 24;
        let mut take = |n: usize| -> Result<&[u8], PackError> {
            let s = body.get(at..at + n).ok_or(PackError::Malformed("a vault-wrapped node key cut short"))?;
            at += n;
            Ok(s)
        };
        let kid_len = u16::from_le_bytes([take(1)?[0], take(1)?[0]]) as usize;
        let kid = std::str::from_utf8(take(kid_len)?)
            .map_err(|_| PackError::Malformed("a key id that is not UTF-8"))?
            .to_owned();
        let check: [u8; 16] = take(16)?.try_into().map_err(|_| PackError::Checksum)?;
        let wrapped_len = u16::from_le_bytes([take(1)?[0], take(1)?[0]]) as usize;
        let wrapped = take(wrapped_len)?.to_vec();
        if at != body.len() {
            return Err(bad);
        }
        let mut node_key_id = [0u8; 16];
        node_key_id.copy_from_slice(&b[8..24]);
        Ok(VaultWrappedNodeKey { node_key_id, kid, check, wrapped })
    }
}

/// A node key object as stored: wrapped by a key file's key, or by Key Vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredNodeKey {
    Local(WrappedNodeKey),
    Vault(VaultWrappedNodeKey),
}

impl StoredNodeKey {
    pub fn decode(b: &[u8]) -> Result<StoredNodeKey, PackError> {
        match b.get(..8) {
            Some(m) if m == VAULT_MAGIC => Ok(StoredNodeKey::Vault(VaultWrappedNodeKey::decode(b)?)),
            _ => Ok(StoredNodeKey::Local(WrappedNodeKey::decode(b)?)),
        }
    }

    /// The name of the key that opens it (a key file's name, or a Key Vault key id).
    pub fn wrapped_by(&self) -> &str {
        match self {
            StoredNodeKey::Local(w) => &w.customer_key,
            StoredNodeKey::Vault(v) => &v.kid,
        }
    }
}
