//! Request handling: address, route, authenticate, then run the operation on the engine from
//! this shard. Every answer carries the common headers and is logged with its request id,
//! operation, status, bytes and duration.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use edgeblob_meta::listing::{BlobSummary, ListEntry, ListQuery};
use edgeblob_meta::model::{BlobKey, BlobProps, Metadata, PublicAccess};
use edgeblob_proto::op::Operation;
use edgeblob_proto::{addr, etag_string, headers as hdr, op, range, sas, shared_key, xml, ErrorCode};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use md5::Digest;

use super::body::{self, RespBody};
use super::copy;
use super::response::{self, ApiError, VERSION};
use super::HttpCtx;
use crate::engine::{ops, BlockListItem, PropsChange, Shard};

type Result<T> = std::result::Result<T, ApiError>;

pub async fn handle(
    shard: Rc<Shard>,
    ctx: Rc<HttpCtx>,
    req: Request<Incoming>,
    peer: SocketAddr,
    names: &super::sniff::Names,
) -> Response<RespBody> {
    let started = Instant::now();
    let seq = ctx.next_request.get();
    ctx.next_request.set(seq + 1);
    let request_id = response::request_id(shard.index, seq);
    let head = req.method() == Method::HEAD;
    let client_request_id = req.headers().get("x-ms-client-request-id").cloned();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut op_name = "Unknown";
    let mut resp = match ctx.slots.take() {
        // Past the bound, answer at once rather than queue without limit. 503 with a short
        // Retry-After: every client retries it (429 is not retried by the Python SDK, and
        // azcopy gives up on Retry-After above 60 s).
        None => {
            let mut e = ApiError::from(ErrorCode::ServerBusy);
            e.headers.push(("retry-after", "1".into()));
            response::error(e, head, &request_id)
        }
        Some(_slot) => dispatch(&shard, &ctx, req, peer, names, &mut op_name)
            .await
            .unwrap_or_else(|e| response::error(e, head, &request_id)),
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-ms-request-id", v);
    }
    h.insert("x-ms-version", HeaderValue::from_static(VERSION));
    h.insert("server", HeaderValue::from_static("edgeblob"));
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now())) {
        h.insert("date", v);
    }
    if let Some(v) = client_request_id {
        h.insert("x-ms-client-request-id", v);
    }
    let bytes = h.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let (status, micros) = (resp.status().as_u16(), started.elapsed().as_micros() as u64);
    // One line per request costs a formatted write per request (a tenth of a small GET's CPU):
    // server-side failures are logged always, the rest with RUST_LOG=edgeblob::http=debug.
    if status >= 500 {
        tracing::info!(request_id, shard = shard.index, op = op_name, %method, path, status, bytes, micros, "request");
    } else {
        tracing::debug!(request_id, shard = shard.index, op = op_name, %method, path, status, bytes, micros, "request");
    }
    resp
}

fn blob_key(t: &addr::Target) -> Result<BlobKey> {
    match (&t.container, &t.blob) {
        (Some(c), Some(b)) => Ok(BlobKey::new(&t.account, c, b)),
        _ => Err(ErrorCode::InvalidUri.into()),
    }
}

fn container_of(t: &addr::Target) -> Result<&str> {
    t.container.as_deref().ok_or_else(|| ErrorCode::InvalidUri.into())
}

