//! A test tenant of Entra ID: an RSA signing key made for the test, its JWKS document, and
//! tokens signed with it (v1 and v2 forms, the claims Entra puts in them), plus a self-signed
//! TLS certificate for a node (Bearer tokens go over TLS only) and an HTTPS request to it.
//! The key is made with RustCrypto's `rsa`; the node verifies with `ring`: two implementations.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Tenant {
    pub id: String,
    pub kid: String,
    key: RsaPrivateKey,
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

impl Tenant {
    pub fn new(id: &str, kid: &str) -> Tenant {
        let key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        Tenant { id: id.into(), kid: kid.into(), key }
    }

    /// The tenant's key set as Entra publishes it.
    pub fn jwks(&self) -> String {
        let p = self.key.to_public_key();
        json!({ "keys": [{
            "kty": "RSA", "use": "sig", "kid": self.kid,
            "n": B64URL.encode(p.n().to_bytes_be()), "e": B64URL.encode(p.e().to_bytes_be()),
        }]})
        .to_string()
    }

    /// A JWT of `header` and `claims`, signed RS256 with the tenant's key (whatever the header
    /// says: a test of a lying header signs with this key too).
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let signing = format!("{}.{}", B64URL.encode(header.to_string()), B64URL.encode(claims.to_string()));
        let sig = SigningKey::<sha2::Sha256>::new(self.key.clone()).sign(signing.as_bytes());
        format!("{signing}.{}", B64URL.encode(sig.to_bytes()))
    }

    pub fn token(&self, claims: &Value) -> String {
        self.sign(&json!({ "typ": "JWT", "alg": "RS256", "kid": self.kid }), claims)
    }

    /// The claims of an access token for `aud` naming object `oid`, valid from a minute ago for
    /// an hour: v1 (`sts.windows.net`, `appid`) or v2 (`login.microsoftonline.com`, `azp`).
    pub fn claims(&self, v2: bool, aud: &str, oid: &str) -> Value {
        let t = now();
        let (iss, ver, app) = match v2 {
            false => (format!("https://sts.windows.net/{}/", self.id), "1.0", "appid"),
            true => (format!("https://login.microsoftonline.com/{}/v2.0", self.id), "2.0", "azp"),
        };
        json!({
            "aud": aud, "iss": iss, "iat": t - 60, "nbf": t - 60, "exp": t + 3600,
            "tid": self.id, "oid": oid, "sub": oid, app: "11111111-2222-3333-4444-555555555555",
            "ver": ver, "scp": "user_impersonation",
        })
    }
}

/// A self-signed certificate for `localhost` and 127.0.0.1 in `dir`: (cert.pem, key.pem).
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// One HTTPS request (closing the connection after it), trusting `ca` only: (status, head,
/// body).
pub async fn https(
    addr: SocketAddr,
    ca: &Path,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    use rustls_pki_types::pem::PemObject;
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    req.push_str(&format!("Content-Length: {}\r\nx-ms-version: 2025-01-05\r\n", body.len()));
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    // A peer that closes without close_notify is fine here: everything was read by then.
    let _ = s.read_to_end(&mut out).await;
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = out[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..line]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[line + 2..line + 2 + n]);
        b = &b[line + 2 + n + 2..];
    }
}
