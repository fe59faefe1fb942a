//! The signing keys of an Entra tenant, fetched for the node's token validation: a GET of the
//! tenant's key set (`https://login.microsoftonline.com/<tid>/discovery/v2.0/keys`, or any URL
//! serving a JWKS document). Only ever called off the request path, by the node's refresher.

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

    /// The key set document (JSON), as served.
    pub async fn fetch(&self) -> Result<Vec<u8>, String> {
        match crate::json::call(&self.client, Method::GET, &self.url, &[], None, Duration::from_secs(20)).await? {
            (200, v) if v.is_object() => Ok(v.to_string().into_bytes()),
            (200, _) => Err("the key set is not a JSON object".into()),
            (status, v) => Err(format!("the key set's URL answered {status}: {}", crate::json::error_text(&v))),
        }
    }
}
