//! Building responses: the headers every answer carries, blob and container headers, and
//! errors in Azure's form (XML body plus `x-ms-error-code`; HEAD gets the header only).

use edgeblob_meta::listing::BlobSummary;
use edgeblob_meta::model::Metadata;
use edgeblob_proto::{etag_string, headers as hdr, xml};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::body::{self, RespBody};
use super::error::ApiError;

/// The service version the node answers with.
pub const VERSION: &str = "2026-10-06";

pub fn respond(status: StatusCode, body: RespBody) -> Response<RespBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r
}

/// An empty answer with the ETag and Last-Modified of what the request changed.
pub fn changed(status: StatusCode, etag: u64, modified_ns: i64) -> Response<RespBody> {
    let mut r = respond(status, body::empty());
    set_version(r.headers_mut(), etag, modified_ns);
    r
}

pub fn xml_response(x: String) -> Response<RespBody> {
    let mut r = respond(StatusCode::OK, body::full(x));
    set(r.headers_mut(), "content-type", "application/xml");
    r
}

/// Sets a header; a value that cannot be a header value (it came from stored data) is left out.
pub fn set(h: &mut HeaderMap, name: &'static str, value: impl AsRef<str>) {
    if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
        h.insert(name, v);
    }
}

/// ETag and Last-Modified.
pub fn set_version(h: &mut HeaderMap, etag: u64, modified_ns: i64) {
    set(h, "etag", quoted_etag(etag));
    set(h, "last-modified", hdr::http_date(modified_ns));
}

pub fn quoted_etag(etag: u64) -> String {
    format!("\"{}\"", etag_string(etag))
}

/// A response extension: the metadata names its headers carry, in the case they were stored
/// in, for the connection's writer to put back (hyper writes header names in lower case; see
/// `sniff`).
#[derive(Debug, Clone)]
pub struct MetaCase(pub Vec<String>);

/// Asks for `md`'s names to go out in their stored case (only those with upper-case letters).
pub fn keep_meta_case<B>(r: &mut Response<B>, md: &Metadata) {
    let names: Vec<String> =
        md.iter().filter(|(k, _)| k.bytes().any(|b| b.is_ascii_uppercase())).map(|(k, _)| k.clone()).collect();
    if !names.is_empty() {
        r.extensions_mut().insert(MetaCase(names));
    }
}

pub fn put_metadata(h: &mut HeaderMap, md: &Metadata) {
    // The node's own entries (a blob's tier) are never shown as metadata.
    for (k, v) in md.iter().filter(|(k, _)| !hdr::is_reserved_metadata_name(k)) {
        if let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(format!("x-ms-meta-{k}").as_bytes()), HeaderValue::from_str(v))
        {
            h.append(name, value);
        }
    }
}

/// The headers of Get Blob and Get Blob Properties.
pub fn blob_headers(h: &mut HeaderMap, b: &BlobSummary) {
    set_version(h, b.etag, b.modified_ns);
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
    if let Some(c) = &b.props.copy {
        set(h, "x-ms-copy-id", &c.id);
        set(h, "x-ms-copy-status", "success");
        // Stored without its signature since it is recorded; redacted again for older records.
        set(h, "x-ms-copy-source", edgeblob_proto::sas::redact_signature(&c.source));
        set(h, "x-ms-copy-progress", format!("{}/{}", c.bytes, c.bytes));
        set(h, "x-ms-copy-completion-time", hdr::http_date(c.completed_ns));
    }
}

pub fn error(e: ApiError, head: bool, request_id: &str) -> Response<RespBody> {
    let status = e.status();
    let body = if head || status == StatusCode::NOT_MODIFIED {
        body::empty()
    } else {
        let time = xml::error_time(edgeblob_engine::shard::now_ns());
        body::full(xml::error_with_detail(e.code.as_str(), &e.message, e.detail.as_deref(), request_id, &time))
    };
    let mut r = respond(status, body);
    let h = r.headers_mut();
    if status != StatusCode::NOT_MODIFIED {
        h.insert("x-ms-error-code", HeaderValue::from_static(e.code.as_str()));
        if !head {
            h.insert("content-type", HeaderValue::from_static("application/xml"));
        }
    }
    for (k, v) in e.headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    r
}

/// A request id in the form Azure uses (a UUID-shaped value, unique per node run).
pub fn request_id(shard: usize, seq: u64) -> String {
    let t = edgeblob_engine::shard::now_ns() as u64;
    uuid_form(xxhash_rust::xxh3::xxh3_128(&[t.to_le_bytes(), seq.to_le_bytes(), (shard as u64).to_le_bytes()].concat()))
}

/// A 128-bit value written as a UUID (8-4-4-4-12 hex), the form Azure's ids take.
pub fn uuid_form(x: u128) -> String {
    let s = format!("{x:032x}");
    format!("{}-{}-{}-{}-{}", &s[0..8], &s[8..12], &s[12..16], &s[16..20], &s[20..32])
}
