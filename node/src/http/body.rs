//! Bodies: request bodies as a stream of byte pieces (hashed as they pass when asked), response
//! bodies whole or streamed from a blob reader. Nothing is buffered whole but a Put Block List.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use edgeblob_proto::ErrorCode;
use futures::{Stream, StreamExt};
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use md5::{Digest, Md5};

use edgeblob_engine::error::EngineError;
use edgeblob_engine::read::BlobReader;

/// A response body. Not `Send`: a blob reader belongs to its shard, as does the connection.
pub type RespBody = std::pin::Pin<Box<dyn hyper::body::Body<Data = Bytes, Error = std::io::Error>>>;

pub fn full(b: impl Into<Bytes>) -> RespBody {
    Box::pin(Full::new(b.into()).map_err(|never| match never {}))
}

pub fn empty() -> RespBody {
    full(Bytes::new())
}

/// Streams a blob reader out. The first piece is read before the answer starts, so a small
/// blob leaves with its headers in one write (one segment instead of two, half the loopback
/// and syscall cost of a 4 KiB GET), and a failure to read it is an error answer rather than a
/// body cut short.
pub async fn stream(mut reader: BlobReader) -> Result<RespBody, EngineError> {
    let first = match reader.next().await {
        None => return Ok(empty()),
        Some(piece) => piece?,
    };
    let rest = reader.into_stream().map(|piece| piece.map(Frame::data));
    let s = futures::stream::once(std::future::ready(Ok(Frame::data(first)))).chain(rest);
    Ok(Box::pin(StreamBody::new(s)))
}

/// Streams pieces out, the first read before the answer starts (as [`stream`]): a failure
/// before any byte is an error answer.
pub async fn stream_of<S>(mut pieces: S) -> std::io::Result<RespBody>
where
    S: Stream<Item = std::io::Result<Bytes>> + Unpin + 'static,
{
    let first = match pieces.next().await {
        None => return Ok(empty()),
        Some(piece) => piece?,
    };
    let s = futures::stream::once(std::future::ready(Ok(first))).chain(pieces).map(|piece| piece.map(Frame::data));
    Ok(Box::pin(StreamBody::new(s)))
}

/// Digests of what passed through a body stream, each only when needed: MD5 costs more CPU
/// than storing the bytes (over half of a Put Block's, measured), so it is computed for Put
/// Blob (which stores it) and where the client sent one to check; CRC-64 where one was sent.
pub struct Digests {
    md5: Option<Md5>,
    crc64: Option<u64>,
}

pub type Tap = Rc<RefCell<Digests>>;

pub fn tap(md5: bool, crc64: bool) -> Tap {
    Rc::new(RefCell::new(Digests { md5: md5.then(Md5::new), crc64: crc64.then_some(0) }))
}

pub fn md5_of(tap: &Tap) -> Option<[u8; 16]> {
    tap.borrow().md5.clone().map(|m| m.finalize().into())
}

pub fn crc64_of(tap: &Tap) -> Option<u64> {
    tap.borrow().crc64
}

impl Digests {
    fn update(&mut self, data: &[u8]) {
        if let Some(m) = self.md5.as_mut() {
            m.update(data);
        }
        if let Some(c) = self.crc64.as_mut() {
            *c = edgeblob_proto::crc64::update(*c, data);
        }
    }
}

/// Hashes the pieces of any body stream (a copy's source) into `tap` as they pass.
pub fn hashed<S>(body: S, tap: Tap) -> impl Stream<Item = std::io::Result<Bytes>>
where
    S: Stream<Item = std::io::Result<Bytes>>,
{
    body.inspect(move |piece| {
        if let Ok(data) = piece {
            tap.borrow_mut().update(data);
        }
    })
}

/// Checks the transactional digests a client sent against what the body hashed to.
pub fn check_digests(tap: &Tap, md5: Option<[u8; 16]>, crc64: Option<u64>) -> Result<(), ErrorCode> {
    if md5.is_some() && md5 != md5_of(tap) {
        return Err(ErrorCode::Md5Mismatch);
    }
    if crc64.is_some() && crc64 != crc64_of(tap) {
        return Err(ErrorCode::Crc64Mismatch);
    }
    Ok(())
}

/// The request body as byte pieces, optionally hashed on the way. Each piece must come within
/// `idle` of the one before (of the request, for the first): a client that stops sending
/// mid-body gets an error, which ends the request, its slot and its connection, instead of
/// holding them for ever. Rate is not enforced, only progress: a slow link is not a stall.
pub fn pieces(body: Incoming, tap: Option<Tap>, idle: Duration) -> impl Stream<Item = std::io::Result<Bytes>> + Unpin {
    let frames = BodyStream::new(body);
    Box::pin(futures::stream::unfold(Some(frames), move |frames| {
        let tap = tap.clone();
        async move {
            // None: an error was returned; the stream ends after it.
            let mut frames = frames?;
            loop {
                let frame = match tokio::time::timeout(idle, frames.next()).await {
                    Err(_) => {
                        let e = std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("the client sent no body data for {} s", idle.as_secs()),
                        );
                        return Some((Err(e), None));
                    }
                    Ok(None) => return None,
                    Ok(Some(Err(e))) => return Some((Err(std::io::Error::other(e)), None)),
                    Ok(Some(Ok(f))) => f,
                };
                // Trailers carry no data.
                let Ok(data) = frame.into_data() else { continue };
                if let Some(t) = &tap {
                    t.borrow_mut().update(&data);
                }
                return Some((Ok(data), Some(frames)));
            }
        }
    }))
}

/// Reads a small body whole, refusing more than `max` bytes.
pub async fn collect(body: Incoming, max: usize, idle: Duration) -> Result<Bytes, ErrorCode> {
    let mut out = Vec::new();
    let mut s = pieces(body, None, idle);
    while let Some(p) = s.next().await {
        let p = p.map_err(|_| ErrorCode::InvalidInput)?;
        if out.len() + p.len() > max {
            return Err(ErrorCode::RequestBodyTooLarge);
        }
        out.extend_from_slice(&p);
    }
    Ok(Bytes::from(out))
}
