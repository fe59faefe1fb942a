//! Blob Batch: Delete Blob sub-requests, each addressed, authorised and answered on its own.

use edgeblob_engine::ops;
use edgeblob_proto::batch::{self, SubRequest};
use edgeblob_proto::op::{self, Operation};
use edgeblob_proto::request::{BlobBatch, Request};
use edgeblob_proto::{addr, xml, ErrorCode};
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

pub async fn run(c: &Call<'_>, p: BlobBatch, body: Incoming) -> Result<Response<RespBody>> {
    let raw = body::collect(body, MAX_BATCH_BODY, c.ctx.body_timeout).await?;
    let text = std::str::from_utf8(&raw).map_err(|_| ErrorCode::InvalidInput)?;
    let subs = batch::parse(text, &p.boundary)?;
    let out_boundary = format!("batchresponse_{}", copy::copy_id(c.shard));
    let mut out = String::new();
    for sub in subs {
        let (status, reason, mut headers, body) = match delete(c, &p, &sub).await {
            Ok(()) => {
                (202, "Accepted", vec![("x-ms-delete-type-permanent".to_owned(), "true".to_owned())], String::new())
            }
            Err(e) => {
                let time = httpdate::fmt_http_date(std::time::SystemTime::now());
                let x = xml::error(e.code.as_str(), &e.message, "", &time);
                (e.status().as_u16(), "Error", vec![("x-ms-error-code".to_owned(), e.code.as_str().to_owned())], x)
            }
        };
        headers.push(("x-ms-version".into(), VERSION.into()));
        out.push_str(&batch::response_part(&out_boundary, &sub.content_id, status, reason, &headers, &body));
    }
    out.push_str(&format!("--{out_boundary}--\r\n"));
    let mut r = respond(StatusCode::ACCEPTED, body::full(out));
    set(r.headers_mut(), "content-type", format!("multipart/mixed; boundary={out_boundary}"));
    Ok(r)
}

/// One sub-request: Delete Blob, authorised on its own (never anonymously), within the batch's
/// account and, when the batch was sent to a container, that container.
async fn delete(c: &Call<'_>, outer: &BlobBatch, sub: &SubRequest) -> Result<()> {
    let t = addr::parse(&sub.target, Some(c.host))?;
    let method = sub.method.parse::<Method>().map_err(|_| ErrorCode::UnsupportedHttpVerb)?;
    let op = op::route(&method, &t, &sub.headers)?;
    if op != Operation::DeleteBlob {
        return Err(ApiError::with_message(ErrorCode::InvalidInput, "A batch may only hold Delete Blob requests."));
    }
    if t.account != outer.account || outer.container.as_ref().is_some_and(|ctr| t.container.as_ref() != Some(ctr)) {
        return Err(ErrorCode::InvalidInput.into());
    }
    auth::authenticate(c.ctx, &t, op, &sub.method, &sub.headers, c.peer, None)?;
    let Request::DeleteBlob { blob, conditions } = Request::parse(op, &t, &sub.headers, &[])? else {
        return Err(ErrorCode::InvalidInput.into());
    };
    ops::delete_blob(c.shard, blob_key(&blob), conditions).await?;
    Ok(())
}
