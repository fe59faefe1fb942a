//! Entra ID access tokens (`Authorization: Bearer <jwt>`), validated offline against a key set
//! the node holds: RS256 only, the signature, the issuer of an allowed tenant (v1 and v2 forms),
//! the audience, and the lifetime with leeway. Pure: the key set and the time are arguments.
//!
//! Not a general JWT library: one algorithm, Entra's claims, each typed, so a claim of the wrong
//! JSON type (a string `exp`) fails to parse and the token is refused (the type confusion that
//! let a string `nbf` skip its check in jsonwebtoken before 10.3, CVE-2026-25537, cannot happen
//! here: there is no "failed to parse, so absent").

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde::Deserialize;

/// Azure Storage's own audience, and the forms tokens minted for it carry.
pub const STORAGE_AUDIENCE: &str = "https://storage.azure.com";

/// The largest token read (an Entra token with many groups is a few KiB; anything past this is
/// refused before decoding).
pub const MAX_TOKEN: usize = 16 << 10;

/// Why a token was refused. The display is Azure's `AuthenticationErrorDetail`: it says which
/// check failed, never what the token held.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("The token is malformed.")]
    Malformed,
    #[error("Signature validation failed. The token's algorithm is not RS256.")]
    Algorithm,
    #[error("Signature validation failed. No signing key matches the token's key id.")]
    UnknownKey,
    #[error("Signature validation failed. Signature is invalid.")]
    Signature,
    #[error("Issuer validation failed. Issuer did not match.")]
    Issuer,
    #[error("Audience validation failed. Audience did not match.")]
    Audience,
    #[error("Lifetime validation failed. The token is expired.")]
    Expired,
    #[error("Lifetime validation failed. The token is not yet valid.")]
    NotYetValid,
}

/// One RSA signing key of a tenant (the modulus and exponent of a JWK, big-endian).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub n: Vec<u8>,
    pub e: Vec<u8>,
}

/// A key set: the signing keys by key id (`kid`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    pub keys: BTreeMap<String, SigningKey>,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

impl KeySet {
    /// The RSA signing keys of a JWKS document (OIDC discovery's `jwks_uri`, or a file). Keys of
    /// another type or use, or without a `kid`, are left out; a document that is not a JWKS is
    /// an error (an empty key set would refuse every token, which is safe, but a wrong file
    /// should say so).
    pub fn from_jwks(json: &[u8]) -> Result<KeySet, String> {
        let set: JwkSet = serde_json::from_slice(json).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = BTreeMap::new();
        for k in set.keys {
            if k.kty != "RSA" || k.usage.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            let (Some(kid), Some(n), Some(e)) = (k.kid, k.n, k.e) else { continue };
            let n = B64URL.decode(n.trim_end_matches('=')).map_err(|_| format!("key {kid}: n is not base64url"))?;
            let e = B64URL.decode(e.trim_end_matches('=')).map_err(|_| format!("key {kid}: e is not base64url"))?;
            keys.insert(kid, SigningKey { n, e });
        }
        Ok(KeySet { keys })
    }
}

/// What a node accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Tenant ids whose tokens are taken (the `tid` claim, and the tenant in the issuer).
    pub tenants: Vec<String>,
    /// Audiences accepted as written (a custom audience such as `api://edgeblob-rack7`).
    pub audiences: Vec<String>,
    /// Also accept Azure Storage's audiences: `https://storage.azure.com[/]` and the account's
    /// `https://<account>.blob.core.windows.net[/]` (a token minted for Azure Storage could
    /// then be replayed here: off unless asked for).
    pub storage_audience: bool,
    /// Accept v1 issuers (`https://sts.windows.net/<tid>/`) and v2 ones
    /// (`https://login.microsoftonline.com/<tid>/v2.0`).
    pub v1: bool,
    pub v2: bool,
    /// Seconds of clock skew allowed on `nbf` and `exp`.
    pub leeway: i64,
}

