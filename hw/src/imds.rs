//! Azure's instance metadata service (IMDS): plain HTTP on a link-local address, every request
//! with `Metadata: true`, never through a proxy. What the host is (its VM size) and what Azure
//! plans for it (scheduled events) are asked here.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Where the service answers on every Azure VM.
pub const ENDPOINT: &str = "http://169.254.169.254";
/// The most an answer may hold.
const MAX_ANSWER: u64 = 1 << 20;

/// The VM's size (`Standard_L8as_v5`), or None when the service does not answer (not on Azure,
/// or it is unreachable): never required.
pub fn vm_size(endpoint: &str) -> Option<String> {
    match request(endpoint, "GET", "/metadata/instance/compute/vmSize?api-version=2021-02-01&format=text", None) {
        Ok((200, size))
            if !size.trim().is_empty() && size.trim().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            Some(size.trim().to_owned())
        }
        _ => None,
    }
}

/// One plain-HTTP exchange with the metadata service (`Metadata: true`, as it requires; never
/// through a proxy): its status and body.
pub fn request(endpoint: &str, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
    let authority =
        endpoint.strip_prefix("http://").ok_or("the metadata endpoint must be http://")?.trim_end_matches('/');
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&authority_with_port(authority))
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    let body = body.unwrap_or("");
    let content = if method == "POST" {
        format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len())
    } else {
        String::new()
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nMetadata: true\r\n{content}Connection: close\r\n\r\n{body}"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.take(MAX_ANSWER).read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").ok_or("not an HTTP answer")?;
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or("not an HTTP answer")?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked")
    });
    Ok((status, if chunked { dechunk(rest) } else { rest.to_owned() }))
}

fn authority_with_port(a: &str) -> String {
    if a.rsplit_once(':').is_some_and(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())) && !a.ends_with(']') {
        a.to_owned()
    } else {
        format!("{a}:80")
    }
}

/// A chunked body's data.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else { break };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn chunked_answers_and_ports() {
        assert_eq!(dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), "hello world");
        assert_eq!(authority_with_port("169.254.169.254"), "169.254.169.254:80");
        assert_eq!(authority_with_port("127.0.0.1:8080"), "127.0.0.1:8080");
    }

    #[test]
    fn a_service_that_does_not_answer_is_no_size() {
        // A port nothing listens on (bound, then let go).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        assert_eq!(vm_size(&format!("http://127.0.0.1:{port}")), None);
    }
}
