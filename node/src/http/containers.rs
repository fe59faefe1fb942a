//! Operations on a container: create, delete, properties, metadata, ACL, List Blobs.

use edgeblob_engine::container::{access_policies, client_metadata, AccessPolicy};
use edgeblob_engine::ops;
use edgeblob_meta::listing::{ListEntry, ListQuery};
use edgeblob_proto::request::{ContainerRef, ListBlobs, Metadata, PublicAccess};
use edgeblob_proto::{headers as hdr, sas, xml, ErrorCode};
use http::{Response, StatusCode};
use hyper::body::Incoming;

use super::body::{self, RespBody};
use super::dispatch::Call;
use super::error::Result;
use super::model::{access, access_header};
use super::response::{changed, put_metadata, respond, set, set_version, xml_response};
use super::service::service_endpoint;

/// The most bytes of a Set Container ACL body read.
const MAX_ACL_BODY: usize = 64 << 10;

pub async fn create(
    c: &Call<'_>,
    ctr: ContainerRef,
    metadata: Metadata,
    public_access: PublicAccess,
) -> Result<Response<RespBody>> {
    let made = ops::create_container(c.shard, ctr.account, ctr.container, metadata, access(public_access)).await?;
    Ok(changed(StatusCode::CREATED, made.etag, made.modified_ns))
}

pub async fn delete(c: &Call<'_>, ctr: ContainerRef) -> Result<Response<RespBody>> {
    ops::delete_container(c.shard, ctr.account, ctr.container).await?;
    Ok(respond(StatusCode::ACCEPTED, body::empty()))
}

pub fn get_properties(c: &Call<'_>, ctr: ContainerRef) -> Result<Response<RespBody>> {
    let found = c.shard.node.container(&ctr.account, &ctr.container).ok_or(ErrorCode::ContainerNotFound)?;
    let mut r = changed(StatusCode::OK, found.etag, found.modified_ns);
    let rh = r.headers_mut();
    set(rh, "x-ms-lease-state", "available");
    set(rh, "x-ms-lease-status", "unlocked");
    set(rh, "x-ms-has-immutability-policy", "false");
    set(rh, "x-ms-has-legal-hold", "false");
    if let Some(a) = access_header(found.public_access) {
        set(rh, "x-ms-blob-public-access", a);
    }
    let metadata = client_metadata(&found);
    put_metadata(rh, &metadata);
    super::response::keep_meta_case(&mut r, &metadata);
    Ok(r)
}

pub async fn set_metadata(c: &Call<'_>, ctr: ContainerRef, metadata: Metadata) -> Result<Response<RespBody>> {
    let done = ops::set_container_metadata(c.shard, ctr.account, ctr.container, metadata).await?;
    Ok(changed(StatusCode::OK, done.etag, done.modified_ns))
}

pub fn get_acl(c: &Call<'_>, ctr: ContainerRef) -> Result<Response<RespBody>> {
    let found = c.shard.node.container(&ctr.account, &ctr.container).ok_or(ErrorCode::ContainerNotFound)?;
    let policies: Vec<sas::StoredPolicy> = access_policies(&found)
        .into_iter()
        .map(|p| sas::StoredPolicy { id: p.id, start: p.start, expiry: p.expiry, permission: p.permission })
        .collect();
    let mut r = xml_response(xml::signed_identifiers(&policies));
    let rh = r.headers_mut();
    set_version(rh, found.etag, found.modified_ns);
    if let Some(a) = access_header(found.public_access) {
        set(rh, "x-ms-blob-public-access", a);
    }
    Ok(r)
}

pub async fn set_acl(
    c: &Call<'_>,
    ctr: ContainerRef,
    public_access: PublicAccess,
    body: Incoming,
) -> Result<Response<RespBody>> {
    let acl = body::collect(body, MAX_ACL_BODY, c.ctx.body_timeout).await?;
    let policies = xml::parse_signed_identifiers(&acl)?
        .into_iter()
        .map(|p| AccessPolicy { id: p.id, start: p.start, expiry: p.expiry, permission: p.permission })
        .collect();
    let done = ops::set_container_access(c.shard, ctr.account, ctr.container, access(public_access), policies).await?;
    Ok(changed(StatusCode::OK, done.etag, done.modified_ns))
}

pub async fn list_blobs(c: &Call<'_>, p: ListBlobs) -> Result<Response<RespBody>> {
    let q = ListQuery {
        prefix: p.prefix.clone(),
        delimiter: p.delimiter.clone(),
        marker: p.marker.clone(),
        max: p.max_results.value,
        uncommitted: p.include_uncommitted,
    };
    let page = match c.ctx.links.reading(&p.container.account, &p.container.container) {
        Some(link) => {
            super::read_through::ensure_container(c.shard, link).await?;
            super::linked_listing::page(c, link, q, p.include_metadata).await?
        }
        None => ops::list_blobs(c.shard, &p.container.account, &p.container.container, q).await?,
    };
    let endpoint = service_endpoint(c);
    let x = xml::list_blobs(&xml::ListBlobs {
        service_endpoint: &endpoint,
        container: &p.container.container,
        prefix: &p.prefix,
        marker: p.marker.as_deref(),
        max_results: p.max_results.sent.then_some(p.max_results.value),
        delimiter: p.delimiter.as_deref(),
        items: page
            .entries
            .iter()
            .map(|e| match e {
                ListEntry::Prefix(prefix) => xml::ListItem::Prefix(prefix),
                ListEntry::Blob(b) => {
                    let (access_tier, access_tier_inferred, changed) = super::blobs::access_tier_of(&b.props);
                    xml::ListItem::Blob(xml::BlobItem {
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
                        access_tier,
                        access_tier_inferred,
                        access_tier_change_time: changed.map(hdr::http_date),
                        metadata: p.include_metadata.then_some(b.props.metadata.as_slice()),
                    })
                }
            })
            .collect(),
        next_marker: page.next_marker.as_deref(),
    });
    Ok(xml_response(x))
}
