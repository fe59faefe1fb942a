//! Blob Batch bodies (`multipart/mixed`): the sub-requests in, the sub-responses out.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::error_code::ErrorCode;

#[derive(Debug)]
pub struct SubRequest {
    pub content_id: String,
    pub method: String,
    /// The request target as written (path and query).
    pub target: String,
    pub headers: HeaderMap,
}

/// The boundary of a `multipart/mixed; boundary=...` content type.
pub fn boundary(content_type: &str) -> Option<&str> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    params.split(';').find_map(|p| p.trim().strip_prefix("boundary=")).map(|b| b.trim_matches('"'))
}

fn headers_of(block: &str) -> Result<HeaderMap, ErrorCode> {
    let mut h = HeaderMap::new();
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        let (k, v) = line.split_once(':').ok_or(ErrorCode::InvalidInput)?;
        let name =
            HeaderName::from_bytes(k.trim().to_ascii_lowercase().as_bytes()).map_err(|_| ErrorCode::InvalidInput)?;
        h.append(name, HeaderValue::from_str(v.trim()).map_err(|_| ErrorCode::InvalidInput)?);
    }
    Ok(h)
}

/// The most sub-requests a batch may hold (Azure's limit).
pub const MAX_SUBREQUESTS: usize = 256;

/// Parses a batch body into its sub-requests (at most [`MAX_SUBREQUESTS`], as Azure allows:
/// more is `ExceedsMaxBatchRequestCount`).
pub fn parse(body: &str, boundary: &str) -> Result<Vec<SubRequest>, ErrorCode> {
    let delim = format!("--{boundary}");
    let mut out = Vec::new();
    for part in body.split(&delim).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part.trim_start_matches(['\r', '\n']);
        let (mime, http) =
            part.split_once("\r\n\r\n").or_else(|| part.split_once("\n\n")).ok_or(ErrorCode::InvalidInput)?;
        let mime = headers_of(mime)?;
        let content_id = mime.get("content-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let (head, _body) = http.split_once("\r\n\r\n").or_else(|| http.split_once("\n\n")).unwrap_or((http, ""));
        let (request_line, rest) = head.split_once('\n').unwrap_or((head, ""));
        let mut words = request_line.trim().split(' ');
        let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        // The target in origin form (`/container/blob`), or absolute (`https://host/container/blob`).
        let target = match target.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") => {
                rest.find('/').map_or("/", |i| &rest[i..])
            }
            _ => target,
        };
        if method.is_empty() || !target.starts_with('/') {
            return Err(ErrorCode::InvalidInput);
        }
        if out.len() == MAX_SUBREQUESTS {
            return Err(ErrorCode::ExceedsMaxBatchRequestCount);
        }
        out.push(SubRequest {
            content_id,
            method: method.to_owned(),
            target: target.to_owned(),
            headers: headers_of(rest)?,
        });
    }
    if out.is_empty() {
        return Err(ErrorCode::InvalidInput);
    }
    Ok(out)
}

/// One sub-response part.
pub fn response_part(
    boundary: &str,
    content_id: &str,
    status: u16,
    reason: &str,
    headers: &[(String, String)],
    body: &str,
) -> String {
    let mut s = format!("--{boundary}\r\nContent-Type: application/http\r\nContent-ID: {content_id}\r\n\r\nHTTP/1.1 {status} {reason}\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        s.push_str(&format!("Content-Length: {}\r\nContent-Type: application/xml\r\n", body.len()));
    }
    s.push_str("\r\n");
    s.push_str(body);
    if !body.is_empty() {
        s.push_str("\r\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_sdk_form() {
        let b = "batch_1";
        let body = "--batch_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 0\r\n\r\nDELETE /devstoreaccount1/sdk/a/b.txt? HTTP/1.1\r\nx-ms-date: Sun, 22 Nov 2026 09:36:07 GMT\r\nAuthorization: SharedKey devstoreaccount1:abc=\r\nContent-Length: 0\r\n\r\n\r\n--batch_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\nDELETE /devstoreaccount1/sdk/c.txt? HTTP/1.1\r\nx-ms-date: x\r\nContent-Length: 0\r\n\r\n\r\n--batch_1--\r\n";
        assert_eq!(boundary("multipart/mixed; boundary=batch_1"), Some("batch_1"));
        let subs = parse(body, b).unwrap();
        assert_eq!(subs.len(), 2);
        assert_eq!(
            (subs[0].method.as_str(), subs[0].target.as_str(), subs[0].content_id.as_str()),
            ("DELETE", "/devstoreaccount1/sdk/a/b.txt?", "0")
        );
        assert!(subs[0].headers.get("authorization").is_some());
        assert_eq!(subs[1].target, "/devstoreaccount1/sdk/c.txt?");
        assert!(parse("garbage", b).is_err());
        // Absolute-form targets, LF line ends.
        let lf = "--b\nContent-ID: 7\n\nPUT https://acct.blob.core.windows.net/c/d?comp=tier HTTP/1.1\nx-ms-access-tier: Cool\n\n--b--\n";
        let subs = parse(lf, "b").unwrap();
        assert_eq!((subs[0].content_id.as_str(), subs[0].target.as_str()), ("7", "/c/d?comp=tier"));
        assert_eq!(subs[0].headers.get("x-ms-access-tier").unwrap(), "Cool");
        // Azure's limit: 256 sub-requests.
        let part = "--b\r\nContent-ID: 0\r\n\r\nDELETE /c/d HTTP/1.1\r\n\r\n";
        assert_eq!(parse(&format!("{}--b--", part.repeat(256)), "b").unwrap().len(), 256);
        assert_eq!(
            parse(&format!("{}--b--", part.repeat(257)), "b").unwrap_err(),
            ErrorCode::ExceedsMaxBatchRequestCount
        );
        let part =
            response_part("r", "0", 202, "Accepted", &[("x-ms-delete-type-permanent".into(), "true".into())], "");
        assert!(
            part.starts_with("--r\r\nContent-Type: application/http\r\nContent-ID: 0\r\n\r\nHTTP/1.1 202 Accepted\r\n")
        );
    }
}
