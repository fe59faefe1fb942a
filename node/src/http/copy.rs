//! Copies from a URL: Copy Blob and Put Blob From URL (a whole source into a blob, committed at
//! once: copies are synchronous here), Put Block From URL (a source range staged as a block).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use edgeblob_engine::reserved_metadata::client_metadata;
use edgeblob_engine::{ops, Shard};
use edgeblob_meta::model::{limits, BlobProps, CopyInfo, Metadata};
use edgeblob_proto::conditions::Conditions;
use edgeblob_proto::error_code::ErrorCode;
use edgeblob_proto::headers::is_reserved_metadata_name;
use edgeblob_proto::request::{BlobRef, CopyFromUrl, PutBlockFromUrl};
use http::{Response, StatusCode};

use super::auth;
use super::body::{self, RespBody};
use super::copy_source;
use super::dispatch::Call;
use super::error::Result;
use super::model::{blob_key, props};
use super::response::{changed, respond, set};

pub async fn copy_blob(c: &Call<'_>, p: CopyFromUrl) -> Result<Response<RespBody>> {
    let (b, id) = copy_whole(c, p, true).await?;
    let mut r = changed(StatusCode::ACCEPTED, b.etag, b.modified_ns);
    let rh = r.headers_mut();
    set(rh, "x-ms-request-server-encrypted", "true");
    set(rh, "x-ms-copy-id", id);
    set(rh, "x-ms-copy-status", "success");
    Ok(r)
}

/// Abort Copy Blob. Copies complete before they are answered here, so none is ever pending: the
/// blob's last copy id is answered 409 `NoPendingCopyOperation`, any other 409
/// `CopyIdMismatch`, as Azure answers for a copy that has completed. Nothing changes.
pub async fn abort_copy_blob(c: &Call<'_>, blob: BlobRef, copy_id: &str) -> Result<Response<RespBody>> {
    let b = super::blobs::properties(c, blob, Conditions::default()).await?;
    match &b.props.copy {
        Some(copy) if copy.id.eq_ignore_ascii_case(copy_id) => Err(ErrorCode::NoPendingCopyOperation.into()),
        _ => Err(ErrorCode::CopyIdMismatch.into()),
    }
}

pub async fn put_blob_from_url(c: &Call<'_>, p: CopyFromUrl) -> Result<Response<RespBody>> {
    // Put Blob From URL takes the source's properties, not its metadata.
    let (b, _) = copy_whole(c, p, false).await?;
    let mut r = changed(StatusCode::CREATED, b.etag, b.modified_ns);
    let rh = r.headers_mut();
    set(rh, "x-ms-request-server-encrypted", "true");
    if let Some(m) = b.props.content_md5 {
        set(rh, "content-md5", B64.encode(m));
    }
    Ok(r)
}

/// Stores the whole source and commits it as the blob; returns the blob and the copy's id.
async fn copy_whole(
    c: &Call<'_>,
    p: CopyFromUrl,
    source_metadata: bool,
) -> Result<(edgeblob_meta::listing::BlobSummary, String)> {
    let key = blob_key(&p.blob);
    let (stored, src_props, verified_md5) = fetch(c, &key, &p.source, limits::MAX_PUT_BLOB_SIZE).await?;
    let mut props = merge_props(src_props.filter(|_| p.keep_source_props), props(p.settings), source_metadata);
    // Bytes checked against the MD5 the client gave for the whole source have that MD5.
    props.content_md5 = props.content_md5.or(verified_md5);
    let id = copy_id(c.shard);
    props.copy = Some(CopyInfo {
        id: id.clone(),
        // Readers of the copy see where it came from, never the source's credential.
        source: edgeblob_proto::sas::redact_signature(&p.source.url),
        completed_ns: edgeblob_engine::shard::now_ns(),
        bytes: stored.len,
    });
    let b = ops::commit_single(c.shard, key, stored, props, auth::write_conditions(&c.credential, p.conditions), None)
        .await?;
    Ok((b, id))
}

pub async fn put_block_from_url(c: &Call<'_>, p: PutBlockFromUrl) -> Result<Response<RespBody>> {
    let key = blob_key(&p.blob);
    ops::check_block_id(&p.block_id)?;
    let (stored, _, md5) = fetch(c, &key, &p.source, limits::MAX_BLOCK_SIZE).await?;
    ops::stage(c.shard, key, p.block_id, stored).await?;
    let mut r = respond(StatusCode::CREATED, body::empty());
    let rh = r.headers_mut();
    if let Some(m) = md5 {
        set(rh, "content-md5", B64.encode(m));
    }
    if let Some(crc) = p.source.crc64 {
        set(rh, "x-ms-content-crc64", edgeblob_proto::crc64::to_header(crc));
    }
    set(rh, "x-ms-request-server-encrypted", "true");
    Ok(r)
}

/// Fetches a copy's source into chunks on this shard, checking what arrived against the
/// `x-ms-source-content-md5` / `-crc64` the client sent (the chunks are given back on a
/// mismatch). Returns the stored bytes, the source's properties, and the checked MD5.
async fn fetch(
    c: &Call<'_>,
    key: &edgeblob_meta::model::BlobKey,
    source: &edgeblob_proto::request::CopySource,
    max_len: u64,
) -> Result<(edgeblob_engine::write::Stored, Option<BlobProps>, Option<[u8; 16]>)> {
    let src = copy_source::open(c, source).await?;
    let tap = body::tap(source.md5.is_some(), source.crc64.is_some());
    let stored = ops::store(c.shard, key, body::hashed(src.body, tap.clone()), max_len).await?;
    if let Err(e) = body::check_digests(&tap, source.md5, source.crc64) {
        stored.give_back(c.shard);
        return Err(e.into());
    }
    Ok((stored, src.props, source.md5))
}

/// A copy id in Azure's UUID form.
pub fn copy_id(s: &Shard) -> String {
    super::response::uuid_form(xxhash_rust::xxh3::xxh3_128(&s.node.stamp().to_le_bytes()))
}

/// The destination's metadata: the request's, else (Copy Blob) the source's client metadata;
/// the node's own entries (the tier) come from the request only, never from the source.
fn merge_metadata(source: Metadata, request: Metadata, keep_source: bool) -> Metadata {
    let client = client_metadata(&request);
    let mut out = if client.is_empty() && keep_source { client_metadata(&source) } else { client };
    out.extend(request.into_iter().filter(|(k, _)| is_reserved_metadata_name(k)));
    out
}

/// The destination's properties: the source's where the request does not set them.
fn merge_props(source: Option<BlobProps>, request: BlobProps, keep_source_metadata: bool) -> BlobProps {
    let src = source.unwrap_or_default();
    BlobProps {
        content_type: request.content_type.or(src.content_type),
        content_encoding: request.content_encoding.or(src.content_encoding),
        content_language: request.content_language.or(src.content_language),
        content_disposition: request.content_disposition.or(src.content_disposition),
        cache_control: request.cache_control.or(src.cache_control),
        content_md5: request.content_md5.or(src.content_md5),
        metadata: merge_metadata(src.metadata, request.metadata, keep_source_metadata),
        copy: None,
    }
}
