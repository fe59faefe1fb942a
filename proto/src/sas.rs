//! Shared access signatures signed with an account key: account SAS and service SAS (container
//! `sr=c`, blob `sr=b`), across the string-to-sign layouts of their `sv` versions (account: before
//! and from 2020-12-06; service: before 2018-11-09, from 2018-11-09, from 2020-12-06), with the
//! time window, IP range, protocol and permission checks.

use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::addr::Target;
use crate::error_code::ErrorCode;
use crate::op::Operation;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SasError {
    #[error("the SAS lacks {0}")]
    Missing(&'static str),
    #[error("the signature does not match")]
    Signature,
    #[error("the SAS is not valid at this time")]
    Time,
    #[error("the request comes from an address the SAS does not allow")]
    Ip,
    #[error("the SAS does not allow this protocol")]
    Protocol,
    #[error("the SAS does not grant the permission this operation needs")]
    Permission,
    #[error("the SAS does not cover this kind of resource")]
    Resource,
    #[error("the SAS does not cover the blob service")]
    Service,
    #[error("the SAS uses {0}, which this node does not support")]
    Unsupported(&'static str),
    #[error("the SAS names a stored access policy the container does not have")]
    NoPolicy,
    #[error("the SAS and its stored access policy both set {0}")]
    PolicyConflict(&'static str),
}

/// A stored access policy (a container's signed identifier) as a SAS naming it (`si`) uses
/// it: the fields it fixes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredPolicy {
    pub id: String,
    pub start: Option<String>,
    pub expiry: Option<String>,
    pub permission: Option<String>,
}

/// Who signed a SAS that verified: an account key, or a user delegation key (whose principal's
/// role bindings still bound what the SAS may do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    AccountKey,
    /// A user delegation key of principal `oid` in tenant `tid`; `user`: the SAS is bound to a
    /// delegated end user (`sduoid`), who must present a token of their own with it.
    UserDelegation {
        oid: String,
        tid: String,
        user: Option<DelegatedUser>,
    },
}

/// The end user a user delegation SAS is bound to (`sduoid`), in their tenant (`skdutid`, else
/// the key's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegatedUser {
    pub oid: String,
    pub tid: String,
}

/// The fields a user delegation key is issued with (Get User Delegation Key), which a SAS
/// signed with it repeats (`skoid`, `sktid`, `skt`, `ske`, `sks`, `skv`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationKeyFields<'a> {
    pub oid: &'a str,
    pub tid: &'a str,
    pub start: &'a str,
    pub expiry: &'a str,
    pub service: &'a str,
    pub version: &'a str,
    /// The delegated users' tenant the key was asked for (`DelegatedUserTid`, `skdutid`);
    /// empty when none.
    pub delegated_tid: &'a str,
}

/// The value of a user delegation key: an HMAC of its fields under an account key. The node
/// stores no key: it derives the same value again from a SAS's fields, and rotating the account
/// key revokes every user delegation key derived from it (as Azure's key rotation does not;
/// Azure revokes them with a management call this node does not have).
pub fn user_delegation_key(account_key: &[u8], f: &DelegationKeyFields) -> Vec<u8> {
    let mut fields = vec!["edgeblob user delegation key", f.oid, f.tid, f.start, f.expiry, f.service, f.version];
    // A key for another tenant's users is another key (without one, the value is as before).
    if !f.delegated_tid.is_empty() {
        fields.push(f.delegated_tid);
    }
    hmac_b64(account_key, &fields.join("\n"))
}

