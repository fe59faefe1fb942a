//! SAS tokens made by the real Python SDK verify, and grant what they say.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use edgeblob_proto::addr::parse;
use edgeblob_proto::op::Operation;
use edgeblob_proto::sas::{parse_time, verify, SasError, SasRequest, Signer};

const DEV_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn token(kind: &str) -> String {
    let text = include_str!("fixtures/sas_tokens.txt");
    text.lines().find_map(|l| l.strip_prefix(&format!("{kind} "))).unwrap().to_owned()
}

fn check(path: &str, kind: &str, op: Operation) -> Result<(), SasError> {
    check_at(path, kind, op, "2027-01-01T00:00:00Z").map(|_| ())
}

fn check_at(path: &str, kind: &str, op: Operation, now: &str) -> Result<Signer, SasError> {
    let key = base64::engine::general_purpose::STANDARD.decode(DEV_KEY).unwrap();
    let sep = if path.contains('?') { '&' } else { '?' };
    let t = parse(&format!("{path}{sep}{}", token(kind)), Some("127.0.0.1:10000")).unwrap();
    let req = SasRequest {
        target: &t,
        op,
        now: parse_time(now).unwrap(),
        client_ip: "127.0.0.1".parse().ok(),
        https: false,
        policy: None,
    };
    verify("devstoreaccount1", &[key], &req)
}

#[test]
fn sdk_account_sas_verifies_everywhere() {
    check("/devstoreaccount1?comp=list", "account", Operation::ListContainers).unwrap();
    check("/devstoreaccount1/anyctr?restype=container", "account", Operation::CreateContainer).unwrap();
    check("/devstoreaccount1/anyctr/dir%2Fname.bin", "account", Operation::PutBlob).unwrap();
    check("/devstoreaccount1/anyctr/x?comp=block&blockid=YQ%3D%3D", "account", Operation::PutBlock).unwrap();
}

#[test]
fn sdk_container_sas_covers_its_container_only() {
    check("/devstoreaccount1/sdkctr/a/b.txt", "container", Operation::PutBlob).unwrap();
    check("/devstoreaccount1/sdkctr?restype=container&comp=list", "container", Operation::ListBlobs).unwrap();
    assert_eq!(check("/devstoreaccount1/otherctr/a", "container", Operation::GetBlob), Err(SasError::Signature));
    assert_eq!(check("/devstoreaccount1?comp=list", "container", Operation::ListContainers), Err(SasError::Resource));
    // Never the container itself: its properties, metadata, ACL, deletion (an account SAS does).
    for (target, op) in [
        ("/devstoreaccount1/sdkctr?restype=container", Operation::DeleteContainer),
        ("/devstoreaccount1/sdkctr?restype=container", Operation::CreateContainer),
        ("/devstoreaccount1/sdkctr?restype=container", Operation::GetContainerProperties),
        ("/devstoreaccount1/sdkctr?restype=container&comp=metadata", Operation::SetContainerMetadata),
    ] {
        assert_eq!(check(target, "container", op), Err(SasError::Resource), "{op:?}");
    }
    // The ACL: no SAS at all (it says who else may read the container).
    for op in [Operation::GetContainerAcl, Operation::SetContainerAcl] {
        let target = "/devstoreaccount1/sdkctr?restype=container&comp=acl";
        assert_eq!(check(target, "container", op), Err(SasError::Permission), "{op:?}");
    }
}

#[test]
fn sdk_read_only_sas_refuses_writes() {
    check("/devstoreaccount1/c1c/b", "readonly", Operation::GetBlob).unwrap();
    assert_eq!(check("/devstoreaccount1/c1c/b", "readonly", Operation::PutBlob), Err(SasError::Permission));
    assert_eq!(check("/devstoreaccount1/c1c/b", "readonly", Operation::DeleteBlob), Err(SasError::Permission));
}

#[test]
fn sdk_user_delegation_sas_verifies_with_the_derived_key_and_names_its_principal() {
    let at = "2027-01-01T00:00:00Z";
    let who = Signer::UserDelegation {
        oid: "0a0a0a0a-0000-0000-0000-000000000001".into(),
        tid: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
        user: None,
    };
    let blob = "/devstoreaccount1/udctr/dir/b.bin";
    assert_eq!(check_at(blob, "delegated-blob", Operation::GetBlob, at), Ok(who.clone()));
    assert_eq!(check_at(blob, "delegated-blob", Operation::PutBlob, at), Ok(who.clone()));
    assert_eq!(check_at(blob, "delegated-blob", Operation::DeleteBlob, at), Err(SasError::Permission));
    assert_eq!(
        check_at("/devstoreaccount1/udctr/other", "delegated-blob", Operation::GetBlob, at),
        Err(SasError::Signature)
    );
    let list = "/devstoreaccount1/udctr?restype=container&comp=list";
    assert_eq!(check_at(list, "delegated-container", Operation::ListBlobs, at), Ok(who));
    // Outside the key's own validity (it starts 2026-12-04), though within the SAS's window.
    assert_eq!(check_at(blob, "delegated-blob", Operation::GetBlob, "2026-12-03T23:00:00Z"), Err(SasError::Time));
    // A field changed after signing: the key derived from it is another, so is the signature.
    let tampered = token("delegated-blob").replace("skoid=0a0a", "skoid=0b0a");
    let key = base64::engine::general_purpose::STANDARD.decode(DEV_KEY).unwrap();
    let t = parse(&format!("{blob}?{tampered}"), Some("127.0.0.1:10000")).unwrap();
    let req = SasRequest {
        target: &t,
        op: Operation::GetBlob,
        now: parse_time(at).unwrap(),
        client_ip: None,
        https: false,
        policy: None,
    };
    assert_eq!(verify("devstoreaccount1", std::slice::from_ref(&key), &req), Err(SasError::Signature));
    // Binding the SAS to a delegated user afterwards (sduoid is signed from 2025-07-05): refused.
    let bound = format!("{}&sduoid=0b0b0b0b-0000-0000-0000-000000000002", token("delegated-blob"));
    let t = parse(&format!("{blob}?{bound}"), Some("127.0.0.1:10000")).unwrap();
    let req = SasRequest { target: &t, ..req };
    assert_eq!(verify("devstoreaccount1", &[key], &req), Err(SasError::Signature));
}
