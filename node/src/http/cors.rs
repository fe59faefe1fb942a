//! CORS as Azure applies it: a preflight (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) is answered from the account's CORS rules without
//! credentials, and every answer to a request with an `Origin` that a rule admits carries the
//! CORS headers. Rules are the account's Blob service properties (`service_props`), read from
//! the catalog at each such request, so a Set takes effect at once.

use edgeblob_engine::container::{service_properties, SERVICE_ENTRY};
use edgeblob_engine::Shard;
use edgeblob_proto::service_props::{cors_match, cors_rules, CorsRule};
use edgeblob_proto::ErrorCode;
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::body::{self, RespBody};
use super::error::{ApiError, Result};
use super::response::respond;

fn rules(shard: &Shard, account: &str) -> Vec<CorsRule> {
    let entry = shard.node.container(account, SERVICE_ENTRY);
    cors_rules(entry.as_ref().and_then(|e| service_properties(e)))
}

fn put(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

/// The allow-origin answer for `origin` under `rule`: `*` for a rule of every origin, else the
/// origin itself with credentials allowed.
fn allow(h: &mut HeaderMap, rule: &CorsRule, origin: &str) {
    if rule.any_origin() {
        put(h, "access-control-allow-origin", "*");
    } else {
        put(h, "access-control-allow-origin", origin);
        put(h, "access-control-allow-credentials", "true");
        put(h, "vary", "Origin");
    }
}

/// A preflight request: 200 with what the matching rule allows, or 403 `CorsPreflightFailure`.
pub fn preflight(shard: &Shard, account: &str, headers: &HeaderMap) -> Result<Response<RespBody>> {
    let text = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    let (Some(origin), Some(method)) = (text("origin"), text("access-control-request-method")) else {
        // Not a preflight: OPTIONS is no Blob operation.
        return Err(ApiError::with_message(
            ErrorCode::CorsPreflightFailure,
            "A CORS preflight request needs Origin and Access-Control-Request-Method.",
        ));
    };
    let requested: Vec<&str> = text("access-control-request-headers")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    let rules = rules(shard, account);
    let rule = cors_match(&rules, origin, method, &requested).ok_or(ErrorCode::CorsPreflightFailure)?;
    let mut r = respond(StatusCode::OK, body::empty());
    let h = r.headers_mut();
    allow(h, rule, origin);
    put(h, "access-control-allow-methods", method);
    if !requested.is_empty() {
        put(h, "access-control-allow-headers", &requested.join(","));
    }
    put(h, "access-control-max-age", &rule.max_age.to_string());
    Ok(r)
}

/// The CORS headers of an answer to a request from `origin`, where a rule admits it.
pub fn decorate(shard: &Shard, account: &str, origin: &str, method: &str, resp: &mut Response<RespBody>) {
    let rules = rules(shard, account);
    let Some(rule) = cors_match(&rules, origin, method, &[]) else { return };
    let h = resp.headers_mut();
    allow(h, rule, origin);
    if !rule.exposed_headers.is_empty() {
        put(h, "access-control-expose-headers", &rule.exposed_headers.join(","));
    }
}
