//! Entra ID tokens against a node over TLS (issue 12): a token matrix signed with a key made for
//! the test and published to the node as a JWKS file, Azure's answers to each refusal (401
//! `InvalidAuthenticationInfo` with the challenge, 403 `AuthorizationPermissionMismatch`,
//! Bearer over plain HTTP refused), role bindings by object, group, application and container,
//! and both reloads that need no restart (bindings, keys).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use edgeblob_testkit::entra::{self, Tenant};
use edgeblob_testkit::node::InProcess;
use serde_json::json;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const AUDIENCE: &str = "api://edgeblob-test";
const WRITER: &str = "0a0a0a0a-0000-0000-0000-000000000001";
const READER: &str = "0b0b0b0b-0000-0000-0000-000000000002";
const SCOPED: &str = "0c0c0c0c-0000-0000-0000-000000000003";
const NOBODY: &str = "0d0d0d0d-0000-0000-0000-000000000004";
const GROUP: &str = "9e9e9e9e-0000-0000-0000-000000000009";

fn auth_toml(jwks: &Path, extra: &str) -> String {
    format!(
        r#"[auth.entra]
tenants = ["{TENANT}"]
audiences = ["{AUDIENCE}"]
jwks_file = "{}"

[[auth.role_binding]]
principal = "oid:{WRITER}"
role = "Storage Blob Data Contributor"
scope = "devstoreaccount1"

[[auth.role_binding]]
principal = "oid:{READER}"
role = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
scope = "devstoreaccount1"

[[auth.role_binding]]
principal = "oid:{SCOPED}"
role = "Storage Blob Data Owner"
scope = "devstoreaccount1/mine"

[[auth.role_binding]]
principal = "group:{GROUP}"
role = "Storage Blob Data Reader"
scope = "devstoreaccount1"
{extra}"#,
        jwks.display()
    )
}

struct Fixture {
    _dir: tempfile::TempDir,
    node: InProcess,
    tenant: Tenant,
    ca: std::path::PathBuf,
    config: std::path::PathBuf,
    jwks: std::path::PathBuf,
    rt: tokio::runtime::Runtime,
}

fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let tenant = Tenant::new(TENANT, "key-1");
    let (cert, key) = entra::self_signed(dir.path());
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, tenant.jwks()).unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(&config, auth_toml(&jwks, "")).unwrap();
    let auth = edgeblob::config::Config::from_toml(&std::fs::read_to_string(&config).unwrap()).unwrap().auth;
    let node = InProcess::start(dir.path(), 1 << 30, 1, |c| {
        c.tls = Some(edgeblob::config::TlsConfig { port: 0, cert: cert.clone(), key });
        c.auth = auth;
        c.source = Some(config.clone());
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    Fixture { _dir: dir, node, tenant, ca: cert, config, jwks, rt }
}

impl Fixture {
    fn call(&self, token: &str, method: &str, target: &str, body: &[u8]) -> (u16, String, String) {
        self.call_with(token, method, target, &[], body)
    }

    fn call_with(
        &self,
        token: &str,
        method: &str,
        target: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String, String) {
        let auth = format!("Bearer {token}");
        let mut headers = vec![("Authorization", auth.as_str())];
        headers.extend_from_slice(extra);
        if method == "PUT" && !target.contains("restype") {
            headers.push(("x-ms-blob-type", "BlockBlob"));
        }
        let (status, head, body) =
            self.rt.block_on(entra::https(self.node.tls.unwrap(), &self.ca, method, target, &headers, body));
        (status, head, String::from_utf8_lossy(&body).into_owned())
    }

    fn token(&self, oid: &str) -> String {
        self.tenant.token(&self.tenant.claims(false, AUDIENCE, oid))
    }
}

fn error_code(head: &str) -> String {
    head.lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("x-ms-error-code: ").map(str::to_owned))
        .unwrap_or_default()
}

