//! An engine on a small data file in a temporary directory, and data to write to it.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use edgeblob_engine::config::EngineConfig;
use edgeblob_engine::Node;
use edgeblob_meta::model::BlobKey;

pub const ACCOUNT: &str = "devstoreaccount1";

/// Two unpinned shards on 256 MiB with 64 KiB chunks: small, and many chunks per blob.
pub fn config(dir: &Path) -> EngineConfig {
    EngineConfig {
        data_path: data_path(dir),
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

pub fn open(cfg: &EngineConfig) -> Node {
    Node::open(cfg.clone()).expect("node opens")
}

/// [`open`] on a sparse data file, formatted in place. For tests that need a large file (a
/// shard's metadata share grows with it) but write little: a node reserves its whole file up
/// front, and a few such tests at once would ask a CI machine for tens of GiB it may not have.
pub fn open_sparse(cfg: &EngineConfig) -> Node {
    let shards = cfg.shards.expect("a sparse test file names its shard count") as u32;
    std::fs::File::create(&cfg.data_path).and_then(|f| f.set_len(cfg.data_size)).expect("sparse data file");
    let file = std::sync::Arc::new(edgeblob_io::file::DeviceFile::open(&cfg.data_path).expect("data file opens"));
    edgeblob_engine::startup::format_device(&file, shards).expect("data file formats");
    drop(file);
    open(cfg)
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
