//! Operations on a whole blob: Put Blob, Get Blob, Get Blob Properties, Delete Blob, Set Blob
//! Metadata, Set Blob Properties and Set Blob Tier.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use edgeblob_engine::{access_tier, ops, PropsChange};
use edgeblob_meta::listing::BlobSummary;
use edgeblob_meta::model::limits;
use edgeblob_proto::conditions::Conditions;
use edgeblob_proto::request::{
    AccessTier, BlobRef, BlobSettings, GetBlob, IfRange, Metadata, PutBlob, RangeDigest, MAX_RANGE_DIGEST,
};
use edgeblob_proto::{etag_string, headers as hdr, range, ErrorCode};
use http::{Response, StatusCode};
use hyper::body::Incoming;
use md5::Digest;

use super::auth;
use super::body::{self, RespBody};
use super::dispatch::Call;
use super::error::Result;
use super::model::{blob_key, props};
use super::read_through::{self, FromLake};
use super::response::{blob_headers, changed, respond, set};

pub async fn put(c: &Call<'_>, p: PutBlob, body: Incoming) -> Result<Response<RespBody>> {
    let key = blob_key(&p.blob);
    // Put Blob stores the body's MD5, so it is always computed.
    let tap = body::tap(true, p.content_crc64.is_some());
    let stored =
        ops::store(c.shard, &key, body::pieces(body, Some(tap.clone()), c.ctx.body_timeout), limits::MAX_PUT_BLOB_SIZE)
            .await?;
    if let Err(e) = body::check_digests(&tap, p.content_md5, p.content_crc64) {
        stored.give_back(c.shard);
        return Err(e.into());
    }
    let md5 = body::md5_of(&tap).unwrap_or_default();
    let mut props = props(p.settings);
    props.content_md5 = props.content_md5.or(Some(md5));
    let b = ops::commit_single(c.shard, key, stored, props, auth::write_conditions(&c.credential, p.conditions), None)
        .await?;
    let mut r = changed(StatusCode::CREATED, b.etag, b.modified_ns);
    set(r.headers_mut(), "content-md5", B64.encode(md5));
    set(r.headers_mut(), "x-ms-request-server-encrypted", "true");
    Ok(r)
}