#[test]
fn tokens_are_validated_for_real_and_refused_as_azure_refuses_them() {
    let f = start();
    let t = &f.tenant;
    // Valid v1 and v2 tokens of a Contributor: create a container, write and read a blob.
    let v1 = f.token(WRITER);
    let v2 = t.token(&t.claims(true, AUDIENCE, WRITER));
    assert_eq!(f.call(&v1, "PUT", "/devstoreaccount1/data?restype=container", b"").0, 201);
    assert_eq!(f.call(&v2, "PUT", "/devstoreaccount1/data/a.bin", b"hello").0, 201);
    let (status, _, body) = f.call(&v1, "GET", "/devstoreaccount1/data/a.bin", b"");
    assert_eq!((status, body.as_str()), (200, "hello"));

    // Every refusal of a token: 401, InvalidAuthenticationInfo, the challenge naming the tenant
    // and the audience to ask for, and what failed in AuthenticationErrorDetail.
    let with = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut c = t.claims(false, AUDIENCE, WRITER);
        edit(&mut c);
        t.token(&c)
    };
    let other = Tenant::new("00000000-0000-0000-0000-0000000000ff", "key-other");
    let good = f.token(WRITER);
    let (h, c, _) = {
        let mut p = good.splitn(3, '.');
        (p.next().unwrap().to_owned(), p.next().unwrap().to_owned(), p.next().unwrap().to_owned())
    };
    let none = format!("{}.{c}.", base64_url(&json!({ "alg": "none", "kid": "key-1" }).to_string()));
    // HS256 "signed" with the public key set as the secret: the classic confusion.
    let hs_signing = format!("{}.{c}", base64_url(&json!({ "alg": "HS256", "kid": "key-1" }).to_string()));
    let hs = format!("{hs_signing}.{}", base64_url_bytes(&hmac_sha256(t.jwks().as_bytes(), hs_signing.as_bytes())));
    let mut flipped = good.clone().into_bytes();
    let at = h.len() + 1 + c.len() + 10;
    flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        ("expired", with(&|c| c["exp"] = json!(entra::now() - 1000)), "The token is expired."),
        ("not yet valid", with(&|c| c["nbf"] = json!(entra::now() + 1000)), "not yet valid"),
        ("a string exp", with(&|c| c["exp"] = json!("never")), "malformed"),
        ("wrong audience", with(&|c| c["aud"] = json!("https://storage.azure.com")), "Audience validation failed"),
        ("wrong tenant", other.token(&other.claims(false, AUDIENCE, WRITER)), "No signing key"),
        (
            "another tenant's issuer, our key",
            with(&|c| c["iss"] = json!("https://sts.windows.net/00000000-0000-0000-0000-0000000000ff/")),
            "Issuer validation failed",
        ),
        ("a tenant not allowed", with(&|c| c["tid"] = json!("00000000-0000-0000-0000-0000000000ff")), "Issuer"),
        (
            "unknown kid",
            other.sign(&json!({ "alg": "RS256", "kid": "key-9" }), &t.claims(false, AUDIENCE, WRITER)),
            "No signing key",
        ),
        ("alg none", none, "not RS256"),
        ("HS256 with the public key", hs, "not RS256"),
        ("a bad signature", flipped, "Signature is invalid"),
        ("not a JWT", "abc.def".into(), "malformed"),
    ];
    for (what, token, detail) in cases {
        let (status, head, body) = f.call(&token, "GET", "/devstoreaccount1/data/a.bin", b"");
        assert_eq!((status, error_code(&head).as_str()), (401, "invalidauthenticationinfo"), "{what}: {head}");
        let challenge = format!(
            "www-authenticate: Bearer authorization_uri=https://login.microsoftonline.com/{TENANT}/oauth2/authorize resource_id={AUDIENCE}"
        );
        assert!(head.to_ascii_lowercase().contains(&challenge.to_ascii_lowercase()), "{what}: {head}");
        assert!(body.contains("<AuthenticationErrorDetail>") && body.contains(detail), "{what}: {body}");
    }

    // Over plain HTTP a valid token is refused (as Azure and its SDKs refuse it).
    let rt = &f.rt;
    let (status, head) = rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(f.node.addr).await.unwrap();
        let req = format!("GET /devstoreaccount1/data/a.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {v1}\r\nx-ms-version: 2025-01-05\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        (out.split(' ').nth(1).unwrap().parse::<u16>().unwrap(), out)
    });
    assert_eq!(status, 403, "{head}");
    assert!(head.contains("AuthenticationFailed") && head.contains("not allowed with HTTP"), "{head}");

    // Tokens need service version 2017-11-09 or later: an older one is refused as Azure does.
    let (status, head, body) =
        f.call_with(&v1, "GET", "/devstoreaccount1/data/a.bin", &[("x-ms-version", "2017-07-29")], b"");
    assert_eq!((status, error_code(&head).as_str()), (403, "authenticationfailed"), "{head}");
    assert!(body.contains("Authentication scheme Bearer is not supported in this version."), "{body}");
    assert_eq!(f.call_with(&v1, "GET", "/devstoreaccount1/data/a.bin", &[("x-ms-version", "2017-11-09")], b"").0, 200);

    // A valid token whose principal has no binding: 403 AuthorizationPermissionMismatch.
    let (status, head, _) = f.call(&f.token(NOBODY), "GET", "/devstoreaccount1/data/a.bin", b"");
    assert_eq!((status, error_code(&head).as_str()), (403, "authorizationpermissionmismatch"), "{head}");
}

