//! The customer's key that guards the node key: a key file's 256 bits (the node key sealed
//! under them, `EBNKEY01`), or a key in Azure Key Vault (the node key wrapped there with
//! RSA-OAEP-256 through its REST API, `EBNKEY02`), reached with the host's managed identity.
//! Either way the node key itself never changes: rotating the customer's key writes one new
//! small object, and no pack is touched.

use std::sync::Arc;

use edgeblob_remote::identity::ManagedIdentity;
use edgeblob_remote::keyvault::KeyVault;
use edgeblob_tier::{CustomerKey, NodeKey, StoredNodeKey, VaultWrappedNodeKey, WrappedNodeKey};

use crate::config::TierConfig;

pub enum Guard {
    File(CustomerKey),
    Vault(KeyVault),
}

/// Why the node key did not open.
#[derive(Debug, Clone)]
pub struct KeyError {
    pub message: String,
    /// The key's owner refused (a wrong or revoked key), rather than could not be asked.
    pub refused: bool,
}

impl KeyError {
    fn refused(message: String) -> KeyError {
        KeyError { message, refused: true }
    }
}

impl Guard {
    /// The key `cfg` names (a key file is read anew each call: one restored is found without a
    /// restart).
    pub fn of(cfg: &TierConfig) -> Result<Guard, String> {
        match &cfg.key_vault_key {
            Some(url) => {
                let identity = ManagedIdentity::new(cfg.identity_endpoint.as_deref(), cfg.identity_client_id.clone())?;
                Ok(Guard::Vault(KeyVault::new(url, Arc::new(identity), &cfg.key_vault_resource)?))
            }
            None => Ok(Guard::File(file_key(&cfg.key_file)?)),
        }
    }

    /// The key's name, as errors give it.
    pub fn name(&self) -> String {
        match self {
            Guard::File(k) => format!("customer key {:?}", k.name),
            Guard::Vault(v) => format!("Key Vault key {}", v.key()),
        }
    }

    /// `node` wrapped by this key: the stored object's bytes.
    pub async fn wrap(&self, node: &NodeKey) -> Result<Vec<u8>, String> {
        match self {
            Guard::File(cmk) => Ok(WrappedNodeKey::wrap(node, cmk).map_err(|e| e.to_string())?.encode()),
            Guard::Vault(v) => {
                let (kid, wrapped) = v
                    .wrap(node.secret_for_wrapping())
                    .await
                    .map_err(|e| format!("wrapping the node key with {}: {e}", self.name()))?;
                Ok(VaultWrappedNodeKey::new(node, &kid, wrapped).encode())
            }
        }
    }

    /// The node key stored object `name` (`bytes`) holds.
    pub async fn open(&self, name: &str, bytes: &[u8]) -> Result<NodeKey, KeyError> {
        let stored = StoredNodeKey::decode(bytes).map_err(|e| KeyError::refused(format!("{name}: {e}")))?;
        let wrong = |e: String| {
            KeyError::refused(format!(
                "the node key ({name}) is wrapped by {:?} and does not open with {}: {e}",
                stored.wrapped_by(),
                self.name()
            ))
        };
        match (self, &stored) {
            (Guard::File(cmk), StoredNodeKey::Local(w)) => w.unwrap(cmk).map_err(|e| wrong(e.to_string())),
            (Guard::Vault(v), StoredNodeKey::Vault(w)) => {
                let plain = v.unwrap(&w.kid, &w.wrapped).await.map_err(|e| KeyError {
                    message: format!("the node key ({name}): {} would not unwrap it: {e}", w.kid),
                    refused: e.refused(),
                })?;
                w.node_key(&plain).map_err(|e| wrong(e.to_string()))
            }
            _ => Err(wrong("a key of the other kind wraps it".into())),
        }
    }
}

/// A customer key from its file; its name is the file's name.
pub fn file_key(path: &std::path::Path) -> Result<CustomerKey, String> {
    let contents = std::fs::read(path).map_err(|e| format!("the customer key {}: {e}", path.display()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    CustomerKey::from_file(&name, &contents).map_err(|e| format!("the customer key {}: {e}", path.display()))
}
