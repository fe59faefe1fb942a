//! The real clients against real nodes: `../shared/peers/scenarios.sh` (azcopy including
//! service-to-service copies from a second node, the Python SDK, rclone, boostedblob and blobfile
//! over the node's own TLS listener, with the kit's certificate) against two edgeblob processes this
//! test starts. Every scenario checks data by hash. The kit lives beside the repository (`../shared/peers`); the
//! test installs it (idempotent) and fails on any failed scenario.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use edgeblob_testkit::node;
use edgeblob_testkit::peers::{self, Azurite};

#[test]
fn every_client_scenario_passes() {
    let Some(kit) = peers::kit("the client scenarios run the real clients") else { return };
    let tls = peers::home().join("tls");
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (dst, src) = (node::spawn(d1.path(), Some(&tls), &[]), node::spawn(d2.path(), Some(&tls), &[]));
    let (dst_endpoint, src_endpoint) = (format!("http://{}", dst.http), format!("http://{}", src.http));
    let out = Command::new("bash")
        .arg(kit.join("scenarios.sh"))
        .env("BLOB_ENDPOINT", &dst_endpoint)
        .env("SRC_ENDPOINT", &src_endpoint)
        .env("BLOB_TLS_ENDPOINT", dst.tls.as_deref().unwrap())
        // The node accepts boostedblob's "0"-signed empty uploads, so the kit's opt-in check runs.
        .env("BBB_EMPTY_FILE", "1")
        .env("PEERS_TIMEOUT", "180")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let failures: Vec<&str> = text.lines().filter(|l| l.starts_with("FAIL")).collect();
    let summary = text.lines().rev().find(|l| l.contains(" passed, ")).unwrap_or("(no summary)");
    eprintln!("client scenarios: {summary}");
    assert!(failures.is_empty(), "failed scenarios:\n{}", failures.join("\n"));
    assert!(out.status.success(), "scenarios.sh exited {:?}:\n{text}", out.status);
    let passed: usize = summary.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(passed >= 60, "too few scenarios ran: {summary}");

    // Service-to-service copies with Azurite as the source: the node fetches from it.
    let azurite_dir = tempfile::tempdir().unwrap();
    let azurite = Azurite::start(azurite_dir.path());
    let out = Command::new("bash")
        .arg(kit.join("scenarios.sh"))
        .arg("s2s")
        .env("BLOB_ENDPOINT", &dst_endpoint)
        .env("SRC_ENDPOINT", azurite.endpoint())
        .env("PEERS_TIMEOUT", "180")
        .env("PEERS_WAIT", "60")
        .output()
        .unwrap();
    drop(azurite);
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let summary = text.lines().rev().find(|l| l.contains(" passed, ")).unwrap_or("(no summary)");
    eprintln!("s2s from Azurite: {summary}");
    let failures: Vec<&str> = text.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(failures.is_empty() && out.status.success(), "s2s from Azurite failed:\n{text}");
    assert!(text.lines().filter(|l| l.starts_with("PASS azcopy-s2s")).count() >= 4, "{text}");
}
