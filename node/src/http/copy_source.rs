//! The source of a copy (Copy Blob, Put Blob From URL, Put Block From URL), fetched by the node
//! itself. A source on this node (its account is served here and the URL names this node, or
//! the account's `<account>.blob.*` name) is read straight from the engine; any other `http` or
//! `https` source (TLS with the system's roots) is fetched with a request carrying the URL's SAS
//! or the caller's `x-ms-copy-source-authorization`. Data flows through as it arrives, never
//! whole.

use bytes::Bytes;
use edgeblob_engine::error::EngineError;
use edgeblob_engine::ops;
use edgeblob_meta::model::{BlobKey, BlobProps, PublicAccess};
use edgeblob_proto::request::{BlobSettings, CopySource, Range};
use edgeblob_proto::{addr, headers as hdr, op::Operation, sas, ErrorCode};
use futures::Stream;
use http::StatusCode;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

use super::auth::Credential;
use super::dispatch::Call;
use super::egress::{Egress, Unreachable};
use super::error::{ApiError, Result};
use super::response::VERSION;

/// What a fetched source is: its properties (when known) and its bytes.
pub struct Source {
    pub props: Option<BlobProps>,
    pub body: std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>>>>,
}

fn source_error(status: StatusCode, code: &str, why: String) -> ApiError {
    let mut e = ApiError::detailed(ErrorCode::CannotVerifyCopySource, why);
    e.status =
        Some(if status.is_client_error() || status.is_server_error() { status } else { StatusCode::BAD_REQUEST });
    e.headers.push(("x-ms-copy-source-status-code", status.as_u16().to_string()));
    e.headers.push(("x-ms-copy-source-error-code", code.to_owned()));
    e
}

/// Opens the source of a copy whose destination request `c` is already authenticated.
pub async fn open(c: &Call<'_>, src: &CopySource) -> Result<Source> {
    let url = &src.url;
    // A source elsewhere is any http(s) URL; one on this node must be a blob's address.
    let url_host = url.split_once("://").map(|(_, r)| r.split('/').next().unwrap_or("")).unwrap_or("");
    if let Ok(st) = addr::parse(url, None) {
        let local = c.ctx.accounts.contains_key(&st.account)
            && (url_host.eq_ignore_ascii_case(c.host)
                || url_host.to_ascii_lowercase().starts_with(&format!("{}.blob.", st.account)));
        if local {
            return open_local(c, &st, src).await;
        }
    }
    open_remote(c, src).await
}

async fn open_local(c: &Call<'_>, st: &addr::Target, src: &CopySource) -> Result<Source> {
    let (Some(ctr), Some(b)) = (&st.container, &st.blob) else {
        return Err(source_error(StatusCode::BAD_REQUEST, "InvalidUri", "the source names no blob".into()));
    };
    authorize_local_source(c, src, st, ctr)?;
    let key = BlobKey::new(&st.account, ctr, b);
    // A source in a linked container is read as a GET reads it: fetched first if not here.
    super::read_through::before_read(c.shard, &c.ctx.links, &key).await?;
    let (summary, (start, end), reader) =
        ops::open_read(c.shard, key, src.range, src.conditions.clone()).await.map_err(|e| {
            if matches!(e, EngineError::ConditionNotMet | EngineError::NotModified) {
                return ApiError::from(ErrorCode::SourceConditionNotMet);
            }
            let why = e.to_string();
            let code = ApiError::from(e).code;
            source_error(StatusCode::from_u16(code.status()).unwrap_or(StatusCode::BAD_REQUEST), code.as_str(), why)
        })?;
    debug_assert!(end >= start);
    Ok(Source { props: Some(summary.props), body: Box::pin(reader.into_stream()) })
}

