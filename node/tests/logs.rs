//! JSON logs: every line on stdout is one JSON object, a request's events carry its request id,
//! and no key, token or SAS signature a client sent reaches a line, at the most verbose level.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use edgeblob_testkit::node::workspace_bin;
use edgeblob_testkit::raw::{exchange, signed, signed_head};

const SAS_SIG: &str = "SECRETSIGxyz";
const COPY_SIG: &str = "COPYSECRETxyz";
const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJTRUNSRVRUT0tFTiI6MX0.SECRETTOKENsig";
const FORGED: &str = "Rk9SR0VEU0hBUkVES0VZU0lHTkFUVVJFWFlaMTIzNA==";

#[tokio::test(flavor = "current_thread")]
async fn json_lines_carry_request_ids_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(workspace_bin("edgeblob"))
        .arg("--data")
        .arg(dir.path().join("d.dat"))
        .args(["--shards", "2", "--port", "0", "--listen", "127.0.0.1", "--data-size", "64M", "--admin-listen", "off"])
        .args(["--log-format", "json"])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    let addr = loop {
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("the node's listening event");
        lines.push(line.clone());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if let Some(rest) = v["message"].as_str().and_then(|m| m.strip_prefix("edgeblob listening on ")) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };

    // A SharedKey request with a forged signature.
    let head = signed_head("GET", "/devstoreaccount1?comp=list", &[], 0);
    let forged = head
        .lines()
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("authorization:") {
                format!("Authorization: SharedKey devstoreaccount1:{FORGED}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\n";
    assert_eq!(exchange(&addr, &forged, b"").await.0, 403);
    // A SAS whose signature is wrong.
    let sas = format!("GET /devstoreaccount1/logs/b?sv=2021-08-06&sr=b&sp=r&se=2030-01-01T00%3A00%3A00Z&sig={SAS_SIG} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (status, _, body) = exchange(&addr, &sas, b"").await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    // A bearer token, which this node (no [auth.entra]) does not take.
    let bearer = format!("GET /devstoreaccount1?comp=list HTTP/1.1\r\nHost: x\r\nx-ms-version: 2021-08-06\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n");
    assert!(exchange(&addr, &bearer, b"").await.0 >= 400);
    // A copy from a source carrying a SAS, which is not reached (an internal address).
    assert_eq!(signed(&addr, "PUT", "/devstoreaccount1/logs?restype=container", &[], b"").await.0, 201);
    let source = format!("http://10.255.255.1/lake/x?sv=2021-08-06&sr=b&sp=r&sig={COPY_SIG}");
    let (status, _, _) =
        signed(&addr, "PUT", "/devstoreaccount1/logs/copy", &[("x-ms-copy-source", &source)], b"").await;
    assert_eq!(status, 500);

    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
        lines.push(line);
    }
    let mut requests = 0;
    let mut copy_line = None;
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for secret in [SAS_SIG, COPY_SIG, TOKEN, "SECRETTOKEN", FORGED, edgeblob::config::DEV_KEY] {
            assert!(!line.contains(secret), "a secret in the log: {line}");
        }
        if v["message"] == "request" {
            assert!(v["request_id"].as_str().is_some_and(|id| id.len() == 36), "{line}");
            requests += 1;
        }
        if v["message"] == "copy source not reached" {
            copy_line = Some(v.clone());
        }
    }
    assert!(requests >= 5, "every request logged at debug: {lines:#?}");
    let copy = copy_line.expect("the copy's failure is logged");
    assert!(
        copy["span"]["request_id"].as_str().is_some_and(|id| id.len() == 36),
        "the event carries its request's id: {copy}"
    );
    assert!(
        copy["source"].as_str().unwrap().contains("sp=r") && !copy["source"].as_str().unwrap().contains("sig="),
        "{copy}"
    );
}
