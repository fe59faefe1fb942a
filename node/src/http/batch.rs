//! Blob Batch: Delete Blob or Set Blob Tier sub-requests (one kind per batch, as Azure has it),
//! each addressed, authorised and answered on its own, in the sub-response form Azure writes.

use edgeblob_engine::{ops, PropsChange};
use edgeblob_proto::addr::{self, Target};
use edgeblob_proto::batch::{self, SubRequest};
use edgeblob_proto::op::{self, Operation};
use edgeblob_proto::request::{BlobBatch, Request};
use edgeblob_proto::{xml, ErrorCode};
use http::{Method, Response, StatusCode};
use hyper::body::Incoming;

use super::body::{self, RespBody};
use super::dispatch::Call;
use super::error::{ApiError, Result};
use super::model::blob_key;
use super::response::{respond, set, VERSION};
use super::{auth, copy};

/// The most bytes of a batch body read (256 sub-requests with their headers).
const MAX_BATCH_BODY: usize = 4 << 20;

/// What a sub-request did.
enum Done {
    Deleted,
    TierSet,
}

pub async fn run(c: &Call<'_>, p: BlobBatch, body: Incoming) -> Result<Response<RespBody>> {
    let raw = body::collect(body, MAX_BATCH_BODY, c.ctx.body_timeout).await?;
    let text = std::str::from_utf8(&raw).map_err(|_| ErrorCode::InvalidInput)?;
    let subs = batch::parse(text, &p.boundary)?;
    // Every sub-request is routed before any runs: a batch mixing kinds runs none of them.
    let routed: Vec<Result<(Target, Operation)>> = subs.iter().map(|sub| route(c, &p, sub)).collect();
    let mut kinds = routed.iter().filter_map(|r| r.as_ref().ok()).map(|(_, op)| *op);
    if let Some(first) = kinds.next() {
        if kinds.any(|op| op != first) {
            return Err(ErrorCode::AllBatchSubRequestsShouldBeSameApi.into());
        }
    }
    let out_boundary = format!("batchresponse_{}", copy::copy_id(c.shard));
    let mut out = String::new();
    for (sub, routed) in subs.iter().zip(routed) {
        let request_id = copy::copy_id(c.shard);
        let outcome = match routed {
            Ok((t, op)) => execute(c, &p, sub, &t, op).await,
            Err(e) => Err(e),
        };
        let (status, reason, mut headers, body) = match outcome {
            Ok(Done::Deleted) => (202, "Accepted".to_owned(), vec![header("x-ms-delete-type-permanent", "true")], None),
            Ok(Done::TierSet) => (200, "OK".to_owned(), Vec::new(), None),
            Err(e) => {
                let time = xml::error_time(edgeblob_engine::shard::now_ns());
                let x = xml::error_with_detail(e.code.as_str(), &e.message, e.detail.as_deref(), &request_id, &time);
                // Azure's reason phrase for a failed sub-request is the error's message.
                let reason = e.message.chars().filter(|ch| !ch.is_control()).collect();
                (e.status().as_u16(), reason, vec![header("x-ms-error-code", e.code.as_str())], Some(x))
            }
        };
        headers.push(header("x-ms-request-id", &request_id));
        headers.push(header("x-ms-version", VERSION));
        if let Some(id) = client_request_id(sub) {
            headers.push(header("x-ms-client-request-id", id));
        }
        let body = body.unwrap_or_default();
        out.push_str(&batch::response_part(&out_boundary, &sub.content_id, status, &reason, &headers, &body));
    }
    out.push_str(&format!("--{out_boundary}--\r\n"));
    let mut r = respond(StatusCode::ACCEPTED, body::full(out));
    set(r.headers_mut(), "content-type", format!("multipart/mixed; boundary={out_boundary}"));
    Ok(r)
}

fn header(name: &str, value: &str) -> (String, String) {
    (name.to_owned(), value.to_owned())
}

/// The sub-request's `x-ms-client-request-id`, echoed as Azure does when it is printable and
/// at most 1 KiB (it goes into the answer as written).
fn client_request_id(sub: &SubRequest) -> Option<&str> {
    let id = sub.headers.get("x-ms-client-request-id")?.to_str().ok()?;
    (id.len() <= 1024 && id.chars().all(|ch| ch.is_ascii_graphic() || ch == ' ')).then_some(id)
}

/// A sub-request's address and operation: Delete Blob or Set Blob Tier, within the batch's
/// account and, when the batch was sent to a container, that container.
fn route(c: &Call<'_>, outer: &BlobBatch, sub: &SubRequest) -> Result<(Target, Operation)> {
    let t = addr::parse(&sub.target, Some(c.host))?;
    let method = sub.method.parse::<Method>().map_err(|_| ErrorCode::UnsupportedHttpVerb)?;
    let op = op::route(&method, &t, &sub.headers)?;
    if !matches!(op, Operation::DeleteBlob | Operation::SetBlobTier) {
        return Err(ApiError::with_message(
            ErrorCode::InvalidInput,
            "A batch may only hold Delete Blob or Set Blob Tier requests.",
        ));
    }
    if t.account != outer.account || outer.container.as_ref().is_some_and(|ctr| t.container.as_ref() != Some(ctr)) {
        return Err(ErrorCode::InvalidInput.into());
    }
    Ok((t, op))
}

/// Runs one sub-request, authorised on its own by its own credential (a SAS naming a stored
/// access policy finds it; anonymous access, which never writes, is refused by the table).
async fn execute(c: &Call<'_>, outer: &BlobBatch, sub: &SubRequest, t: &Target, op: Operation) -> Result<Done> {
    // The batch's service version is every sub-request's: a token's sub-request is checked with
    // it. (Only a token's: a SharedKey signature covers the sub-request's headers as sent.)
    let mut headers = sub.headers.clone();
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(auth::bearer_token).is_some();
    if let Some(v) = outer.version.as_deref().filter(|_| token && !headers.contains_key("x-ms-version")) {
        headers.insert("x-ms-version", http::HeaderValue::from_str(v).map_err(|_| ErrorCode::InvalidHeaderValue)?);
    }
    auth::authenticate(c.ctx, t, op, &sub.method, &headers, c.peer, Some(c.shard))?;
    match Request::parse(op, t, &headers, &[])? {
        Request::DeleteBlob { blob, conditions } => {
            ops::delete_blob(c.shard, blob_key(&blob), conditions).await?;
            Ok(Done::Deleted)
        }
        Request::SetBlobTier { blob, tier } => {
            let cond = Default::default();
            ops::set_blob_props(c.shard, blob_key(&blob), PropsChange::Tier(tier), cond).await?;
            Ok(Done::TierSet)
        }
        _ => Err(ErrorCode::InvalidInput.into()),
    }
}
