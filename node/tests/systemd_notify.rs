//! `Type=notify`: the node tells systemd it is ready once it serves, feeds the watchdog while its
//! shards answer, and says it is stopping on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edgeblob_testkit::node::workspace_bin;

fn next(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a message from the node in time");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn ready_then_watchdog_then_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let started = Instant::now();
    let mut child = Command::new(workspace_bin("edgeblob"))
        .arg("--data")
        .arg(dir.path().join("d.dat"))
        .args(["--shards", "2", "--port", "0", "--listen", "127.0.0.1", "--data-size", "64M", "--admin-listen", "off"])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = next(&sock);
    assert!(ready.starts_with("READY=1\nSTATUS=serving on 127.0.0.1:"), "{ready:?}");
    // Fed at half the interval while the shards answer.
    for _ in 0..3 {
        assert_eq!(next(&sock), "WATCHDOG=1");
    }
    assert!(started.elapsed() < Duration::from_secs(25));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let mut last = next(&sock);
    while last == "WATCHDOG=1" {
        last = next(&sock);
    }
    assert!(last.starts_with("STOPPING=1"), "{last:?}");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
