//! The signing keys of an Entra tenant, fetched for the node's token validation: a GET of the
//! tenant's key set (`https://login.microsoftonline.com/<tid>/discovery/v2.0/keys`, any URL
//! serving a JWKS document, or the tenant's OpenID Connect discovery document, which names the
//! key set's URL). Only ever called off the request path, by the node's refresher.

use std::time::Duration;

use http::Method;

use crate::client::{https_client, HttpsClient};

pub struct JwksSource {
    client: HttpsClient,
    url: String,
}

impl JwksSource {
    /// `url` must be https: keys fetched in the clear could be anyone's. `extra_roots`: PEM
    /// certificates to trust besides the system's (a test's, or a private authority's).
    pub fn new(url: &str, extra_roots: Vec<rustls_pki_types::CertificateDer<'static>>) -> Result<JwksSource, String> {
        if !url.starts_with("https://") {
            return Err(format!("a key set is fetched over https only, not from {url:?}"));
        }
        Ok(JwksSource { client: https_client(extra_roots, Duration::from_secs(10))?, url: url.to_owned() })
    }

    /// The key set document (JSON). The URL may serve the key set itself, or an OpenID
    /// Connect discovery document (`.../v2.0/.well-known/openid-configuration`), whose
    /// `jwks_uri` (https) is then fetched.
    pub async fn fetch(&self) -> Result<Vec<u8>, String> {
        let doc = self.get(&self.url).await?;
        match doc.get("jwks_uri").and_then(|u| u.as_str()) {
            Some(uri) if doc.get("keys").is_none() => {
                if !uri.starts_with("https://") {
                    return Err(format!("the discovery document's jwks_uri is not https: {uri:?}"));
                }
                Ok(self.get(uri).await?.to_string().into_bytes())
            }
            _ => Ok(doc.to_string().into_bytes()),
        }
    }

    async fn get(&self, url: &str) -> Result<serde_json::Value, String> {
        match crate::json::call(&self.client, Method::GET, url, &[], None, Duration::from_secs(20)).await? {
            (200, v) if v.is_object() => Ok(v),
            (200, _) => Err(format!("{url} did not answer a JSON object")),
            (status, v) => Err(format!("{url} answered {status}: {}", crate::json::error_text(&v))),
        }
    }
}
