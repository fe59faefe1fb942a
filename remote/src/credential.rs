//! How a request to the remote is authorised: the account's key (SharedKey, signed as
//! `edgeblob_proto::shared_key` verifies on our own side), a SAS, a bearer token of the host's
//! managed identity (Entra ID: sent only over TLS, or to loopback), or nothing (a public
//! container, or a test).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use edgeblob_proto::shared_key;
use http::{HeaderMap, HeaderValue};

#[derive(Clone)]
pub enum Credential {
    SharedKey {
        account: String,
        key: Vec<u8>,
    },
    /// A SAS token: the query string without its `?`.
    Sas(String),
    /// Tokens of the host's managed identity for `resource` (`https://storage.azure.com`).
    ManagedIdentity {
        identity: std::sync::Arc<crate::identity::ManagedIdentity>,
        resource: String,
    },
    Anonymous,
}

/// Never prints a key or a signature: credentials end up in configuration dumps and logs.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::SharedKey { account, .. } => write!(f, "SharedKey({account})"),
            Credential::Sas(_) => f.write_str("Sas(..)"),
            Credential::ManagedIdentity { identity, resource } => write!(f, "{identity:?} for {resource}"),
            Credential::Anonymous => f.write_str("Anonymous"),
        }
    }
}

impl Credential {
    pub fn shared_key(account: &str, base64_key: &str) -> Result<Credential, String> {
        let key = B64.decode(base64_key.trim()).map_err(|e| format!("the account key is not base64: {e}"))?;
        Ok(Credential::SharedKey { account: account.to_owned(), key })
    }

    /// The one credential a configuration gives: an account and its key, a SAS, or the host's
    /// managed identity (`what` names the configuration in the error).
    pub fn from_settings(
        what: &str,
        account: Option<&str>,
        account_key: Option<&str>,
        sas: Option<&str>,
        managed_identity: bool,
        identity_endpoint: Option<&str>,
        identity_client_id: Option<String>,
    ) -> Result<Credential, String> {
        match (account, account_key, sas, managed_identity) {
            (Some(account), Some(key), None, false) => Credential::shared_key(account, key),
            (None, None, Some(sas), false) => Ok(Credential::sas(sas)),
            (None, None, None, true) => Credential::managed_identity(identity_endpoint, identity_client_id),
            _ => Err(format!("{what}: give either account and account_key, or sas, or managed_identity = true")),
        }
    }

    pub fn sas(token: &str) -> Credential {
        Credential::Sas(token.trim_start_matches('?').to_owned())
    }

    /// Tokens of the host's managed identity (see [`crate::identity`]) for Blob storage.
    pub fn managed_identity(endpoint: Option<&str>, client_id: Option<String>) -> Result<Credential, String> {
        let identity = crate::identity::ManagedIdentity::new(endpoint, client_id)?;
        Ok(Credential::ManagedIdentity {
            identity: std::sync::Arc::new(identity),
            resource: "https://storage.azure.com".into(),
        })
    }

    /// The query a request carries besides its own parameters (a SAS's).
    pub(crate) fn query(&self) -> Option<&str> {
        match self {
            Credential::Sas(t) => Some(t),
            _ => None,
        }
    }

    /// Signs a request whose headers are final: `query` is its own parameters, decoded.
    pub(crate) fn sign(
        &self,
        method: &str,
        raw_path: &str,
        query: &[(String, String)],
        headers: &mut HeaderMap,
        content_length: u64,
    ) {
        let Credential::SharedKey { account, key } = self else { return };
        let req = shared_key::SignedRequest { method, raw_path, query, headers };
        // Since version 2015-02-21 a zero length signs as an empty line.
        let length = if content_length == 0 { String::new() } else { content_length.to_string() };
        let signature = shared_key::sign(key, &shared_key::string_to_sign(account, &req, &length));
        if let Ok(v) = HeaderValue::from_str(&format!("SharedKey {account}:{signature}")) {
            headers.insert(http::header::AUTHORIZATION, v);
        }
    }
}
