//! Every request's path: take a slot, address, route, authenticate, parse the operation's
//! parameters, and hand it to its family's handler. Every answer carries the common headers and
//! is logged with its request id, operation, status, bytes and duration.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use edgeblob_engine::Shard;
use edgeblob_proto::request::Request;
use edgeblob_proto::{addr, op};
use http::{HeaderValue, Method, Response};
use hyper::body::Incoming;
use tracing::Instrument;

use super::body::RespBody;
use super::error::{ApiError, Result};
use super::response::{self, VERSION};
use super::{auth, batch, blobs, blocks, containers, copy, service, HttpCtx};

/// What a handler knows of its request besides the operation's parameters.
pub struct Call<'a> {
    pub shard: &'a Rc<Shard>,
    pub ctx: &'a HttpCtx,
    /// The target as addressed (SharedKey and the service endpoint need its raw form).
    pub target: &'a addr::Target,
    /// The `Host` the client reached this node by.
    pub host: &'a str,
    pub peer: SocketAddr,
    /// How the request was authorised (a copy's source is checked against it too).
    pub credential: auth::Credential,
}

pub async fn handle(
    shard: Rc<Shard>,
    ctx: Rc<HttpCtx>,
    req: http::Request<Incoming>,
    peer: SocketAddr,
    names: &super::sniff::Names,
) -> Response<RespBody> {
    let started = Instant::now();
    let counters = ctx.stats.shard(shard.index);
    let _in_flight = counters.map(|c| c.enter());
    let declared_in = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let seq = ctx.next_request.get();
    ctx.next_request.set(seq + 1);
    let request_id = response::request_id(shard.index, seq);
    let head = req.method() == Method::HEAD;
    let client_request_id = req.headers().get("x-ms-client-request-id").cloned();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    // The address, parsed once: the request's, and the account whose CORS rules apply.
    let host = req.headers().get("host").and_then(|v| v.to_str().ok()).unwrap_or("");
    let target = addr::parse(&req.uri().to_string(), Some(host));
    // A browser's cross-origin request: its answer carries CORS headers where a rule admits it.
    let cors = match (req.headers().get("origin").and_then(|v| v.to_str().ok()), &target) {
        (Some(origin), Ok(t)) if method != Method::OPTIONS => Some((t.account.clone(), origin.to_owned())),
        _ => None,
    };
    let mut op_seen: Option<op::Operation> = None;
    // Metadata names as the client wrote them (hyper lower-cases header names), taken by every
    // request, answered or refused, so that the set never outlives its request.
    let meta_names = names.borrow_mut().take();
    // Past the bound, answer at once rather than queue without limit.
    let mut resp = match ctx.slots.take() {
        None => {
            if let Some(c) = counters {
                c.throttled();
            }
            response::error(ApiError::server_busy(), head, &request_id)
        }
        // What is logged while the request runs carries its id (the span's field) where debug
        // logging is on: an enabled span costs a small GET 8% of its CPU (performance.md).
        Some(_slot) => dispatch(&shard, &ctx, req, target, peer, &meta_names, &mut op_seen)
            .instrument(tracing::debug_span!("request", request_id = %request_id))
            .await
            .unwrap_or_else(|e| response::error(e, head, &request_id)),
    };
    if let Some((account, origin)) = cors {
        super::cors::decorate(&shard, &account, &origin, method.as_str(), &mut resp);
    }
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
    let op_name = op_seen.map_or("Unknown", |o| o.name());
    if let Some(c) = counters {
        // A body counts in once its request succeeded: a refused upload's body was not taken.
        let taken = if resp.status().is_success() { declared_in } else { 0 };
        c.answered(op_seen, status, micros, taken, if head { 0 } else { bytes });
    }
    // One line per request costs a formatted write per request (a tenth of a small GET's CPU):
    // server-side failures are logged always, the rest with RUST_LOG=edgeblob::http=debug.
    if status >= 500 {
        tracing::info!(request_id, shard = shard.index, op = op_name, %method, path, status, bytes, micros, "request");
    } else {
        tracing::debug!(request_id, shard = shard.index, op = op_name, %method, path, status, bytes, micros, "request");
    }
    resp
}

/// A request body sent chunked (`Transfer-Encoding`) is refused, as Azure requires a length on
/// every upload. It also closes the one door to request smuggling: hyper lets `Transfer-Encoding`
/// override a `Content-Length` sent beside it, which a proxy in front may have read the other way.
/// The connection is closed after the answer: what follows on it cannot be trusted to be a request.
fn length_required() -> ApiError {
    let mut e = ApiError::from(edgeblob_proto::ErrorCode::MissingContentLengthHeader);
    e.headers.push(("connection", "close".into()));
    e
}

