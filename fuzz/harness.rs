//! What each fuzz target checks, shared by the coverage-guided targets (`fuzz_targets/`, cargo
//! fuzz on nightly) and by the corpus replay that runs on stable in the test suite
//! (`node/tests/fuzz_corpus.rs`). Beyond "no panic", each states what must hold for any input.

use edgeblob_meta::record::Record;
use edgeblob_meta::wal;
use edgeblob_proto::{addr, batch, headers, op, range, request::Request, sas, shared_key, xml};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// A key no input knows: nothing a fuzzer writes may authenticate with it.
const KEY: &[u8] = b"the fuzzers never see this key, so no input may be signed with it";

/// Header lines `name: value` into a map, skipping what HTTP could not carry anyway.
fn header_map(text: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else { continue };
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.trim().as_bytes()), HeaderValue::from_str(v.trim())) {
            h.append(k, v);
        }
    }
    h
}

/// A request as a client sends it: `METHOD target` on the first line, `Host` on the second, then
/// header lines. Addressing, routing and parameter parsing in turn.
pub fn request(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.splitn(3, '\n');
    let first = lines.next().unwrap_or("");
    let host = lines.next().unwrap_or("").trim();
    let h = header_map(lines.next().unwrap_or(""));
    let (method, target) = first.split_once(' ').unwrap_or(("GET", first));
    let Ok(t) = addr::parse(target.trim(), Some(host)) else { return };
    assert!(addr::valid_account_name(&t.account), "an invalid account passed: {:?}", t.account);
    if let Some(b) = &t.blob {
        assert!(b.chars().all(|c| !c.is_control() && xml::is_xml_char(c)), "a blob name XML cannot carry: {b:?}");
    }
    let Ok(method) = Method::from_bytes(method.trim().as_bytes()) else { return };
    let _ = range::requested(&h);
    let _ = headers::conditions(&h);
    let _ = headers::source_conditions(&h);
    let Ok(o) = op::route(&method, &t, &h) else { return };
    let names: Vec<String> = h.keys().map(|k| k.as_str().to_owned()).collect();
    // Whatever parsed is within Azure's limits.
    if let Ok(Request::PutBlob(p)) = Request::parse(o, &t, &h, &names) {
        let md: usize = p.settings.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(md <= 8 << 10, "metadata of {md} bytes accepted");
    }
}

/// SharedKey: no Authorization header a fuzzer writes verifies against a key it never saw.
pub fn shared_key(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (path, rest) = text.split_once('\n').unwrap_or((text, ""));
    let h = header_map(rest);
    let Ok(t) = addr::parse(path.trim(), Some("127.0.0.1")) else { return };
    let auth = h.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("SharedKey acct:AAAA");
    let req = shared_key::SignedRequest { method: "GET", raw_path: &t.raw_path, query: &t.query, headers: &h };
    let _ = shared_key::check_date(&h, 1_800_000_000);
    assert!(shared_key::verify(&t.account, &[KEY.to_vec()], &req, auth).is_err(), "a forged signature verified");
}

/// Bearer tokens: whatever a client sends, validation ends in a refusal (no key here signs
/// anything the fuzzer can make), never a panic, and reads no more than the token's bound.
pub fn bearer(data: &[u8]) {
    use edgeblob_proto::bearer::{validate, KeySet, Policy, SigningKey};
    let Ok(token) = std::str::from_utf8(data) else { return };
    let mut keys = KeySet::default();
    // A 2048-bit modulus whose factors nobody here knows.
    let n: Vec<u8> = (0..256u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8 | 0x80).collect();
    keys.keys.insert("k".into(), SigningKey { n, e: vec![1, 0, 1] });
    let policy = Policy {
        tenants: vec!["t".into()],
        audiences: vec!["a".into()],
        storage_audience: true,
        v1: true,
        v2: true,
        leeway: 300,
    };
    assert!(validate(token, &keys, &policy, "acct", 1_800_000_000).is_err(), "a forged token validated");
    let _ = KeySet::from_jwks(data);
}

/// SAS: parameters in the query; none verifies without the key, and refusals map to a code.
pub fn sas(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(t) = addr::parse(text.trim(), Some("127.0.0.1")) else { return };
    for o in [op::Operation::GetBlob, op::Operation::PutBlob, op::Operation::ListBlobs, op::Operation::SetContainerAcl]
    {
        let r = sas::SasRequest {
            target: &t,
            op: o,
            now: 1_800_000_000,
            client_ip: "10.0.0.1".parse().ok(),
            https: false,
            policy: None,
        };
        match sas::verify(&t.account, &[KEY.to_vec()], &r) {
            Ok(_) => panic!("a forged SAS verified for {o:?}"),
            Err(e) => {
                let _ = e.code();
            }
        }
    }
    let _ = sas::redact_signature(text);
    for v in t.query.iter().map(|(_, v)| v) {
        let _ = sas::parse_time(v);
    }
}

/// Put Block List bodies: parsed ids are never more than the body could hold.
pub fn block_list(data: &[u8]) {
    if let Ok(items) = xml::parse_block_list(data) {
        assert!(items.len() <= data.len() / 20 + 1, "{} items from {} bytes", items.len(), data.len());
    }
    // Set Container ACL bodies: at most five policies, and what Get Container ACL writes of
    // them reads back the same.
    if let Ok(policies) = xml::parse_signed_identifiers(data) {
        assert!(policies.len() <= xml::MAX_SIGNED_IDENTIFIERS);
        assert_eq!(xml::parse_signed_identifiers(xml::signed_identifiers(&policies).as_bytes()), Ok(policies));
    }
    let _ = xml::parse_tree(data, "KeyInfo");
}

/// Blob Batch bodies: the first line is the boundary, the rest the body.
pub fn batch(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (ct, body) = text.split_once('\n').unwrap_or((text, ""));
    let _ = batch::boundary(ct);
    let boundary = ct.trim();
    if boundary.is_empty() {
        return;
    }
    if let Ok(parts) = batch::parse(body, boundary) {
        assert!(parts.len() <= 256, "{} sub-requests accepted", parts.len());
        for p in parts {
            assert!(p.target.starts_with('/'));
        }
    }
}

/// Byte ranges: whatever parses is a range whose end is not before its start.
pub fn ranges(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some((a, b)) = range::parse(text) {
        assert!(b.is_none_or(|b| b >= a), "{text:?} parsed as {a}-{b:?}");
    }
    let _ = headers::parse_date(text);
}

/// Records and log frames read back from a disk: damage is an error, never a panic, and whatever
/// decodes encodes back to itself.
pub fn record(data: &[u8]) {
    if let Ok(rec) = Record::decode(data) {
        assert_eq!(Record::decode(&rec.encode()).as_ref(), Ok(&rec), "a record does not survive a round trip");
    }
    let mut at = 0;
    while let Some(f) = wal::parse_frame(data, at) {
        assert!(f.end > at && f.end <= data.len().next_multiple_of(wal::FRAME_ALIGN));
        at = f.end;
        let _ = Record::decode(f.payload);
    }
}

/// A target's check.
pub type Check = fn(&[u8]);

/// Every target by name, for the corpus replay.
pub const TARGETS: &[(&str, Check)] = &[
    ("request", request),
    ("shared_key", shared_key),
    ("sas", sas),
    ("block_list", block_list),
    ("batch", batch),
    ("ranges", ranges),
    ("record", record),
    ("bearer", bearer),
];
