//! Who may run a request: SharedKey, a SAS, an Entra ID token, or nobody (anonymous reads of
//! public containers). What each may do is read from one table, `edgeblob_proto::permission`.

use std::net::SocketAddr;
use std::rc::Rc;

use edgeblob_engine::Shard;
use edgeblob_meta::model::PublicAccess;
use edgeblob_proto::addr::Target;
use edgeblob_proto::bearer::Principal;
use edgeblob_proto::conditions::{Conditions, ETagMatch};
use edgeblob_proto::op::Operation;
use edgeblob_proto::{permission, sas, shared_key, ErrorCode};
use http::HeaderMap;

use super::error::{ApiError, Result};
use super::HttpCtx;

/// How a request proved its right to run: what a copy's source is checked against as well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// The account's key: everything in the account.
    SharedKey,
    /// The SAS in the request's query: what it grants, where it grants it. `create_only`: it
    /// may create blobs but not overwrite them (`c` without `w`).
    Sas { create_only: bool },
    /// An Entra ID token: what the node's role bindings give its principal.
    Bearer(Rc<Principal>),
    /// Nothing: reads of public containers only.
    Anonymous,
}

/// Authorises `op` on `t`. `anonymous` is the shard to look up a container's public access on,
/// or `None` where anonymous requests are never allowed (batch sub-requests).
pub fn authenticate(
    ctx: &HttpCtx,
    t: &Target,
    op: Operation,
    method: &str,
    headers: &HeaderMap,
    peer: SocketAddr,
    anonymous: Option<&Shard>,
) -> Result<Credential> {
    // The detail goes to the client (Azure sends the string-to-sign too, to debug a signer);
    // the log gets the kind only: a string-to-sign can hold a copy source's SAS.
    let failed = |kind: &str, why: String| {
        tracing::info!(account = %t.account, kind, "authentication failed");
        ApiError::authentication(ErrorCode::AuthenticationFailed, why)
    };
    let keys = ctx
        .accounts
        .get(&t.account)
        .ok_or_else(|| failed("unknown account", format!("unknown account {}", t.account)))?;
    // A user delegation SAS bound to an end user (`sduoid`) comes with that user's token in
    // `Authorization`: the SAS authorises, the token only proves who presents it.
    let bound_sas = t.param("sig").is_some() && t.param("sduoid").is_some();
    if let Some(auth) = headers.get("authorization").filter(|_| !bound_sas) {
        let auth = auth.to_str().map_err(|_| failed("malformed", "unreadable Authorization header".into()))?;
        if let Some(token) = bearer_token(auth) {
            return bearer(ctx, t, op, token, headers);
        }
        let signed = shared_key::SignedRequest { method, raw_path: &t.raw_path, query: &t.query, headers };
        shared_key::verify(&t.account, keys, &signed, auth).map_err(|e| failed("SharedKey", e.to_string()))?;
        let now = edgeblob_engine::shard::now_ns().div_euclid(1_000_000_000);
        shared_key::check_date(headers, now).map_err(|e| failed("request date", e.to_string()))?;
        return Ok(Credential::SharedKey);
    }
    if t.param("sig").is_some() {
        let now = edgeblob_engine::shard::now_ns() / 1_000_000_000;
        let policy = anonymous.and_then(|s| stored_policy(s, t));
        let r = sas::SasRequest {
            target: t,
            op,
            now,
            client_ip: Some(peer.ip()),
            https: ctx.https,
            policy: policy.as_ref(),
        };
        let signer = sas::verify(&t.account, keys, &r).map_err(|e| match e.code() {
            ErrorCode::AuthenticationFailed => failed("SAS", e.to_string()),
            code => ApiError::authentication(code, e),
        })?;
        if let sas::Signer::UserDelegation { oid, tid, user } = signer {
            if let Some(user) = user {
                presented_by(ctx, t, headers, &user)?;
            }
            delegated(ctx, t, op, oid, tid)?;
        }
        return Ok(Credential::Sas { create_only: sas::create_only(t) });
    }
    if anonymous.is_some_and(|s| anonymous_allowed(s, t, op)) {
        return Ok(Credential::Anonymous);
    }
    // Azure answers an anonymous request in a container that does not open it to anonymous
    // readers (private, or open at blob level only and asked for the container) as if nothing
    // were there, so that no one learns which containers exist.
    if t.container.is_some() {
        return Err(ErrorCode::ResourceNotFound.into());
    }
    Err(ApiError::with_message(
        ErrorCode::AuthenticationFailed,
        "Server failed to authenticate the request: no credentials (anonymous access is not enabled).",
    ))
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case, as RFC 7235
/// has it).
pub(super) fn bearer_token(auth: &str) -> Option<&str> {
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// An Entra ID token: over TLS only, validated against the tenant's keys, then authorised by the
/// role bindings for the operation's action. A token that fails validation is answered 401 with
/// the challenge the SDKs read to find the tenant; a valid one without a binding, 403.
fn bearer(ctx: &HttpCtx, t: &Target, op: Operation, token: &str, headers: &HeaderMap) -> Result<Credential> {
    let principal = validated(ctx, t, token, headers)?;
    if let (Some(entra), Some(action)) = (&ctx.entra, permission::needs(op).role) {
        if !entra.allows(&principal, &t.account, t.container.as_deref(), action) {
            tracing::info!(account = %t.account, op = op.name(), principal = %principal.object_id, "no role binding allows it");
            return Err(ErrorCode::AuthorizationPermissionMismatch.into());
        }
    }
    Ok(Credential::Bearer(principal))
}

/// A SAS bound to a delegated user holds only when that user presents it: their own token, valid
/// here, whose object id and tenant are the SAS's `sduoid` and `skdutid` (else the key's tenant).
fn presented_by(ctx: &HttpCtx, t: &Target, headers: &HeaderMap, user: &sas::DelegatedUser) -> Result<()> {
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(bearer_token).ok_or_else(|| {
        ApiError::authentication(
            ErrorCode::AuthenticationFailed,
            "This SAS is bound to a delegated user (sduoid), whose Entra ID token must come with it.",
        )
    })?;
    let p = validated(ctx, t, token, headers)?;
    if p.object_id != user.oid || p.tenant != user.tid {
        return Err(ApiError::authentication(
            ErrorCode::AuthenticationFailed,
            "The token is not the delegated user's this SAS is bound to (sduoid, skdutid).",
        ));
    }
    Ok(())
}

/// A token's principal, once the token is valid here (TLS, a service version that has tokens,
/// the keys and policy of `[auth.entra]`); remembered by the shard while it holds.
fn validated(ctx: &HttpCtx, t: &Target, token: &str, headers: &HeaderMap) -> Result<Rc<Principal>> {
    let Some(entra) = &ctx.entra else {
        return Err(ApiError::authentication(
            ErrorCode::AuthenticationFailed,
            "Bearer tokens are not accepted by this node (no [auth.entra] is configured).",
        ));
    };
    // Tokens came with service version 2017-11-09; a request naming an older one (or none, which
    // Azure takes as the oldest) is refused as Azure refuses it.
    if edgeblob_proto::headers::get(headers, "x-ms-version").is_none_or(|v| v < "2017-11-09") {
        return Err(ApiError::authentication(
            ErrorCode::AuthenticationFailed,
            "Authentication scheme Bearer is not supported in this version.",
        ));
    }
    if !ctx.https {
        return Err(ApiError::authentication(
            ErrorCode::AuthenticationFailed,
            "Authentication scheme Bearer is not allowed with HTTP.",
        ));
    }
    // The generation is read before validating: a change of keys meanwhile makes the entry
    // stale at once rather than letting it outlive the keys it was checked with.
    let (generation, now) = (entra.generation(), edgeblob_engine::shard::now_ns().div_euclid(1_000_000_000));
    let cached = ctx.tokens.borrow_mut().get(token, &t.account, generation, now);
    let principal = match cached {
        Some(p) => p,
        None => {
            let p = Rc::new(entra.validate(token, &t.account).map_err(|e| {
                tracing::info!(account = %t.account, why = %e, "token refused");
                let mut refused = ApiError::authentication(ErrorCode::InvalidAuthenticationInfo, e);
                refused.headers.push(("www-authenticate", entra.challenge()));
                refused
            })?);
            ctx.tokens.borrow_mut().put(token, &t.account, generation, p.clone());
            p
        }
    };
    Ok(principal)
}

/// A user delegation SAS grants what it says and no more than its key's principal may do now
/// (Azure checks the principal's role at each request, so a revoked role revokes its SAS): the
/// bindings naming the principal by object id. Group and app-role bindings do not carry over,
/// since the SAS brings no token to read groups from.
pub(super) fn delegated(ctx: &HttpCtx, t: &Target, op: Operation, oid: String, tid: String) -> Result<()> {
    let entra = ctx.entra.as_ref().ok_or_else(|| {
        ApiError::authentication(
            ErrorCode::AuthenticationFailed,
            "This node has no [auth.entra]: no user delegation key is valid.",
        )
    })?;
    let principal = Principal { object_id: oid, tenant: tid, ..Principal::default() };
    let allowed = permission::needs(op)
        .role
        .is_none_or(|action| entra.allows(&principal, &t.account, t.container.as_deref(), action));
    if !allowed {
        return Err(ErrorCode::AuthorizationPermissionMismatch.into());
    }
    Ok(())
}

/// The stored access policy a service SAS names (`si`) on the container it addresses, as the
/// catalog holds it now: a policy changed or removed changes or revokes its SAS at once.
pub(super) fn stored_policy(s: &Shard, t: &Target) -> Option<sas::StoredPolicy> {
    let si = t.param("si")?;
    let c = s.node.container(&t.account, t.container.as_deref()?)?;
    let p = edgeblob_engine::container::access_policies(&c).into_iter().find(|p| p.id == si)?;
    Some(sas::StoredPolicy { id: p.id, start: p.start, expiry: p.expiry, permission: p.permission })
}

/// The conditions a write runs under: a create-only SAS adds `If-None-Match: *`, so it can make
/// a new blob but never replace one (409 `BlobAlreadyExists`).
pub fn write_conditions(credential: &Credential, mut cond: Conditions) -> Conditions {
    if *credential == (Credential::Sas { create_only: true }) {
        cond.if_none_match = Some(ETagMatch::Any);
    }
    cond
}

/// Whether an anonymous request may run, from the same table as a SAS (`sas::required`): what a
/// read-only SAS (`r`, `l`) would reach of what the container opens. `blob` access opens reads
/// of its blobs; `container` access also the container's properties and the listing of its
/// blobs. Never the ACL, never a write.
fn anonymous_allowed(s: &Shard, t: &Target, op: Operation) -> bool {
    let Some(c) = t.container.as_deref().and_then(|c| s.node.container(&t.account, c)) else { return false };
    let Some((level, letters)) = sas::required(op) else { return false };
    match (c.public_access, level) {
        (PublicAccess::Blob | PublicAccess::Container, sas::Level::Object) => letters == "r",
        (PublicAccess::Container, sas::Level::Container) => letters == "r" || letters == "l",
        _ => false,
    }
}
