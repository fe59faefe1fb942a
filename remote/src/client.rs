//! The calls, each one request to the remote retried as `RetryPolicy` says.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use md5::{Digest, Md5};
use rustls_pki_types::CertificateDer;

use crate::credential::Credential;
use crate::endpoint::{query_value, Endpoint};
use crate::error::{code_of, RemoteError};
use crate::retry::{parse_retry_after, RetryPolicy};
use crate::stats::{Outcome, RemoteStats};
use crate::throttle::Throttle;
use crate::xml;

/// The REST version this client speaks: one Azure, Azurite (`--skipApiVersionCheck` not
/// needed for it) and edgeblob all serve.
pub const VERSION: &str = "2025-01-05";

/// The largest range Azure returns an MD5 for (`x-ms-range-get-content-md5`).
const RANGE_MD5_MAX: u64 = 4 << 20;

#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// The container (and prefix) every name is under: see [`Endpoint`].
    pub url: String,
    pub credential: Credential,
    pub retry: RetryPolicy,
    /// For one attempt, from sending to the last byte of the answer.
    pub timeout: Duration,
    /// A cap on bytes per second over every call of this client.
    pub bytes_per_sec: Option<u64>,
    /// Certificate authorities trusted besides the system's (a private CA, a test's).
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl RemoteConfig {
    pub fn new(url: &str, credential: Credential) -> RemoteConfig {
        RemoteConfig {
            url: url.to_owned(),
            credential,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(120),
            bytes_per_sec: None,
            extra_roots: Vec::new(),
        }
    }
}

/// The certificate authorities of a PEM file, for [`RemoteConfig::extra_roots`].
pub fn pem_roots(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// An object's properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Props {
    pub len: u64,
    pub etag: String,
    pub content_md5: Option<[u8; 16]>,
    /// Every header of the answer (content headers, `x-ms-meta-*`, times), for a caller that
    /// keeps the object's properties as they are (a linked container's copy); unchecked.
    pub headers: HeaderMap,
}

pub use crate::xml::ListedBlob as Listed;

/// What a conditional write asks of the object it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replaces {
    /// Whatever is there, or nothing (no condition).
    Anything,
    /// Nothing: the name must be free (`If-None-Match: *`).
    Nothing,
    /// The version with this ETag (`If-Match`).
    Version(String),
}

/// A blob's properties as a write sets them: the content headers and the whole's MD5
/// (`x-ms-blob-*`), and metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteProps {
    pub headers: edgeblob_proto::headers::BlobHeaders,
    pub metadata: Vec<(String, String)>,
}

impl WriteProps {
    /// Bytes of no particular type, with the whole's MD5 when it is known.
    fn octets(content_md5: Option<[u8; 16]>) -> WriteProps {
        let headers = edgeblob_proto::headers::BlobHeaders {
            content_type: Some("application/octet-stream".into()),
            content_md5,
            ..Default::default()
        };
        WriteProps { headers, metadata: Vec::new() }
    }

    fn apply(&self, c: &mut Call<'_>) {
        let h = &self.headers;
        let content = [
            ("x-ms-blob-content-type", &h.content_type),
            ("x-ms-blob-content-encoding", &h.content_encoding),
            ("x-ms-blob-content-language", &h.content_language),
            ("x-ms-blob-content-disposition", &h.content_disposition),
            ("x-ms-blob-cache-control", &h.cache_control),
        ];
        for (name, v) in content {
            if let Some(v) = v {
                c.headers.push((name, v.clone()));
            }
        }
        if let Some(sum) = h.content_md5 {
            c.headers.push(("x-ms-blob-content-md5", B64.encode(sum)));
        }
        c.metadata = self.metadata.clone();
    }
}

impl Replaces {
    /// Create-only, or anything.
    fn only(create_only: bool) -> Replaces {
        if create_only {
            Replaces::Nothing
        } else {
            Replaces::Anything
        }
    }

