//! Copies from a URL (Copy Blob, Put Blob From URL, Put Block From URL): the node fetches the
//! source itself. A source on this node (its account is served here and the URL names this node,
//! or the account's `<account>.blob.*` name) is read straight from the engine; any other
//! `http` or `https` source (TLS with the system's roots) is fetched with a request carrying the
//! URL's SAS or the caller's
//! `x-ms-copy-source-authorization`. Data flows through as it arrives, never whole.

use std::rc::Rc;

use bytes::Bytes;
use edgeblob_meta::listing::BlobSummary;
use edgeblob_meta::model::{BlobKey, BlobProps};
use edgeblob_proto::{addr, conditions::Conditions, headers as hdr, op::Operation, range, sas, ErrorCode};
use futures::{Stream, StreamExt};
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use super::response::{ApiError, VERSION};
use super::HttpCtx;
use crate::engine::{ops, write::Stored, Shard};

type Result<T> = std::result::Result<T, ApiError>;

/// What a fetched source is: its properties (when known) and its bytes.
pub struct Source {
    pub props: Option<BlobProps>,
    pub body: std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>>>>,
}

fn source_error(status: StatusCode, code: &str, why: String) -> ApiError {
    let mut e = ApiError::from(ErrorCode::CannotVerifyCopySource);
    e.status =
        Some(if status.is_client_error() || status.is_server_error() { status } else { StatusCode::BAD_REQUEST });
    e.message = format!("{} {why}", e.message);
    e.headers.push(("x-ms-copy-source-status-code", status.as_u16().to_string()));
    e.headers.push(("x-ms-copy-source-error-code", code.to_owned()));
    e
}

/// Opens the source of a copy: `src` is `x-ms-copy-source`; `dst` the destination request
/// (already authenticated); `request_host` the Host the client used to reach this node.
pub async fn open(
    s: &Rc<Shard>,
    ctx: &HttpCtx,
    src: &str,
    dst: &addr::Target,
    request_host: &str,
    h: &HeaderMap,
    range: Option<(u64, Option<u64>)>,
) -> Result<Source> {
    let st = addr::parse(src, None)
        .map_err(|_| source_error(StatusCode::BAD_REQUEST, "InvalidUri", format!("bad source URL {src}")))?;
    let url_host = src.split_once("://").map(|(_, r)| r.split('/').next().unwrap_or("")).unwrap_or("");
    let local = ctx.accounts.contains_key(&st.account)
        && (url_host.eq_ignore_ascii_case(request_host)
            || url_host.to_ascii_lowercase().starts_with(&format!("{}.blob.", st.account)));
    let cond = hdr::source_conditions(h);
    if local {
        return open_local(s, ctx, &st, dst, range, cond).await;
    }
    open_remote(src, h, range).await
}

async fn open_local(
    s: &Rc<Shard>,
    ctx: &HttpCtx,
    st: &addr::Target,
    dst: &addr::Target,
    range: Option<(u64, Option<u64>)>,
    cond: Conditions,
) -> Result<Source> {
    // The source must be readable by the caller: a SAS in its URL, or the same account as the
    // (authenticated) destination.
    if st.param("sig").is_some() {
        let keys = ctx.accounts.get(&st.account).ok_or(ErrorCode::CannotVerifyCopySource)?;
        let now = crate::engine::shard::now_ns() / 1_000_000_000;
        let r = sas::SasRequest { target: st, op: Operation::GetBlob, now, client_ip: None, https: true };
        sas::verify(&st.account, keys, &r)
            .map_err(|e| source_error(StatusCode::FORBIDDEN, "AuthenticationFailed", e.to_string()))?;
    } else if st.account != dst.account {
        return Err(source_error(
            StatusCode::FORBIDDEN,
            "AuthorizationFailure",
            "the source is in another account and has no SAS".into(),
        ));
    }
    let (Some(c), Some(b)) = (&st.container, &st.blob) else {
        return Err(source_error(StatusCode::BAD_REQUEST, "InvalidUri", "the source names no blob".into()));
    };
    let key = BlobKey::new(&st.account, c, b);
    let (summary, (start, end), reader) = ops::open_read(s, key, range, cond).await.map_err(|e| {
        let code = e.code();
        source_error(
            StatusCode::from_u16(code.status()).unwrap_or(StatusCode::BAD_REQUEST),
            code.as_str(),
            e.to_string(),
        )
    })?;
    let body = reader.into_stream();
    debug_assert!(end >= start);
    Ok(Source { props: Some(summary.props), body: Box::pin(body) })
}

