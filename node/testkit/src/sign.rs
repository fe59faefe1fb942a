//! SharedKey signing for tests' own requests, as a client signs them for the development account.

use base64::Engine;
use http::{HeaderMap, HeaderName};

/// Adds `x-ms-date` (now) and `x-ms-version` unless `headers` holds them already,
/// `content-length` (when there is a body) and the SharedKey `authorization` for
/// `method path_query`; the signature covers every header `headers` holds.
pub fn shared_key(method: &str, path_query: &str, headers: &mut HeaderMap, body_len: usize) {
    let key = base64::engine::general_purpose::STANDARD.decode(edgeblob::config::DEV_KEY).unwrap();
    if !headers.contains_key("x-ms-date") {
        headers.insert("x-ms-date", httpdate::fmt_http_date(std::time::SystemTime::now()).parse().unwrap());
    }
    if !headers.contains_key("x-ms-version") {
        headers.insert("x-ms-version", "2026-10-06".parse().unwrap());
    }
    if body_len > 0 {
        headers.insert("content-length", body_len.to_string().parse().unwrap());
    }
    let target = edgeblob_proto::addr::parse(path_query, Some("127.0.0.1")).unwrap();
    let req =
        edgeblob_proto::shared_key::SignedRequest { method, raw_path: &target.raw_path, query: &target.query, headers };
    let length = headers.get("content-length").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let sts = edgeblob_proto::shared_key::string_to_sign(edgeblob::config::DEV_ACCOUNT, &req, &length);
    let sig = edgeblob_proto::shared_key::sign(&key, &sts);
    let auth = format!("SharedKey {}:{sig}", edgeblob::config::DEV_ACCOUNT);
    headers.insert(HeaderName::from_static("authorization"), auth.parse().unwrap());
}

/// An account SAS of the development account granting `sp` (blob service, every resource type,
/// valid until 2099), as the query of a URL.
pub fn account_sas(sp: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD.decode(edgeblob::config::DEV_KEY).unwrap();
    let sts = format!("devstoreaccount1\n{sp}\nb\nsco\n\n2099-01-01T00:00:00Z\n\n\n2026-10-06\n\n");
    let sig = edgeblob_proto::sas::sign(&key, &sts).replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
    format!("sv=2026-10-06&ss=b&srt=sco&sp={sp}&se=2099-01-01T00%3A00%3A00Z&sig={sig}")
}
