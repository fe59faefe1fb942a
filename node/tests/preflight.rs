//! Preflight through the binary, under the limits it checks: `prlimit` lowers the locked-memory
//! limit, and where this test may, `kernel.io_uring_disabled` is set for real (and put back).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use edgeblob_testkit::node::workspace_bin;

/// `edgeblob ARGS` under `prlimit --memlock=BYTES`: (exit code, stdout, stderr).
fn under_memlock(memlock: u64, args: &[&str]) -> (i32, String, String) {
    let out = Command::new("prlimit")
        .arg(format!("--memlock={memlock}:{memlock}"))
        .arg("--")
        .arg(workspace_bin("edgeblob"))
        .args(args)
        .output()
        .expect("prlimit (util-linux)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn line<'a>(out: &'a str, check: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(check))
        .unwrap_or_else(|| panic!("no {check} line in {out}"))
}

#[test]
fn low_locked_memory_is_named_with_the_limit_to_raise_and_strict_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.dat");
    let data = data.to_str().unwrap();
    let (code, out, err) = under_memlock(64 << 10, &["--preflight", "--data", data, "--shards", "2"]);
    assert_eq!(code, 1, "{out}{err}");
    let memlock = line(&out, "memlock");
    assert!(memlock.starts_with("MISSING"), "{memlock}");
    assert!(memlock.contains("RLIMIT_MEMLOCK is 64 KiB") && memlock.contains("LimitMEMLOCK=8388608"), "{memlock}");
    assert!(!data_exists(data), "a preflight creates nothing");

    // Buffers that fit the limit (a limit can only be lowered here: 8 MiB is this machine's).
    let small = dir.path().join("small.toml");
    std::fs::write(&small, "[engine]\nregistered_buffer_bytes = 1048576\n").unwrap();
    let (_, out, _) =
        under_memlock(4 << 20, &["--config", small.to_str().unwrap(), "--preflight", "--data", data, "--shards", "2"]);
    assert!(line(&out, "memlock").starts_with("ok"), "{out}");

    // Strict: the node does not start, and says why.
    let config = dir.path().join("strict.toml");
    std::fs::write(&config, "preflight = \"strict\"\n[admin]\nenabled = false\n").unwrap();
    let args =
        ["--config", config.to_str().unwrap(), "--data", data, "--shards", "2", "--port", "0", "--data-size", "64M"];
    let (code, out, err) = under_memlock(64 << 10, &args);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("preflight (strict)") && err.contains("LimitMEMLOCK"), "{err}");
    assert!(!out.contains("listening"), "{out}");
}

fn data_exists(p: &str) -> bool {
    Path::new(p).exists()
}

#[test]
fn by_default_the_node_starts_on_low_locked_memory_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.dat");
    let mut child = Command::new("prlimit")
        .args(["--memlock=65536:65536", "--"])
        .arg(workspace_bin("edgeblob"))
        .arg("--data")
        .arg(&data)
        .args(["--shards", "2", "--port", "0", "--listen", "127.0.0.1", "--data-size", "64M", "--admin-listen", "off"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let addr = first
        .trim()
        .strip_prefix("edgeblob listening on ")
        .unwrap_or_else(|| panic!("{first:?}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    use std::io::{Read, Write};
    write!(s, "GET /devstoreaccount1?comp=list HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    let _ = child.kill();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let _ = child.wait();
    assert!(
        err.contains("preflight") && err.contains("RLIMIT_MEMLOCK is 64 KiB"),
        "the start says what it lacks: {err}"
    );
}

/// Puts `kernel.io_uring_disabled` back as it was, however the test ends.
struct Sysctl {
    was: String,
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(SYSCTL, &self.was);
    }
}

const SYSCTL: &str = "/proc/sys/kernel/io_uring_disabled";

#[test]
fn io_uring_disabled_by_sysctl_is_said() {
    let Ok(was) = std::fs::read_to_string(SYSCTL) else {
        eprintln!("no {SYSCTL} on this kernel: the unit test on a fake /proc covers the message");
        return;
    };
    let _restore = Sysctl { was: was.clone() };
    if std::fs::write(SYSCTL, "2").is_err() {
        eprintln!("{SYSCTL} is not writable here: the unit test on a fake /proc covers the message");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.dat");
    let (code, out, err) = under_memlock(64 << 10, &["--preflight", "--data", data.to_str().unwrap(), "--shards", "2"]);
    drop(_restore);
    assert_eq!(code, 1, "{out}{err}");
    let l = line(&out, "io_uring");
    assert!(l.starts_with("MISSING") && l.contains("kernel.io_uring_disabled = 2") && l.contains("sysctl -w"), "{l}");
}