/// A source on this node is authorised on its own, as Azure does: by the SAS in its URL, by public
/// access to its container, or by the caller's own credential when that covers it (the account's
/// key for a source in the same account; the caller's SAS when it grants read there). A SAS
/// scoped to one container cannot reach a private blob elsewhere through a copy.
fn authorize_local_source(c: &Call<'_>, src: &CopySource, st: &addr::Target, ctr: &str) -> Result<()> {
    let url = &src.url;
    if let Some((_, auth)) = src.forward.iter().find(|(name, _)| *name == "authorization") {
        return authorize_source_token(c, st, ctr, auth);
    }
    let keys = c.ctx.accounts.get(&st.account).ok_or(ErrorCode::CannotVerifyCopySource)?;
    let now = edgeblob_engine::shard::now_ns() / 1_000_000_000;
    let read_with = |target: &addr::Target, client_ip, https| {
        let policy = super::auth::stored_policy(c.shard, target);
        let r = sas::SasRequest { target, op: Operation::GetBlob, now, client_ip, https, policy: policy.as_ref() };
        sas::verify(&st.account, keys, &r)
    };
    if st.param("sig").is_some() {
        // The source's own SAS is presented by this node (no client address), over the URL's
        // scheme: an `spr=https` SAS does not work in an `http://` URL.
        let signer = read_with(st, None, url.starts_with("https://"))
            .map_err(|e| source_error(StatusCode::FORBIDDEN, "AuthenticationFailed", e.to_string()))?;
        if let sas::Signer::UserDelegation { oid, tid, user } = signer {
            // A SAS bound to a delegated user needs that user's token, which a copy's source
            // request cannot carry.
            if user.is_some() {
                let why = "the source's SAS is bound to a delegated user (sduoid)".into();
                return Err(source_error(StatusCode::FORBIDDEN, "AuthenticationFailed", why));
            }
            super::auth::delegated(c.ctx, st, Operation::GetBlob, oid, tid).map_err(|e| {
                source_error(StatusCode::FORBIDDEN, e.code.as_str(), "the source's SAS signer may not read it".into())
            })?;
        }
        return Ok(());
    }
    let public = c.shard.node.container(&st.account, ctr).is_some_and(|k| k.public_access != PublicAccess::None);
    let same_account = st.account == c.target.account;
    let allowed = public
        || match &c.credential {
            Credential::SharedKey => same_account,
            // Azure authorises a source in the caller's account by the caller's own token too.
            Credential::Bearer(p) => {
                same_account
                    && c.ctx
                        .entra
                        .as_ref()
                        .is_some_and(|e| e.allows(p, &st.account, Some(ctr), edgeblob_proto::rbac::Action::BlobsRead))
            }
            Credential::Sas { .. } if same_account => {
                let as_source = addr::Target { query: c.target.query.clone(), ..st.clone() };
                read_with(&as_source, Some(c.peer.ip()), c.ctx.https).is_ok_and(|signer| match signer {
                    sas::Signer::AccountKey => true,
                    sas::Signer::UserDelegation { user: Some(_), .. } => false,
                    sas::Signer::UserDelegation { oid, tid, user: None } => {
                        super::auth::delegated(c.ctx, st, Operation::GetBlob, oid, tid).is_ok()
                    }
                })
            }
            Credential::Sas { .. } | Credential::Anonymous => false,
        };
    if allowed {
        return Ok(());
    }
    Err(source_error(
        StatusCode::FORBIDDEN,
        "AuthorizationFailure",
        "the caller's credential does not grant read on the source, which has no SAS of its own".into(),
    ))
}

/// `x-ms-copy-source-authorization: Bearer <token>` for a source on this node: the token is
/// validated as a request's own would be, and its principal must be bound to a role that reads
/// the source's container. Refusals say what the source would have answered (401 for a token
/// that does not validate, 403 for one without the role), as Azure's copy-source headers do.
fn authorize_source_token(c: &Call<'_>, st: &addr::Target, ctr: &str, auth: &str) -> Result<()> {
    let refuse = |status, code: ErrorCode, why: String| source_error(status, code.as_str(), why);
    let Some(token) = super::auth::bearer_token(auth) else {
        return Err(refuse(StatusCode::BAD_REQUEST, ErrorCode::InvalidHeaderValue, "not a Bearer token".into()));
    };
    let Some(entra) = &c.ctx.entra else {
        let why = "this node accepts no Entra ID tokens (no [auth.entra])".into();
        return Err(refuse(StatusCode::FORBIDDEN, ErrorCode::AuthenticationFailed, why));
    };
    if !c.ctx.https {
        let why = "a Bearer token is not accepted over HTTP".into();
        return Err(refuse(StatusCode::FORBIDDEN, ErrorCode::AuthenticationFailed, why));
    }
    let principal = entra
        .validate(token, &st.account)
        .map_err(|e| refuse(StatusCode::UNAUTHORIZED, ErrorCode::InvalidAuthenticationInfo, e.to_string()))?;
    if !entra.allows(&principal, &st.account, Some(ctr), edgeblob_proto::rbac::Action::BlobsRead) {
        let why = "the token's principal has no role that reads the source".into();
        return Err(refuse(StatusCode::FORBIDDEN, ErrorCode::AuthorizationPermissionMismatch, why));
    }
    Ok(())
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

/// One HTTP/1.1 connection over any stream, its driver spawned on this shard.
async fn handshake<IO>(io: IO) -> std::io::Result<Sender>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(std::io::Error::other)?;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Connects to the source's host through the egress policy (which checks every address the name
/// resolves to), then speaks TLS to it when the URL is `https`.
async fn connect(egress: &Egress, https: bool, authority: &str) -> std::result::Result<Sender, Unreachable> {
    let (host, port) = match authority.rsplit_once(':').filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit())) {
        Some((h, p)) => (h, p.parse().map_err(|_| Unreachable::Resolve(authority.to_owned(), "bad port".into()))?),
        None => (authority, if https { 443 } else { 80 }),
    };
    let tcp = egress.connect(host, port).await?;
    let _ = tcp.set_nodelay(true);
    let addr = tcp.peer_addr().map_err(|e| Unreachable::Resolve(authority.to_owned(), e.to_string()))?;
    let failed = |e: std::io::Error| Unreachable::Connect(addr, e);
    let handshaken = async {
        if !https {
            return handshake(tcp).await;
        }
        let name = rustls_pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
            .map_err(std::io::Error::other)?;
        handshake(tokio_rustls::TlsConnector::from(tls_client()?).connect(name, tcp).await?).await
    };
    tokio::time::timeout(egress.timeout, handshaken)
        .await
        .map_err(|_| Unreachable::TimedOut("the handshake with the source"))?
        .map_err(failed)
}

