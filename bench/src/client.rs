//! One HTTP/1.1 connection per request in flight, kept alive, reopened after a failure. Requests
//! are signed per `target::Endpoint`; answers are read as a stream (and checked against the data
//! pattern when asked), never buffered whole unless they are small (errors, listings).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::target::Endpoint;

/// The API version the harness speaks (recent enough for every operation it uses).
pub const VERSION: &str = "2021-08-06";

/// A failed request: the HTTP status (0 when no answer came) and the Azure error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: u16,
    pub code: String,
}

impl Failure {
    pub fn transport(e: impl std::fmt::Display) -> Failure {
        Failure { status: 0, code: format!("Transport({e})") }
    }
}

pub struct Request {
    pub method: Method,
    pub container: String,
    pub blob: Option<String>,
    /// Query without `?` (parameters already percent-encoded).
    pub query: String,
    pub headers: Vec<(HeaderName, String)>,
    pub body: Bytes,
}

impl Request {
    pub fn new(method: Method, container: &str, blob: Option<&str>, query: &str) -> Request {
        Request {
            method,
            container: container.to_owned(),
            blob: blob.map(str::to_owned),
            query: query.to_owned(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Request {
        self.headers.push((HeaderName::from_static(name), value.into()));
        self
    }

    pub fn body(mut self, body: Bytes) -> Request {
        self.body = body;
        self
    }
}

/// A connection to an endpoint; one request at a time.
pub struct Conn {
    ep: Arc<Endpoint>,
    send: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub fn new(ep: Arc<Endpoint>) -> Conn {
        Conn { ep, send: None }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, Failure> {
        let tcp = TcpStream::connect(&self.ep.authority).await.map_err(Failure::transport)?;
        let _ = tcp.set_nodelay(true);
        if self.ep.https {
            let name = rustls_pki_types::ServerName::try_from(self.ep.host.clone()).map_err(Failure::transport)?;
            let tls = tokio_rustls::TlsConnector::from(edgeblob::http::tls_client().map_err(Failure::transport)?)
                .connect(name, tcp)
                .await
                .map_err(Failure::transport)?;
            handshake(tls).await
        } else {
            handshake(tcp).await
        }
    }

    /// Sends a request; a non-2xx answer is returned as a `Failure` with its error code.
    pub async fn send(&mut self, req: Request) -> Result<Response<Incoming>, Failure> {
        let path = self.ep.path(&req.container, req.blob.as_deref());
        let mut query = if req.query.is_empty() { String::new() } else { format!("?{}", req.query) };
        let mut headers = HeaderMap::new();
        let now = httpdate::fmt_http_date(std::time::SystemTime::now());
        headers.insert("x-ms-date", HeaderValue::from_str(&now).map_err(Failure::transport)?);
        headers.insert("x-ms-version", HeaderValue::from_static(VERSION));
        for (k, v) in &req.headers {
            headers.append(k.clone(), HeaderValue::from_str(v).map_err(Failure::transport)?);
        }
        let len = req.body.len() as u64;
        self.ep.authorize(req.method.as_str(), &path, &mut query, &mut headers, len);
        headers.insert(http::header::HOST, HeaderValue::from_str(&self.ep.host).map_err(Failure::transport)?);
        if len > 0 || req.method == Method::PUT {
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        let mut builder = http::Request::builder().method(req.method).uri(format!("{path}{query}"));
        if let Some(h) = builder.headers_mut() {
            *h = headers;
        }
        let request = builder.body(Full::new(req.body)).map_err(Failure::transport)?;
        let send = match self.send.as_mut() {
            Some(s) if s.is_ready() => s,
            _ => {
                self.send = Some(self.connect().await?);
                self.send.as_mut().ok_or_else(|| Failure::transport("no connection"))?
            }
        };
        let resp = match send.send_request(request).await {
            Ok(r) => r,
            Err(e) => {
                self.send = None;
                return Err(Failure::transport(e));
            }
        };
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(failure(resp).await)
    }
}

/// HTTP/1.1 over a plain or TLS stream; the connection is driven by its own task.
async fn handshake<S>(io: S) -> Result<SendRequest<Full<Bytes>>, Failure>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(Failure::transport)?;
    tokio::spawn(conn);
    Ok(send)
}

/// The error code of a failed answer: `x-ms-error-code`, else the XML body's `<Code>`.
async fn failure(resp: Response<Incoming>) -> Failure {
    let status = resp.status();
    let header = resp.headers().get("x-ms-error-code").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let code = header
        .or_else(|| xml_text(&body, "Code"))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("Unknown").replace(' ', ""));
    Failure { status: status.as_u16(), code }
}

/// The text of the first `<tag>` in an XML body.
pub fn xml_text(body: &[u8], tag: &str) -> Option<String> {
    let s = std::str::from_utf8(body).ok()?;
    let open = format!("<{tag}>");
    let start = s.find(&open)? + open.len();
    let end = s[start..].find(&format!("</{tag}>"))? + start;
    Some(s[start..end].to_owned())
}

/// Checks bytes at an offset of the answer; returns where they first differ from what is expected.
pub type Check<'a> = dyn FnMut(u64, &[u8]) -> Option<u64> + Send + 'a;

/// Reads an answer's body to the end; returns its length, and where it first differs from
/// `expect(offset, bytes)` when a check is asked for.
pub async fn consume(
    resp: Response<Incoming>,
    mut check: Option<&mut Check<'_>>,
) -> Result<(u64, Option<u64>), Failure> {
    let mut body = resp.into_body();
    let mut n = 0u64;
    let mut mismatch = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Failure::transport)?;
        if let Some(data) = frame.data_ref() {
            if mismatch.is_none() {
                if let Some(c) = check.as_mut() {
                    mismatch = c(n, data);
                }
            }
            n += data.len() as u64;
        }
    }
    Ok((n, mismatch))
}

pub async fn collect(resp: Response<Incoming>) -> Result<Bytes, Failure> {
    resp.into_body().collect().await.map(|b| b.to_bytes()).map_err(Failure::transport)
}

/// A response header as text.
pub fn header<'a>(resp: &'a Response<Incoming>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

pub fn is_not_found(f: &Failure) -> bool {
    f.status == StatusCode::NOT_FOUND.as_u16()
}
