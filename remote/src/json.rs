//! One JSON request and its answer, for the small services beside Blob storage that the node
//! calls (the managed identity endpoint, Key Vault): bounded answers, a time-out, no retries
//! (the callers decide what is worth another try).

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};

use crate::client::HttpsClient;

/// The most bytes of such an answer read: a token or a wrapped key is a few KiB.
const MAX_JSON_ANSWER: usize = 64 << 10;

/// The status and the parsed answer (Null when it is empty or not JSON).
pub(crate) async fn call(
    client: &HttpsClient,
    method: Method,
    url: &str,
    headers: &[(&str, String)],
    body: Option<&serde_json::Value>,
    timeout: Duration,
) -> Result<(u16, serde_json::Value), String> {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let payload = match body {
        Some(b) => {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
            Bytes::from(b.to_string())
        }
        None => Bytes::new(),
    };
    let req = req.body(Full::new(payload)).map_err(|e| e.to_string())?;
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_JSON_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("reading the answer (at most {MAX_JSON_ANSWER} bytes): {e}"))?
            .to_bytes();
        Ok::<_, String>((status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)))
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| format!("no answer within {timeout:?}"))?
}

/// The message of an Azure error answer (`{"error":{"code":..,"message":..}}`, or the identity
/// endpoint's `{"error":..,"error_description":..}`), cut short: it goes into logs and errors.
pub(crate) fn error_text(v: &serde_json::Value) -> String {
    let e = &v["error"];
    let text = match (e["code"].as_str(), e["message"].as_str(), e.as_str(), v["error_description"].as_str()) {
        (Some(c), Some(m), _, _) => format!("{c}: {m}"),
        (_, _, Some(c), Some(d)) => format!("{c}: {d}"),
        (_, _, Some(c), None) => c.to_owned(),
        _ => "no error detail".to_owned(),
    };
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}