/// The one answer for a source that could not be reached, whatever the reason: which reason it
/// was (no such name, an internal address, a closed port, a time-out) would tell a client what
/// lies behind the node.
fn unreachable(url: &str, why: Unreachable) -> ApiError {
    tracing::info!(source = %sas::redact_signature(url), %why, "copy source not reached");
    // Azure answers an unreachable source with 500 CannotVerifyCopySource.
    let mut e = ApiError::with_message(ErrorCode::CannotVerifyCopySource, "The copy source could not be reached.");
    e.status = Some(StatusCode::INTERNAL_SERVER_ERROR);
    e
}

fn range_header((a, b): Range) -> String {
    match b {
        Some(b) => format!("bytes={a}-{b}"),
        None => format!("bytes={a}-"),
    }
}

async fn open_remote(c: &Call<'_>, src: &CopySource) -> Result<Source> {
    let url = &src.url;
    let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(r), _) => (true, r),
        (None, Some(r)) => (false, r),
        _ => return Err(source_error(StatusCode::BAD_REQUEST, "InvalidUri", "not an http(s) URL".into())),
    };
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let egress = &c.ctx.egress;
    let mut sender = connect(egress, https, authority).await.map_err(|e| unreachable(url, e))?;
    let mut req = http::Request::get(path).header("host", authority).header("x-ms-version", VERSION);
    if let Some(r) = src.range {
        req = req.header("x-ms-range", range_header(r));
    }
    for (name, value) in &src.forward {
        req = req.header(*name, value);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| source_error(StatusCode::BAD_REQUEST, "InvalidUri", e.to_string()))?;
    let resp = tokio::time::timeout(egress.timeout, sender.send_request(req))
        .await
        .map_err(|_| unreachable(url, Unreachable::TimedOut("the source's answer")))?
        .map_err(|e| unreachable(url, Unreachable::Exchange(e.to_string())))?;
    let status = resp.status();
    // The source conditions travel as the GET's own conditions: 304 and 412 both mean they failed.
    if status == StatusCode::NOT_MODIFIED || status == StatusCode::PRECONDITION_FAILED {
        return Err(ErrorCode::SourceConditionNotMet.into());
    }
    if !status.is_success() {
        let code = resp.headers().get("x-ms-error-code").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        // Only a code that is an Azure code name passes on: the source's text is not ours to echo.
        let code =
            if code.len() <= 64 && code.chars().all(|ch| ch.is_ascii_alphanumeric()) { code } else { String::new() };
        return Err(source_error(status, &code, format!("the source answered {status}")));
    }
    let rh = resp.headers();
    let mut props = super::model::props(BlobSettings {
        headers: hdr::blob_headers(rh, true).unwrap_or_default(),
        metadata: hdr::metadata(rh, &[]).unwrap_or_default(),
        access_tier: None,
    });
    // A range's bytes are not the blob's: its MD5 does not pass on.
    props.content_md5 = hdr::md5(rh, "content-md5").ok().flatten().filter(|_| src.range.is_none());
    // A source that stops sending mid-body fails the copy after the progress time-out.
    let body = super::body::pieces(resp.into_body(), None, c.ctx.body_timeout);
    Ok(Source { props: Some(props), body: Box::pin(body) })
}
