//! The real Python SDK against a node for what issue 12 adds. Metadata names keep their case in
//! response headers. Stored access policies bound the SAS that name them. Entra ID: the Python SDK authenticated by azure-identity's
//! `ManagedIdentityCredential`, its IMDS requests answered by a stand-in minting tokens with the
//! test's key (the node validates them against that key's JWKS), over the node's TLS listener
//! with the kit's certificate; Reader vs Contributor; a user delegation SAS made by the SDK,
//! used by the SDK and by azcopy; tampered and expired ones refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::Arc;

use edgeblob_testkit::entra::{ImdsStandIn, Tenant};
use edgeblob_testkit::node::InProcess;
use edgeblob_testkit::peers;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const AUDIENCE: &str = "api://edgeblob-sdk";
const SYSTEM_OID: &str = "5a5a5a5a-0000-0000-0000-000000000001";
const READER_OID: &str = "6b6b6b6b-0000-0000-0000-000000000002";
const READER_CLIENT: &str = "7c7c7c7c-0000-0000-0000-000000000003";

#[test]
fn the_python_sdk_with_a_managed_identity_and_user_delegation_sas() {
    let Some(kit) = peers::kit("the Python SDK with azure-identity") else { return };
    let python = peers::home().join("venv/bin/python");
    let has_identity = Command::new(&python).args(["-c", "import azure.identity"]).status().is_ok_and(|s| s.success());
    if !has_identity {
        assert!(!peers::required(), "azure-identity is not in the kit's venv (.ci/run installs it)");
        eprintln!("skipped: azure-identity is not installed in the kit's venv");
        return;
    }
    let tls = peers::home().join("tls");
    let dir = tempfile::tempdir().unwrap();
    let tenant = Arc::new(Tenant::new(TENANT, "mi-key"));
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, tenant.jwks()).unwrap();
    let toml = format!(
        "[auth.entra]\ntenants = [\"{TENANT}\"]\naudiences = [\"{AUDIENCE}\"]\njwks_file = \"{}\"\n\
         [[auth.role_binding]]\nprincipal = \"oid:{SYSTEM_OID}\"\nrole = \"Storage Blob Data Contributor\"\nscope = \"devstoreaccount1\"\n\
         [[auth.role_binding]]\nprincipal = \"oid:{READER_OID}\"\nrole = \"Storage Blob Data Reader\"\nscope = \"devstoreaccount1\"\n",
        jwks.display()
    );
    let auth = edgeblob::config::Config::from_toml(&toml).unwrap().auth;
    let node = InProcess::start(dir.path(), 1 << 30, 1, |c| {
        c.tls =
            Some(edgeblob::config::TlsConfig { port: 0, cert: tls.join("server.pem"), key: tls.join("server.key") });
        c.auth = auth;
    });
    let mirid = |name: &str| {
        format!(
            "/subscriptions/0/resourcegroups/rack7/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
        )
    };
    let imds = ImdsStandIn::start(
        tenant,
        vec![
            ("8d8d8d8d-0000-0000-0000-000000000004".into(), SYSTEM_OID.into(), mirid("gpu-vm")),
            (READER_CLIENT.into(), READER_OID.into(), mirid("reader")),
        ],
    );
    let url = format!("https://127.0.0.1:{}/devstoreaccount1", node.tls.unwrap().port());
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/entra_sdk.py");
    let out = Command::new(&python)
        .arg(&script)
        .args([url.as_str(), tls.join("ca.pem").to_str().unwrap(), AUDIENCE, READER_CLIENT, READER_OID])
        .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", format!("http://{}", imds.addr))
        .env_remove("IDENTITY_ENDPOINT")
        .env_remove("MSI_ENDPOINT")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.lines().any(|l| l == "OK"), "the SDK scenario failed:\n{text}");

    // azcopy downloads with the SDK's user delegation SAS.
    let sas = text.lines().find_map(|l| l.strip_prefix("SAS ")).unwrap();
    let target = dir.path().join("az.bin");
    let out = Command::new(peers::home().join("bin/azcopy"))
        .args([
            "copy",
            &format!("{url}/mid/dir/a.bin?{sas}"),
            target.to_str().unwrap(),
            "--from-to",
            "BlobLocal",
            "--log-level",
            "ERROR",
        ])
        .env("SSL_CERT_FILE", tls.join("bundle.pem"))
        .env("AZCOPY_LOG_LOCATION", dir.path())
        .env("AZCOPY_JOB_PLAN_LOCATION", dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let want: Vec<u8> = (0..4096).flat_map(|_| 0..=255u8).chain(*b"tail").collect();
    assert!(out.status.success(), "azcopy with a user delegation SAS failed:\n{text}");
    assert!(std::fs::read(&target).unwrap() == want, "azcopy's download differs");
    let _ = kit;
}

#[test]
fn metadata_names_keep_their_case_as_the_python_sdk_sees_them() {
    run_against_a_node("metadata_case.py", "the Python SDK reads metadata names back");
}

#[test]
fn stored_access_policies_bound_their_sas_and_removing_one_revokes_them() {
    run_against_a_node("stored_policy.py", "the Python SDK sets stored access policies");
}

#[test]
fn blob_service_properties_are_set_and_read_back_as_the_python_sdk_sees_them() {
    run_against_a_node("service_props.py", "the Python SDK sets service properties");
}

#[test]
fn blob_batch_and_set_blob_tier_as_the_python_sdk_sends_them() {
    run_against_a_node("batch_tier.py", "the Python SDK sends Blob Batch and Set Blob Tier");
}

#[test]
fn uncommitted_blobs_are_listed_as_the_python_sdk_asks_for_them() {
    run_against_a_node("uncommitted_list.py", "the Python SDK lists uncommitted blobs");
}

/// Runs `tests/scripts/<script>` with the kit's Python against a fresh node (its connection
/// string as the argument) and asserts it printed OK.
fn run_against_a_node(script: &str, why: &str) {
    let Some(_kit) = peers::kit(why) else { return };
    let python = peers::home().join("venv/bin/python");
    let dir = tempfile::tempdir().unwrap();
    let node = InProcess::start(dir.path(), 1 << 30, 1, |_| {});
    let conn = format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={};BlobEndpoint=http://{}/devstoreaccount1;",
        edgeblob::config::DEV_KEY,
        node.addr
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts").join(script);
    let out = Command::new(&python).arg(&path).arg(&conn).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.lines().any(|l| l == "OK"), "{script} failed:\n{text}");
}