#[test]
fn role_bindings_decide_what_each_principal_may_do_and_reload_without_a_restart() {
    let f = start();
    let writer = f.token(WRITER);
    assert_eq!(f.call(&writer, "PUT", "/devstoreaccount1/data?restype=container", b"").0, 201);
    assert_eq!(f.call(&writer, "PUT", "/devstoreaccount1/data/a", b"1").0, 201);

    // A Reader reads and lists, and may not write or delete.
    let reader = f.token(READER);
    assert_eq!(f.call(&reader, "GET", "/devstoreaccount1/data/a", b"").0, 200);
    assert_eq!(f.call(&reader, "GET", "/devstoreaccount1/data?restype=container&comp=list", b"").0, 200);
    assert_eq!(f.call(&reader, "GET", "/devstoreaccount1?comp=list", b"").0, 200);
    for (m, target) in [("PUT", "/devstoreaccount1/data/b"), ("DELETE", "/devstoreaccount1/data/a")] {
        let (status, head, _) = f.call(&reader, m, target, b"2");
        assert_eq!((status, error_code(&head).as_str()), (403, "authorizationpermissionmismatch"), "{m} {target}");
    }
    // A Contributor may not read or set a container's ACL: that is the Owner's.
    assert_eq!(f.call(&writer, "GET", "/devstoreaccount1/data?restype=container&comp=acl", b"").0, 403);

    // Membership of a bound group is enough.
    let t = &f.tenant;
    let mut c = t.claims(true, AUDIENCE, NOBODY);
    c["groups"] = json!([GROUP]);
    assert_eq!(f.call(&t.token(&c), "GET", "/devstoreaccount1/data/a", b"").0, 200);

    // An Owner of one container: everything there, nothing elsewhere, no listing of containers.
    let scoped = f.token(SCOPED);
    assert_eq!(f.call(&scoped, "PUT", "/devstoreaccount1/mine?restype=container", b"").0, 201);
    assert_eq!(f.call(&scoped, "PUT", "/devstoreaccount1/mine/x", b"x").0, 201);
    assert_eq!(f.call(&scoped, "GET", "/devstoreaccount1/mine?restype=container&comp=acl", b"").0, 200);
    assert_eq!(f.call(&scoped, "GET", "/devstoreaccount1/data/a", b"").0, 403);
    assert_eq!(f.call(&scoped, "GET", "/devstoreaccount1?comp=list", b"").0, 403);

    // A binding added to the configuration file takes effect without a restart.
    let nobody = f.token(NOBODY);
    assert_eq!(f.call(&nobody, "GET", "/devstoreaccount1/data/a", b"").0, 403);
    let extra = format!("\n[[auth.role_binding]]\nprincipal = \"oid:{NOBODY}\"\nrole = \"Storage Blob Data Reader\"\nscope = \"devstoreaccount1/data\"\n");
    std::fs::write(&f.config, auth_toml(&f.jwks, &extra)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.call(&nobody, "GET", "/devstoreaccount1/data/a", b"").0 != 200 {
        assert!(Instant::now() < deadline, "the new binding never took effect");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A file that does not parse changes nothing.
    std::fs::write(&f.config, "[auth.entra]\ntenants = 7\n").unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(f.call(&nobody, "GET", "/devstoreaccount1/data/a", b"").0, 200, "a broken file dropped the bindings");
}

/// `x-ms-copy-source-authorization: Bearer` authorises the source of a copy by the role of that
/// token's principal, whoever authorised the destination; its refusals carry what the source
/// would have answered in `x-ms-copy-source-status-code` and `-error-code`.
#[test]
fn a_copy_source_is_authorised_by_the_token_in_x_ms_copy_source_authorization() {
    let f = start();
    let writer = f.token(WRITER);
    assert_eq!(f.call(&writer, "PUT", "/devstoreaccount1/data?restype=container", b"").0, 201);
    assert_eq!(f.call(&writer, "PUT", "/devstoreaccount1/data/a", b"lake bytes").0, 201);
    // The destination's principal owns `mine` and may not read `data`.
    let scoped = f.token(SCOPED);
    assert_eq!(f.call(&scoped, "PUT", "/devstoreaccount1/mine?restype=container", b"").0, 201);
    let source = "https://127.0.0.1/devstoreaccount1/data/a";
    let header = |head: &str, name: &str| {
        head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix(&format!("{name}: ")).map(str::to_owned))
    };
    let copy = |dst: &str, source_auth: Option<String>| {
        let mut extra = vec![("x-ms-copy-source", source.to_owned())];
        if let Some(a) = source_auth {
            extra.push(("x-ms-copy-source-authorization", a));
        }
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        f.call_with(&scoped, "PUT", &format!("/devstoreaccount1/mine/{dst}"), &extra, b"")
    };
    let (status, head, _) = copy("none", None);
    assert_eq!((status, error_code(&head).as_str()), (403, "cannotverifycopysource"), "{head}");

    let (status, head, _) = copy("read", Some(format!("Bearer {}", f.token(READER))));
    assert_eq!(status, 201, "a Reader's token reads the source: {head}");
    assert_eq!(f.call(&scoped, "GET", "/devstoreaccount1/mine/read", b"").2, "lake bytes");

    let (status, head, _) = copy("nobody", Some(format!("Bearer {}", f.token(NOBODY))));
    assert_eq!((status, error_code(&head).as_str()), (403, "cannotverifycopysource"), "{head}");
    assert_eq!(header(&head, "x-ms-copy-source-status-code").as_deref(), Some("403"));
    assert_eq!(header(&head, "x-ms-copy-source-error-code").as_deref(), Some("authorizationpermissionmismatch"));

    let t = &f.tenant;
    let mut expired = t.claims(false, AUDIENCE, READER);
    expired["exp"] = json!(1_000_000_000);
    let (status, head, _) = copy("expired", Some(format!("Bearer {}", t.token(&expired))));
    assert_eq!((status, error_code(&head).as_str()), (401, "cannotverifycopysource"), "{head}");
    assert_eq!(header(&head, "x-ms-copy-source-error-code").as_deref(), Some("invalidauthenticationinfo"));

    let (status, head, _) = copy("basic", Some("Basic dXNlcjpwYXNz".into()));
    assert_eq!(status, 400, "only Bearer is a source credential: {head}");
    for refused in ["none", "nobody", "expired", "basic"] {
        assert_eq!(f.call(&scoped, "HEAD", &format!("/devstoreaccount1/mine/{refused}"), b"").0, 404, "{refused}");
    }
}

#[test]
fn a_key_set_without_the_signing_key_fails_closed_and_its_age_is_visible() {
    let f = start();
    let entra = f.node.entra.as_ref().unwrap();
    let (age, held) = entra.keys_age();
    assert_eq!(held, 1);
    assert!(age.unwrap() < 120, "{age:?}");
    let writer = f.token(WRITER);
    assert_eq!(f.call(&writer, "PUT", "/devstoreaccount1/data?restype=container", b"").0, 201);
    // The tenant rolled its key: the file now holds another; tokens of the old key fail, with no
    // fetch from anywhere (a file source has none).
    let rolled = Tenant::new(TENANT, "key-2");
    std::fs::write(&f.jwks, rolled.jwks()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = f.call(&writer, "GET", "/devstoreaccount1/data?restype=container", b"");
        if status == 401 {
            assert!(body.contains("No signing key"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "the replaced key set was never read");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(entra.fetches.load(std::sync::atomic::Ordering::Relaxed), 0, "nothing was fetched");
    // The operator sees the key set's age and size on /metrics.
    let mut page = edgeblob::admin::metrics::Page::default();
    edgeblob::admin::metrics::entra(&mut page, entra);
    let page = page.finish();
    let age: f64 = page
        .lines()
        .find_map(|l| l.strip_prefix("edgeblob_entra_signing_keys_age_seconds "))
        .expect("the key set's age is exported")
        .parse()
        .unwrap();
    assert!(age < 60.0, "the rolled set was read just now: {page}");
    assert!(page.contains("edgeblob_entra_signing_keys 1\n"), "{page}");
    let new_token = rolled.token(&rolled.claims(false, AUDIENCE, WRITER));
    assert_eq!(f.call(&new_token, "GET", "/devstoreaccount1/data?restype=container", b"").0, 200);
}

fn base64_url(s: &str) -> String {
    base64_url_bytes(s.as_bytes())
}

fn base64_url_bytes(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use base64::Engine;
    // The SharedKey signer is HMAC-SHA256 over a string; reuse it rather than another HMAC.
    let sig = edgeblob_proto::sas::sign(key, std::str::from_utf8(msg).unwrap());
    base64::engine::general_purpose::STANDARD.decode(sig).unwrap()
}

/// The fields of a Get User Delegation Key answer.
fn key_fields(xml: &str) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    for name in ["SignedOid", "SignedTid", "SignedStart", "SignedExpiry", "SignedService", "SignedVersion", "Value"] {
        let open = format!("<{name}>");
        let from = xml.find(&open).unwrap_or_else(|| panic!("{name} missing: {xml}")) + open.len();
        let to = from + xml[from..].find('<').unwrap();
        out.insert(name.to_owned(), xml[from..to].to_owned());
    }
    out
}

/// A user delegation SAS for one blob, as the SDKs sign it at version 2026-10-06.
fn delegation_sas(k: &std::collections::HashMap<String, String>, path: &str, sp: &str, se: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (sv, st) = ("2026-10-06", "2020-01-01T00:00:00Z");
    let canonical = format!("/blob/devstoreaccount1{path}");
    let sts = [
        sp,
        st,
        se,
        &canonical,
        &k["SignedOid"],
        &k["SignedTid"],
        &k["SignedStart"],
        &k["SignedExpiry"],
        &k["SignedService"],
        &k["SignedVersion"],
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        sv,
        "b",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
    ]
    .join("\n");
    let sig = edgeblob_proto::sas::sign(&b64.decode(&k["Value"]).unwrap(), &sts);
    let enc = |s: &str| s.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D").replace(':', "%3A");
    format!(
        "sv={sv}&sr=b&sp={sp}&st={}&se={}&skoid={}&sktid={}&skt={}&ske={}&sks=b&skv={}&sig={}",
        enc(st),
        enc(se),
        k["SignedOid"],
        k["SignedTid"],
        enc(&k["SignedStart"]),
        enc(&k["SignedExpiry"]),
        k["SignedVersion"],
        enc(&sig)
    )
}

#[test]
fn user_delegation_keys_sign_sas_that_hold_only_while_the_principal_may() {
    let f = start();
    let writer = f.token(WRITER);
    assert_eq!(f.call(&writer, "PUT", "/devstoreaccount1/data?restype=container", b"").0, 201);
    assert_eq!(f.call(&writer, "PUT", "/devstoreaccount1/data/a.bin", b"delegated").0, 201);
    let key_info = |expiry: i64| {
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><KeyInfo><Start>{}</Start><Expiry>{}</Expiry></KeyInfo>",
            edgeblob_proto::sas::iso_time(entra::now() - 60),
            edgeblob_proto::sas::iso_time(entra::now() + expiry)
        )
    };
    let gudk = "/devstoreaccount1/?restype=service&comp=userdelegationkey";
    let (status, _, answer) = f.call(&writer, "POST", gudk, key_info(3600).as_bytes());
    assert_eq!(status, 200, "{answer}");
    let k = key_fields(&answer);
    assert_eq!((k["SignedOid"].as_str(), k["SignedTid"].as_str(), k["SignedService"].as_str()), (WRITER, TENANT, "b"));

    // Refusals: more than seven days, no expiry, not XML; a container-scoped principal; the
    // account key (Entra ID only).
    for bad in [key_info(8 * 86_400), "<KeyInfo><Start>2026-01-01T00:00:00Z</Start></KeyInfo>".into()] {
        let (status, head, body) = f.call(&writer, "POST", gudk, bad.as_bytes());
        assert_eq!((status, error_code(&head).as_str()), (400, "invalidxmlnodevalue"), "{body}");
    }
    assert_eq!(f.call(&writer, "POST", gudk, b"not xml").0, 400);
    assert_eq!(f.call(&f.token(SCOPED), "POST", gudk, key_info(3600).as_bytes()).0, 403);
    let mut h = http::HeaderMap::new();
    h.insert("x-ms-version", "2025-01-05".parse().unwrap());
    let body = key_info(3600);
    edgeblob_testkit::sign::shared_key("POST", gudk, &mut h, body.len());
    let signed: Vec<(&str, &str)> =
        ["authorization", "x-ms-date"].iter().map(|n| (*n, h.get(*n).unwrap().to_str().unwrap())).collect();
    let (status, head, _) =
        f.rt.block_on(entra::https(f.node.tls.unwrap(), &f.ca, "POST", gudk, &signed, body.as_bytes()));
    assert_eq!((status, error_code(&head).as_str()), (403, "authenticationfailed"), "{head}");

    // A SAS signed with the key reads the blob, with no token, and grants no more than it says.
    let far = edgeblob_proto::sas::iso_time(entra::now() + 1800);
    let read = delegation_sas(&k, "/data/a.bin", "r", &far);
    let get = |sas: &str| {
        let target = format!("/devstoreaccount1/data/a.bin?{sas}");
        let (status, head, body) = f.rt.block_on(entra::https(f.node.tls.unwrap(), &f.ca, "GET", &target, &[], b""));
        (status, error_code(&head), String::from_utf8_lossy(&body).into_owned())
    };
    assert_eq!(get(&read), (200, String::new(), "delegated".into()));
    let put_target = format!("/devstoreaccount1/data/a.bin?{read}");
    let (status, head, _) = f.rt.block_on(entra::https(
        f.node.tls.unwrap(),
        &f.ca,
        "PUT",
        &put_target,
        &[("x-ms-blob-type", "BlockBlob")],
        b"x",
    ));
    assert_eq!((status, error_code(&head).as_str()), (403, "authorizationpermissionmismatch"), "a read SAS wrote");
    // Tampered (another principal named) or expired: AuthenticationFailed.
    let tampered = read.replace(&format!("skoid={WRITER}"), &format!("skoid={READER}"));
    assert_eq!(get(&tampered).0, 403);
    assert_eq!(get(&tampered).1, "authenticationfailed");
    let past = edgeblob_proto::sas::iso_time(entra::now() - 10);
    assert_eq!(get(&delegation_sas(&k, "/data/a.bin", "r", &past)).1, "authenticationfailed");

    // The principal's role goes: the SAS it signed stops working, as in Azure.
    std::fs::write(&f.config, auth_toml(&f.jwks, "").replace(&format!("oid:{WRITER}"), "oid:someone-else")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&read).0 != 403 {
        assert!(Instant::now() < deadline, "a SAS outlived its signer's role");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(get(&read).1, "authorizationpermissionmismatch");
}

/// Keys fetched from the tenant's URL (its OpenID Connect discovery document, which names the
/// key set's): the first fetch at start, a token of a key not held asks
/// for one more (and is refused until it lands), a flood of unknown keys costs at most one fetch
/// a `jwks_min_refetch_secs`, and a restart with the URL down serves from the cached set.
#[test]
fn keys_fetched_from_a_url_follow_a_roll_within_the_fetch_bound_and_survive_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let first = Tenant::new(TENANT, "key-1");
    let rolled = Tenant::new(TENANT, "key-2");
    let both = |a: &Tenant, b: &Tenant| {
        let (x, y): (serde_json::Value, serde_json::Value) =
            (serde_json::from_str(&a.jwks()).unwrap(), serde_json::from_str(&b.jwks()).unwrap());
        json!({ "keys": [x["keys"][0].clone(), y["keys"][0].clone()] }).to_string()
    };
    let keys_dir = dir.path().join("idp");
    std::fs::create_dir_all(&keys_dir).unwrap();
    let idp = entra::JwksServer::start(&keys_dir, first.jwks());
    let cache = dir.path().join("jwks-cache.json");
    let toml = format!(
        "[auth.entra]\ntenants = [\"{TENANT}\"]\naudiences = [\"{AUDIENCE}\"]\njwks_url = \"{}\"\njwks_cache = \"{}\"\njwks_ca = \"{}\"\njwks_min_refetch_secs = 2\n\
         [[auth.role_binding]]\nprincipal = \"oid:{WRITER}\"\nrole = \"Storage Blob Data Owner\"\nscope = \"devstoreaccount1\"\n",
        idp.discovery_url(),
        cache.display(),
        idp.ca.display()
    );
    let auth = edgeblob::config::Config::from_toml(&toml).unwrap().auth;
    let (cert, key) = entra::self_signed(dir.path());
    let start = |auth| {
        InProcess::start(dir.path(), 1 << 30, 1, |c| {
            c.tls = Some(edgeblob::config::TlsConfig { port: 0, cert: cert.clone(), key: key.clone() });
            c.auth = auth;
        })
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let call = |node: &InProcess, token: &str| {
        let auth = format!("Bearer {token}");
        rt.block_on(entra::https(
            node.tls.unwrap(),
            &cert,
            "GET",
            "/devstoreaccount1?comp=list",
            &[("Authorization", &auth)],
            b"",
        ))
        .0
    };
    let until = |what: &str, mut ok: Box<dyn FnMut() -> bool + '_>| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !ok() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let node = start(auth.clone());
    let token1 = first.token(&first.claims(false, AUDIENCE, WRITER));
    until("the first fetch never landed", Box::new(|| call(&node, &token1) == 200));
    assert_eq!(idp.hits(), 1, "one fetch at start");
    assert!(cache.exists(), "the fetched set was cached");

    // The tenant adds a key: its first token is refused and asks for a fetch, then holds.
    idp.serve(both(&first, &rolled));
    let token2 = rolled.token(&rolled.claims(true, AUDIENCE, WRITER));
    assert_eq!(call(&node, &token2), 401, "a key not yet held");
    until("the new key was never fetched", Box::new(|| call(&node, &token2) == 200));
    assert_eq!(idp.hits(), 2);

    // A flood of tokens naming keys nobody has: at most one fetch per two seconds.
    let forged = rolled.sign(&json!({ "alg": "RS256", "kid": "nobody" }), &rolled.claims(false, AUDIENCE, WRITER));
    let (before, began) = (idp.hits(), Instant::now());
    while began.elapsed() < Duration::from_secs(3) {
        assert_eq!(call(&node, &forged), 401);
    }
    let fetched = idp.hits() - before;
    assert!((1..=3).contains(&fetched), "{fetched} fetches for a flood of unknown keys in 3 s");
    drop(node);

    // The URL is down at the next start: the cached set serves at once.
    idp.set_up(false);
    let node = start(auth);
    assert_eq!(call(&node, &token2), 200, "the cached keys were not used");
    assert_eq!(call(&node, &token1), 200);
}
