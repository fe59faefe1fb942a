//! A stand-in for Azure Key Vault and the managed identity endpoint, on loopback, for tests of
//! a customer-managed key: `GET /metadata/identity/oauth2/token` (IMDS: `Metadata: true`
//! required) issues tokens for `https://vault.azure.net`; `POST /keys/<name>[/<version>]/wrapkey`
//! and `/keys/<name>/<version>/unwrapkey` (`api-version`, a token it issued, `alg`
//! RSA-OAEP-256) wrap and unwrap with a secret of each key version that never leaves it. A test
//! disables a key (403 Forbidden, as Key Vault answers for a disabled key), enables it, or adds
//! a version (a rotation), and counts the calls.
//!
//! The wrapping here is not RSA (a keyed stream and a check, enough that only this stand-in
//! unwraps, and that a wrong version fails): the node treats a wrapped key as opaque bytes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::json;

#[derive(Default)]
struct Vault {
    /// Key name -> its versions' (id, secret), oldest first, and whether it is enabled.
    keys: HashMap<String, (Vec<(String, u64)>, bool)>,
    tokens: Vec<String>,
    calls: HashMap<&'static str, u64>,
}

pub struct KeyVaultStub {
    pub addr: SocketAddr,
    vault: Arc<Mutex<Vault>>,
}

fn pad(secret: u64, i: usize) -> u8 {
    (xxhash_rust::xxh3::xxh3_64_with_seed(&(i as u64).to_le_bytes(), secret) & 0xff) as u8
}

fn wrap(secret: u64, key: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = key.iter().enumerate().map(|(i, b)| b ^ pad(secret, i)).collect();
    out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64_with_seed(key, secret).to_le_bytes());
    out
}

fn unwrap(secret: u64, wrapped: &[u8]) -> Option<Vec<u8>> {
    let (body, check) = wrapped.split_at(wrapped.len().checked_sub(8)?);
    let key: Vec<u8> = body.iter().enumerate().map(|(i, b)| b ^ pad(secret, i)).collect();
    (xxhash_rust::xxh3::xxh3_64_with_seed(&key, secret).to_le_bytes() == check).then_some(key)
}

impl KeyVaultStub {
    /// Starts it on a thread of its own, with key `name` (one version, enabled).
    pub fn start(name: &str) -> KeyVaultStub {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let vault = Arc::new(Mutex::new(Vault::default()));
        let stub = KeyVaultStub { addr, vault: vault.clone() };
        stub.rotate(name);
        crate::serve::spawn(std_listener, None, move |req| {
            let vault = vault.clone();
            async move { answer(&vault, req).await }
        });
        stub
    }

    /// The managed identity endpoint's URL (a node's `identity_endpoint`).
    pub fn identity_endpoint(&self) -> String {
        format!("http://{}/metadata/identity/oauth2/token", self.addr)
    }

    /// Key `name`'s URL, without a version.
    pub fn key_url(&self, name: &str) -> String {
        format!("http://{}/keys/{name}", self.addr)
    }

    /// Adds a version to key `name` (creating it): new wraps use it, old versions still unwrap.
    pub fn rotate(&self, name: &str) -> String {
        let mut v = self.vault.lock().unwrap();
        let entry = v.keys.entry(name.to_owned()).or_insert_with(|| (Vec::new(), true));
        let id = format!("{:032x}", rand::random::<u128>());
        entry.0.push((id.clone(), rand::random()));
        id
    }

    pub fn set_enabled(&self, name: &str, enabled: bool) {
        if let Some(k) = self.vault.lock().unwrap().keys.get_mut(name) {
            k.1 = enabled;
        }
    }

    /// Calls answered so far, by kind (`token`, `wrapkey`, `unwrapkey`).
    pub fn calls(&self, kind: &str) -> u64 {
        self.vault.lock().unwrap().calls.iter().find(|(k, _)| **k == kind).map_or(0, |(_, n)| *n)
    }
}

fn reply(status: u16, v: serde_json::Value) -> hyper::Response<Full<Bytes>> {
    let mut r = hyper::Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
    r
}

fn kv_error(status: u16, code: &str, message: &str) -> hyper::Response<Full<Bytes>> {
    reply(status, json!({ "error": { "code": code, "message": message } }))
}