fn authenticate(
    ctx: &HttpCtx,
    t: &addr::Target,
    op: Operation,
    method: &str,
    headers: &HeaderMap,
    peer: SocketAddr,
    anonymous: Option<&Shard>,
) -> Result<()> {
    let failed = |why: String| {
        tracing::info!(%why, "authentication failed");
        let mut e = ApiError::from(ErrorCode::AuthenticationFailed);
        e.message = format!("{} {why}", e.message);
        e
    };
    let keys = ctx.accounts.get(&t.account).ok_or_else(|| failed(format!("unknown account {}", t.account)))?;
    if let Some(auth) = headers.get("authorization") {
        let auth = auth.to_str().map_err(|_| failed("unreadable Authorization header".into()))?;
        let signed = shared_key::SignedRequest { method, raw_path: &t.raw_path, query: &t.query, headers };
        return shared_key::verify(&t.account, keys, &signed, auth).map_err(|e| failed(e.to_string()));
    }
    if t.param("sig").is_some() {
        let now = crate::engine::shard::now_ns() / 1_000_000_000;
        let r = sas::SasRequest { target: t, op, now, client_ip: Some(peer.ip()), https: ctx.https };
        return sas::verify(&t.account, keys, &r).map_err(|e| match e {
            sas::SasError::Permission | sas::SasError::Resource => {
                let mut a = ApiError::from(ErrorCode::AuthorizationFailure);
                a.message = format!("{} {e}", a.message);
                a
            }
            other => failed(other.to_string()),
        });
    }
    if anonymous.is_some_and(|s| anonymous_allowed(s, t, op)) {
        return Ok(());
    }
    let mut e = ApiError::from(ErrorCode::AuthenticationFailed);
    e.message = "Server failed to authenticate the request: no credentials (anonymous access is not enabled).".into();
    Err(e)
}

/// `x-ms-content-crc64`, if sent.
fn sent_crc64(h: &HeaderMap) -> Result<Option<u64>> {
    match hdr::get(h, "x-ms-content-crc64") {
        None => Ok(None),
        Some(v) => B64
            .decode(v)
            .ok()
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(|b| Some(u64::from_le_bytes(b)))
            .ok_or_else(|| ErrorCode::InvalidHeaderValue.into()),
    }
}

/// Checks the transactional digests a client sent against what the body hashed to.
fn check_digests(tap: &body::Tap, md5: Option<[u8; 16]>, crc64: Option<u64>) -> Result<()> {
    if md5.is_some() && md5 != body::md5_of(tap) {
        return Err(ErrorCode::Md5Mismatch.into());
    }
    if crc64.is_some() && crc64 != body::crc64_of(tap) {
        return Err(ErrorCode::Crc64Mismatch.into());
    }
    Ok(())
}

fn public_access(h: &HeaderMap) -> Result<PublicAccess> {
    match hdr::get(h, "x-ms-blob-public-access") {
        None => Ok(PublicAccess::None),
        Some(v) if v.eq_ignore_ascii_case("container") => Ok(PublicAccess::Container),
        Some(v) if v.eq_ignore_ascii_case("blob") => Ok(PublicAccess::Blob),
        Some(_) => Err(ErrorCode::InvalidHeaderValue.into()),
    }
}

fn access_name(a: PublicAccess) -> Option<&'static str> {
    match a {
        PublicAccess::None => None,
        PublicAccess::Blob => Some("blob"),
        PublicAccess::Container => Some("container"),
    }
}

/// Whether an anonymous request may run: reads of blobs in a container with public access, and
/// listing and properties of a container open to `container` access.
fn anonymous_allowed(s: &Shard, t: &addr::Target, op: Operation) -> bool {
    let Some(c) = t.container.as_deref().and_then(|c| s.node.container(&t.account, c)) else { return false };
    let blob_read = matches!(op, Operation::GetBlob | Operation::GetBlobProperties | Operation::GetBlockList);
    let container_read = matches!(op, Operation::ListBlobs | Operation::GetContainerProperties);
    match c.public_access {
        PublicAccess::None => false,
        PublicAccess::Blob => blob_read,
        PublicAccess::Container => blob_read || container_read,
    }
}

fn set(h: &mut HeaderMap, name: &'static str, value: impl AsRef<str>) {
    if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
        h.insert(name, v);
    }
}

fn quoted_etag(etag: u64) -> String {
    format!("\"{}\"", etag_string(etag))
}

fn respond(status: StatusCode, body: RespBody) -> Response<RespBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r
}

fn put_metadata(h: &mut HeaderMap, md: &Metadata) {
    for (k, v) in md {
        if let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(format!("x-ms-meta-{k}").as_bytes()), HeaderValue::from_str(v))
        {
            h.append(name, value);
        }
    }
}

