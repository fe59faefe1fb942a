//! Operations on the account: Get Account Information, List Containers, Get User Delegation
//! Key.

use base64::Engine;
use edgeblob_proto::request::ListContainers;
use edgeblob_proto::{headers as hdr, sas, xml, ErrorCode};
use http::{Response, StatusCode};
use hyper::body::Incoming;

use super::auth::Credential;
use super::body::{self, RespBody};
use super::dispatch::Call;
use super::error::{ApiError, Result};
use super::response::{respond, set, xml_response};

pub fn get_account_info() -> Response<RespBody> {
    let mut r = respond(StatusCode::OK, body::empty());
    set(r.headers_mut(), "x-ms-sku-name", "Standard_LRS");
    set(r.headers_mut(), "x-ms-account-kind", "StorageV2");
    set(r.headers_mut(), "x-ms-is-hns-enabled", "false");
    r
}

pub fn list_containers(c: &Call<'_>, p: ListContainers) -> Result<Response<RespBody>> {
    let (items, next) = c.shard.node.list_containers(&p.account, &p.prefix, p.marker.as_deref(), p.max_results.value);
    let metadata: Vec<_> = items.iter().map(|(_, ctr)| edgeblob_engine::container::client_metadata(ctr)).collect();
    let endpoint = service_endpoint(c);
    let x = xml::list_containers(&xml::ListContainers {
        service_endpoint: &endpoint,
        prefix: &p.prefix,
        marker: p.marker.as_deref(),
        max_results: p.max_results.sent.then_some(p.max_results.value),
        items: items
            .iter()
            .zip(&metadata)
            .map(|((n, ctr), md)| xml::ContainerItem {
                name: n,
                last_modified: hdr::http_date(ctr.modified_ns),
                etag: ctr.etag,
                metadata: p.include_metadata.then_some(md.as_slice()),
            })
            .collect(),
        next_marker: next.as_deref(),
    });
    Ok(xml_response(x))
}

/// The service endpoint listings name, in the style the client addressed the node by.
pub fn service_endpoint(c: &Call<'_>) -> String {
    let t = c.target;
    if t.raw_path.starts_with(&format!("/{}", t.account)) {
        format!("http://{}/{}", c.host, t.account)
    } else {
        format!("http://{}/", c.host)
    }
}

/// A KeyInfo body is a few hundred bytes.
const MAX_KEY_INFO: usize = 4096;

/// The longest a user delegation key lives, as Azure allows: seven days from now.
const MAX_KEY_LIFE: i64 = 7 * 86_400;

/// Get User Delegation Key: a key for signing user delegation SAS, for the token's principal.
/// Its value is derived from the account key and its fields (see `sas::user_delegation_key`),
/// so the node keeps nothing and a SAS signed with it is checked by deriving it again.
pub async fn get_user_delegation_key(
    c: &Call<'_>,
    version: Option<String>,
    req_body: Incoming,
) -> Result<Response<RespBody>> {
    let Credential::Bearer(principal) = &c.credential else {
        return Err(ApiError::authentication(
            ErrorCode::AuthenticationFailed,
            "Only a Microsoft Entra ID token (Bearer) may get a user delegation key.",
        ));
    };
    let raw = body::collect(req_body, MAX_KEY_INFO, c.ctx.body_timeout).await?;
    let info = xml::parse_tree(&raw, "KeyInfo")?;
    let node_value = |name: &str| ApiError::detailed(ErrorCode::InvalidXmlNodeValue, format!("XmlNodeName: {name}"));
    let now = edgeblob_engine::shard::now_ns().div_euclid(1_000_000_000);
    let start = match info.child_text("Start").map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => sas::parse_time(s).ok_or_else(|| node_value("Start"))?,
        None => now,
    };
    let expiry = info.child_text("Expiry").and_then(sas::parse_time).ok_or_else(|| node_value("Expiry"))?;
    // Expiry within seven days of now and after the start (and after now: a key already
    // expired signs nothing).
    if expiry > now + MAX_KEY_LIFE || expiry <= start || expiry <= now {
        return Err(node_value("Expiry"));
    }
    if start > now + MAX_KEY_LIFE {
        return Err(node_value("Start"));
    }
    // The key is of the version the client speaks (the SDK signs with it as `skv`).
    let version = version
        .as_deref()
        .filter(|v| v.len() == 10 && v.bytes().all(|b| b.is_ascii_digit() || b == b'-'))
        .unwrap_or(super::response::VERSION);
    let (start, expiry) = (sas::iso_time(start), sas::iso_time(expiry));
    // A key for SAS bound to users of another tenant (`DelegatedUserTid`): a tenant id's form.
    let delegated_tid = info.child_text("DelegatedUserTid").map(str::trim).unwrap_or("");
    if !delegated_tid.chars().all(|ch| ch.is_ascii_hexdigit() || ch == '-') || delegated_tid.len() > 36 {
        return Err(node_value("DelegatedUserTid"));
    }
    let fields = sas::DelegationKeyFields {
        oid: &principal.object_id,
        tid: &principal.tenant,
        start: &start,
        expiry: &expiry,
        service: "b",
        version,
        delegated_tid,
    };
    let key = c.ctx.accounts.get(&c.target.account).and_then(|k| k.first()).ok_or(ErrorCode::InternalError)?;
    let value = base64::engine::general_purpose::STANDARD.encode(sas::user_delegation_key(key, &fields));
    Ok(xml_response(xml::user_delegation_key(&fields, &value)))
}

/// A service properties body: five CORS rules of Azure's longest lists fit well within this.
const MAX_PROPERTIES_BODY: usize = 64 << 10;

fn stored_properties(c: &Call<'_>) -> Option<String> {
    let entry = c.shard.node.container(&c.target.account, edgeblob_engine::container::SERVICE_ENTRY)?;
    edgeblob_engine::container::service_properties(&entry).map(str::to_owned)
}

/// Get Blob Service Properties: what was set, Azure's defaults for the rest.
pub fn get_properties(c: &Call<'_>) -> Response<RespBody> {
    xml_response(edgeblob_proto::service_props::get(stored_properties(c).as_deref()))
}

/// Set Blob Service Properties: the sections the body carries replace the stored ones, once all
/// of them pass Azure's checks; 202 Accepted, as Azure answers.
pub async fn set_properties(c: &Call<'_>, req_body: Incoming) -> Result<Response<RespBody>> {
    let raw = body::collect(req_body, MAX_PROPERTIES_BODY, c.ctx.body_timeout).await?;
    let doc = edgeblob_proto::service_props::merge(stored_properties(c).as_deref(), &raw)?;
    edgeblob_engine::ops::set_service_properties(c.shard, c.target.account.clone(), doc).await?;
    Ok(respond(StatusCode::ACCEPTED, body::empty()))
}
