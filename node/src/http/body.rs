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
    let s = futures::stream::unfold(reader, |mut r| async move {
        let piece = r.next().await?;
        Some((piece.map(Frame::data).map_err(|e| std::io::Error::other(e.to_string())), r))
    });
    Box::pin(StreamBody::new(s))
}

/// A shared MD5 of what passed through a body stream.
pub type Md5Tap = Rc<RefCell<Md5>>;

pub fn md5_tap() -> Md5Tap {
    Rc::new(RefCell::new(Md5::new()))
}

pub fn md5_of(tap: &Md5Tap) -> [u8; 16] {
    tap.borrow().clone().finalize().into()
}

/// The request body as byte pieces, optionally hashed on the way.
pub fn pieces(body: Incoming, tap: Option<Md5Tap>) -> impl Stream<Item = std::io::Result<Bytes>> + Unpin {
    Box::pin(BodyStream::new(body).filter_map(move |frame| {
        let tap = tap.clone();
        async move {
            match frame {
                Ok(f) => {
                    let data = f.into_data().ok()?;
                    if let Some(t) = &tap {
                        t.borrow_mut().update(&data);
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
