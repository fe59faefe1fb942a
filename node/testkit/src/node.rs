//! A node to test against: the `edgeblob` binary as a child process ([`spawn`]), or the engine
//! and the Blob API in this process ([`InProcess`]) where a test needs settings the flags lack.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use edgeblob::config::Config;
use edgeblob_engine::Node;

/// A binary of the workspace, built beside the test executable (`target/<profile>/`; tests run
/// from `target/<profile>/deps/`). `cargo test --workspace` builds every binary first.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join(name);
    assert!(bin.exists(), "{} is not built (cargo build --workspace --profile of this test)", bin.display());
    bin
}

/// An `edgeblob` process a test started; killed when dropped.
pub struct NodeProc {
    child: Child,
    /// `host:port` of the Blob API.
    pub http: String,
    /// `host:port` of the TLS listener, when one was asked for.
    pub tls: Option<String>,
    /// `host:port` of the admin listener (metrics, health, operations).
    pub admin: String,
}

impl NodeProc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `edgeblob` on a 1 GiB data file in `dir`, two shards, a free loopback port, and a TLS
/// listener with `tls/server.pem` and `tls/server.key` when `tls` is given.
pub fn spawn(dir: &Path, tls: Option<&Path>, env: &[(&str, PathBuf)]) -> NodeProc {
    spawn_sized(dir, "1G", tls, env)
}

/// [`spawn`] on a data file of `data_size` (a size like `3G`).
pub fn spawn_sized(dir: &Path, data_size: &str, tls: Option<&Path>, env: &[(&str, PathBuf)]) -> NodeProc {
    spawn_with(dir, data_size, tls, env, None)
}

/// [`spawn_sized`] with a configuration file holding `config` (TOML), for the settings the flags
/// do not cover.
pub fn spawn_configured(dir: &Path, data_size: &str, config: &str) -> NodeProc {
    spawn_with(dir, data_size, None, &[], Some(config))
}

/// [`spawn_configured`] with environment variables set.
pub fn spawn_configured_env(dir: &Path, data_size: &str, config: &str, env: &[(&str, PathBuf)]) -> NodeProc {
    spawn_with(dir, data_size, None, env, Some(config))
}

fn spawn_with(
    dir: &Path,
    data_size: &str,
    tls: Option<&Path>,
    env: &[(&str, PathBuf)],
    config: Option<&str>,
) -> NodeProc {
    use std::io::{BufRead, BufReader};
    let mut cmd = Command::new(workspace_bin("edgeblob"));
    if let Some(c) = config {
        let path = dir.join("node.toml");
        std::fs::write(&path, c).unwrap();
        cmd.arg("--config").arg(path);
    }
    for d in node_devices(dir) {
        cmd.arg("--data").arg(d);
    }
    let shards = crate::engine::shards_for(2).to_string();
    cmd.args(["--port", "0", "--listen", "127.0.0.1", "--shards", &shards, "--data-size", data_size]);
    cmd.args(["--admin-listen", "127.0.0.1:0"]);
    if let Some(t) = tls {
        cmd.args(["--tls-port", "0"])
            .arg("--tls-cert")
            .arg(t.join("server.pem"))
            .arg("--tls-key")
            .arg(t.join("server.key"));
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = |prefix: &str| {
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        let rest = l.trim().strip_prefix(prefix).unwrap_or_else(|| panic!("expected {prefix:?}, got {l:?}"));
        // The address, without a note that may follow it.
        rest.split_whitespace().next().unwrap_or(rest).to_owned()
    };
    let http = line("edgeblob listening on ");
    let tls = tls.map(|_| line("edgeblob listening with TLS on "));
    let admin = line("edgeblob admin on ");
    NodeProc { child, http, tls, admin }
}

/// The data files of a test node in `dir`: `node.dat`, and more under `EDGEBLOB_TEST_DEVICES`
/// (`crate::engine::devices`).
pub fn node_devices(dir: &Path) -> Vec<PathBuf> {
    crate::engine::files_from(&dir.join("node.dat"), crate::engine::devices())
}

/// The engine and the Blob API in this process, on loopback; stopped when dropped.
pub struct InProcess {
    node: Option<Node>,
    pub addr: SocketAddr,
    /// The TLS listener, when `tune` configured one.
    pub tls: Option<SocketAddr>,
    /// Entra ID's keys and bindings, when `tune` configured them.
    pub entra: Option<std::sync::Arc<edgeblob::entra::Entra>>,
}

impl InProcess {
    /// A node on `data_size` bytes in `dir` with `shards` unpinned shards; `tune` changes any
    /// other setting first.
    pub fn start(dir: &Path, data_size: u64, shards: usize, tune: impl FnOnce(&mut Config)) -> InProcess {
        let mut cfg = Config { listen: Some("127.0.0.1".into()), port: 0, ..Config::default() };
        cfg.engine.data_path = dir.join("node.dat");
        // A test that asks for fewer shards than there would be devices needs that many shards
        // (its bounds are per shard): it keeps one device.
        if shards >= crate::engine::devices() {
            cfg.engine.devices = node_devices(dir);
        }
        if cfg.engine.devices.len() == 1 {
            cfg.engine.devices.clear();
        }
        cfg.engine.data_size = data_size;
        cfg.engine.shards =
            Some(if cfg.engine.devices.is_empty() { shards } else { crate::engine::shards_for(shards) });
        cfg.engine.pin_threads = false;
        tune(&mut cfg);
        let node = Node::open(cfg.engine.clone()).unwrap();
        let bound = edgeblob::http::serve(&node, &cfg).unwrap();
        InProcess { node: Some(node), addr: bound.http, tls: bound.https, entra: bound.shared.entra }
    }

    /// The engine behind the listener.
    pub fn node(&self) -> &Node {
        self.node.as_ref().expect("running until dropped")
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(n) = self.node.take() {
            n.stop();
        }
    }
}
