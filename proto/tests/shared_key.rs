//! SharedKey verification against requests the real clients signed (captured on the wire, signed
//! with the public development key): Python SDK, rclone (Go), boostedblob, blobfile.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use edgeblob_proto::shared_key::{verify, AuthError, SignedRequest};
use http::{HeaderMap, HeaderName, HeaderValue};

const DEV_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn fixtures() -> Vec<serde_json::Value> {
    let text = include_str!("fixtures/shared_key_requests.json");
    serde_json::from_str(text).unwrap()
}

fn parts(f: &serde_json::Value) -> (String, String, Vec<(String, String)>, HeaderMap, String) {
    let method = f["method"].as_str().unwrap().to_owned();
    let path = f["path"].as_str().unwrap().to_owned();
    let query =
        f["query"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect();
    let mut headers = HeaderMap::new();
    let mut auth = String::new();
    for h in f["headers"].as_array().unwrap() {
        let (k, v) = (h[0].as_str().unwrap(), h[1].as_str().unwrap());
        if k.eq_ignore_ascii_case("authorization") {
            auth = v.to_owned();
        }
        headers.append(
            HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    (method, path, query, headers, auth)
}

#[test]
fn every_captured_client_signature_verifies() {
    let key = base64::engine::general_purpose::STANDARD.decode(DEV_KEY).unwrap();
    let fx = fixtures();
    assert!(fx.len() >= 20);
    for f in &fx {
        let (method, path, query, headers, auth) = parts(f);
        let req = SignedRequest { method: &method, raw_path: &path, query: &query, headers: &headers };
        verify("devstoreaccount1", std::slice::from_ref(&key), &req, &auth)
            .unwrap_or_else(|e| panic!("{} {method} {path}: {e}", f["file"]));
    }
}

#[test]
fn the_second_key_works_and_tampering_fails() {
    let key = base64::engine::general_purpose::STANDARD.decode(DEV_KEY).unwrap();
    let other = vec![7u8; 64];
    let f = &fixtures()[3];
    let (method, path, query, mut headers, auth) = parts(f);
    let req = SignedRequest { method: &method, raw_path: &path, query: &query, headers: &headers };
    verify("devstoreaccount1", &[other.clone(), key.clone()], &req, &auth).unwrap();
    assert!(matches!(verify("devstoreaccount1", &[other], &req, &auth), Err(AuthError::Mismatch(_))));
    assert!(matches!(verify("otheraccount", std::slice::from_ref(&key), &req, &auth), Err(AuthError::WrongAccount(_))));
    assert!(matches!(
        verify("devstoreaccount1", std::slice::from_ref(&key), &req, "Bearer x"),
        Err(AuthError::Malformed)
    ));
    headers.insert("x-ms-meta-added", HeaderValue::from_static("1"));
    let req = SignedRequest { method: &method, raw_path: &path, query: &query, headers: &headers };
    assert!(
        verify("devstoreaccount1", std::slice::from_ref(&key), &req, &auth).is_err(),
        "an added x-ms- header breaks the signature"
    );
    let req = SignedRequest { method: "DELETE", raw_path: &path, query: &query, headers: &headers };
    assert!(verify("devstoreaccount1", &[key], &req, &auth).is_err());
}

/// A captured request is good within 15 minutes of its own time, refused after (replay), and a
/// request without a readable date is refused.
#[test]
fn a_signed_request_is_refused_outside_fifteen_minutes_of_its_date() {
    use edgeblob_proto::shared_key::{check_date, MAX_CLOCK_SKEW_SECS};
    for f in &fixtures() {
        let (_, _, _, headers, _) = parts(f);
        let sent = headers.get("x-ms-date").or_else(|| headers.get("date")).unwrap().to_str().unwrap();
        let at = edgeblob_proto::headers::parse_date(sent).unwrap();
        assert_eq!(check_date(&headers, at + MAX_CLOCK_SKEW_SECS), Ok(()), "{}", f["file"]);
        assert_eq!(check_date(&headers, at - MAX_CLOCK_SKEW_SECS), Ok(()), "a client clock a little ahead");
        let late = check_date(&headers, at + MAX_CLOCK_SKEW_SECS + 1);
        assert!(matches!(late, Err(AuthError::Stale { skew: 901, .. })), "{late:?}");
        assert!(matches!(check_date(&headers, at - 3600), Err(AuthError::Stale { skew: -3600, .. })));
    }
    let mut none = HeaderMap::new();
    assert_eq!(check_date(&none, 0), Err(AuthError::NoDate));
    none.insert("x-ms-date", HeaderValue::from_static("yesterday"));
    assert_eq!(check_date(&none, 0), Err(AuthError::NoDate), "an unreadable date");
}
