//! A remote Blob endpoint that misbehaves, in front of a real one (Azurite, a node): it answers
//! some requests itself as rules say (503 ServerBusy with Retry-After, a connection cut before
//! the request is passed on, an answer lost after the remote acted, a flipped byte in a body)
//! and forwards the rest, and it records every request (time, method, path, the client's
//! request id, what was done, bytes each way) for tests to check what a client did. It can also
//! hold back requests (reads of ranges past an offset, or every PUT) until released, for tests
//! of what a client does meanwhile.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 503 `ServerBusy` with `Retry-After` of this many seconds.
    Busy(u64),
    /// The connection closed before the request is passed on: the remote did nothing.
    Cut,
    /// Passed on, then the connection closed instead of the answer: the remote acted and the
    /// client cannot know.
    LoseAnswer,
    /// Passed on, and one byte of the answer's body flipped (answers with a body only).
    Flip,
    /// Passed on, and this many bytes added to the answer's body (a remote sending more than
    /// was asked for).
    Grow(usize),
}

/// Which requests get a fault: each of the first `first`, then each later one with probability
/// `ratio`. The first rule that takes a request decides it.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub fault: Fault,
    pub first: usize,
    pub ratio: f64,
}

impl Rule {
    pub fn first(fault: Fault, n: usize) -> Rule {
        Rule { fault, first: n, ratio: 0.0 }
    }

    pub fn ratio(fault: Fault, ratio: f64) -> Rule {
        Rule { fault, first: 0, ratio }
    }
}

/// One request as the faulty remote saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub method: String,
    pub path_and_query: String,
    /// `x-ms-client-request-id`: the same on every attempt of one call.
    pub request_id: String,
    pub fault: Option<Fault>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

pub struct Faulty {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    hold: Arc<tokio::sync::watch::Sender<Hold>>,
}

/// Which requests wait until released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    Nothing,
    /// Reads of a range that starts at or past this offset.
    RangesFrom(u64),
    Puts,
    /// Every request: its connection cut at once (an outage).
    Down,
}

impl Faulty {
    /// Starts in front of `target` on the current tokio runtime, faults drawn from `seed`.
    pub async fn start(target: SocketAddr, rules: Vec<Rule>, seed: u64) -> Faulty {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let hold = Arc::new(tokio::sync::watch::channel(Hold::Nothing).0);
        let state = Arc::new((Mutex::new(StdRng::seed_from_u64(seed)), rules, seen.clone(), hold.clone()));
        tokio::spawn(async move {
            let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (client, state) = (client.clone(), state.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (client, state) = (client.clone(), state.clone());
                        async move { answer(&client, target, &state, req).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
                });
            }
        });
        Faulty { addr, seen, hold }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Holds back every read of a range starting at `offset` or later until [`Faulty::release`].
    pub fn hold_ranges_from(&self, offset: u64) {
        self.hold.send_replace(Hold::RangesFrom(offset));
    }

    /// Cuts every request's connection (the remote out of reach) until [`Faulty::release`].
    pub fn down(&self) {
        self.hold.send_replace(Hold::Down);
    }

    /// Holds back every PUT until [`Faulty::release`].
    pub fn hold_puts(&self) {
        self.hold.send_replace(Hold::Puts);
    }

    pub fn release(&self) {
        self.hold.send_replace(Hold::Nothing);
    }
}

type State = (Mutex<StdRng>, Vec<Rule>, Arc<Mutex<Vec<Seen>>>, Arc<tokio::sync::watch::Sender<Hold>>);
type Client = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn answer(
    client: &Client,
    target: SocketAddr,
    state: &State,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, std::io::Error> {
    let (rng, rules, seen, hold) = state;
    let (parts, body) = req.into_parts();
    let (start, put) = (range_start(&parts.headers), parts.method == hyper::Method::PUT);
    let down = *hold.borrow() == Hold::Down;
    let _ = hold
        .subscribe()
        .wait_for(|h| match *h {
            Hold::Nothing | Hold::Down => true,
            Hold::RangesFrom(from) => start.is_none_or(|s| s < from),
            Hold::Puts => !put,
        })
        .await;
    let fault = if down {
        Some(Fault::Cut)
    } else {
        let n = seen.lock().unwrap().len();
        let mut rng = rng.lock().unwrap();
        rules.iter().find(|r| n < r.first || rng.gen_bool(r.ratio.clamp(0.0, 1.0))).map(|r| r.fault)
    };
    let mut record = Seen {
        at: Instant::now(),
        method: parts.method.to_string(),
        path_and_query: parts.uri.path_and_query().map_or("/".into(), |p| p.to_string()),
        request_id: parts.headers.get("x-ms-client-request-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned(),
        fault,
        bytes_in: 0,
        bytes_out: 0,
    };
    let done = |r: Seen| seen.lock().unwrap().push(r);
    if fault == Some(Fault::Cut) {
        done(record);
        return Err(std::io::Error::other("connection cut"));
    }
    let body = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
    record.bytes_in = body.len() as u64;
    if let Some(Fault::Busy(secs)) = fault {
        done(record);
        return Ok(hyper::Response::builder()
            .status(503)
            .header("retry-after", secs.to_string())
            .header("x-ms-error-code", "ServerBusy")
            .body(Full::new(Bytes::new()))
            .unwrap());
    }
    let mut fwd =
        hyper::Request::builder().method(parts.method).uri(format!("http://{target}{}", record.path_and_query));
    for (k, v) in &parts.headers {
        fwd = fwd.header(k, v);
    }
    let resp = client.request(fwd.body(Full::new(body)).unwrap()).await.map_err(std::io::Error::other)?;
    let (parts, body) = resp.into_parts();
    let mut body = body.collect().await.map_err(std::io::Error::other)?.to_bytes().to_vec();
    if fault == Some(Fault::LoseAnswer) {
        done(record);
        return Err(std::io::Error::other("answer lost"));
    }
    if fault == Some(Fault::Flip) && !body.is_empty() {
        let at = body.len() / 2;
        body[at] ^= 0x20;
    }
    let mut parts = parts;
    if let Some(Fault::Grow(n)) = fault {
        body.resize(body.len() + n, 0);
        parts.headers.remove(hyper::header::CONTENT_LENGTH);
    }
    record.bytes_out = body.len() as u64;
    done(record);
    Ok(hyper::Response::from_parts(parts, Full::new(Bytes::from(body))))
}

/// Where the range a request reads starts (`x-ms-range` or `Range`, `bytes=<start>-...`).
fn range_start(h: &hyper::HeaderMap) -> Option<u64> {
    let v = h.get("x-ms-range").or_else(|| h.get(hyper::header::RANGE))?.to_str().ok()?;
    v.strip_prefix("bytes=")?.split('-').next()?.trim().parse().ok()
}
