//! Operations on the account: Get Account Information, List Containers.

use edgeblob_proto::request::ListContainers;
use edgeblob_proto::{headers as hdr, xml};
use http::{Response, StatusCode};

use super::body::{self, RespBody};
use super::dispatch::Call;
use super::error::Result;
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
    let endpoint = service_endpoint(c);
    let x = xml::list_containers(&xml::ListContainers {
        service_endpoint: &endpoint,
        prefix: &p.prefix,
        marker: p.marker.as_deref(),
        max_results: p.max_results.sent.then_some(p.max_results.value),
        items: items
            .iter()
            .map(|(n, ctr)| xml::ContainerItem {
                name: n,
                last_modified: hdr::http_date(ctr.modified_ns),
                etag: ctr.etag,
                metadata: p.include_metadata.then_some(ctr.metadata.as_slice()),
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
