//! The keys: the node key wraps each pack's data key; the data key seals the pack's chunks and
//! its footer. Both are 256-bit AES-GCM keys, wiped from memory when dropped. (The node key is
//! itself wrapped by the customer's key, a local file or Key Vault: a later step.)

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
