//! SharedKey authentication: the string-to-sign exactly as Azure builds it (Authorize with Shared
//! Key, version 2009-09-19 and later), HMAC-SHA256 with the account key, and verification against
//! every key of the account (two, for rotation).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;

/// What of a request the signature covers.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path exactly as sent (percent-encoding kept).
    pub raw_path: &'a str,
    /// Query parameters, percent-decoded, in any order.
    pub query: &'a [(String, String)],
    pub headers: &'a HeaderMap,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the Authorization header is not `SharedKey account:signature`")]
    Malformed,
    #[error("the request is signed for account {0}, not this one")]
    WrongAccount(String),
    #[error("the signature does not match; the server signed: {0:?}")]
    Mismatch(String),
    #[error("the request has no valid x-ms-date or Date header")]
    NoDate,
    #[error("Request date header too old or too far ahead: '{date}' is {skew} s from the server's time (at most 900 s allowed)")]
    Stale { date: String, skew: i64 },
}

/// How far a signed request's time may be from the server's clock, either way (Azure: 15
/// minutes).
pub const MAX_CLOCK_SKEW_SECS: i64 = 15 * 60;

/// A signed request must carry its time (`x-ms-date`, else `Date`) within
/// [`MAX_CLOCK_SKEW_SECS`] of `now` (seconds since the epoch), so that a captured request cannot
/// be replayed later.
pub fn check_date(h: &HeaderMap, now: i64) -> Result<(), AuthError> {
    let value = h.get("x-ms-date").or_else(|| h.get("date")).ok_or(AuthError::NoDate)?;
    let value = value.to_str().map_err(|_| AuthError::NoDate)?;
    let at = crate::headers::parse_date(value).ok_or(AuthError::NoDate)?;
    let skew = now - at;
    if skew.abs() > MAX_CLOCK_SKEW_SECS {
        return Err(AuthError::Stale { date: value.to_owned(), skew });
    }
    Ok(())
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The string-to-sign. `content_length` is the value to use for that line.
pub fn string_to_sign(account: &str, req: &SignedRequest, content_length: &str) -> String {
    let h = req.headers;
    // With x-ms-date the Date line is empty.
    let date = if h.contains_key("x-ms-date") { "" } else { header(h, "date") };
    let mut s = String::with_capacity(512);
    for part in [
        req.method,
        header(h, "content-encoding"),
        header(h, "content-language"),
        content_length,
        header(h, "content-md5"),
        header(h, "content-type"),
        date,
        header(h, "if-modified-since"),
        header(h, "if-match"),
        header(h, "if-none-match"),
        header(h, "if-unmodified-since"),
        header(h, "range"),
    ] {
        s.push_str(part);
        s.push('\n');
    }
    // Canonicalized headers: x-ms-*, lower-case names in order, repeated names joined by commas,
    // whitespace runs in values folded.
    let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).filter(|k| k.starts_with("x-ms-")).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let values: Vec<String> =
            h.get_all(name).iter().map(|v| fold_whitespace(&String::from_utf8_lossy(v.as_bytes()))).collect();
        s.push_str(name);
        s.push(':');
        s.push_str(&values.join(","));
        s.push('\n');
    }
    // Canonicalized resource: /account + raw path, then each query parameter (lower-case name)
    // with its decoded values, sorted.
    s.push('/');
    s.push_str(account);
    s.push_str(if req.raw_path.is_empty() { "/" } else { req.raw_path });
    let mut params: Vec<(String, Vec<&str>)> = Vec::new();
    for (k, v) in req.query {
        let k = k.to_ascii_lowercase();
        match params.iter_mut().find(|(n, _)| *n == k) {
            Some((_, vs)) => vs.push(v),
            None => params.push((k, vec![v])),
        }
    }
    params.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, mut vs) in params {
        vs.sort_unstable();
        s.push('\n');
        s.push_str(&k);
        s.push(':');
        s.push_str(&vs.join(","));
    }
    s
}

fn fold_whitespace(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut space = false;
    for c in v.trim().chars() {
        if c == ' ' || c == '\t' {
            if !space {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(c);
            space = false;
        }
    }
    out
}

pub fn sign(key: &[u8], string_to_sign: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

/// Splits `SharedKey account:signature`.
pub fn parse_authorization(value: &str) -> Option<(&str, &str)> {
    let rest = value.strip_prefix("SharedKey ")?;
    rest.split_once(':')
}

/// Verifies a SharedKey request for `account` against its keys (decoded from base64).
pub fn verify(account: &str, keys: &[Vec<u8>], req: &SignedRequest, authorization: &str) -> Result<(), AuthError> {
    let (signer, sig) = parse_authorization(authorization).ok_or(AuthError::Malformed)?;
    if signer != account {
        return Err(AuthError::WrongAccount(signer.to_owned()));
    }
    let given = B64.decode(sig).map_err(|_| AuthError::Malformed)?;
    let length = header(req.headers, "content-length");
    // Since 2015-02-21 a zero length signs as empty; some clients still sign "0" (boostedblob
    // for empty uploads), which Azure rejects but costs nothing to accept.
    let lengths: &[&str] = if length == "0" { &["", "0"] } else { &[length] };
    let mut first = None;
    for &len in lengths {
        let sts = string_to_sign(account, req, len);
        for key in keys {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(sts.as_bytes());
            if mac.verify_slice(&given).is_ok() {
                return Ok(());
            }
        }
        first.get_or_insert(sts);
    }
    Err(AuthError::Mismatch(first.unwrap_or_default()))
}