/// The TLS client configuration for copy sources (and the benchmark's client): the system's
/// roots (`SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured), loaded once.
pub fn tls_client() -> std::io::Result<std::sync::Arc<tokio_rustls::rustls::ClientConfig>> {
    static CONFIG: std::sync::OnceLock<std::sync::Arc<tokio_rustls::rustls::ClientConfig>> = std::sync::OnceLock::new();
    if let Some(c) = CONFIG.get() {
        return Ok(c.clone());
    }
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(std::io::Error::other("no trusted root certificates found"));
    }
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let cfg = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(CONFIG.get_or_init(|| std::sync::Arc::new(cfg)).clone())
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(https: bool, authority: &str) -> std::io::Result<Sender> {
    let host =
        authority.rsplit_once(':').filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit())).map_or(authority, |(h, _)| h);
    let port = if https { 443 } else { 80 };
    let addr = if authority.contains(':') { authority.to_owned() } else { format!("{authority}:{port}") };
    let tcp = tokio::net::TcpStream::connect(&addr).await?;
    let _ = tcp.set_nodelay(true);
    if https {
        let name = rustls_pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
            .map_err(std::io::Error::other)?;
        let tls = tokio_rustls::TlsConnector::from(tls_client()?).connect(name, tcp).await?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(std::io::Error::other)?;
        tokio::task::spawn_local(async move {
            let _ = conn.await;
        });
        Ok(sender)
    } else {
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(std::io::Error::other)?;
        tokio::task::spawn_local(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}

async fn open_remote(src: &str, h: &HeaderMap, range: Option<(u64, Option<u64>)>) -> Result<Source> {
    let (https, rest) = match (src.strip_prefix("https://"), src.strip_prefix("http://")) {
        (Some(r), _) => (true, r),
        (None, Some(r)) => (false, r),
        _ => return Err(source_error(StatusCode::BAD_REQUEST, "InvalidUri", format!("not an http(s) URL: {src}"))),
    };
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let mut sender = connect(https, authority)
        .await
        .map_err(|e| source_error(StatusCode::BAD_GATEWAY, "ConnectionFailed", format!("{authority}: {e}")))?;
    let mut req = http::Request::get(path).header("host", authority).header("x-ms-version", VERSION);
    if let Some((a, b)) = range {
        req = req.header(
            "x-ms-range",
            match b {
                Some(b) => format!("bytes={a}-{b}"),
                None => format!("bytes={a}-"),
            },
        );
    }
    if let Some(auth) = hdr::get(h, "x-ms-copy-source-authorization") {
        req = req.header("authorization", auth);
    }
    for (name, from) in [
        ("if-match", "x-ms-source-if-match"),
        ("if-none-match", "x-ms-source-if-none-match"),
        ("if-modified-since", "x-ms-source-if-modified-since"),
        ("if-unmodified-since", "x-ms-source-if-unmodified-since"),
    ] {
        if let Some(v) = hdr::get(h, from) {
            req = req.header(name, v);
        }
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| source_error(StatusCode::BAD_REQUEST, "InvalidUri", e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| source_error(StatusCode::BAD_GATEWAY, "ConnectionFailed", e.to_string()))?;
    let status = resp.status();
    if !status.is_success() {
        let code = resp.headers().get("x-ms-error-code").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        return Err(source_error(status, &code, format!("the source answered {status}")));
    }
    let rh = resp.headers();
    let b = hdr::blob_headers(rh, true).unwrap_or_default();
    let props = BlobProps {
        content_type: b.content_type,
        content_encoding: b.content_encoding,
        content_language: b.content_language,
        content_disposition: b.content_disposition,
        cache_control: b.cache_control,
        content_md5: hdr::md5(rh, "content-md5").ok().flatten().filter(|_| range.is_none()),
        metadata: hdr::metadata(rh, &[]).unwrap_or_default(),
        copy: None,
    };
    let body = resp.into_body().into_data_stream().map(|r| r.map_err(std::io::Error::other));
    Ok(Source { props: Some(props), body: Box::pin(body) })
}

/// Stores a source's bytes on this shard for `dst`.
pub async fn store(s: &Rc<Shard>, dst: &BlobKey, src: Source, max: u64) -> Result<(Stored, Option<BlobProps>)> {
    let Source { props, body } = src;
    Ok((ops::store(s, dst, body, max).await?, props))
}

/// `x-ms-source-range`, if any.
pub fn source_range(h: &HeaderMap) -> Result<Option<(u64, Option<u64>)>> {
    match hdr::get(h, "x-ms-source-range") {
        None => Ok(None),
        Some(v) => range::parse(v).map(Some).ok_or_else(|| ErrorCode::InvalidHeaderValue.into()),
    }
}

/// A copy id in Azure's UUID form.
pub fn copy_id(s: &Shard) -> String {
    super::response::uuid_form(xxhash_rust::xxh3::xxh3_128(&s.node.stamp().to_le_bytes()))
}

/// The destination's properties: the source's where the request does not set them.
pub fn merge_props(source: Option<BlobProps>, request: BlobProps, keep_source_metadata: bool) -> BlobProps {
    let src = source.unwrap_or_default();
    BlobProps {
        content_type: request.content_type.or(src.content_type),
        content_encoding: request.content_encoding.or(src.content_encoding),
        content_language: request.content_language.or(src.content_language),
        content_disposition: request.content_disposition.or(src.content_disposition),
        cache_control: request.cache_control.or(src.cache_control),
        content_md5: request.content_md5.or(src.content_md5),
        metadata: if request.metadata.is_empty() && keep_source_metadata { src.metadata } else { request.metadata },
        copy: None,
    }
}

pub fn summary_copy_headers(b: &BlobSummary) -> Vec<(&'static str, String)> {
    match &b.props.copy {
        None => Vec::new(),
        Some(c) => vec![
            ("x-ms-copy-id", c.id.clone()),
            ("x-ms-copy-status", "success".into()),
            ("x-ms-copy-source", c.source.clone()),
            ("x-ms-copy-progress", format!("{}/{}", c.bytes, c.bytes)),
            ("x-ms-copy-completion-time", hdr::http_date(c.completed_ns)),
        ],
    }
}
