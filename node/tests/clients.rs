//! The real clients against real nodes: `../shared/peers/scenarios.sh` (azcopy including
//! service-to-service copies from a second node, the Python SDK, rclone, boostedblob and blobfile
//! over the node's own TLS listener, with the kit's certificate) against two edgeblob processes this
//! test starts. Every
//! scenario checks data by hash. The kit lives beside the repository (`../shared/peers`); the
//! test installs it (idempotent) and fails on any failed scenario.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

struct NodeProc {
    child: Child,
    endpoint: String,
    tls: String,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(dir: &Path, tls: &Path) -> NodeProc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgeblob"))
        .args([
            "--data",
            dir.join("node.dat").to_str().unwrap(),
            "--port",
            "0",
            "--listen",
            "127.0.0.1",
            "--shards",
            "2",
            "--data-size",
            "1G",
        ])
        .args(["--tls-port", "0", "--tls-cert", tls.join("server.pem").to_str().unwrap()])
        .args(["--tls-key", tls.join("server.key").to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = |prefix: &str| {
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        l.trim().strip_prefix(prefix).unwrap_or_else(|| panic!("expected {prefix:?}, got {l:?}")).to_owned()
    };
    let http = line("edgeblob listening on ");
    let tls = line("edgeblob listening with TLS on ");
    NodeProc { child, endpoint: format!("http://{http}"), tls }
}

fn peers_home() -> PathBuf {
    std::env::var_os("PEERS_HOME").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
        cache.join("azure-blob-peers")
    })
}

fn kit() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/peers");
    p.join("scenarios.sh").exists().then_some(p)
}

#[test]
fn every_client_scenario_passes() {
    let Some(kit) = kit() else {
        eprintln!("SKIP: ../shared/peers is not beside the repository; the client scenarios need it");
        return;
    };
    let install = Command::new("bash").arg(kit.join("install.sh")).stdout(Stdio::null()).status().unwrap();
    assert!(install.success(), "installing the client kit failed");
    let tls = peers_home().join("tls");
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (dst, src) = (start_node(d1.path(), &tls), start_node(d2.path(), &tls));
    let out = Command::new("bash")
        .arg(kit.join("scenarios.sh"))
        .env("BLOB_ENDPOINT", &dst.endpoint)
        .env("SRC_ENDPOINT", &src.endpoint)
        .env("BLOB_TLS_ENDPOINT", dst.tls.replace("0.0.0.0", "127.0.0.1"))
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
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut azurite = Command::new(peers_home().join("bin/azurite-blob"))
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--skipApiVersionCheck", "--location"])
        .arg(azurite_dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("azurite (installed by the kit)");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "Azurite did not start");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = Command::new("bash")
        .arg(kit.join("scenarios.sh"))
        .arg("s2s")
        .env("BLOB_ENDPOINT", &dst.endpoint)
        .env("SRC_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .env("PEERS_TIMEOUT", "180")
        .env("PEERS_WAIT", "60")
        .output()
        .unwrap();
    let _ = azurite.kill();
    let _ = azurite.wait();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let summary = text.lines().rev().find(|l| l.contains(" passed, ")).unwrap_or("(no summary)");
    eprintln!("s2s from Azurite: {summary}");
    let failures: Vec<&str> = text.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(failures.is_empty() && out.status.success(), "s2s from Azurite failed:\n{text}");
    assert!(text.lines().filter(|l| l.starts_with("PASS azcopy-s2s")).count() >= 4, "{text}");
}