/// An ISO 8601 UTC time to the second, as Azure writes them (`2026-12-04T08:00:00Z`).
pub fn iso_time(secs: i64) -> String {
    // Civil date from days (Howard Hinnant's algorithm), the inverse of `parse_time`'s.
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

impl SasError {
    /// Azure's answer: a SAS that is not valid fails authentication; a valid one that does not
    /// reach this operation fails authorisation, with the reason in the code.
    pub fn code(&self) -> ErrorCode {
        match self {
            SasError::Missing(_)
            | SasError::Signature
            | SasError::Time
            | SasError::Unsupported(_)
            | SasError::NoPolicy => ErrorCode::AuthenticationFailed,
            // Azure: a field both in the SAS and in its policy fails the request with 400.
            SasError::PolicyConflict(_) => ErrorCode::InvalidQueryParameterValue,
            SasError::Ip => ErrorCode::AuthorizationSourceIPMismatch,
            SasError::Protocol => ErrorCode::AuthorizationProtocolMismatch,
            SasError::Permission => ErrorCode::AuthorizationPermissionMismatch,
            SasError::Resource => ErrorCode::AuthorizationResourceTypeMismatch,
            SasError::Service => ErrorCode::AuthorizationServiceMismatch,
        }
    }
}

/// Seconds since the epoch of an ISO 8601 UTC time (`2026-11-22T10:00:00Z`, fractions and a
/// date alone allowed).
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim().trim_end_matches('Z');
    let (date, time) = s.split_once('T').unwrap_or((s, "00:00:00"));
    // Unsigned fields of a four-digit year: no sign, nothing that overflows the arithmetic below
    // (a fuzzer found a year of 19 billion wrapping the result around).
    let field = |x: &str| x.parse::<u32>().ok().map(i64::from);
    let mut d = date.split('-').map(field);
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.split('.').next()?;
    let mut t = time.split(':').map(field);
    let (hh, mm) = (t.next()??, t.next()??);
    let ss = match t.next() {
        Some(s) => s?,
        None => 0,
    };
    if y > 9999 || !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

fn hmac_b64(key: &[u8], s: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(s.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// What a request is, for checking a SAS against it.
pub struct SasRequest<'a> {
    pub target: &'a Target,
    pub op: Operation,
    pub now: i64,
    pub client_ip: Option<IpAddr>,
    pub https: bool,
    /// The stored access policy the SAS's `si` names, where the container has one by that id.
    pub policy: Option<&'a StoredPolicy>,
}

fn ip_allowed(range: &str, ip: Option<IpAddr>) -> bool {
    let Some(ip) = ip else { return false };
    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
    match (lo.parse::<IpAddr>(), hi.parse::<IpAddr>()) {
        (Ok(lo), Ok(hi)) => lo <= ip && ip <= hi,
        _ => false,
    }
}

/// What an operation acts on, as an account SAS's `srt` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Any signed resource type will do.
    Any,
    /// `s`: the service (List Containers).
    Service,
    /// `c`: a container itself, and the listing of its blobs.
    Container,
    /// `o`: a blob.
    Object,
}

/// What a SAS must grant for `op`: its row of [`crate::permission::needs`], the one table.
pub fn required(op: Operation) -> Option<(Level, &'static str)> {
    crate::permission::needs(op).sas
}

/// Whether the SAS may create blobs but not overwrite them: `c` without `w`. A write under it
/// must find no blob there.
pub fn create_only(t: &Target) -> bool {
    let sp = t.param("sp").unwrap_or("");
    sp.contains('c') && !sp.contains('w')
}

/// Verifies a SAS in the request's query against the account's keys (or the user delegation
/// keys derived from them), and says who signed it.
pub fn verify(account: &str, keys: &[Vec<u8>], req: &SasRequest) -> Result<Signer, SasError> {
    let t = req.target;
    let p = |k: &str| t.param(k).unwrap_or("");
    let sig = B64.decode(t.param("sig").ok_or(SasError::Missing("sig"))?).map_err(|_| SasError::Signature)?;
    let sv = t.param("sv").ok_or(SasError::Missing("sv"))?;
    let sp = p("sp");
    let account_sas = t.param("ss").is_some();
    let delegation = (!account_sas && t.param("skoid").is_some()).then(|| DelegationKeyFields {
        oid: p("skoid"),
        tid: p("sktid"),
        start: p("skt"),
        expiry: p("ske"),
        service: p("sks"),
        version: p("skv"),
        delegated_tid: p("skdutid"),
    });
    let string_to_sign = if account_sas {
        let mut parts = vec![account, sp, p("ss"), p("srt"), p("st"), p("se"), p("sip"), p("spr"), sv];
        if sv >= "2020-12-06" {
            parts.push(p("ses"));
        }
        parts.push("");
        parts.join("\n")
    } else {
        let sr = t.param("sr").ok_or(SasError::Missing("sr"))?;
        // A service SAS covers its container (sr=c) or one blob (sr=b), never the service.
        let Some(container) = t.container.as_deref() else { return Err(SasError::Resource) };
        let canonical = match sr {
            "c" => format!("/blob/{account}/{container}"),
            "b" | "bs" | "bv" => format!("/blob/{account}/{container}/{}", t.blob.as_deref().unwrap_or("")),
            _ => return Err(SasError::Resource),
        };
        let mut parts = vec![sp, p("st"), p("se"), canonical.as_str()];
        match &delegation {
            None => parts.push(p("si")),
            Some(k) => {
                // A user delegation SAS, by its version's layout (Azure's "Create a user
                // delegation SAS"): the key's fields; from 2020-02-10 the authorized and
                // unauthorized object ids and the correlation id; from 2025-07-05 the delegated
                // user's tenant and object id.
                parts.extend([k.oid, k.tid, k.start, k.expiry, k.service, k.version]);
                if sv >= "2020-02-10" {
                    parts.extend([p("saoid"), p("suoid"), p("scid")]);
                }
                if sv >= "2025-07-05" {
                    parts.extend([p("skdutid"), p("sduoid")]);
                }
            }
        }
        parts.extend([p("sip"), p("spr"), sv]);
        if sv >= "2018-11-09" {
            parts.extend([sr, p("snapshot")]);
            if sv >= "2020-12-06" {
                parts.push(p("ses"));
            }
        }
        // From 2026-04-06 a user delegation SAS may bind request headers and query parameters
        // (`srh`, `srq`); absent, each is an empty line.
        if delegation.is_some() && sv >= "2026-04-06" {
            parts.extend(["", ""]);
        }
        parts.extend([p("rscc"), p("rscd"), p("rsce"), p("rscl"), p("rsct")]);
        parts.join("\n")
    };
    let signed_by = |k: &[u8]| {
        let mut mac = Hmac::<Sha256>::new_from_slice(k).expect("HMAC takes any key length");
        mac.update(string_to_sign.as_bytes());
        mac.verify_slice(&sig).is_ok()
    };
    let signer = match &delegation {
        None if keys.iter().any(|k| signed_by(k)) => Signer::AccountKey,
        Some(f) if keys.iter().any(|k| signed_by(&user_delegation_key(k, f))) => {
            let user = Some(p("sduoid")).filter(|u| !u.is_empty()).map(|u| DelegatedUser {
                oid: u.to_owned(),
                tid: if f.delegated_tid.is_empty() { f.tid } else { f.delegated_tid }.to_owned(),
            });
            Signer::UserDelegation { oid: f.oid.to_owned(), tid: f.tid.to_owned(), user }
        }
        _ => return Err(SasError::Signature),
    };
    if let Some(k) = &delegation {
        // What this node does not do is refused, never ignored: a SAS bound to request headers
        // or parameters, or naming a stored policy (which a user delegation SAS cannot). A
        // delegated user (`sduoid`) is signed from version 2025-07-05 only: before, it would
        // be a claim nobody signed.
        if !p("sduoid").is_empty() && sv < "2025-07-05" {
            return Err(SasError::Unsupported("a delegated user object id before version 2025-07-05"));
        }
        for (name, what) in
            [("srh", "signed request headers"), ("srq", "signed request parameters"), ("si", "a stored access policy")]
        {
            if !p(name).is_empty() {
                return Err(SasError::Unsupported(what));
            }
        }
        // The key itself is valid from its start to its expiry, for the blob service.
        let (ks, ke) = (parse_time(k.start), parse_time(k.expiry));
        if ks.is_none_or(|s| req.now < s) || ke.is_none_or(|e| req.now > e) {
            return Err(SasError::Time);
        }
        if k.service != "b" {
            return Err(SasError::Service);
        }
    }
    // A service SAS naming a stored access policy takes from it what it does not say itself
    // (never both: Azure refuses that); the signature covered the SAS's own fields.
    let (sp, st, se) = match (delegation.is_none() && !account_sas).then(|| t.param("si")).flatten() {
        None => (sp.to_owned(), t.param("st").map(str::to_owned), t.param("se").map(str::to_owned)),
        Some(_) => {
            let policy = req.policy.ok_or(SasError::NoPolicy)?;
            let pick = |name: &'static str, own: Option<&str>, stored: &Option<String>| match (own, stored) {
                (Some(o), None) if !o.is_empty() => Ok(Some(o.to_owned())),
                (Some(o), Some(_)) if !o.is_empty() => Err(SasError::PolicyConflict(name)),
                (_, stored) => Ok(stored.clone()),
            };
            (
                pick("sp", Some(sp), &policy.permission)?.unwrap_or_default(),
                pick("st", t.param("st"), &policy.start)?,
                pick("se", t.param("se"), &policy.expiry)?,
            )
        }
    };
    let sp = sp.as_str();
    let expiry = se.as_deref().and_then(parse_time).ok_or(SasError::Missing("se"))?;
    let start = st.as_deref().map(parse_time);
    if req.now > expiry || start.is_some_and(|s| s.is_none_or(|s| req.now < s)) {
        return Err(SasError::Time);
    }
    if let Some(range) = t.param("sip") {
        if !ip_allowed(range, req.client_ip) {
            return Err(SasError::Ip);
        }
    }
    if !req.https && t.param("spr").is_some_and(|spr| !spr.split(',').any(|x| x == "http")) {
        return Err(SasError::Protocol);
    }
    let Some((level, letters)) = required(req.op) else { return Err(SasError::Permission) };
    if account_sas {
        if !p("ss").contains('b') {
            return Err(SasError::Service);
        }
        let srt = match level {
            Level::Any => None,
            Level::Service => Some('s'),
            Level::Container => Some('c'),
            Level::Object => Some('o'),
        };
        if srt.is_some_and(|k| !p("srt").contains(k)) {
            return Err(SasError::Resource);
        }
    } else {
        // A service SAS covers the blobs of its container, or one blob; a container SAS also
        // lists them. Never the service, nor the container itself (its creation, deletion,
        // properties or metadata): those take an account SAS.
        let covered = match level {
            Level::Any => true,
            Level::Object => t.blob.is_some(),
            Level::Container => req.op == Operation::ListBlobs && p("sr") == "c",
            Level::Service => false,
        };
        if !covered {
            return Err(SasError::Resource);
        }
    }
    if !letters.is_empty() && !letters.chars().any(|c| sp.contains(c)) {
        return Err(SasError::Permission);
    }
    Ok(signer)
}

