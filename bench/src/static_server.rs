//! The loopback ceiling: a minimal HTTP server that keeps blobs in memory and does nothing else
//! (no authentication, no durability, no checksums), built like the node (one thread and one
//! SO_REUSEPORT listener per core, hyper HTTP/1.1). What it serves per second is what this
//! machine's HTTP stack and the harness can do; the node's figures are set against it. It also
//! stands in for the central lake as a copy source (ranged GETs).
//!
//! It answers Put Blob, Put Block, Put Block List, Get Blob (with `Range`/`x-ms-range`), HEAD
//! and Create Container; anything else gets an empty 200 (an empty listing).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

type Blobs = HashMap<String, (Bytes, Option<HeaderValue>)>;

#[derive(Default)]
struct Store {
    blobs: RwLock<Blobs>,
    blocks: RwLock<HashMap<(String, String), Bytes>>,
}

/// Starts `threads` server threads on `addr` (port 0: any); returns the bound address.
pub fn start(addr: SocketAddr, threads: usize) -> std::io::Result<SocketAddr> {
    let store = Arc::new(Store::default());
    let first = edgeblob::http::bind(addr)?;
    let bound = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..threads.max(1) {
        listeners.push(edgeblob::http::bind(bound)?);
    }
    for l in listeners {
        let store = store.clone();
        std::thread::Builder::new().name("static-http".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return eprintln!("static server: {e}"),
            };
            rt.block_on(async move {
                let Ok(l) = tokio::net::TcpListener::from_std(l) else { return };
                while let Ok((tcp, _)) = l.accept().await {
                    let _ = tcp.set_nodelay(true);
                    let store = store.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| handle(store.clone(), req));
                        let _ =
                            hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
                    });
                }
            });
        })?;
    }
    Ok(bound)
}

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v))
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// `bytes=a-b` (or `a-`) against a length; None when absent or unsatisfiable.
fn range(v: Option<&HeaderValue>, len: u64) -> Option<(u64, u64)> {
    let (a, b) = v?.to_str().ok()?.strip_prefix("bytes=")?.split_once('-')?;
    let a: u64 = a.parse().ok()?;
    let b: u64 = if b.is_empty() { len.checked_sub(1)? } else { b.parse::<u64>().ok()?.min(len.checked_sub(1)?) };
    (a <= b).then_some((a, b))
}

async fn handle(store: Arc<Store>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let method = req.method().clone();
    let meta = req.headers().get("x-ms-meta-benchdata").cloned();
    let rng = req.headers().get("x-ms-range").or(req.headers().get(http::header::RANGE)).cloned();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(empty(StatusCode::BAD_REQUEST)),
    };
    let read = |f: &dyn Fn(&Blobs) -> Response<Full<Bytes>>| f(&store.blobs.read().unwrap_or_else(|p| p.into_inner()));
    let resp = match method {
        Method::PUT if query.contains("restype=container") => empty(StatusCode::CREATED),
        Method::DELETE if query.contains("restype=container") => {
            // Frees the memory of a finished stage; the blobs are the whole cost of this server.
            let prefix = format!("{}/", path.trim_end_matches('/'));
            store.blobs.write().unwrap_or_else(|p| p.into_inner()).retain(|k, _| !k.starts_with(&prefix));
            store.blocks.write().unwrap_or_else(|p| p.into_inner()).retain(|(k, _), _| !k.starts_with(&prefix));
            empty(StatusCode::ACCEPTED)
        }
        Method::PUT if param(&query, "comp") == Some("block") => {
            let id = param(&query, "blockid").unwrap_or("").to_owned();
            store.blocks.write().unwrap_or_else(|p| p.into_inner()).insert((path, id), body);
            empty(StatusCode::CREATED)
        }
        Method::PUT if param(&query, "comp") == Some("blocklist") => {
            let text = String::from_utf8_lossy(&body);
            let mut data = Vec::new();
            let blocks = store.blocks.read().unwrap_or_else(|p| p.into_inner());
            for part in text.split("<Latest>").skip(1) {
                let id = part.split("</Latest>").next().unwrap_or("");
                let enc = percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC).to_string();
                match blocks.get(&(path.clone(), enc)) {
                    Some(b) => data.extend_from_slice(b),
                    None => return Ok(empty(StatusCode::BAD_REQUEST)),
                }
            }
            drop(blocks);
            store.blocks.write().unwrap_or_else(|p| p.into_inner()).retain(|(p, _), _| *p != path);
            store.blobs.write().unwrap_or_else(|p| p.into_inner()).insert(path, (Bytes::from(data), meta));
            empty(StatusCode::CREATED)
        }
        Method::PUT => {
            store.blobs.write().unwrap_or_else(|p| p.into_inner()).insert(path, (body, meta));
            empty(StatusCode::CREATED)
        }
        Method::GET | Method::HEAD if query.is_empty() || query.starts_with("sv=") || query.contains("sig=") => {
            read(&|blobs| match blobs.get(&path) {
                None => {
                    let mut r = empty(StatusCode::NOT_FOUND);
                    r.headers_mut().insert("x-ms-error-code", HeaderValue::from_static("BlobNotFound"));
                    r
                }
                Some((data, meta)) => {
                    let len = data.len() as u64;
                    let (status, slice) = match range(rng.as_ref(), len) {
                        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, data.slice(a as usize..=b as usize)),
                        None => (StatusCode::OK, data.clone()),
                    };
                    let n = slice.len();
                    let mut r = Response::new(Full::new(if method == Method::HEAD { Bytes::new() } else { slice }));
                    *r.status_mut() = status;
                    r.headers_mut().insert(http::header::CONTENT_LENGTH, HeaderValue::from(n));
                    r.headers_mut().insert("x-ms-blob-type", HeaderValue::from_static("BlockBlob"));
                    if let Some(m) = meta {
                        r.headers_mut().insert("x-ms-meta-benchdata", m.clone());
                    }
                    r
                }
            })
        }
        _ => {
            let mut r = Response::new(Full::new(Bytes::from_static(
                b"<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults><Blobs/><NextMarker/></EnumerationResults>",
            )));
            r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
            r
        }
    };
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_clamp_to_the_blob() {
        let hv = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(range(Some(&hv("bytes=0-9")), 100), Some((0, 9)));
        assert_eq!(range(Some(&hv("bytes=90-")), 100), Some((90, 99)));
        assert_eq!(range(Some(&hv("bytes=90-1000")), 100), Some((90, 99)));
        assert_eq!(range(Some(&hv("bytes=100-")), 100), None);
        assert_eq!(range(None, 100), None);
    }
}
