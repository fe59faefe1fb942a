//! `edgeblob-admin hw` through the binary, on the fake hosts of the hw crate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn admin(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edgeblob-admin")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn hosts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../hw/tests/hosts")
}

fn profiles() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../hw-profiles").to_str().unwrap().to_owned()
}

#[test]
fn detect_prints_the_golden_output() {
    for name in ["l8as_v5", "l32as_v5", "l8as_v4", "odm_2s_8nvme"] {
        let root = hosts().join(name);
        let (code, out, err) = admin(&["hw", "detect", "--root", root.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, std::fs::read_to_string(hosts().join(format!("{name}.detect.toml"))).unwrap(), "{name}");
    }
}

#[test]
fn match_names_the_profile_and_the_plan_or_fails() {
    let root = hosts().join("l32as_v5");
    let (code, out, err) =
        admin(&["hw", "match", "--imds", "off", "--root", root.to_str().unwrap(), "--profiles", &profiles()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("# profile azure/Standard_L32as_v5"), "{out}");
    assert!(
        out.contains("shards = 30\n") && out.contains("devices = [\"nvme2n1\"]") && out.contains("io_depth = 34\n"),
        "{out}"
    );
    let (code, _, err) = admin(&[
        "hw",
        "match",
        "--root",
        root.to_str().unwrap(),
        "--profiles",
        &profiles(),
        "--vm-size",
        "Standard_L8as_v5",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no profile fits"), "{err}");
}

#[test]
fn on_an_azure_vm_the_metadata_service_names_the_size() {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let imds = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let mut conn = conn.unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            reader.read_line(&mut first).unwrap();
            // The whole head read: a socket closed with bytes unread is reset, losing the answer.
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            let body =
                if first.starts_with("GET /metadata/instance/compute/vmSize?") { "Standard_L16as_v5" } else { "" };
            write!(conn, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                .unwrap();
        }
    });
    // The host looks like an L8as_v5, but Azure says it is an L16as_v5: no profile is made to fit.
    let root = hosts().join("l8as_v5");
    let (code, _, err) =
        admin(&["hw", "match", "--imds", &imds, "--root", root.to_str().unwrap(), "--profiles", &profiles()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no profile fits"), "{err}");
}
