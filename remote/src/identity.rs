//! Tokens of the host's managed identity, for the node's own calls out (Key Vault, and later
//! the tier and linked containers): the Azure Instance Metadata Service
//! (`169.254.169.254/metadata/identity/oauth2/token`, header `Metadata: true`), or, where the
//! host sets `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` (App Service, Arc, Service Fabric), that
//! endpoint. A token is kept until five minutes before it expires; the endpoint is asked again
//! on 404, 410, 429 and 5xx (IMDS's documented transient answers) a few times with a backoff.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Method;

use crate::client::{https_client, HttpsClient};

/// IMDS's token endpoint.
pub const IMDS_TOKEN_URL: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// How a token is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityEndpoint {
    /// IMDS (or a stand-in at another URL): `api-version=2018-02-01`, header `Metadata: true`.
    Imds(String),
    /// `IDENTITY_ENDPOINT` with its `IDENTITY_HEADER`: `api-version=2019-08-01`, header
    /// `X-IDENTITY-HEADER`.
    Hosted { url: String, header: String },
}

pub struct ManagedIdentity {
    client: HttpsClient,
    endpoint: IdentityEndpoint,
    /// A user-assigned identity's client id (None: the system-assigned one).
    client_id: Option<String>,
    /// Tokens by resource, with when they expire.
    cache: Mutex<HashMap<String, (String, SystemTime)>>,
}

/// Never prints a token or the hosted endpoint's secret header.
impl std::fmt::Debug for ManagedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = match &self.endpoint {
            IdentityEndpoint::Imds(u) | IdentityEndpoint::Hosted { url: u, .. } => u,
        };
        write!(f, "ManagedIdentity({at}, client_id {:?})", self.client_id)
    }
}

/// A token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

impl ManagedIdentity {
    /// The endpoint given (a stand-in's URL), else the hosted one the environment names, else
    /// IMDS.
    pub fn new(endpoint: Option<&str>, client_id: Option<String>) -> Result<ManagedIdentity, String> {
        let endpoint = match (endpoint, std::env::var("IDENTITY_ENDPOINT"), std::env::var("IDENTITY_HEADER")) {
            (Some(url), _, _) => IdentityEndpoint::Imds(url.to_owned()),
            (None, Ok(url), Ok(header)) => IdentityEndpoint::Hosted { url, header },
            _ => IdentityEndpoint::Imds(IMDS_TOKEN_URL.to_owned()),
        };
        Ok(ManagedIdentity {
            client: https_client(Vec::new(), Duration::from_secs(10))?,
            endpoint,
            client_id,
            cache: Mutex::default(),
        })
    }

    /// A bearer token for `resource` (e.g. `https://vault.azure.net`).
    pub async fn token(&self, resource: &str) -> Result<String, String> {
        if let Some((t, until)) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(resource) {
            if SystemTime::now() + RENEW_BEFORE < *until {
                return Ok(t.clone());
            }
        }
        let (token, expires) = self.fetch(resource).await?;
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(resource.to_owned(), (token.clone(), expires));
        Ok(token)
    }

    async fn fetch(&self, resource: &str) -> Result<(String, SystemTime), String> {
        let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
        let (url, headers) = match &self.endpoint {
            IdentityEndpoint::Imds(u) => (
                format!("{u}?api-version=2018-02-01&resource={}", enc(resource)),
                vec![("Metadata", "true".to_owned())],
            ),
            IdentityEndpoint::Hosted { url, header } => (
                format!("{url}?api-version=2019-08-01&resource={}", enc(resource)),
                vec![("X-IDENTITY-HEADER", header.clone())],
            ),
        };
        let url = match &self.client_id {
            Some(id) => format!("{url}&client_id={}", enc(id)),
            None => url,
        };
        let mut wait = Duration::from_millis(500);
        let mut last = String::new();
        for _ in 0..4 {
            match crate::json::call(&self.client, Method::GET, &url, &headers, None, Duration::from_secs(10)).await {
                Ok((200, v)) => return parse_token(&v),
                Ok((status, v)) if matches!(status, 404 | 410 | 429) || status >= 500 => {
                    last = format!("{status} {}", crate::json::error_text(&v));
                }
                Ok((status, v)) => {
                    return Err(format!(
                        "the managed identity endpoint refused a token: {status} {}",
                        crate::json::error_text(&v)
                    ))
                }
                Err(e) => last = e,
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
        Err(format!("the managed identity endpoint gave no token: {last}"))
    }
}

/// The token and its expiry from an answer (`expires_on`: seconds since the epoch, as a string
/// or a number; else `expires_in` seconds from now).
fn parse_token(v: &serde_json::Value) -> Result<(String, SystemTime), String> {
    let token = v["access_token"].as_str().filter(|t| !t.is_empty()).ok_or("an answer without an access_token")?;
    let secs = |f: &serde_json::Value| f.as_u64().or_else(|| f.as_str()?.parse().ok());
    let expires = match (secs(&v["expires_on"]), secs(&v["expires_in"])) {
        (Some(on), _) => UNIX_EPOCH + Duration::from_secs(on),
        (None, Some(in_)) => SystemTime::now() + Duration::from_secs(in_),
        (None, None) => return Err("an answer without expires_on or expires_in".into()),
    };
    Ok((token.to_owned(), expires))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_with_either_expiry_and_refused_without_one() {
        let (t, at) = parse_token(&serde_json::json!({"access_token": "x", "expires_on": "2000000000"})).unwrap();
        assert_eq!((t.as_str(), at), ("x", UNIX_EPOCH + Duration::from_secs(2_000_000_000)));
        let (_, at) = parse_token(&serde_json::json!({"access_token": "x", "expires_in": 3600})).unwrap();
        assert!(at > SystemTime::now() + Duration::from_secs(3500));
        assert!(parse_token(&serde_json::json!({"access_token": "x"})).is_err());
        assert!(parse_token(&serde_json::json!({"access_token": "", "expires_in": 1})).is_err());
    }
}