pub async fn get(c: &Call<'_>, p: GetBlob) -> Result<Response<RespBody>> {
    let key = blob_key(&p.blob);
    // A range of a blob not here yet may come straight from the lake (not with If-Range or a
    // range's digest: the ordinary read answers those), and a whole one as it is fetched.
    let digest = p.range_digest.is_some();
    let pass = p.range.filter(|_| p.if_range.is_none() && !digest);
    let lake_may_answer = (p.range.is_none() && !digest) || pass.is_some();
    let from_lake = if lake_may_answer {
        read_through::before_get(c.shard, &c.ctx.links, &key, pass, &p.conditions).await?
    } else {
        read_through::before_read(c.shard, &c.ctx.links, &key).await?;
        None
    };
    let (b, (start, end), partial, mut r) = match from_lake {
        Some(FromLake { blob, span, partial, body }) => {
            let body = body::stream_of(body).await.map_err(|e| read_through::lake_unavailable(&e.to_string()))?;
            let status = if partial { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
            (blob, span, partial, respond(status, body))
        }
        None => from_flash(c, key, p).await?,
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
    super::response::keep_meta_case(&mut r, &b.props.metadata);
    Ok(r)
}

/// Get Blob from flash: the blob, the span served, whether it is a range, and the answer (its
/// blob headers still to be set).
async fn from_flash(
    c: &Call<'_>,
    key: edgeblob_meta::model::BlobKey,
    p: GetBlob,
) -> Result<(BlobSummary, (u64, u64), bool, Response<RespBody>)> {
    let mut requested = p.range;
    if let (Some(_), Some(if_range)) = (requested, &p.if_range) {
        // The range holds only if the blob is still the one the client has; otherwise the
        // whole blob is sent.
        let cur = ops::head_blob(c.shard, key.clone(), Default::default()).await?;
        let same = match if_range {
            IfRange::ETag(tag) => tag.eq_ignore_ascii_case(&etag_string(cur.etag)),
            IfRange::Date(secs) => cur.modified_ns.div_euclid(1_000_000_000) <= *secs,
        };
        if !same {
            requested = None;
        }
    }
    let (b, span, reader) = ops::open_read(c.shard, key, requested, p.conditions).await?;
    let partial = requested.is_some();
    let r = if let Some(digest) = p.range_digest {
        // Azure gives a digest of a range of 4 MiB at most, and of nothing else.
        if !partial || span.1 - span.0 > MAX_RANGE_DIGEST {
            return Err(ErrorCode::InvalidHeaderValue.into());
        }
        let data = reader.read_all().await?;
        let (name, value) = match digest {
            RangeDigest::Md5 => ("content-md5", B64.encode(<[u8; 16]>::from(md5::Md5::digest(&data)))),
            RangeDigest::Crc64 => {
                ("x-ms-content-crc64", edgeblob_proto::crc64::to_header(edgeblob_proto::crc64::update(0, &data)))
            }
        };
        let mut r = respond(StatusCode::PARTIAL_CONTENT, body::full(data));
        set(r.headers_mut(), name, value);
        r
    } else {
        respond(if partial { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK }, body::stream(reader).await?)
    };
    Ok((b, span, partial, r))
}

/// A blob's properties, as Get Blob Properties answers them (from its lake, for a linked
/// container's blob not here yet).
pub async fn properties(c: &Call<'_>, blob: BlobRef, cond: Conditions) -> Result<BlobSummary> {
    let key = blob_key(&blob);
    Ok(match super::read_through::properties_linked(c.shard, &c.ctx.links, &key, &cond).await {
        Some(b) => b,
        None => {
            super::read_through::before_read(c.shard, &c.ctx.links, &key).await?;
            ops::head_blob(c.shard, key, cond).await?
        }
    })
}

pub async fn get_properties(c: &Call<'_>, blob: BlobRef, cond: Conditions) -> Result<Response<RespBody>> {
    let b = properties(c, blob, cond).await?;
    let mut r = respond(StatusCode::OK, body::empty());
    let rh = r.headers_mut();
    blob_headers(rh, &b);
    set(rh, "content-length", b.size.to_string());
    if let Some(m) = b.props.content_md5 {
        set(rh, "content-md5", B64.encode(m));
    }
    let (tier, inferred, changed) = access_tier_of(&b.props);
    set(rh, "x-ms-access-tier", tier);
    if inferred {
        set(rh, "x-ms-access-tier-inferred", "true");
    }
    if let Some(ns) = changed {
        set(rh, "x-ms-access-tier-change-time", hdr::http_date(ns));
    }
    super::response::keep_meta_case(&mut r, &b.props.metadata);
    Ok(r)
}

/// A blob's access tier as Azure reports it: the one set, or Hot (the account's default),
/// inferred; and when Set Blob Tier last changed it.
pub fn access_tier_of(props: &edgeblob_meta::model::BlobProps) -> (&'static str, bool, Option<i64>) {
    match access_tier::of(props) {
        Some(t) => (t.tier.as_str(), false, t.changed_ns),
        None => (AccessTier::Hot.as_str(), true, None),
    }
}

/// Set Blob Tier: 200, the blob's ETag and Last-Modified unchanged.
pub async fn set_tier(c: &Call<'_>, blob: BlobRef, tier: AccessTier) -> Result<Response<RespBody>> {
    ops::set_blob_props(c.shard, blob_key(&blob), PropsChange::Tier(tier), Conditions::default()).await?;
    Ok(respond(StatusCode::OK, body::empty()))
}

pub async fn delete(c: &Call<'_>, blob: BlobRef, cond: Conditions) -> Result<Response<RespBody>> {
    ops::delete_blob(c.shard, blob_key(&blob), cond).await?;
    let mut r = respond(StatusCode::ACCEPTED, body::empty());
    set(r.headers_mut(), "x-ms-delete-type-permanent", "true");
    Ok(r)
}

pub async fn set_metadata(c: &Call<'_>, blob: BlobRef, md: Metadata, cond: Conditions) -> Result<Response<RespBody>> {
    let b = ops::set_blob_props(c.shard, blob_key(&blob), PropsChange::Metadata(md), cond).await?;
    let mut r = changed(StatusCode::OK, b.etag, b.modified_ns);
    set(r.headers_mut(), "x-ms-request-server-encrypted", "true");
    Ok(r)
}

pub async fn set_properties(
    c: &Call<'_>,
    blob: BlobRef,
    settings: BlobSettings,
    cond: Conditions,
) -> Result<Response<RespBody>> {
    let change = PropsChange::Properties(Box::new(props(settings)));
    let b = ops::set_blob_props(c.shard, blob_key(&blob), change, cond).await?;
    Ok(changed(StatusCode::OK, b.etag, b.modified_ns))
}