async fn dispatch(
    shard: &Rc<Shard>,
    ctx: &HttpCtx,
    req: http::Request<Incoming>,
    target: std::result::Result<addr::Target, edgeblob_proto::ErrorCode>,
    peer: SocketAddr,
    meta_names: &[String],
    op_seen: &mut Option<op::Operation>,
) -> Result<Response<RespBody>> {
    if req.headers().contains_key("transfer-encoding") {
        return Err(length_required());
    }
    let target = target?;
    let host = req.headers().get("host").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    if req.method() == Method::OPTIONS {
        return super::cors::preflight(shard, &target.account, req.headers());
    }
    let op = op::route(req.method(), &target, req.headers())?;
    *op_seen = Some(op);
    // Draining (an operator's drain, Azure's notice of a redeploy): reads go on, writes are
    // sent away to retry, before any of their body is read.
    if !op.is_read() && ctx.lifecycle.refuses_writes() {
        if let Some(c) = ctx.stats.shard(shard.index) {
            c.throttled();
        }
        return Err(ApiError::server_busy());
    }
    let credential = auth::authenticate(ctx, &target, op, req.method().as_str(), req.headers(), peer, Some(shard))?;
    let request = Request::parse(op, &target, req.headers(), meta_names)?;
    // Only Get User Delegation Key answers with the version (its key's `skv`): no copy otherwise.
    let version = (op == op::Operation::GetUserDelegationKey)
        .then(|| req.headers().get("x-ms-version").and_then(|v| v.to_str().ok()).map(str::to_owned))
        .flatten();
    let body = req.into_body();
    let c = Call { shard, ctx, target: &target, host: &host, peer, credential };
    match request {
        Request::GetAccountInfo => Ok(service::get_account_info()),
        Request::GetUserDelegationKey => service::get_user_delegation_key(&c, version, body).await,
        Request::GetBlobServiceProperties => Ok(service::get_properties(&c)),
        Request::SetBlobServiceProperties => service::set_properties(&c, body).await,
        Request::ListContainers(p) => service::list_containers(&c, p),
        Request::CreateContainer { container, metadata, public_access } => {
            containers::create(&c, container, metadata, public_access).await
        }
        Request::DeleteContainer { container } => containers::delete(&c, container).await,
        Request::GetContainerProperties { container } => containers::get_properties(&c, container),
        Request::SetContainerMetadata { container, metadata } => {
            containers::set_metadata(&c, container, metadata).await
        }
        Request::GetContainerAcl { container } => containers::get_acl(&c, container),
        Request::SetContainerAcl { container, public_access } => {
            containers::set_acl(&c, container, public_access, body).await
        }
        Request::ListBlobs(p) => containers::list_blobs(&c, p).await,
        Request::PutBlob(p) => blobs::put(&c, p, body).await,
        Request::GetBlob(p) => blobs::get(&c, p).await,
        Request::GetBlobProperties { blob, conditions } => blobs::get_properties(&c, blob, conditions).await,
        Request::DeleteBlob { blob, conditions } => blobs::delete(&c, blob, conditions).await,
        Request::SetBlobTier { blob, tier } => blobs::set_tier(&c, blob, tier).await,
        Request::SetBlobMetadata { blob, metadata, conditions } => {
            blobs::set_metadata(&c, blob, metadata, conditions).await
        }
        Request::SetBlobProperties { blob, settings, conditions } => {
            blobs::set_properties(&c, blob, settings, conditions).await
        }
        Request::PutBlock(p) => blocks::put(&c, p, body).await,
        Request::PutBlockList(p) => blocks::put_list(&c, p, body).await,
        Request::GetBlockList { blob, list_type } => blocks::get_list(&c, blob, list_type).await,
        Request::CopyBlob(p) => copy::copy_blob(&c, p).await,
        Request::AbortCopyBlob { blob, copy_id } => copy::abort_copy_blob(&c, blob, &copy_id).await,
        Request::PutBlobFromUrl(p) => copy::put_blob_from_url(&c, p).await,
        Request::PutBlockFromUrl(p) => copy::put_block_from_url(&c, p).await,
        Request::BlobBatch(p) => batch::run(&c, p, body).await,
    }
}
