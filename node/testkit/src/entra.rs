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
    req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("x-ms-version")) {
        req.push_str("x-ms-version: 2025-01-05\r\n");
    }
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

/// A stand-in for a VM's managed identity endpoint (IMDS, `GET
/// /metadata/identity/oauth2/token`, header `Metadata: true`), minting tokens signed by a test
/// tenant for the system-assigned identity and the user-assigned ones it knows (by client id),
/// with the claims Entra gives managed identities (`oid`, `appid`, `xms_mirid`, `idtyp=app`).
pub struct ImdsStandIn {
    pub addr: SocketAddr,
}

/// One identity of the stand-in: (client id, object id, resource id).
pub type Identity = (String, String, String);

impl ImdsStandIn {
    /// `identities[0]` is the system-assigned identity; a request naming `client_id` gets that
    /// one's token, an unknown client id a 400 as IMDS answers.
    pub fn start(tenant: Arc<Tenant>, identities: Vec<Identity>) -> ImdsStandIn {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let identities = Arc::new(identities);
        crate::serve::spawn(listener, None, move |req| {
            let (status, body) = mint(&tenant, &identities, &req);
            async move { crate::serve::json(status, body) }
        });
        ImdsStandIn { addr }
    }
}

fn mint(tenant: &Tenant, identities: &[Identity], req: &hyper::Request<hyper::body::Incoming>) -> (u16, String) {
    if req.uri().path() != "/metadata/identity/oauth2/token" {
        return (404, "{}".into());
    }
    if req.headers().get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
        return (
            400,
            json!({ "error": "invalid_request", "error_description": "Required metadata header not specified" })
                .to_string(),
        );
    }
    let q: std::collections::HashMap<String, String> = url_pairs(req.uri().query().unwrap_or("")).into_iter().collect();
    let Some(resource) = q.get("resource") else { return (400, json!({ "error": "invalid_resource" }).to_string()) };
    let who = match q.get("client_id") {
        None => identities.first(),
        Some(id) => identities.iter().find(|(c, _, _)| c == id),
    };
    let Some((client_id, oid, mirid)) = who else {
        return (400, json!({ "error": "invalid_request", "error_description": "Identity not found" }).to_string());
    };
    let t = now();
    let claims = json!({
        "aud": resource, "iss": format!("https://sts.windows.net/{}/", tenant.id), "iat": t - 5, "nbf": t - 5,
        "exp": t + 86_400, "tid": tenant.id, "oid": oid, "sub": oid, "appid": client_id, "appidacr": "2",
        "idtyp": "app", "xms_mirid": mirid, "ver": "1.0",
    });
    let body = json!({
        "access_token": tenant.token(&claims), "client_id": client_id, "expires_in": "86399",
        "expires_on": (t + 86_400).to_string(), "ext_expires_in": "86399", "not_before": (t - 5).to_string(),
        "resource": resource, "token_type": "Bearer",
    });
    (200, body.to_string())
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            let d =
                |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            (d(k), d(v))
        })
        .collect()
}

/// A tenant's key-set endpoint over TLS (a self-signed certificate in `dir`): serves the
/// document set last (and a discovery document naming it), counts fetches of the key set, and
/// answers 503 while down.
pub struct JwksServer {
    pub addr: SocketAddr,
    pub ca: PathBuf,
    state: Arc<std::sync::Mutex<(String, bool)>>,
    hits: Arc<std::sync::atomic::AtomicU64>,
}

impl JwksServer {
    pub fn start(dir: &Path, doc: String) -> JwksServer {
        use rustls_pki_types::pem::PemObject;
        let (cert, key) = self_signed(dir);
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(&cert).unwrap().map(|c| c.unwrap()).collect();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&key).unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let tls = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(std::sync::Mutex::new((doc, true)));
        let hits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (st, h) = (state.clone(), hits.clone());
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        crate::serve::spawn(listener, Some(acceptor), move |req| {
            let (mut doc, up) = st.lock().unwrap().clone();
            if req.uri().path().ends_with("/.well-known/openid-configuration") {
                let keys = format!("https://127.0.0.1:{}/common/discovery/v2.0/keys", addr.port());
                doc = json!({ "jwks_uri": keys, "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0" })
                    .to_string();
            } else {
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            async move { crate::serve::json(if up { 200 } else { 503 }, if up { doc } else { "{}".into() }) }
        });
        JwksServer { addr, ca: cert, state, hits }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/common/discovery/v2.0/keys", self.addr.port())
    }

    /// The tenant's OpenID Connect discovery document, which names [`Self::url`].
    pub fn discovery_url(&self) -> String {
        format!("https://127.0.0.1:{}/common/v2.0/.well-known/openid-configuration", self.addr.port())
    }

    pub fn serve(&self, doc: String) {
        self.state.lock().unwrap().0 = doc;
    }

    pub fn set_up(&self, up: bool) {
        self.state.lock().unwrap().1 = up;
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}
