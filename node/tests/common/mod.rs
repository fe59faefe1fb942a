//! Helpers for engine tests: a node on a small data file in a temporary directory.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use edgeblob::config::EngineConfig;
use edgeblob::engine::Node;
use edgeblob_meta::model::BlobKey;

pub const ACCOUNT: &str = "devstoreaccount1";

pub fn config(dir: &Path) -> EngineConfig {
    EngineConfig {
        data_path: dir.join("edgeblob.dat"),
        data_size: 256 << 20,
        shards: Some(2),
        pin_threads: false,
        chunk_size: 64 * 1024,
        ..EngineConfig::default()
    }
}

pub fn data_path(dir: &Path) -> PathBuf {
    dir.join("edgeblob.dat")
}

pub fn key(container: &str, name: &str) -> BlobKey {
    BlobKey::new(ACCOUNT, container, name)
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Deterministic bytes: random-looking (incompressible) or text-like (compressible).
pub fn data(seed: u64, len: usize, compressible: bool) -> Vec<u8> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    if compressible {
        let words = [&b"alpha "[..], b"beta ", b"gamma ", b"delta ", b"\n"];
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(words[rng.gen_range(0..words.len())]);
        }
        out.truncate(len);
        out
    } else {
        let mut out = vec![0u8; len];
        rng.fill(&mut out[..]);
        out
    }
}

/// A body split into uneven pieces, as a network would deliver it.
pub fn body(bytes: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut step = 1000;
    while at < bytes.len() {
        let n = step.min(bytes.len() - at);
        out.push(Bytes::copy_from_slice(&bytes[at..at + n]));
        at += n;
        step = step * 3 % 70_001 + 1;
    }
    out
}

pub fn open(cfg: &EngineConfig) -> Node {
    Node::open(cfg.clone()).expect("node opens")
}

/// An `edgeblob` process a test started; killed when dropped.
pub struct NodeProc {
    child: std::process::Child,
    /// `host:port` of the Blob API.
    pub http: String,
    /// `host:port` of the TLS listener, when one was asked for.
    pub tls: Option<String>,
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

/// Starts the `edgeblob` binary on a 1 GiB data file in `dir`, two shards, a free loopback port,
/// and a TLS listener with `tls/server.pem` and `tls/server.key` when `tls` is given.
pub fn spawn_node(dir: &Path, tls: Option<&Path>, env: &[(&str, PathBuf)]) -> NodeProc {
    spawn_node_sized(dir, "1G", tls, env)
}

/// [`spawn_node`] on a data file of `data_size` (a size like `3G`).
pub fn spawn_node_sized(dir: &Path, data_size: &str, tls: Option<&Path>, env: &[(&str, PathBuf)]) -> NodeProc {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgeblob"));
    cmd.arg("--data").arg(dir.join("node.dat"));
    cmd.args(["--port", "0", "--listen", "127.0.0.1", "--shards", "2", "--data-size", data_size]);
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
        l.trim().strip_prefix(prefix).unwrap_or_else(|| panic!("expected {prefix:?}, got {l:?}")).to_owned()
    };
    let http = line("edgeblob listening on ");
    let tls = tls.map(|_| line("edgeblob listening with TLS on "));
    NodeProc { child, http, tls }
}

/// Where the client kit installs its tools (`../shared/peers/install.sh`).
pub fn peers_home() -> PathBuf {
    std::env::var_os("PEERS_HOME").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
        cache.join("azure-blob-peers")
    })
}
