//! Requests written on a plain socket, as a careless or hostile client would send them: one
//! SharedKey-signed request (the development account), or one carrying a SAS or nothing; each
//! on its own connection, read to its end.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends one SharedKey-signed request (dev account) and returns (status, headers, body), the
/// headers lower-cased.
pub async fn signed(
    addr: &str,
    method: &str,
    path_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    try_signed(addr, method, path_query, headers, body).await.unwrap()
}

/// Writes a request head and body on a new connection and reads the answer to its end: its
/// status, its head as sent (case kept), and its body (de-chunked).
pub async fn exchange(addr: &str, head: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    try_exchange(addr, head, body).await.unwrap()
}

/// [`signed`], or the error that cut it short (a node killed with the request in flight):
/// Err also when the connection closed before a whole answer.
pub async fn try_signed(
    addr: &str,
    method: &str,
    path_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String, Vec<u8>)> {
    let (status, head, body) = try_exchange(addr, &signed_head(method, path_query, headers, body.len()), body).await?;
    Ok((status, head.to_ascii_lowercase(), body))
}

/// [`exchange`], with the errors of the connection returned.
pub async fn try_exchange(addr: &str, head: &str, body: &[u8]) -> std::io::Result<(u16, String, Vec<u8>)> {
    let cut = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the answer was cut short");
    let mut c = tokio::net::TcpStream::connect(addr).await?;
    c.write_all(head.as_bytes()).await?;
    c.write_all(body).await?;
    let mut out = Vec::new();
    c.read_to_end(&mut out).await?;
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(cut)?;
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let status = head.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(cut)?;
    let mut body = out[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        // De-chunk: size line, data, CRLF, ... 0.
        let mut plain = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").ok_or_else(cut)?;
            let size = std::str::from_utf8(&rest[..eol]).ok().map(str::trim);
            let n = size.and_then(|t| usize::from_str_radix(t, 16).ok()).ok_or_else(cut)?;
            if n == 0 {
                break;
            }
            plain.extend_from_slice(rest.get(eol + 2..eol + 2 + n).ok_or_else(cut)?);
            rest = rest.get(eol + 2 + n + 2..).ok_or_else(cut)?;
        }
        body = plain;
    }
    Ok((status, head, body))
}

/// The head of a SharedKey-signed request (dev account) for a body of `body_len` bytes.
pub fn signed_head(method: &str, path_query: &str, headers: &[(&str, &str)], body_len: usize) -> String {
    let mut h = http::HeaderMap::new();
    for (k, v) in headers {
        h.insert(http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).unwrap(), v.parse().unwrap());
    }
    crate::sign::shared_key(method, path_query, &mut h, body_len);
    let mut text = format!("{method} {path_query} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if body_len == 0 && method == "PUT" {
        text.push_str("Content-Length: 0\r\n");
    }
    // Headers the caller gave go out as written (case included); the signature covers them
    // lower-cased, as SharedKey does.
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    for (k, v) in h.iter().filter(|(k, _)| !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(k.as_str()))) {
        text.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
    }
    text.push_str("\r\n");
    text
}

/// A request authorised by the SAS in its query (or by nothing), with any headers; returns the
/// status and the lower-cased head.
pub async fn with_sas(addr: &str, method: &str, path_query: &str, headers: &[(&str, &str)]) -> (u16, String) {
    with_sas_body(addr, method, path_query, headers, b"").await
}

/// [`with_sas`] with a body.
pub async fn with_sas_body(
    addr: &str,
    method: &str,
    path_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let (status, head, body) = exchange(addr, &sas_head(addr, method, path_query, headers, body.len()), body).await;
    (status, format!("{head}\r\n\r\n{}", String::from_utf8_lossy(&body)).to_ascii_lowercase())
}

/// The head of a request authorised by the SAS in its query (or by nothing).
pub fn sas_head(addr: &str, method: &str, path_query: &str, headers: &[(&str, &str)], body_len: usize) -> String {
    let mut text = format!(
        "{method} {path_query} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {body_len}\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("x-ms-version: 2026-10-06\r\n\r\n");
    text
}
