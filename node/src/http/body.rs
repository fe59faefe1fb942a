//! Bodies: request bodies as a stream of byte pieces (hashed as they pass when asked), response
//! bodies whole or streamed from a blob reader. Nothing is buffered whole but a Put Block List.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use md5::{Digest, Md5};

use crate::engine::read::BlobReader;

/// A response body. Not `Send`: a blob reader belongs to its shard, as does the connection.
pub type RespBody = std::pin::Pin<Box<dyn hyper::body::Body<Data = Bytes, Error = std::io::Error>>>;

pub fn full(b: impl Into<Bytes>) -> RespBody {
    Box::pin(Full::new(b.into()).map_err(|never| match never {}))
}

pub fn empty() -> RespBody {
    full(Bytes::new())
}

/// Streams a blob reader out.
pub fn stream(reader: BlobReader) -> RespBody {
    let s = reader.into_stream().map(|piece| piece.map(Frame::data));
    Box::pin(StreamBody::new(s))
}

/// Digests of what passed through a body stream: always the MD5 (Put Blob stores it), the
/// CRC-64 only when the client sent one to check.
pub struct Digests {
    md5: Md5,
    crc64: Option<u64>,
}

pub type Tap = Rc<RefCell<Digests>>;

pub fn tap(crc64: bool) -> Tap {
    Rc::new(RefCell::new(Digests { md5: Md5::new(), crc64: crc64.then_some(0) }))
}

pub fn md5_of(tap: &Tap) -> [u8; 16] {
    tap.borrow().md5.clone().finalize().into()
}

pub fn crc64_of(tap: &Tap) -> Option<u64> {
    tap.borrow().crc64
}

/// The request body as byte pieces, optionally hashed on the way.
pub fn pieces(body: Incoming, tap: Option<Tap>) -> impl Stream<Item = std::io::Result<Bytes>> + Unpin {
    Box::pin(BodyStream::new(body).filter_map(move |frame| {
        let tap = tap.clone();
        async move {
            match frame {
                Ok(f) => {
                    let data = f.into_data().ok()?;
                    if let Some(t) = &tap {
                        let mut d = t.borrow_mut();
                        d.md5.update(&data);
                        if let Some(c) = d.crc64.as_mut() {
                            *c = edgeblob_proto::crc64::update(*c, &data);
                        }
                    }
                    Some(Ok(data))
                }
                Err(e) => Some(Err(std::io::Error::other(e))),
            }
        }
    }))
}

/// Reads a small body whole, refusing more than `max` bytes.
pub async fn collect(body: Incoming, max: usize) -> Result<Bytes, edgeblob_proto::ErrorCode> {
    let mut out = Vec::new();
    let mut s = pieces(body, None);
    while let Some(p) = s.next().await {
        let p = p.map_err(|_| edgeblob_proto::ErrorCode::InvalidInput)?;
        if out.len() + p.len() > max {
            return Err(edgeblob_proto::ErrorCode::RequestBodyTooLarge);
        }
        out.extend_from_slice(&p);
    }
    Ok(Bytes::from(out))
}
