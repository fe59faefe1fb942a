//! An engine on a small data file in a temporary directory, and data to write to it.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use edgeblob_engine::config::EngineConfig;
use edgeblob_engine::Node;
use edgeblob_meta::model::BlobKey;

pub const ACCOUNT: &str = "devstoreaccount1";

/// Two unpinned shards on 256 MiB with 64 KiB chunks: small, and many chunks per blob. Under
/// `EDGEBLOB_TEST_DEVICES=N`, on N data files of 256 MiB with a shard count rounded up to a
/// multiple of N ([`devices`]).
pub fn config(dir: &Path) -> EngineConfig {
    let n = devices();
    EngineConfig {
        data_path: data_path(dir),
        devices: device_paths(dir, n),
        data_size: 256 << 20,
        shards: Some(shards_for(2)),
        pin_threads: false,
        chunk_size: 64 * 1024,
        ..EngineConfig::default()
    }
}

/// The devices a test node runs on: `EDGEBLOB_TEST_DEVICES` (default 1), so that the whole
/// suite can run again on a node of several devices.
pub fn devices() -> usize {
    std::env::var("EDGEBLOB_TEST_DEVICES").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(1)
}

/// `shards` rounded up to spread evenly over [`devices`].
pub fn shards_for(shards: usize) -> usize {
    shards.div_ceil(devices()) * devices()
}

/// The data files of a node of `n` devices in `dir`: the first is [`data_path`]; none listed
/// for one (the node then runs on `data_path`).
pub fn device_paths(dir: &Path, n: usize) -> Vec<PathBuf> {
    if n <= 1 {
        return Vec::new();
    }
    files_from(&data_path(dir), n)
}

/// `first` and the files beside it for devices 1 to `n - 1` (`edgeblob.dat`, `edgeblob-1.dat`...).
pub fn files_from(first: &Path, n: usize) -> Vec<PathBuf> {
    let stem = first.file_stem().unwrap_or_default().to_string_lossy();
    let dir = first.parent().unwrap_or(Path::new("."));
    std::iter::once(first.to_owned()).chain((1..n).map(|i| dir.join(format!("{stem}-{i}.dat")))).collect()
}

pub fn data_path(dir: &Path) -> PathBuf {
    dir.join("edgeblob.dat")
}

/// The file and the offset in it of node offset `offset` of a node [`config`] made in `dir`.
pub fn file_at(dir: &Path, offset: u64) -> (PathBuf, u64) {
    let (d, local) = edgeblob_io::volume::split(offset);
    (files_from(&data_path(dir), devices())[d].clone(), local)
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
    let paths = cfg.device_paths();
    let shards = cfg.shards.expect("a sparse test file names its shard count") / paths.len();
    let files: Vec<_> = paths
        .iter()
        .map(|p| {
            std::fs::File::create(p).and_then(|f| f.set_len(cfg.data_size)).expect("sparse data file");
            std::sync::Arc::new(edgeblob_io::file::DeviceFile::open(p).expect("data file opens"))
        })
        .collect();
    edgeblob_engine::startup::format_devices(&files, shards as u32).expect("data files format");
    drop(files);
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

/// `keys(i)` for the first `i` whose keys' owner shards all lie on one device: blobs that can
/// share chunks (dedup is within a device). Any `i` does on a node of one device: then `keys(0)`.
pub fn on_one_device(node: &Node, keys: impl Fn(usize) -> Vec<BlobKey>) -> Vec<BlobKey> {
    let shared = node.shared();
    (0..10_000)
        .map(&keys)
        .find(|ks| {
            let device = |k: &BlobKey| shared.device_of(shared.owner_of(k));
            ks.iter().all(|k| device(k) == device(&ks[0]))
        })
        .expect("keys on one device")
}

/// The chunks blob `k` names, from its owner shard's metadata.
pub fn chunks_of(node: &Node, k: &BlobKey) -> Vec<edgeblob_meta::model::ChunkRef> {
    use edgeblob_meta::shard_store::{ensure, Want};
    let owner = node.shared().owner_of(k);
    let k = k.clone();
    rt().block_on(node.on(owner, move |s| async move {
        ensure(&s.meta, &[Want::Blob(k.clone())]).await.unwrap();
        s.meta.borrow().state().blobs[&k].chunks().copied().collect::<Vec<_>>()
    }))
    .unwrap()
}