/// Who a valid token names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    pub tenant: String,
    /// The object id (`oid`; `sub` where a token has none).
    pub object_id: String,
    /// The application the token was issued to (`appid` in v1, `azp` in v2).
    pub app_id: Option<String>,
    pub groups: Vec<String>,
    /// App roles of the resource application.
    pub roles: Vec<String>,
    /// A managed identity's Azure resource id (`xms_mirid`).
    pub managed_identity: Option<String>,
    /// Seconds since the epoch when the token expires.
    pub expires: i64,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

/// `aud` is one string in Entra's tokens; JWT allows a list.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    aud: Audience,
    exp: i64,
    nbf: i64,
    tid: String,
    oid: Option<String>,
    sub: Option<String>,
    appid: Option<String>,
    azp: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    xms_mirid: Option<String>,
}

/// Validates `token` for a request to `account` at `now` (seconds since the epoch), in the order
/// that lets nothing unverified decide anything: the form and the algorithm, the key, the
/// signature, then the claims.
pub fn validate(token: &str, keys: &KeySet, policy: &Policy, account: &str, now: i64) -> Result<Principal, TokenError> {
    if token.len() > MAX_TOKEN {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed);
    };
    let decode = |p: &str| B64URL.decode(p).map_err(|_| TokenError::Malformed);
    let header: Header = serde_json::from_slice(&decode(h)?).map_err(|_| TokenError::Malformed)?;
    if header.alg != "RS256" {
        return Err(TokenError::Algorithm);
    }
    let key = header.kid.as_deref().and_then(|k| keys.keys.get(k)).ok_or(TokenError::UnknownKey)?;
    let signature = decode(s)?;
    let signed = &token.as_bytes()[..h.len() + 1 + c.len()];
    ring::signature::RsaPublicKeyComponents { n: &key.n, e: &key.e }
        .verify(&ring::signature::RSA_PKCS1_2048_8192_SHA256, signed, &signature)
        .map_err(|_| TokenError::Signature)?;
    let claims: Claims = serde_json::from_slice(&decode(c)?).map_err(|_| TokenError::Malformed)?;
    if !policy.tenants.contains(&claims.tid) || !issuer_allowed(&claims.iss, &claims.tid, policy) {
        return Err(TokenError::Issuer);
    }
    let audiences = match &claims.aud {
        Audience::One(a) => std::slice::from_ref(a),
        Audience::Many(a) => a.as_slice(),
    };
    if !audiences.iter().any(|a| audience_allowed(a, policy, account)) {
        return Err(TokenError::Audience);
    }
    if claims.exp <= now - policy.leeway {
        return Err(TokenError::Expired);
    }
    if claims.nbf > now + policy.leeway {
        return Err(TokenError::NotYetValid);
    }
    let object_id = claims.oid.or(claims.sub).ok_or(TokenError::Malformed)?;
    Ok(Principal {
        tenant: claims.tid,
        object_id,
        app_id: claims.appid.or(claims.azp),
        groups: claims.groups,
        roles: claims.roles,
        managed_identity: claims.xms_mirid,
        expires: claims.exp,
    })
}

/// The issuer forms of tenant `tid`: v1 `https://sts.windows.net/<tid>/`, v2
/// `https://login.microsoftonline.com/<tid>/v2.0` (a validator must take both, MSAL#600).
fn issuer_allowed(iss: &str, tid: &str, policy: &Policy) -> bool {
    (policy.v1 && iss == format!("https://sts.windows.net/{tid}/"))
        || (policy.v2 && iss == format!("https://login.microsoftonline.com/{tid}/v2.0"))
}

fn audience_allowed(aud: &str, policy: &Policy, account: &str) -> bool {
    if policy.audiences.iter().any(|a| a == aud) {
        return true;
    }
    let aud = aud.strip_suffix('/').unwrap_or(aud);
    policy.storage_audience && (aud == STORAGE_AUDIENCE || aud == format!("https://{account}.blob.core.windows.net"))
}