    fn is_condition(&self) -> bool {
        *self != Replaces::Anything
    }

    fn apply(&self, c: &mut Call<'_>) {
        match self {
            Replaces::Anything => {}
            Replaces::Nothing => c.headers.push(("if-none-match", "*".into())),
            Replaces::Version(etag) => c.headers.push(("if-match", etag.clone())),
        }
    }
}

/// One page of a listing: names are the container's, less the endpoint's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    pub blobs: Vec<Listed>,
    /// With a delimiter: the names sharing a prefix up to it (Azure's `BlobPrefix`).
    pub prefixes: Vec<String>,
    pub next: Option<String>,
}

pub struct Remote {
    http: HttpsClient,
    ep: Endpoint,
    cred: Credential,
    retry: RetryPolicy,
    timeout: Duration,
    throttle: Option<Throttle>,
    stats: Arc<RemoteStats>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One call: what is sent, and which statuses are its success.
struct Call<'a> {
    op: &'static str,
    method: Method,
    name: Option<&'a str>,
    query: Vec<(&'static str, String)>,
    headers: Vec<(&'static str, String)>,
    /// `x-ms-meta-<name>` headers.
    metadata: Vec<(String, String)>,
    body: Bytes,
    ok: &'static [u16],
    /// The most bytes of answer read: a remote that sends more is cut off (a range's length;
    /// [`MAX_ANSWER`] for the rest).
    max_answer: usize,
}

/// The most bytes a call other than a range read takes from the remote: a listing page of
/// 5,000 names, a block list of 50,000 ids, a manifest.
pub const MAX_ANSWER: usize = 64 << 20;

/// The most bytes of an error answer read.
const MAX_ERROR_ANSWER: usize = 1 << 20;

impl<'a> Call<'a> {
    fn new(op: &'static str, method: Method, name: Option<&'a str>, ok: &'static [u16]) -> Call<'a> {
        Call {
            op,
            method,
            name,
            query: Vec::new(),
            headers: Vec::new(),
            metadata: Vec::new(),
            body: Bytes::new(),
            ok,
            max_answer: MAX_ANSWER,
        }
    }
}

fn md5(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

fn md5_header(a: &Answer, name: &str) -> Option<[u8; 16]> {
    B64.decode(a.header(name)?).ok()?.try_into().ok()
}

/// An HTTP/1.1 client for `https://` (the system's roots and `extra_roots`) and `http://`, with
/// a connect time-out: every way out of the node (the tier, Key Vault, the identity endpoint).
pub(crate) type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

pub(crate) fn https_client(
    extra_roots: Vec<CertificateDer<'static>>,
    timeout: Duration,
) -> Result<HttpsClient, String> {
    let mut roots = rustls::RootCertStore::empty();
    // The system's roots; a host without any still reaches what `extra_roots` trusts.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    for cert in extra_roots {
        roots.add(cert).map_err(|e| format!("an extra root certificate: {e}"))?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut connector = HttpConnector::new();
    connector.enforce_http(false);
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    Ok(Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(https))
}

impl Remote {
    pub fn new(cfg: RemoteConfig) -> Result<Remote, String> {
        let ep = Endpoint::parse(&cfg.url)?;
        // A token goes over TLS only, as Azure takes it (a test's loopback excepted).
        let origin = ep.origin();
        let loopback =
            ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"].iter().any(|p| origin.starts_with(p));
        if matches!(cfg.credential, Credential::ManagedIdentity { .. }) && !origin.starts_with("https://") && !loopback
        {
            return Err(format!("a managed identity's token is sent over https only, not to {origin}"));
        }
        let http = https_client(cfg.extra_roots, cfg.timeout)?;
        Ok(Remote {
            http,
            ep,
            cred: cfg.credential,
            retry: cfg.retry,
            timeout: cfg.timeout,
            throttle: cfg.bytes_per_sec.map(Throttle::new),
            stats: Arc::default(),
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.ep
    }

    /// What this client did so far (shared: a holder of it reads it as the client goes on).
    pub fn stats(&self) -> Arc<RemoteStats> {
        self.stats.clone()
    }

    /// One attempt. The date is taken and the request signed anew for each; the client request
    /// id is the call's, the same on every attempt (the remote's logs, and a test's proxy, tie
    /// the attempts of one call together by it).
    async fn once(&self, c: &Call<'_>, request_id: &str) -> Result<Answer, RemoteError> {
        let res = self.attempt(c, request_id).await;
        let outcome = match &res {
            Ok(a) => Outcome::Status(a.status.as_u16()),
            Err(RemoteError::Status { status, .. }) => Outcome::Status(*status),
            Err(RemoteError::TimedOut { .. }) => Outcome::TimedOut,
            Err(_) => Outcome::Transport,
        };
        self.stats.attempt(c.op, outcome);
        res
    }

    async fn attempt(&self, c: &Call<'_>, request_id: &str) -> Result<Answer, RemoteError> {
        let op = c.op;
        let query: Vec<(String, String)> = c.query.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        let mut qs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", query_value(v))).collect();
        if let Some(sas) = self.cred.query() {
            qs.push(sas.to_owned());
        }
        let path = self.ep.path(c.name);
        let uri = if qs.is_empty() {
            format!("{}{path}", self.ep.origin())
        } else {
            format!("{}{path}?{}", self.ep.origin(), qs.join("&"))
        };
        let bad = |why: String| RemoteError::Transport { op, why };
        let mut h = HeaderMap::new();
        let date = httpdate::fmt_http_date(SystemTime::now());
        h.insert("x-ms-date", HeaderValue::from_str(&date).map_err(|e| bad(e.to_string()))?);
        h.insert("x-ms-version", HeaderValue::from_static(VERSION));
        h.insert("x-ms-client-request-id", HeaderValue::from_str(request_id).map_err(|e| bad(e.to_string()))?);
        for (k, v) in &c.headers {
            h.insert(HeaderName::from_static(k), HeaderValue::from_str(v).map_err(|e| bad(e.to_string()))?);
        }
        for (k, v) in &c.metadata {
            let name = HeaderName::from_bytes(format!("x-ms-meta-{k}").as_bytes()).map_err(|e| bad(e.to_string()))?;
            h.insert(name, HeaderValue::from_str(v).map_err(|e| bad(e.to_string()))?);
        }
        if c.method == Method::PUT || !c.body.is_empty() {
            h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(c.body.len()));
        }
        self.cred.sign(c.method.as_str(), &path, &query, &mut h, c.body.len() as u64);
        if let Credential::ManagedIdentity { identity, resource } = &self.cred {
            let token = identity.token(resource).await.map_err(&bad)?;
            h.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| bad(e.to_string()))?,
            );
        }
        let mut req = Request::builder()
            .method(c.method.clone())
            .uri(&uri)
            .body(Full::new(c.body.clone()))
            .map_err(|e| bad(e.to_string()))?;
        *req.headers_mut() = h;
        if let Some(t) = &self.throttle {
            t.take(c.body.len() as u64).await;
        }
        self.stats.sent(c.body.len() as u64);
        let exchange = async {
            let resp = self.http.request(req).await.map_err(|e| bad(format!("{e:?}")))?;
            let (parts, body) = resp.into_parts();
            // An error's body is a short XML document whatever was asked for.
            let max = if c.ok.contains(&parts.status.as_u16()) { c.max_answer } else { MAX_ERROR_ANSWER };
            let body = http_body_util::Limited::new(body, max)
                .collect()
                .await
                .map_err(|e| bad(format!("reading the answer (at most {max} bytes): {e}")))?
                .to_bytes();
            Ok::<_, RemoteError>(Answer { status: parts.status, headers: parts.headers, body })
        };
        let a = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| RemoteError::TimedOut { op, after: self.timeout })??;
        self.stats.received(a.body.len() as u64);
        if let Some(t) = &self.throttle {
            t.take(a.body.len() as u64).await;
        }
        if !c.ok.contains(&a.status.as_u16()) {
            let retry_after = a.header("retry-after").and_then(|v| parse_retry_after(v, SystemTime::now()));
            return Err(RemoteError::Status {
                op,
                status: a.status.as_u16(),
                code: code_of(a.headers.get("x-ms-error-code")),
                retry_after,
            });
        }
        Ok(a)
    }

    /// Attempts `c` until it succeeds, fails for good, or the policy's budget is spent; with
    /// whether an attempt before the last ended without knowing what the remote did.
    async fn call_tracked(&self, c: &Call<'_>) -> (Result<Answer, RemoteError>, bool) {
        let start = Instant::now();
        let mut ambiguous = false;
        let request_id = format!("{:032x}", rand::random::<u128>());
        for attempt in 1.. {
            let e = match self.once(c, &request_id).await {
                Ok(a) => return (Ok(a), ambiguous),
                Err(e) if !e.transient() => return (Err(e), ambiguous),
                Err(e) => e,
            };
            ambiguous |= e.ambiguous();
            let retry_after = match &e {
                RemoteError::Status { retry_after, .. } => *retry_after,
                _ => None,
            };
            let wait = self.retry.backoff(attempt, retry_after, rand::random::<f64>());
            if attempt >= self.retry.attempts || start.elapsed() + wait > self.retry.budget {
                let elapsed = start.elapsed();
                return (
                    Err(RemoteError::Exhausted { op: c.op, attempts: attempt, elapsed, last: Box::new(e) }),
                    ambiguous,
                );
            }
            tracing::debug!(op = c.op, attempt, ?wait, error = %e, "remote call retried");
            tokio::time::sleep(wait).await;
        }
        unreachable!("the loop returns")
    }

    async fn call(&self, c: &Call<'_>) -> Result<Answer, RemoteError> {
        self.call_tracked(c).await.0
    }

    /// Creates the container; false when it was there already.
    pub async fn create_container(&self) -> Result<bool, RemoteError> {
        let mut c = Call::new("Create Container", Method::PUT, None, &[201]);
        c.query.push(("restype", "container".into()));
        match self.call(&c).await {
            Ok(_) => Ok(true),
            Err(RemoteError::Status { status: 409, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Put Blob of a small object in one request; `create_only` fails it with
    /// [`RemoteError::AlreadyExists`] when the name is taken (unless by these very bytes, after
    /// an attempt whose answer was lost). Its ETag.
    pub async fn put_blob(&self, name: &str, data: Bytes, create_only: bool) -> Result<String, RemoteError> {
        self.put_blob_over(name, data, &WriteProps::octets(None), &Replaces::only(create_only)).await
    }

    /// Sends a write that may be conditional (create-only, or over one version), and its ETag. A
    /// conditional write whose condition fails (409, 412) succeeds only when an earlier
    /// attempt's answer was lost and `ours` finds this very write there (its ETag); otherwise it
    /// is [`RemoteError::AlreadyExists`].
    async fn created<F, Fut>(&self, c: &Call<'_>, conditional: bool, ours: F) -> Result<String, RemoteError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<String>, RemoteError>>,
    {
        let (res, ambiguous) = self.call_tracked(c).await;
        match res {
            Ok(a) => Ok(a.header("etag").unwrap_or("").to_owned()),
            Err(RemoteError::Status { status: 409 | 412, .. }) if conditional => match ambiguous {
                true => ours().await?.ok_or(RemoteError::AlreadyExists { op: c.op }),
                false => Err(RemoteError::AlreadyExists { op: c.op }),
            },
            Err(e) => Err(e),
        }
    }

    /// Put Block: `data` as block `id` of `name`, with its MD5 (the remote refuses the block if
    /// it arrives otherwise).
    pub async fn put_block(&self, name: &str, id: &[u8], data: Bytes) -> Result<(), RemoteError> {
        let sum = md5(&data);
        let mut c = Call::new("Put Block", Method::PUT, Some(name), &[201]);
        c.query.push(("comp", "block".into()));
        c.query.push(("blockid", B64.encode(id)));
        c.headers.push(("content-md5", B64.encode(sum)));
        c.body = data;
        let a = self.call(&c).await?;
        match md5_header(&a, "content-md5") {
            Some(got) if got != sum => {
                Err(RemoteError::Integrity { op: c.op, why: "the remote stored the block with another MD5".into() })
            }
            _ => Ok(()),
        }
    }

    /// Put Block List: commits `ids` as `name`. With `create_only` (`If-None-Match: *`) a name
    /// already taken fails with [`RemoteError::AlreadyExists`], unless the blob there holds
    /// exactly these blocks and an earlier attempt's answer was lost (it was this commit).
    /// `content_md5` is stored as the blob's MD5 when given. Its ETag.
    pub async fn put_block_list(
        &self,
        name: &str,
        ids: &[Vec<u8>],
        create_only: bool,
        content_md5: Option<[u8; 16]>,
    ) -> Result<String, RemoteError> {
        self.put_block_list_over(name, ids, &WriteProps::octets(content_md5), &Replaces::only(create_only)).await
    }

    /// Put Blob of `data` as `name` with `props`, only over what `replaces` says (else
    /// [`RemoteError::AlreadyExists`]: someone else wrote the name). An attempt whose answer was
    /// lost and whose retry finds the condition failed succeeds if the object there is this
    /// write (its MD5). Its ETag.
    pub async fn put_blob_over(
        &self,
        name: &str,
        data: Bytes,
        props: &WriteProps,
        replaces: &Replaces,
    ) -> Result<String, RemoteError> {
        let sum = md5(&data);
        let mut c = Call::new("Put Blob", Method::PUT, Some(name), &[201]);
        c.headers.push(("x-ms-blob-type", "BlockBlob".into()));
        c.headers.push(("content-md5", B64.encode(sum)));
        props.apply(&mut c);
        replaces.apply(&mut c);
        c.body = data;
        let whole = props.headers.content_md5.unwrap_or(sum);
        self.created(&c, replaces.is_condition(), || async {
            Ok(self.properties(name).await?.filter(|p| p.content_md5 == Some(whole)).map(|p| p.etag))
        })
        .await
    }

    /// Put Block List of `ids` (client ids, as staged) as `name` with `props`, only over what
    /// `replaces` says (else [`RemoteError::AlreadyExists`]); a lost answer is recognised as for
    /// [`Remote::put_block_list`]. Its ETag.
    pub async fn put_block_list_over(
        &self,
        name: &str,
        ids: &[Vec<u8>],
        props: &WriteProps,
        replaces: &Replaces,
    ) -> Result<String, RemoteError> {
        let body = Bytes::from(xml::block_list(ids));
        let mut c = Call::new("Put Block List", Method::PUT, Some(name), &[201]);
        c.query.push(("comp", "blocklist".into()));
        c.headers.push(("content-md5", B64.encode(md5(&body))));
        c.headers.push(("content-type", "application/xml".into()));
        props.apply(&mut c);
        replaces.apply(&mut c);
        c.body = body;
        self.created(&c, replaces.is_condition(), || async {
            let committed = self.committed_blocks(name).await?;
            if !committed.iter().map(|(id, _)| id).eq(ids.iter()) {
                return Ok(None);
            }
            Ok(Some(self.properties(name).await?.map(|p| p.etag).unwrap_or_default()))
        })
        .await
    }

    /// The blocks staged for `name` and not committed: ids and sizes (none when there is no
    /// such blob and nothing staged).
    pub async fn uncommitted_blocks(&self, name: &str) -> Result<Vec<(Vec<u8>, u64)>, RemoteError> {
        let mut c = Call::new("Get Block List", Method::GET, Some(name), &[200]);
        c.query.push(("comp", "blocklist".into()));
        c.query.push(("blocklisttype", "uncommitted".into()));
        match self.call(&c).await {
            Ok(a) => xml::blocks(&a.body, "UncommittedBlocks").map_err(|why| RemoteError::Integrity { op: c.op, why }),
            Err(RemoteError::Status { status: 404, .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The committed blocks of `name`: ids and sizes.
    pub async fn committed_blocks(&self, name: &str) -> Result<Vec<(Vec<u8>, u64)>, RemoteError> {
        let mut c = Call::new("Get Block List", Method::GET, Some(name), &[200]);
        c.query.push(("comp", "blocklist".into()));
        c.query.push(("blocklisttype", "committed".into()));
        let a = self.call(&c).await?;
        xml::blocks(&a.body, "CommittedBlocks").map_err(|why| RemoteError::Integrity { op: c.op, why })
    }

    /// The whole of `name`, checked against its stored MD5 when it has one.
    pub async fn get(&self, name: &str) -> Result<Bytes, RemoteError> {
        let c = Call::new("Get Blob", Method::GET, Some(name), &[200]);
        // A damaged answer is read again, as many times as a call is attempted.
        for _ in 0..self.retry.attempts.max(1) {
            let a = self.call(&c).await?;
            match md5_header(&a, "content-md5") {
                Some(sum) if sum != md5(&a.body) => {
                    tracing::warn!(op = c.op, "the remote's bytes do not match their MD5; read again")
                }
                _ => return Ok(a.body),
            }
        }
        Err(RemoteError::Integrity { op: c.op, why: "every read came back not matching its MD5".into() })
    }

    /// `len` bytes of `name` from `offset` (`len` > 0), each read checked for its length and
    /// place, and for its MD5 where the range is one Azure gives an MD5 for.
    pub async fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Bytes, RemoteError> {
        self.range(name, offset, len, true, None).await
    }

    /// As [`Remote::get_range`], of the object's version `etag` only (`If-Match`): a range of a
    /// version replaced since fails with status 412, so ranges read one after another are never
    /// a mix of two versions. `md5` asks for the range's MD5 (and checks it); without it the
    /// caller checks the bytes itself (the whole's MD5: one MD5 on each side fewer).
    pub async fn get_range_of(
        &self,
        name: &str,
        etag: &str,
        offset: u64,
        len: u64,
        md5: bool,
    ) -> Result<Bytes, RemoteError> {
        self.range(name, offset, len, md5, Some(etag)).await
    }

    /// As [`Remote::get_range`], without asking for the range's MD5: for bytes the caller checks
    /// itself (the tier's sealed chunks: a seal proves more than an MD5, and the MD5 of a chunk
    /// cost each side about 2 ms of a 6.7 ms read). Length and place are still checked.
    pub async fn get_sealed_range(&self, name: &str, offset: u64, len: u64) -> Result<Bytes, RemoteError> {
        self.range(name, offset, len, false, None).await
    }

    async fn range(
        &self,
        name: &str,
        offset: u64,
        len: u64,
        md5_asked: bool,
        if_match: Option<&str>,
    ) -> Result<Bytes, RemoteError> {
        debug_assert!(len > 0, "an empty range is not a read");
        let mut c = Call::new("Get Blob", Method::GET, Some(name), &[206]);
        c.headers.push(("x-ms-range", format!("bytes={offset}-{}", offset + len - 1)));
        if let Some(etag) = if_match {
            c.headers.push(("if-match", etag.to_owned()));
        }
        if md5_asked && len <= RANGE_MD5_MAX {
            c.headers.push(("x-ms-range-get-content-md5", "true".into()));
        }
        c.max_answer = usize::try_from(len).unwrap_or(usize::MAX);
        let op = c.op;
        for _ in 0..self.retry.attempts.max(1) {
            let a = self.call(&c).await?;
            let place =
                a.header("content-range").and_then(|v| v.strip_prefix("bytes ")).and_then(|v| v.split_once('-'));
            let why = if a.body.len() as u64 != len {
                Some(format!("{} bytes for a range of {len}", a.body.len()))
            } else if place.map(|(first, _)| first.parse::<u64>().ok() != Some(offset)).unwrap_or(true) {
                Some("the answer's Content-Range is not the range asked for".to_owned())
            } else if md5_header(&a, "content-md5").is_some_and(|sum| sum != md5(&a.body)) {
                Some("the range's bytes do not match its MD5".to_owned())
            } else {
                None
            };
            match why {
                None => return Ok(a.body),
                Some(why) => tracing::warn!(op, %why, "a damaged range from the remote; read again"),
            }
        }
        Err(RemoteError::Integrity { op, why: "every read of the range came back damaged".into() })
    }

    /// `name`'s properties; `None` when there is no such object.
    pub async fn properties(&self, name: &str) -> Result<Option<Props>, RemoteError> {
        let c = Call::new("Get Blob Properties", Method::HEAD, Some(name), &[200]);
        match self.call(&c).await {
            Ok(a) => {
                let len = a
                    .header("content-length")
                    .and_then(|v| v.parse().ok())
                    .ok_or(RemoteError::Integrity { op: c.op, why: "no Content-Length in the properties".into() })?;
                Ok(Some(Props {
                    len,
                    etag: a.header("etag").unwrap_or("").to_owned(),
                    content_md5: md5_header(&a, "content-md5"),
                    headers: a.headers,
                }))
            }
            Err(RemoteError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A page of the objects whose names start with `prefix`, after `marker`.
    pub async fn list(&self, prefix: &str, marker: Option<&str>, max: u32) -> Result<ListPage, RemoteError> {
        self.list_in(prefix, None, marker, max, false).await
    }

    /// A page of a listing by `prefix`, rolled up at `delimiter` when one is given, after
    /// `marker`, with each blob's metadata when `metadata` is asked for.
    pub async fn list_in(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        marker: Option<&str>,
        max: u32,
        metadata: bool,
    ) -> Result<ListPage, RemoteError> {
        let mut c = Call::new("List Blobs", Method::GET, None, &[200]);
        c.query.push(("restype", "container".into()));
        c.query.push(("comp", "list".into()));
        c.query.push(("prefix", self.ep.full_name(prefix)));
        c.query.push(("maxresults", max.clamp(1, 5000).to_string()));
        if let Some(d) = delimiter.filter(|d| !d.is_empty()) {
            c.query.push(("delimiter", d.to_owned()));
        }
        if metadata {
            c.query.push(("include", "metadata".into()));
        }
        if let Some(m) = marker {
            c.query.push(("marker", m.to_owned()));
        }
        let a = self.call(&c).await?;
        let (blobs, prefixes, next) =
            xml::list_page(&a.body).map_err(|why| RemoteError::Integrity { op: c.op, why })?;
        // A name outside the prefix asked for is a damaged answer, never one to act on.
        let outside = || RemoteError::Integrity { op: c.op, why: "a listed name outside the prefix".into() };
        let mut out = Vec::with_capacity(blobs.len());
        for mut b in blobs {
            b.name = b.name.strip_prefix(&self.ep.prefix).ok_or_else(outside)?.to_owned();
            out.push(b);
        }
        let prefixes = prefixes
            .into_iter()
            .map(|p| p.strip_prefix(&self.ep.prefix).map(str::to_owned).ok_or_else(outside))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ListPage { blobs: out, prefixes, next })
    }

    /// Deletes `name`; false when it was not there.
    pub async fn delete(&self, name: &str) -> Result<bool, RemoteError> {
        let c = Call::new("Delete Blob", Method::DELETE, Some(name), &[202]);
        match self.call(&c).await {
            Ok(_) => Ok(true),
            Err(RemoteError::Status { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
