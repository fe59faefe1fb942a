//! Building responses: the headers every answer carries, and errors in Azure's form (XML body
//! plus `x-ms-error-code`; HEAD gets the header only).

use edgeblob_proto::{xml, ErrorCode};
use http::{HeaderValue, Response, StatusCode};

use super::body::{self, RespBody};
use crate::engine::EngineError;

/// The service version the node answers with.
pub const VERSION: &str = "2026-10-06";

/// An error answer: the code, a message, and headers it needs (Content-Range on 416).
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub status: Option<StatusCode>,
    pub headers: Vec<(&'static str, String)>,
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        ApiError { code, message: code.message().to_owned(), status: None, headers: Vec::new() }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let mut a = ApiError::from(e.code());
        match &e {
            EngineError::InvalidRange { size } => a.headers.push(("content-range", format!("bytes */{size}"))),
            EngineError::NotModified => a.status = Some(StatusCode::NOT_MODIFIED),
            EngineError::Busy(_) => a.headers.push(("retry-after", "1".into())),
            EngineError::InvalidBlockList(detail)
            | EngineError::InvalidBlobOrBlock(detail)
            | EngineError::InvalidBlockId(detail) => a.message = format!("{} {detail}", a.message),
            EngineError::Corrupt(_) | EngineError::Io(_) | EngineError::Log(_) | EngineError::OutOfSpace => {
                tracing::error!(%e, "request failed inside the engine")
            }
            _ => {}
        }
        a
    }
}

pub fn error(e: ApiError, head: bool, request_id: &str) -> Response<RespBody> {
    let status =
        e.status.unwrap_or_else(|| StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    let body = if head || status == StatusCode::NOT_MODIFIED {
        body::empty()
    } else {
        let time = httpdate::fmt_http_date(std::time::SystemTime::now());
        body::full(xml::error(e.code.as_str(), &e.message, request_id, &time))
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
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
    let t = crate::engine::shard::now_ns() as u64;
    uuid_form(xxhash_rust::xxh3::xxh3_128(&[t.to_le_bytes(), seq.to_le_bytes(), (shard as u64).to_le_bytes()].concat()))
}

/// A 128-bit value written as a UUID (8-4-4-4-12 hex), the form Azure's ids take.
pub fn uuid_form(x: u128) -> String {
    let s = format!("{x:032x}");
    format!("{}-{}-{}-{}-{}", &s[0..8], &s[8..12], &s[12..16], &s[16..20], &s[20..32])
}