/// The `WWW-Authenticate` challenge of a 401: where to get a token (the tenant's authorize
/// endpoint) and for which resource. The SDKs' tenant discovery reads both.
pub fn challenge(tenant: &str, resource: &str) -> String {
    format!(
        "Bearer authorization_uri=https://login.microsoftonline.com/{tenant}/oauth2/authorize resource_id={resource}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            tenants: vec!["t1".into()],
            audiences: vec!["api://edgeblob".into()],
            storage_audience: false,
            v1: true,
            v2: true,
            leeway: 300,
        }
    }

    fn unsigned(header: &str, claims: &str) -> String {
        format!("{}.{}.{}", B64URL.encode(header), B64URL.encode(claims), B64URL.encode(b"sig"))
    }

    #[test]
    fn what_is_not_an_rs256_token_is_refused_before_any_key_is_looked_at() {
        let keys = KeySet::default();
        let claims = r#"{"iss":"https://sts.windows.net/t1/","aud":"api://edgeblob","exp":9,"nbf":0,"tid":"t1"}"#;
        for (token, want) in [
            ("abc".to_owned(), TokenError::Malformed),
            ("a.b.c.d".to_owned(), TokenError::Malformed),
            ("!!.b.c".to_owned(), TokenError::Malformed),
            (unsigned(r#"{"alg":"none"}"#, claims), TokenError::Algorithm),
            (unsigned(r#"{"alg":"HS256","kid":"k"}"#, claims), TokenError::Algorithm),
            (unsigned(r#"{"alg":"RS256","kid":"k"}"#, claims), TokenError::UnknownKey),
            (unsigned(r#"{"alg":"RS256"}"#, claims), TokenError::UnknownKey),
            ("x".repeat(MAX_TOKEN + 1), TokenError::Malformed),
        ] {
            assert_eq!(validate(&token, &keys, &policy(), "acct", 1), Err(want), "{token:.40}");
        }
    }

    #[test]
    fn issuers_and_audiences_take_exactly_their_documented_forms() {
        let p = policy();
        assert!(issuer_allowed("https://sts.windows.net/t1/", "t1", &p));
        assert!(issuer_allowed("https://login.microsoftonline.com/t1/v2.0", "t1", &p));
        for bad in
            ["https://sts.windows.net/t1", "https://sts.windows.net/t2/", "https://login.microsoftonline.com/t1/"]
        {
            assert!(!issuer_allowed(bad, "t1", &p), "{bad}");
        }
        assert!(!issuer_allowed("https://sts.windows.net/t1/", "t1", &Policy { v1: false, ..p.clone() }));
        assert!(audience_allowed("api://edgeblob", &p, "acct"));
        assert!(!audience_allowed("https://storage.azure.com/", &p, "acct"), "off unless asked for");
        let storage = Policy { storage_audience: true, ..p };
        for ok in ["https://storage.azure.com", "https://storage.azure.com/", "https://acct.blob.core.windows.net/"] {
            assert!(audience_allowed(ok, &storage, "acct"), "{ok}");
        }
        assert!(!audience_allowed("https://other.blob.core.windows.net", &storage, "acct"));
        assert!(!audience_allowed("https://storage.azure.com.evil", &storage, "acct"));
    }

    #[test]
    fn a_key_set_keeps_only_rsa_signing_keys_with_ids() {
        let doc = br#"{"keys":[
            {"kty":"RSA","kid":"a","use":"sig","n":"AQAB","e":"AQAB"},
            {"kty":"RSA","kid":"b","use":"enc","n":"AQAB","e":"AQAB"},
            {"kty":"EC","kid":"c","crv":"P-256","x":"AA","y":"AA"},
            {"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#;
        let set = KeySet::from_jwks(doc).unwrap();
        assert_eq!(set.keys.keys().collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(set.keys["a"].e, vec![1, 0, 1]);
        assert!(KeySet::from_jwks(b"[]").is_err());
        assert!(KeySet::from_jwks(br#"{"keys":[{"kty":"RSA","kid":"a","n":"*","e":"AQAB"}]}"#).is_err());
    }
}