/// The headers of Get Blob and Get Blob Properties.
fn blob_headers(h: &mut HeaderMap, b: &BlobSummary) {
    set(h, "etag", quoted_etag(b.etag));
    set(h, "last-modified", hdr::http_date(b.modified_ns));
    set(h, "x-ms-creation-time", hdr::http_date(b.created_ns));
    set(h, "x-ms-blob-type", "BlockBlob");
    set(h, "accept-ranges", "bytes");
    set(h, "content-type", b.props.content_type.as_deref().unwrap_or("application/octet-stream"));
    for (name, v) in [
        ("content-encoding", &b.props.content_encoding),
        ("content-language", &b.props.content_language),
        ("content-disposition", &b.props.content_disposition),
        ("cache-control", &b.props.cache_control),
    ] {
        if let Some(v) = v {
            set(h, name, v);
        }
    }
    set(h, "x-ms-lease-state", "available");
    set(h, "x-ms-lease-status", "unlocked");
    set(h, "x-ms-server-encrypted", "true");
    put_metadata(h, &b.props.metadata);
    for (k, v) in copy::summary_copy_headers(b) {
        set(h, k, v);
    }
}

fn props_from(h: &HeaderMap, fall_back: bool, names: &[String]) -> Result<BlobProps> {
    let b = hdr::blob_headers(h, fall_back)?;
    Ok(BlobProps {
        content_type: b.content_type,
        content_encoding: b.content_encoding,
        content_language: b.content_language,
        content_disposition: b.content_disposition,
        cache_control: b.cache_control,
        content_md5: b.content_md5,
        metadata: hdr::metadata(h, names)?,
        copy: None,
    })
}

fn block_id(t: &addr::Target) -> Result<Vec<u8>> {
    let raw = t.param("blockid").ok_or(ErrorCode::InvalidQueryParameterValue)?;
    B64.decode(raw).map_err(|_| ErrorCode::InvalidQueryParameterValue.into())
}

fn service_endpoint(req_host: &str, t: &addr::Target) -> String {
    if t.raw_path.starts_with(&format!("/{}", t.account)) {
        format!("http://{req_host}/{}", t.account)
    } else {
        format!("http://{req_host}/")
    }
}

fn max_results(t: &addr::Target) -> Result<usize> {
    match t.param("maxresults") {
        None | Some("") => Ok(5000),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n.min(5000)),
            _ => Err(ErrorCode::InvalidQueryParameterValue.into()),
        },
    }
}