async fn answer(vault: &Mutex<Vault>, req: hyper::Request<hyper::body::Incoming>) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if path == "/metadata/identity/oauth2/token" {
        if parts.headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
            return reply(
                400,
                json!({ "error": "invalid_request", "error_description": "Required metadata header not specified" }),
            );
        }
        let resource = ["vault", "storage"].into_iter().find(|r| {
            query.contains(&format!("resource=https%3A%2F%2F{r}%2Eazure%2E"))
                || query.contains(&format!("resource=https%3A%2F%2F{r}.azure."))
        });
        let Some(resource) = resource else {
            return reply(400, json!({ "error": "invalid_resource", "error_description": query }));
        };
        let mut v = vault.lock().unwrap();
        *v.calls.entry("token").or_default() += 1;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let expires = now + 3600;
        // Storage tokens are JWTs as Entra ID issues them (unsigned here: a stand-in remote such
        // as Azurite reads their claims, it does not check a signature).
        let token = match resource {
            "storage" => {
                let part = |v: serde_json::Value| B64URL.encode(v.to_string());
                let tid = "72f988bf-86f1-41af-91ab-2d7cd011db47";
                format!(
                    "{}.{}.{}",
                    part(json!({ "typ": "JWT", "alg": "RS256", "kid": "stub" })),
                    part(json!({
                        "aud": "https://storage.azure.com", "iss": format!("https://sts.windows.net/{tid}/"),
                        "iat": now - 60, "nbf": now - 60, "exp": expires, "tid": tid,
                        "oid": "00000000-0000-0000-0000-00000000a11c", "appid": "00000000-0000-0000-0000-0000000000a1",
                        "xms_mirid": "/subscriptions/0/resourcegroups/rg/providers/Microsoft.Compute/virtualMachines/gpu-01",
                    })),
                    B64URL.encode(b"stub-signature")
                )
            }
            _ => format!("stub-token-{:016x}", rand::random::<u64>()),
        };
        v.tokens.push(token.clone());
        let audience = if resource == "vault" { "https://vault.azure.net" } else { "https://storage.azure.com" };
        return reply(
            200,
            json!({ "access_token": token, "expires_on": expires.to_string(), "resource": audience, "token_type": "Bearer" }),
        );
    }
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (name, version, op) = match segs.as_slice() {
        ["keys", n, op] => (*n, None, *op),
        ["keys", n, v, op] => (*n, Some(*v), *op),
        _ => return kv_error(404, "NotFound", "no such path"),
    };
    if !query.contains("api-version=") {
        return kv_error(400, "MissingApiVersionParameter", "api-version is required");
    }
    let mut v = vault.lock().unwrap();
    let bearer =
        parts.headers.get("authorization").and_then(|h| h.to_str().ok()).and_then(|h| h.strip_prefix("Bearer "));
    if !bearer.is_some_and(|t| v.tokens.iter().any(|k| k == t)) {
        return kv_error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.");
    }
    let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if req["alg"] != "RSA-OAEP-256" {
        return kv_error(400, "BadParameter", "alg");
    }
    let Some(value) = req["value"].as_str().and_then(|s| B64URL.decode(s).ok()) else {
        return kv_error(400, "BadParameter", "value");
    };
    let Some((versions, enabled)) = v.keys.get(name).cloned() else {
        return kv_error(404, "KeyNotFound", &format!("A key with (name/id) {name} was not found in this key vault."));
    };
    if !enabled {
        return kv_error(403, "Forbidden", &format!("Operation {op} is not allowed on a disabled key."));
    }
    let chosen = match version {
        None => versions.last().cloned(),
        Some(ver) => versions.iter().find(|(id, _)| id == ver).cloned(),
    };
    let Some((id, secret)) = chosen else { return kv_error(404, "KeyNotFound", "no such version") };
    let kid =
        format!("http://{}/keys/{name}/{id}", parts.headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or(""));
    match op {
        "wrapkey" => {
            *v.calls.entry("wrapkey").or_default() += 1;
            reply(200, json!({ "kid": kid, "value": B64URL.encode(wrap(secret, &value)) }))
        }
        "unwrapkey" if version.is_some() => {
            *v.calls.entry("unwrapkey").or_default() += 1;
            match unwrap(secret, &value) {
                Some(key) => reply(200, json!({ "kid": kid, "value": B64URL.encode(key) })),
                None => kv_error(400, "BadParameter", "The parameter is incorrect."),
            }
        }
        _ => kv_error(404, "NotFound", "no such operation"),
    }
}
