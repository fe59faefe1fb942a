//! The real-client kit (`../shared/peers` beside the repository: azcopy, the Python SDK, rclone,
//! boostedblob, blobfile, Azurite) and Azurite itself. A test that needs the kit calls
//! [`kit`]: where the kit is missing it skips, except where `EDGEBLOB_REQUIRE_PEERS` is set (CI
//! sets it), where it fails: a missing kit must never pass for a green run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Whether tests that need the kit must fail without it (CI) rather than skip.
/// Whether a program (from Debian's packages: systemd-analyze, lintian, prometheus…) can be run;
/// where the kit is required (CI, which installs them), a missing one fails the test.
pub fn tool(name: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(!required(), "{name} is missing (.ci/run installs it)");
        eprintln!("{name} is not installed: skipped");
    }
    found
}

pub fn required() -> bool {
    std::env::var_os("EDGEBLOB_REQUIRE_PEERS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Where the kit installs its tools: `$PEERS_HOME`, else `~/.cache/azure-blob-peers`.
pub fn home() -> PathBuf {
    std::env::var_os("PEERS_HOME").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
        cache.join("azure-blob-peers")
    })
}

/// The kit's scripts, installed (once per test process; the installer is idempotent). `None`
/// means skip: the kit is not beside the repository and not required. `why` names the test's
/// need in the skip line.
pub fn kit(why: &str) -> Option<PathBuf> {
    static INSTALLED: OnceLock<Option<PathBuf>> = OnceLock::new();
    let found = INSTALLED.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/peers");
        if !dir.join("install.sh").exists() {
            return None;
        }
        let ok = Command::new("bash").arg(dir.join("install.sh")).stdout(Stdio::null()).status().unwrap();
        assert!(ok.success(), "installing the client kit ({}) failed", dir.display());
        Some(dir)
    });
    match found {
        Some(d) => Some(d.clone()),
        None if required() => panic!("EDGEBLOB_REQUIRE_PEERS is set but ../shared/peers is missing: {why}"),
        None => {
            eprintln!("SKIP: ../shared/peers is not beside the repository: {why}");
            None
        }
    }
}

/// The kit's test CA and server certificate (`tls/server.pem`, `server.key`, `bundle.pem`).
pub fn tls(why: &str) -> Option<PathBuf> {
    kit(why)?;
    Some(home().join("tls"))
}

/// An Azurite (the kit's) on a free loopback port, data in `dir`; killed when dropped.
pub struct Azurite {
    child: Child,
    pub port: u16,
}

impl Azurite {
    pub fn start(dir: &Path) -> Azurite {
        Azurite::start_with(dir, &[])
    }

    /// Azurite over TLS (the kit's certificate) taking Entra ID bearer tokens (`--oauth basic`:
    /// it reads a token's claims, audience, issuer and times, and checks no signature); its
    /// endpoint is `https://127.0.0.1:<port>`.
    pub fn start_oauth(dir: &Path, tls: &Path) -> Azurite {
        let (cert, key) = (tls.join("server.pem"), tls.join("server.key"));
        Azurite::start_with(
            dir,
            &["--oauth", "basic", "--cert", cert.to_str().unwrap(), "--key", key.to_str().unwrap()],
        )
    }

    fn start_with(dir: &Path, extra: &[&str]) -> Azurite {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(home().join("bin/azurite-blob"))
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(extra)
            .args(["--skipApiVersionCheck", "--disableTelemetry", "--location"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("azurite-blob (installed by ../shared/peers/install.sh)");
        let azurite = Azurite { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "Azurite did not start listening in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        azurite
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