/// Signs a SAS string-to-sign (for tests and for the node's own outgoing requests).
pub fn sign(key: &[u8], string_to_sign: &str) -> String {
    B64.encode(hmac_b64(key, string_to_sign))
}

/// `url` without its SAS signature (`sig`): what may be shown of a copy source. The rest of a SAS
/// (permissions, expiry) is harmless without it; the signature is a credential.
pub fn redact_signature(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else { return url.to_owned() };
    let kept: Vec<&str> =
        query.split('&').filter(|p| !p.split('=').next().unwrap_or("").eq_ignore_ascii_case("sig")).collect();
    if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_times_are_written_as_parsed() {
        for t in ["1970-01-01T00:00:00Z", "2000-02-29T23:59:59Z", "2026-12-04T07:15:00Z", "2036-12-31T12:00:00Z"] {
            assert_eq!(super::iso_time(super::parse_time(t).unwrap()), t);
        }
    }

    #[test]
    fn a_copy_source_loses_its_signature_and_nothing_else() {
        use super::redact_signature as r;
        assert_eq!(r("http://h/a/c/b?sv=2026-10-06&sig=abc%2B%3D&sp=r"), "http://h/a/c/b?sv=2026-10-06&sp=r");
        assert_eq!(r("http://h/a/c/b?SIG=x"), "http://h/a/c/b", "the name in any case");
        assert_eq!(r("http://h/a/c/b?signedx=1"), "http://h/a/c/b?signedx=1");
        assert_eq!(r("http://h/a/c/b"), "http://h/a/c/b");
    }

    use super::*;
    use crate::addr::parse;

    const KEY: &[u8] = b"a test key of some length";

    fn target(path: &str, params: &[(&str, &str)], sig_over: &str) -> Target {
        let mut t = parse(path, Some("127.0.0.1")).unwrap();
        for (k, v) in params {
            t.query.push(((*k).into(), (*v).into()));
        }
        t.query.push(("sig".into(), sign(KEY, sig_over)));
        t
    }

    fn req(t: &Target, op: Operation) -> SasRequest<'_> {
        SasRequest {
            target: t,
            op,
            now: parse_time("2026-11-22T12:00:00Z").unwrap(),
            client_ip: "127.0.0.1".parse().ok(),
            https: false,
            policy: None,
        }
    }

    #[test]
    fn times_parse() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2026-11-22T09:31:17Z"), Some(1_795_339_877));
        assert_eq!(parse_time("2026-11-22T09:31:17.1234567Z"), Some(1_795_339_877));
        assert_eq!(parse_time("2026-11-22"), Some(1_795_305_600));
        assert_eq!(parse_time("2026-13-01"), None);
        // Found by fuzzing: a year that overflowed the arithmetic, and signed fields.
        assert_eq!(parse_time("19000000000-11-09"), None);
        assert_eq!(parse_time("2026-11-22T-5:00:00Z"), None);
        assert_eq!(parse_time("2026--11-22"), None);
        assert_eq!(parse_time("9999-12-31T23:59:59Z"), Some(253_402_300_799));
    }

    #[test]
    fn account_sas_new_and_old_layouts() {
        let new = [
            ("sv", "2026-10-06"),
            ("ss", "b"),
            ("srt", "sco"),
            ("sp", "rwdlac"),
            ("se", "2026-11-23T00:00:00Z"),
            ("spr", "https,http"),
        ];
        let sts = "acct\nrwdlac\nb\nsco\n\n2026-11-23T00:00:00Z\n\nhttps,http\n2026-10-06\n\n";
        let t = target("/acct/ctr/b", &new, sts);
        verify("acct", &[KEY.to_vec()], &req(&t, Operation::PutBlob)).unwrap();
        let old = [("sv", "2019-02-02"), ("ss", "b"), ("srt", "o"), ("sp", "r"), ("se", "2026-11-23T00:00:00Z")];
        let t = target("/acct/ctr/b", &old, "acct\nr\nb\no\n\n2026-11-23T00:00:00Z\n\n\n2019-02-02\n");
        verify("acct", &[KEY.to_vec()], &req(&t, Operation::GetBlob)).unwrap();
        assert_eq!(verify("acct", &[KEY.to_vec()], &req(&t, Operation::DeleteBlob)), Err(SasError::Permission));
        assert_eq!(verify("acct", &[b"other".to_vec()], &req(&t, Operation::GetBlob)), Err(SasError::Signature));
        let t2 = target(
            "/acct/ctr?restype=container&comp=list",
            &old,
            "acct\nr\nb\no\n\n2026-11-23T00:00:00Z\n\n\n2019-02-02\n",
        );
        assert_eq!(
            verify("acct", &[KEY.to_vec()], &req(&t2, Operation::ListBlobs)),
            Err(SasError::Resource),
            "srt=o is blobs only"
        );
    }

    /// Azure's tables ("Create an account SAS", "Create a service SAS"), operation by operation:
    /// the path it runs on, the single letters that grant it, its `srt` letter (None: any), and
    /// whether a container SAS (`sr=c`) reaches it.
    #[test]
    fn each_operation_needs_the_permission_and_resource_type_azure_documents() {
        use Operation::*;
        let (blob, ctr, svc) = ("/acct/ctr/b", "/acct/ctr", "/acct");
        let table: &[(Operation, &str, &str, Option<char>, bool)] = &[
            (ListContainers, svc, "l", Some('s'), false),
            // On a container path: a service SAS needs a container to be signed for.
            (GetAccountInfo, ctr, "rwdlacup", None, true),
            (CreateContainer, ctr, "cw", Some('c'), false),
            (DeleteContainer, ctr, "d", Some('c'), false),
            (GetContainerProperties, ctr, "r", Some('c'), false),
            (SetContainerMetadata, ctr, "w", Some('c'), false),
            (GetContainerAcl, ctr, "", Some('c'), false),
            (SetContainerAcl, ctr, "", Some('c'), false),
            (ListBlobs, ctr, "l", Some('c'), true),
            (PutBlob, blob, "cw", Some('o'), true),
            (PutBlobFromUrl, blob, "cw", Some('o'), true),
            (CopyBlob, blob, "cw", Some('o'), true),
            (AbortCopyBlob, blob, "w", Some('o'), true),
            (PutBlock, blob, "w", Some('o'), true),
            (PutBlockFromUrl, blob, "w", Some('o'), true),
            (PutBlockList, blob, "w", Some('o'), true),
            (GetBlockList, blob, "r", Some('o'), true),
            (GetBlob, blob, "r", Some('o'), true),
            (GetBlobProperties, blob, "r", Some('o'), true),
            (DeleteBlob, blob, "d", Some('o'), true),
            (SetBlobMetadata, blob, "w", Some('o'), true),
            (SetBlobProperties, blob, "w", Some('o'), true),
            (SetBlobTier, blob, "w", Some('o'), true),
        ];
        let keys = [KEY.to_vec()];
        let se = "2026-11-23T00:00:00Z";
        for &(op, path, letters, srt, container_sas) in table {
            for letter in "rwdlacup".chars() {
                let sp = letter.to_string();
                let grants = letters.contains(letter);
                let params = [("sv", "2026-10-06"), ("ss", "b"), ("srt", "sco"), ("sp", &sp), ("se", se)];
                let t = target(path, &params, &format!("acct\n{sp}\nb\nsco\n\n{se}\n\n\n2026-10-06\n\n"));
                let got = verify("acct", &keys, &req(&t, op));
                assert_eq!(got.is_ok(), grants, "{op:?} with an account SAS sp={sp}: {got:?}");
                if !grants {
                    assert_eq!(got, Err(SasError::Permission), "{op:?} sp={sp}");
                }
                let sts = format!("{sp}\n\n{se}\n/blob/acct/ctr\n\n\n\n2026-10-06\nc\n\n\n\n\n\n\n");
                let params = [("sv", "2026-10-06"), ("sr", "c"), ("sp", &sp), ("se", se)];
                let got = verify("acct", &keys, &req(&target(path, &params, &sts), op));
                assert_eq!(got.is_ok(), grants && container_sas, "{op:?} with a container SAS sp={sp}: {got:?}");
            }
            // The resource type: every letter granted, but only the other two types.
            if let Some(kind) = srt {
                let others: String = "sco".chars().filter(|&c| c != kind).collect();
                let params = [("sv", "2026-10-06"), ("ss", "b"), ("srt", &others), ("sp", "rwdlacup"), ("se", se)];
                let sts = format!("acct\nrwdlacup\nb\n{others}\n\n{se}\n\n\n2026-10-06\n\n");
                let got = verify("acct", &keys, &req(&target(path, &params, &sts), op));
                let want = if letters.is_empty() { SasError::Permission } else { SasError::Resource };
                assert_eq!(got, Err(want), "{op:?} with srt={others}");
            }
        }
        // A blob SAS (sr=b) reaches its blob, and neither the listing nor another blob.
        let sts = format!("rl\n\n{se}\n/blob/acct/ctr/b\n\n\n\n2026-10-06\nb\n\n\n\n\n\n\n");
        let params = [("sv", "2026-10-06"), ("sr", "b"), ("sp", "rl"), ("se", se)];
        verify("acct", &keys, &req(&target(blob, &params, &sts), GetBlob)).unwrap();
        let listing = verify("acct", &keys, &req(&target(ctr, &params, &sts), ListBlobs));
        assert!(listing.is_err(), "{listing:?}");
        let other = verify("acct", &keys, &req(&target("/acct/ctr/other", &params, &sts), GetBlob));
        assert_eq!(other, Err(SasError::Signature));
        // An account SAS for other services only.
        let params = [("sv", "2026-10-06"), ("ss", "qt"), ("srt", "sco"), ("sp", "r"), ("se", se)];
        let sts = format!("acct\nr\nqt\nsco\n\n{se}\n\n\n2026-10-06\n\n");
        assert_eq!(verify("acct", &keys, &req(&target(blob, &params, &sts), GetBlob)), Err(SasError::Service));
    }

    #[test]
    fn container_sas_and_its_checks() {
        let params = [
            ("sv", "2026-10-06"),
            ("sr", "c"),
            ("sp", "racwdl"),
            ("st", "2026-11-22T00:00:00Z"),
            ("se", "2026-11-22T13:00:00Z"),
        ];
        let sts =
            "racwdl\n2026-11-22T00:00:00Z\n2026-11-22T13:00:00Z\n/blob/acct/ctr\n\n\n\n2026-10-06\nc\n\n\n\n\n\n\n";
        let t = target("/acct/ctr/dir/b.txt", &params, sts);
        verify("acct", &[KEY.to_vec()], &req(&t, Operation::PutBlock)).unwrap();
        let mut late = req(&t, Operation::GetBlob);
        late.now = parse_time("2026-11-22T14:00:00Z").unwrap();
        assert_eq!(verify("acct", &[KEY.to_vec()], &late), Err(SasError::Time));
        let other = target("/acct/other/b.txt", &params, sts);
        assert_eq!(
            verify("acct", &[KEY.to_vec()], &req(&other, Operation::GetBlob)),
            Err(SasError::Signature),
            "another container"
        );
        let old = [
            ("sv", "2017-07-29"),
            ("sr", "c"),
            ("sp", "r"),
            ("se", "2026-11-23T00:00:00Z"),
            ("sip", "10.0.0.1-10.0.0.9"),
        ];
        let t = target(
            "/acct/ctr/b",
            &old,
            "r\n\n2026-11-23T00:00:00Z\n/blob/acct/ctr\n\n10.0.0.1-10.0.0.9\n\n2017-07-29\n\n\n\n\n",
        );
        assert_eq!(verify("acct", &[KEY.to_vec()], &req(&t, Operation::GetBlob)), Err(SasError::Ip));
    }

    #[test]
    fn https_only_sas_refuses_http() {
        let params = [
            ("sv", "2026-10-06"),
            ("ss", "b"),
            ("srt", "o"),
            ("sp", "r"),
            ("se", "2026-11-23T00:00:00Z"),
            ("spr", "https"),
        ];
        let t = target("/acct/ctr/b", &params, "acct\nr\nb\no\n\n2026-11-23T00:00:00Z\n\nhttps\n2026-10-06\n\n");
        assert_eq!(verify("acct", &[KEY.to_vec()], &req(&t, Operation::GetBlob)), Err(SasError::Protocol));
        let mut https = req(&t, Operation::GetBlob);
        https.https = true;
        verify("acct", &[KEY.to_vec()], &https).unwrap();
    }
}
