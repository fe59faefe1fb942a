//! Operations on blocks: Put Block, Put Block List, Get Block List.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use edgeblob_engine::{ops, BlockListItem};
use edgeblob_meta::model::limits;
use edgeblob_proto::request::{BlobRef, BlockListType, PutBlock, PutBlockList};
use edgeblob_proto::{xml, ErrorCode};
use http::{Response, StatusCode};
use hyper::body::Incoming;
use md5::Digest;

use super::auth::{self, Credential};
use super::body::{self, RespBody};
use super::dispatch::Call;
use super::error::Result;
use super::model::{blob_key, props};
use super::response::{changed, respond, set, set_version, xml_response};

/// The most bytes of a Put Block List body read (50,000 ids of 64 bytes, base64, in XML).
const MAX_BLOCK_LIST_BODY: usize = 16 << 20;

pub async fn put(c: &Call<'_>, p: PutBlock, body: Incoming) -> Result<Response<RespBody>> {
    let key = blob_key(&p.blob);
    ops::check_block_id(&p.block_id)?;
    // Since 2019-02-02 Azure returns a block's Content-MD5 only when the request carried one;
    // the MD5 is computed only to check it.
    let tap = body::tap(p.content_md5.is_some(), p.content_crc64.is_some());
    let stored =
        ops::store(c.shard, &key, body::pieces(body, Some(tap.clone()), c.ctx.body_timeout), limits::MAX_BLOCK_SIZE)
            .await?;
    if let Err(e) = body::check_digests(&tap, p.content_md5, p.content_crc64) {
        stored.give_back(c.shard);
        return Err(e.into());
    }
    ops::stage(c.shard, key, p.block_id, stored).await?;
    let mut r = respond(StatusCode::CREATED, body::empty());
    if let Some(m) = body::md5_of(&tap) {
        set(r.headers_mut(), "content-md5", B64.encode(m));
    }
    if let Some(crc) = p.content_crc64 {
        set(r.headers_mut(), "x-ms-content-crc64", edgeblob_proto::crc64::to_header(crc));
    }
    set(r.headers_mut(), "x-ms-request-server-encrypted", "true");
    Ok(r)
}

pub async fn put_list(c: &Call<'_>, p: PutBlockList, body: Incoming) -> Result<Response<RespBody>> {
    let xml_body = body::collect(body, MAX_BLOCK_LIST_BODY, c.ctx.body_timeout).await?;
    // The list's own MD5, checked when sent and answered always (Azure's Content-MD5 here is
    // that of the request, not of the blob).
    let list_md5: [u8; 16] = md5::Md5::digest(&xml_body).into();
    if p.content_md5.is_some_and(|m| m != list_md5) {
        return Err(ErrorCode::Md5Mismatch.into());
    }
    let list = xml::parse_block_list(&xml_body)?
        .into_iter()
        .map(|(kind, id)| match kind {
            xml::BlockKind::Committed => BlockListItem::Committed(id),
            xml::BlockKind::Uncommitted => BlockListItem::Uncommitted(id),
            xml::BlockKind::Latest => BlockListItem::Latest(id),
        })
        .collect();
    let cond = auth::write_conditions(&c.credential, p.conditions);
    let b = ops::commit_block_list(c.shard, blob_key(&p.blob), list, props(p.settings), cond, None).await?;
    let mut r = changed(StatusCode::CREATED, b.etag, b.modified_ns);
    set(r.headers_mut(), "x-ms-request-server-encrypted", "true");
    set(r.headers_mut(), "content-md5", B64.encode(list_md5));
    Ok(r)
}

pub async fn get_list(c: &Call<'_>, blob: BlobRef, list_type: BlockListType) -> Result<Response<RespBody>> {
    let key = blob_key(&blob);
    let (want_committed, want_uncommitted) = match list_type {
        BlockListType::Committed => (true, false),
        BlockListType::Uncommitted => (false, true),
        BlockListType::All => (true, true),
    };
    let here = match ops::get_block_list(c.shard, key.clone()).await {
        Ok(bl) => Some(bl),
        Err(edgeblob_engine::EngineError::BlobNotFound) => None,
        Err(e) => return Err(e.into()),
    };
    // A linked blob not here yet lists the lake's blocks (as it will once fetched), and what is
    // staged here for it.
    let mut lake_version = None;
    let bl = match super::read_through::block_list_from_lake(&c.ctx.links, &key, here.as_ref()).await {
        Some((b, committed)) => {
            let uncommitted = here.map(|bl| bl.uncommitted).unwrap_or_default();
            lake_version = Some((b.etag, b.modified_ns));
            edgeblob_engine::BlockList { committed: Some(committed), uncommitted, blob_size: b.size }
        }
        None => here.ok_or(ErrorCode::BlobNotFound)?,
    };
    // Anonymous readers of a public container see committed blocks only (Azure: the uncommitted
    // list is for the owner and for SAS holders that may read the blob). A blob that has only
    // uncommitted blocks does not exist for them.
    let public = c.credential == Credential::Anonymous;
    if public && bl.committed.is_none() {
        return Err(ErrorCode::BlobNotFound.into());
    }
    let uncommitted: &[(Vec<u8>, u64)] = if public { &[] } else { &bl.uncommitted };
    let committed = bl.committed.clone().unwrap_or_default();
    let x = xml::block_list(want_committed.then_some(committed.as_slice()), want_uncommitted.then_some(uncommitted));
    let mut r = xml_response(x);
    set(r.headers_mut(), "x-ms-blob-content-length", bl.blob_size.to_string());
    if let Some((etag, modified_ns)) = lake_version {
        set_version(r.headers_mut(), etag, modified_ns);
    } else if bl.committed.is_some() {
        if let Ok(b) = ops::head_blob(c.shard, key, Default::default()).await {
            set_version(r.headers_mut(), b.etag, b.modified_ns);
        }
    }
    Ok(r)
}
