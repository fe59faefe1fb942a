//! A write load for crash tests: blob writes and deletes through the engine, each reported on
//! stdout before it starts (`BEGIN`) and once acknowledged (`ACK`), so a test can kill the process
//! with SIGKILL at any moment and then check that every acknowledged write is there byte for
//! byte and that nothing unacknowledged is half there. Bounded: it stops by itself after
//! `max_secs`.

use std::io::Write;
use std::path::Path;

use crate::config::EngineConfig;
use crate::engine::{BlockListItem, Node};
use edgeblob_meta::model::BlobKey;

pub const ACCOUNT: &str = "devstoreaccount1";
pub const CONTAINER: &str = "crash";

/// The engine settings of the load (the verifier opens the same file with them).
pub fn config(data: &Path) -> EngineConfig {
    EngineConfig {
        data_path: data.to_owned(),
        data_size: 512 << 20,
        shards: Some(2),
        pin_threads: false,
        chunk_size: 64 * 1024,
        ..EngineConfig::default()
    }
}
/// The bytes of version `v` of blob `name`: the crash test regenerates them to compare.
pub fn content(name: &str, v: u64) -> Vec<u8> {
    let h = xxhash_rust::xxh3::xxh3_64(format!("{name}/{v}").as_bytes());
    let len = [0usize, 1, 4091, 4092, 70_000, 300_000, 1_200_000][(h % 7) as usize];
    let mut out = Vec::with_capacity(len);
    let mut x = h | 1;
    while out.len() < len {
        // Every third version repeats a fixed pattern, so dedup is exercised across blobs.
        if v.is_multiple_of(3) {
            out.extend_from_slice(b"shared chunk pattern ");
        } else {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

/// Runs the load on `data` until killed or `max_secs` pass.
pub fn run(data: &Path, seed: u64, first_version: u64, max_secs: u64) {
    let mut version = first_version;
    let node = Node::open(config(data)).expect("open");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(max_secs);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let out = std::io::stdout();
    let say = |line: String| {
        let mut o = out.lock();
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    };
    rt.block_on(async {
        if node.get_container(ACCOUNT, CONTAINER).is_err() {
            node.create_container(ACCOUNT, CONTAINER, vec![]).await.expect("container");
        }
        let mut x = seed | 1;
        while std::time::Instant::now() < deadline {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let name = format!("blob-{:02}", x % 24);
            let key = BlobKey::new(ACCOUNT, CONTAINER, &name);
            version += 1;
            let via = (x >> 8) as usize % 2;
            match (x >> 16) % 10 {
                0 => {
                    say(format!("BEGIN {name} delete"));
                    match node.delete_blob(key, Default::default()).await {
                        // Either way the blob is now absent, durably.
                        Ok(()) | Err(crate::engine::EngineError::BlobNotFound) => say(format!("ACK {name} delete")),
                        Err(e) => say(format!("NACK {name} delete {e}")),
                    }
                }
                1..=4 => {
                    let data = content(&name, version);
                    say(format!("BEGIN {name} {version}"));
                    // Blocks of up to 100,000 bytes, committed as one list.
                    let ids: Vec<Vec<u8>> = (0..data.len().div_ceil(100_000).max(1))
                        .map(|i| format!("{version:012}-{i:04}").into_bytes())
                        .collect();
                    let mut ok = true;
                    for (i, id) in ids.iter().enumerate() {
                        let piece = data[(i * 100_000).min(data.len())..((i + 1) * 100_000).min(data.len())].to_vec();
                        if node.put_block(via, key.clone(), id.clone(), vec![piece.into()]).await.is_err() {
                            ok = false;
                        }
                    }
                    let list = ids.into_iter().map(BlockListItem::Uncommitted).collect();
                    match ok {
                        true => match node.commit_block_list(key, list, Default::default(), Default::default()).await {
                            Ok(_) => say(format!("ACK {name} {version}")),
                            Err(e) => say(format!("NACK {name} {version} {e}")),
                        },
                        false => say(format!("NACK {name} {version} put block failed")),
                    }
                }
                _ => {
                    let data = content(&name, version);
                    say(format!("BEGIN {name} {version}"));
                    match node.put_blob(via, key, vec![data.into()], Default::default(), Default::default()).await {
                        Ok(_) => say(format!("ACK {name} {version}")),
                        Err(e) => say(format!("NACK {name} {version} {e}")),
                    }
                }
            }
        }
    });
}