async fn dispatch(
    s: &Rc<Shard>,
    ctx: &HttpCtx,
    req: Request<Incoming>,
    peer: SocketAddr,
    names: &super::sniff::Names,
    op_name: &mut &'static str,
) -> Result<Response<RespBody>> {
    // Metadata names as the client wrote them (hyper lower-cases header names).
    let meta_names: Vec<String> = names.borrow().values().cloned().collect();
    let host = req.headers().get("host").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let target = addr::parse(&req.uri().to_string(), Some(&host))?;
    let op = op::route(req.method(), &target, req.headers())?;
    *op_name = op.name();
    authenticate(ctx, &target, op, req.method().as_str(), req.headers(), peer, Some(s))?;
    let t = &target;
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    let cond = hdr::conditions(h);
    match op {
        Operation::GetAccountInfo => {
            let mut r = respond(StatusCode::OK, body::empty());
            set(r.headers_mut(), "x-ms-sku-name", "Standard_LRS");
            set(r.headers_mut(), "x-ms-account-kind", "StorageV2");
            set(r.headers_mut(), "x-ms-is-hns-enabled", "false");
            Ok(r)
        }
        Operation::ListContainers => {
            let prefix = t.param("prefix").unwrap_or("");
            let marker = t.param("marker").filter(|m| !m.is_empty());
            let max = max_results(t)?;
            let with_md = t.param("include").is_some_and(|i| i.split(',').any(|x| x == "metadata"));
            let (items, next) = s.node.list_containers(&t.account, prefix, marker, max);
            let endpoint = service_endpoint(&host, t);
            let x = xml::list_containers(&xml::ListContainers {
                service_endpoint: &endpoint,
                prefix,
                marker,
                max_results: t.param("maxresults").map(|_| max),
                items: items
                    .iter()
                    .map(|(n, c)| xml::ContainerItem {
                        name: n,
                        last_modified: hdr::http_date(c.modified_ns),
                        etag: c.etag,
                        metadata: with_md.then_some(c.metadata.as_slice()),
                    })
                    .collect(),
                next_marker: next.as_deref(),
            });
            Ok(xml_response(x))
        }
        Operation::CreateContainer => {
            let c = ops::create_container(
                s,
                t.account.clone(),
                container_of(t)?.to_owned(),
                hdr::metadata(h, &meta_names)?,
                public_access(h)?,
            )
            .await?;
            let mut r = respond(StatusCode::CREATED, body::empty());
            set(r.headers_mut(), "etag", quoted_etag(c.etag));
            set(r.headers_mut(), "last-modified", hdr::http_date(c.modified_ns));
            Ok(r)
        }
        Operation::DeleteContainer => {
            ops::delete_container(s, t.account.clone(), container_of(t)?.to_owned()).await?;
            Ok(respond(StatusCode::ACCEPTED, body::empty()))
        }
        Operation::GetContainerProperties => {
            let c = s.node.container(&t.account, container_of(t)?).ok_or(ErrorCode::ContainerNotFound)?;
            let mut r = respond(StatusCode::OK, body::empty());
            let rh = r.headers_mut();
            set(rh, "etag", quoted_etag(c.etag));
            set(rh, "last-modified", hdr::http_date(c.modified_ns));
            set(rh, "x-ms-lease-state", "available");
            set(rh, "x-ms-lease-status", "unlocked");
            set(rh, "x-ms-has-immutability-policy", "false");
            set(rh, "x-ms-has-legal-hold", "false");
            if let Some(a) = access_name(c.public_access) {
                set(rh, "x-ms-blob-public-access", a);
            }
            put_metadata(rh, &c.metadata);
            Ok(r)
        }
        Operation::GetContainerAcl => {
            let c = s.node.container(&t.account, container_of(t)?).ok_or(ErrorCode::ContainerNotFound)?;
            let mut r = xml_response(format!("{}<SignedIdentifiers />", r#"<?xml version="1.0" encoding="utf-8"?>"#));
            let rh = r.headers_mut();
            set(rh, "etag", quoted_etag(c.etag));
            set(rh, "last-modified", hdr::http_date(c.modified_ns));
            if let Some(a) = access_name(c.public_access) {
                set(rh, "x-ms-blob-public-access", a);
            }
            Ok(r)
        }
        Operation::SetContainerAcl => {
            let acl = body::collect(body, 64 << 10).await?;
            if std::str::from_utf8(&acl).map_err(|_| ErrorCode::InvalidXmlDocument)?.contains("<SignedIdentifier>") {
                return Err(ApiError {
                    message: "Stored access policies are not supported.".into(),
                    ..ErrorCode::OperationNotSupported.into()
                });
            }
            let c =
                ops::set_container_access(s, t.account.clone(), container_of(t)?.to_owned(), public_access(h)?).await?;
            let mut r = respond(StatusCode::OK, body::empty());
            set(r.headers_mut(), "etag", quoted_etag(c.etag));
            set(r.headers_mut(), "last-modified", hdr::http_date(c.modified_ns));
            Ok(r)
        }
        Operation::SetContainerMetadata => {
            let c = ops::set_container_metadata(
                s,
                t.account.clone(),
                container_of(t)?.to_owned(),
                hdr::metadata(h, &meta_names)?,
            )
            .await?;
            let mut r = respond(StatusCode::OK, body::empty());
            set(r.headers_mut(), "etag", quoted_etag(c.etag));
            set(r.headers_mut(), "last-modified", hdr::http_date(c.modified_ns));
            Ok(r)
        }
        Operation::ListBlobs => {
            let container = container_of(t)?;
            let prefix = t.param("prefix").unwrap_or("").to_owned();
            let delimiter = t.param("delimiter").filter(|d| !d.is_empty()).map(str::to_owned);
            let marker = t.param("marker").filter(|m| !m.is_empty()).map(str::to_owned);
            let max = max_results(t)?;
            let with_md = t.param("include").is_some_and(|i| i.split(',').any(|x| x == "metadata"));
            let q = ListQuery { prefix: prefix.clone(), delimiter: delimiter.clone(), marker: marker.clone(), max };
            let page = ops::list_blobs(s, &t.account, container, q).await?;
            let endpoint = service_endpoint(&host, t);
            let x = xml::list_blobs(&xml::ListBlobs {
                service_endpoint: &endpoint,
                container,
                prefix: &prefix,
                marker: marker.as_deref(),
                max_results: t.param("maxresults").map(|_| max),
                delimiter: delimiter.as_deref(),
                items: page
                    .entries
                    .iter()
                    .map(|e| match e {
                        ListEntry::Prefix(p) => xml::ListItem::Prefix(p),
                        ListEntry::Blob(b) => xml::ListItem::Blob(xml::BlobItem {
                            name: &b.name,
                            creation_time: hdr::http_date(b.created_ns),
                            last_modified: hdr::http_date(b.modified_ns),
                            etag: b.etag,
                            size: b.size,
                            content_type: b.props.content_type.as_deref(),
                            content_encoding: b.props.content_encoding.as_deref(),
                            content_language: b.props.content_language.as_deref(),
                            content_disposition: b.props.content_disposition.as_deref(),
                            cache_control: b.props.cache_control.as_deref(),
                            content_md5: b.props.content_md5,
                            metadata: with_md.then_some(b.props.metadata.as_slice()),
                        }),
                    })
                    .collect(),
                next_marker: page.next_marker.as_deref(),
            });
            Ok(xml_response(x))
        }
        Operation::PutBlob => {
            let key = blob_key(t)?;
            match hdr::get(h, "x-ms-blob-type") {
                Some("BlockBlob") => {}
                Some(_) => {
                    return Err(ApiError {
                        message: "Only block blobs are supported.".into(),
                        ..ErrorCode::InvalidHeaderValue.into()
                    })
                }
                None => return Err(ErrorCode::MissingRequiredHeader.into()),
            }
            let sent_md5 = hdr::md5(h, "content-md5")?;
            let sent_crc = sent_crc64(h)?;
            let mut props = props_from(h, true, &meta_names)?;
            let tap = body::tap(true, sent_crc.is_some());
            let stored = ops::store(
                s,
                &key,
                body::pieces(body, Some(tap.clone())),
                edgeblob_meta::model::limits::MAX_PUT_BLOB_SIZE,
            )
            .await?;
            let md5 = body::md5_of(&tap).unwrap_or_default();
            if let Err(e) = check_digests(&tap, sent_md5, sent_crc) {
                s.give_back_refs(stored.chunks);
                return Err(e);
            }
            props.content_md5 = props.content_md5.or(Some(md5));
            let b = ops::commit_single(s, key, stored, props, cond).await?;
            let mut r = respond(StatusCode::CREATED, body::empty());
            let rh = r.headers_mut();
            set(rh, "etag", quoted_etag(b.etag));
            set(rh, "last-modified", hdr::http_date(b.modified_ns));
            set(rh, "content-md5", B64.encode(md5));
            set(rh, "x-ms-request-server-encrypted", "true");
            Ok(r)
        }
        Operation::PutBlock => {
            let key = blob_key(t)?;
            let id = block_id(t)?;
            ops::check_block_id(&id)?;
            let sent_md5 = hdr::md5(h, "content-md5")?;
            let sent_crc = sent_crc64(h)?;
            // Since 2019-02-02 Azure returns a block's Content-MD5 only when the request carried
            // one; the MD5 is computed only to check it.
            let tap = body::tap(sent_md5.is_some(), sent_crc.is_some());
            let stored = ops::store(
                s,
                &key,
                body::pieces(body, Some(tap.clone())),
                edgeblob_meta::model::limits::MAX_BLOCK_SIZE,
            )
            .await?;
            let md5 = body::md5_of(&tap);
            if let Err(e) = check_digests(&tap, sent_md5, sent_crc) {
                s.give_back_refs(stored.chunks);
                return Err(e);
            }
            ops::stage(s, key, id, stored).await?;
            let mut r = respond(StatusCode::CREATED, body::empty());
            if let Some(m) = md5 {
                set(r.headers_mut(), "content-md5", B64.encode(m));
            }
            if let Some(c) = sent_crc {
                set(r.headers_mut(), "x-ms-content-crc64", edgeblob_proto::crc64::to_header(c));
            }
            set(r.headers_mut(), "x-ms-request-server-encrypted", "true");
            Ok(r)
        }
        Operation::PutBlockList => {
            let key = blob_key(t)?;
            let sent_md5 = hdr::md5(h, "content-md5")?;
            let xml_body = body::collect(body, 16 << 20).await?;
            if let Some(m) = sent_md5 {
                let got: [u8; 16] = md5::Md5::digest(&xml_body).into();
                if got != m {
                    return Err(ErrorCode::Md5Mismatch.into());
                }
            }
            let list = xml::parse_block_list(&xml_body)?
                .into_iter()
                .map(|(kind, id)| match kind {
                    xml::BlockKind::Committed => BlockListItem::Committed(id),
                    xml::BlockKind::Uncommitted => BlockListItem::Uncommitted(id),
                    xml::BlockKind::Latest => BlockListItem::Latest(id),
                })
                .collect();
            let b = ops::commit_block_list(s, key, list, props_from(h, false, &meta_names)?, cond).await?;
            let mut r = respond(StatusCode::CREATED, body::empty());
            set(r.headers_mut(), "etag", quoted_etag(b.etag));
            set(r.headers_mut(), "last-modified", hdr::http_date(b.modified_ns));
            set(r.headers_mut(), "x-ms-request-server-encrypted", "true");
            Ok(r)
        }
        Operation::GetBlockList => {
            let key = blob_key(t)?;
            let which = t.param("blocklisttype").unwrap_or("committed").to_ascii_lowercase();
            let (want_committed, want_uncommitted) = match which.as_str() {
                "committed" => (true, false),
                "uncommitted" => (false, true),
                "all" => (true, true),
                _ => return Err(ErrorCode::InvalidQueryParameterValue.into()),
            };
            let bl = ops::get_block_list(s, key.clone()).await?;
            let committed = bl.committed.clone().unwrap_or_default();
            let x = xml::block_list(
                want_committed.then_some(committed.as_slice()),
                want_uncommitted.then_some(bl.uncommitted.as_slice()),
            );
            let mut r = xml_response(x);
            set(r.headers_mut(), "x-ms-blob-content-length", bl.blob_size.to_string());
            if bl.committed.is_some() {
                if let Ok(b) = ops::head_blob(s, key, Default::default()).await {
                    set(r.headers_mut(), "etag", quoted_etag(b.etag));
                    set(r.headers_mut(), "last-modified", hdr::http_date(b.modified_ns));
                }
            }
            Ok(r)
        }
        Operation::GetBlobProperties => {
            let b = ops::head_blob(s, blob_key(t)?, cond).await?;
            let mut r = respond(StatusCode::OK, body::empty());
            let rh = r.headers_mut();
            blob_headers(rh, &b);
            set(rh, "content-length", b.size.to_string());
            if let Some(m) = b.props.content_md5 {
                set(rh, "content-md5", B64.encode(m));
            }
            set(rh, "x-ms-access-tier", "Hot");
            set(rh, "x-ms-access-tier-inferred", "true");
            Ok(r)
        }
        Operation::GetBlob => {
            let key = blob_key(t)?;
            let mut requested = range::requested(h)?;
            if let (Some(_), Some(if_range)) = (requested, hdr::get(h, "if-range")) {
                // The range holds only if the blob is still the one the client has; otherwise
                // the whole blob is sent.
                let cur = ops::head_blob(s, key.clone(), Default::default()).await?;
                let same = match if_range.strip_prefix('"') {
                    Some(tag) => tag.trim_end_matches('"').eq_ignore_ascii_case(&etag_string(cur.etag)),
                    None => httpdate::parse_http_date(if_range)
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .is_some_and(|d| cur.modified_ns.div_euclid(1_000_000_000) <= d.as_secs() as i64),
                };
                if !same {
                    requested = None;
                }
            }
            let (b, (start, end), reader) = ops::open_read(s, key, requested, cond).await?;
            let partial = requested.is_some();
            let want_range_md5 = hdr::get(h, "x-ms-range-get-content-md5") == Some("true");
            let mut r = if want_range_md5 {
                if !partial || end - start > 4 << 20 {
                    return Err(ErrorCode::InvalidHeaderValue.into());
                }
                let data = reader.read_all().await?;
                let m: [u8; 16] = md5::Md5::digest(&data).into();
                let mut r = respond(StatusCode::PARTIAL_CONTENT, body::full(data));
                set(r.headers_mut(), "content-md5", B64.encode(m));
                r
            } else {
                respond(if partial { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK }, body::stream(reader).await?)
            };
            let rh = r.headers_mut();
            blob_headers(rh, &b);
            set(rh, "content-length", (end - start).to_string());
            if partial {
                set(rh, "content-range", range::content_range(start, end, b.size));
                if let Some(m) = b.props.content_md5 {
                    set(rh, "x-ms-blob-content-md5", B64.encode(m));
                }
            } else if let Some(m) = b.props.content_md5 {
                set(rh, "content-md5", B64.encode(m));
            }
            Ok(r)
        }
        Operation::DeleteBlob => {
            ops::delete_blob(s, blob_key(t)?, cond).await?;
            let mut r = respond(StatusCode::ACCEPTED, body::empty());
            set(r.headers_mut(), "x-ms-delete-type-permanent", "true");
            Ok(r)
        }
        Operation::SetBlobMetadata | Operation::SetBlobProperties => {
            let change = if op == Operation::SetBlobMetadata {
                PropsChange::Metadata(hdr::metadata(h, &meta_names)?)
            } else {
                PropsChange::Properties(Box::new(props_from(h, false, &meta_names)?))
            };
            let b = ops::set_blob_props(s, blob_key(t)?, change, cond).await?;
            let mut r = respond(StatusCode::OK, body::empty());
            set(r.headers_mut(), "etag", quoted_etag(b.etag));
            set(r.headers_mut(), "last-modified", hdr::http_date(b.modified_ns));
            Ok(r)
        }
        Operation::CopyBlob | Operation::PutBlobFromUrl => {
            let key = blob_key(t)?;
            let src_url = hdr::get(h, "x-ms-copy-source").ok_or(ErrorCode::MissingRequiredHeader)?.to_owned();
            let src = copy::open(s, ctx, &src_url, t, &host, h, None).await?;
            let limit = edgeblob_meta::model::limits::MAX_PUT_BLOB_SIZE;
            let (stored, src_props) = copy::store(s, &key, src, limit).await?;
            let is_copy_blob = op == Operation::CopyBlob;
            let keep_source_props = is_copy_blob || hdr::get(h, "x-ms-copy-source-blob-properties") != Some("false");
            let mut props = copy::merge_props(
                src_props.filter(|_| keep_source_props),
                props_from(h, false, &meta_names)?,
                is_copy_blob,
            );
            let id = copy::copy_id(s);
            props.copy = Some(edgeblob_meta::model::CopyInfo {
                id: id.clone(),
                source: src_url,
                completed_ns: crate::engine::shard::now_ns(),
                bytes: stored.len,
            });
            let b = ops::commit_single(s, key, stored, props, cond).await?;
            let mut r = respond(if is_copy_blob { StatusCode::ACCEPTED } else { StatusCode::CREATED }, body::empty());
            let rh = r.headers_mut();
            set(rh, "etag", quoted_etag(b.etag));
            set(rh, "last-modified", hdr::http_date(b.modified_ns));
            set(rh, "x-ms-request-server-encrypted", "true");
            if is_copy_blob {
                set(rh, "x-ms-copy-id", id);
                set(rh, "x-ms-copy-status", "success");
            } else if let Some(m) = b.props.content_md5 {
                set(rh, "content-md5", B64.encode(m));
            }
            Ok(r)
        }
        Operation::BlobBatch => {
            let ct = hdr::get(h, "content-type").unwrap_or("").to_owned();
            let boundary = edgeblob_proto::batch::boundary(&ct).ok_or(ErrorCode::InvalidHeaderValue)?.to_owned();
            let raw = body::collect(body, 4 << 20).await?;
            let text = std::str::from_utf8(&raw).map_err(|_| ErrorCode::InvalidInput)?;
            let subs = edgeblob_proto::batch::parse(text, &boundary)?;
            let out_boundary = format!("batchresponse_{}", copy::copy_id(s));
            let mut out = String::new();
            for sub in subs {
                let (status, reason, headers, body) = match run_batch_delete(s, ctx, &host, &sub, peer, t).await {
                    Ok(()) => (
                        202,
                        "Accepted",
                        vec![("x-ms-delete-type-permanent".to_owned(), "true".to_owned())],
                        String::new(),
                    ),
                    Err(e) => {
                        let status = e.status.map_or(e.code.status(), |s| s.as_u16());
                        let time = httpdate::fmt_http_date(std::time::SystemTime::now());
                        let x = xml::error(e.code.as_str(), &e.message, "", &time);
                        (status, "Error", vec![("x-ms-error-code".to_owned(), e.code.as_str().to_owned())], x)
                    }
                };
                let mut headers = headers;
                headers.push(("x-ms-version".into(), VERSION.into()));
                out.push_str(&edgeblob_proto::batch::response_part(
                    &out_boundary,
                    &sub.content_id,
                    status,
                    reason,
                    &headers,
                    &body,
                ));
            }
            out.push_str(&format!("--{out_boundary}--\r\n"));
            let mut r = respond(StatusCode::ACCEPTED, body::full(out));
            set(r.headers_mut(), "content-type", format!("multipart/mixed; boundary={out_boundary}"));
            Ok(r)
        }
        Operation::PutBlockFromUrl => {
            let key = blob_key(t)?;
            let id = block_id(t)?;
            ops::check_block_id(&id)?;
            let src_url = hdr::get(h, "x-ms-copy-source").ok_or(ErrorCode::MissingRequiredHeader)?.to_owned();
            let src = copy::open(s, ctx, &src_url, t, &host, h, copy::source_range(h)?).await?;
            let (stored, _) = copy::store(s, &key, src, edgeblob_meta::model::limits::MAX_BLOCK_SIZE).await?;
            ops::stage(s, key, id, stored).await?;
            let mut r = respond(StatusCode::CREATED, body::empty());
            set(r.headers_mut(), "x-ms-request-server-encrypted", "true");
            Ok(r)
        }
    }
}

/// One sub-request of a Blob Batch: Delete Blob, authorised on its own, within the batch's
/// container when the batch was sent to one.
async fn run_batch_delete(
    s: &Rc<Shard>,
    ctx: &HttpCtx,
    host: &str,
    sub: &edgeblob_proto::batch::SubRequest,
    peer: SocketAddr,
    outer: &addr::Target,
) -> Result<()> {
    let t = addr::parse(&sub.target, Some(host))?;
    let op = op::route(&sub.method.parse::<Method>().map_err(|_| ErrorCode::UnsupportedHttpVerb)?, &t, &sub.headers)?;
    if op != Operation::DeleteBlob {
        return Err(ApiError {
            message: "A batch may only hold Delete Blob requests.".into(),
            ..ErrorCode::InvalidInput.into()
        });
    }
    if t.account != outer.account || outer.container.as_ref().is_some_and(|c| t.container.as_ref() != Some(c)) {
        return Err(ErrorCode::InvalidInput.into());
    }
    authenticate(ctx, &t, op, &sub.method, &sub.headers, peer, None)?;
    ops::delete_blob(s, blob_key(&t)?, hdr::conditions(&sub.headers)).await?;
    Ok(())
}

fn xml_response(x: String) -> Response<RespBody> {
    let mut r = respond(StatusCode::OK, body::full(x));
    set(r.headers_mut(), "content-type", "application/xml");
    r
}
