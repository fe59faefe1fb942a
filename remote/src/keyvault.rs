//! Azure Key Vault's `wrapKey` and `unwrapKey` (RSA-OAEP-256) on a customer's key, with a token
//! of the host's managed identity: the node key is wrapped by a key that never leaves the vault,
//! and revoking that key (disabling it, or the identity's access) makes the tier unreadable.
//!
//! A key is named by its URL, `https://<vault>.vault.azure.net/keys/<name>[/<version>]`; a wrap
//! without a version uses the newest, and the answer's `kid` names the version that wrapped (kept
//! beside the wrapped key: it is the one that unwraps). A `kid` read back from the tier is used
//! only if it is a version of the configured key: nothing read from outside chooses where the
//! node sends a token.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use http::Method;

use crate::client::{https_client, HttpsClient};
use crate::identity::ManagedIdentity;

/// The Key Vault REST version spoken.
pub const API_VERSION: &str = "7.4";

/// The wrapping algorithm (Key Vault's name for it).
pub const ALG: &str = "RSA-OAEP-256";

/// Why Key Vault did not wrap or unwrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVaultError {
    /// The vault's answer, when it answered.
    pub status: Option<u16>,
    pub message: String,
}

impl KeyVaultError {
    /// The vault refused (the key disabled or gone, access revoked): not worth asking again
    /// until someone changes something.
    pub fn refused(&self) -> bool {
        matches!(self.status, Some(401 | 403 | 404))
    }
}

impl std::fmt::Display for KeyVaultError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "Key Vault answered {s}: {}", self.message),
            None => write!(f, "Key Vault did not answer: {}", self.message),
        }
    }
}

pub struct KeyVault {
    client: HttpsClient,
    identity: Arc<ManagedIdentity>,
    /// The configured key's URL, without a version.
    key: String,
    /// The token audience (`https://vault.azure.net` in Azure's public cloud).
    resource: String,
}

impl std::fmt::Debug for KeyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyVault({})", self.key)
    }
}

/// The versionless URL of a key URL (`.../keys/<name>[/<version>]`), checked.
pub fn key_base(url: &str) -> Result<String, String> {
    let url = url.trim_end_matches('/');
    let loopback = ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"];
    if !url.starts_with("https://") && !loopback.iter().any(|p| url.starts_with(p)) {
        return Err(format!("the Key Vault key {url:?} is not an https:// URL"));
    }
    let (origin, path) =
        url.split_once("://").and_then(|(_, rest)| rest.split_once('/')).ok_or("a key URL without a path")?;
    let segs: Vec<&str> = path.split('/').collect();
    let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    match segs.as_slice() {
        ["keys", name] | ["keys", name, _] if ok(name) && segs.get(2).is_none_or(|v| ok(v)) => {
            let scheme = &url[..url.find("://").unwrap_or(0)];
            Ok(format!("{scheme}://{origin}/keys/{name}"))
        }
        _ => Err(format!("{url:?} is not a Key Vault key URL (https://<vault>/keys/<name>[/<version>])")),
    }
}

impl KeyVault {
    pub fn new(key_url: &str, identity: Arc<ManagedIdentity>, resource: &str) -> Result<KeyVault, String> {
        key_base(key_url)?;
        // A version in the configured URL pins wrapping to it.
        let key = key_url.trim_end_matches('/').to_owned();
        Ok(KeyVault {
            client: https_client(Vec::new(), Duration::from_secs(10))?,
            identity,
            key,
            resource: resource.to_owned(),
        })
    }

    /// The configured key's URL.
    pub fn key(&self) -> &str {
        &self.key
    }

    async fn op(&self, url: &str, value: &[u8]) -> Result<serde_json::Value, KeyVaultError> {
        let token =
            self.identity.token(&self.resource).await.map_err(|message| KeyVaultError { status: None, message })?;
        let body = serde_json::json!({ "alg": ALG, "value": B64URL.encode(value) });
        let headers = [("Authorization", format!("Bearer {token}"))];
        let url = format!("{url}?api-version={API_VERSION}");
        match crate::json::call(&self.client, Method::POST, &url, &headers, Some(&body), Duration::from_secs(30)).await
        {
            Ok((200, v)) => Ok(v),
            Ok((status, v)) => Err(KeyVaultError { status: Some(status), message: crate::json::error_text(&v) }),
            Err(message) => Err(KeyVaultError { status: None, message }),
        }
    }

    /// `key` wrapped by the configured key: the `kid` that wrapped it and the wrapped bytes.
    pub async fn wrap(&self, key: &[u8]) -> Result<(String, Vec<u8>), KeyVaultError> {
        let v = self.op(&format!("{}/wrapkey", self.key), key).await?;
        let bad = |m: &str| KeyVaultError { status: Some(200), message: m.to_owned() };
        let kid = v["kid"].as_str().ok_or_else(|| bad("a wrapKey answer without kid"))?.to_owned();
        self.check_kid(&kid).map_err(|m| bad(&m))?;
        let wrapped = B64URL
            .decode(v["value"].as_str().unwrap_or(""))
            .map_err(|_| bad("a wrapKey answer whose value is not base64url"))?;
        if wrapped.is_empty() {
            return Err(bad("a wrapKey answer with an empty value"));
        }
        Ok((kid, wrapped))
    }

    /// The key `wrapped` holds, unwrapped by version `kid` of the configured key.
    pub async fn unwrap(&self, kid: &str, wrapped: &[u8]) -> Result<Vec<u8>, KeyVaultError> {
        self.check_kid(kid).map_err(|message| KeyVaultError { status: None, message })?;
        let v = self.op(&format!("{kid}/unwrapkey"), wrapped).await?;
        B64URL.decode(v["value"].as_str().unwrap_or("")).map_err(|_| KeyVaultError {
            status: Some(200),
            message: "an unwrapKey answer whose value is not base64url".into(),
        })
    }

    /// Whether `kid` is a version of the configured key.
    fn check_kid(&self, kid: &str) -> Result<(), String> {
        let base = key_base(&self.key)?;
        match kid.strip_prefix(&base).and_then(|r| r.strip_prefix('/')) {
            Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => Ok(()),
            _ => Err(format!("key id {kid:?} is not a version of the configured key {base}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_urls_are_checked_and_versions_stripped() {
        assert_eq!(key_base("https://v.vault.azure.net/keys/cmk").unwrap(), "https://v.vault.azure.net/keys/cmk");
        assert_eq!(key_base("https://v.vault.azure.net/keys/cmk/0a1b/").unwrap(), "https://v.vault.azure.net/keys/cmk");
        assert_eq!(key_base("http://127.0.0.1:8200/keys/k").unwrap(), "http://127.0.0.1:8200/keys/k");
        assert!(key_base("http://v.vault.azure.net/keys/cmk").is_err(), "plain http off loopback");
        assert!(key_base("https://v.vault.azure.net/secrets/cmk").is_err());
        assert!(key_base("https://v.vault.azure.net/keys/cmk/v1/extra").is_err());
        assert!(key_base("https://v.vault.azure.net/keys/../x").is_err());
    }
}
