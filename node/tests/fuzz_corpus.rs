//! The fuzz targets' checks (`fuzz/harness.rs`) on stable, in every test run: each target replays
//! its corpus (`fuzz/corpus/<target>`: seeds and whatever cargo fuzz found and kept), then a
//! few thousand mutations of it from a fixed seed. Coverage-guided runs are in docs/fuzzing.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../fuzz/harness.rs"]
mod harness;

use rand::{Rng, SeedableRng};

fn corpus_dir(target: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target)
}

/// Seeds for the record target are encoded records and log frames: written by the code, so
/// they are made here (`EDGEBLOB_BLESS=1`) rather than by hand.
fn bless_record_seeds() {
    use edgeblob_meta::model::*;
    use edgeblob_meta::Record;
    let chunk = ChunkRef { hash: [7; 16], offset: 1 << 20, stored_len: 4096, len: 5000, flags: 3 };
    let key = BlobKey::new("devstoreaccount1", "ctr", "dir/ü name");
    let records = [
        Record::CheckpointEnd,
        Record::BlockStaged {
            key: key.clone(),
            container_id: 9,
            block: StagedBlock {
                block: Block { id: b"YWFhYQ==".to_vec(), size: 5000, chunks: vec![chunk].into() },
                staged_ns: 1,
            },
        },
        Record::BlobPut {
            key: key.clone(),
            blob: Blob {
                container_id: 9,
                etag: 77,
                created_ns: 1,
                modified_ns: 2,
                size: 5000,
                props: BlobProps {
                    content_type: Some("text/plain".into()),
                    metadata: vec![("Mtime".into(), "1700000000".into())],
                    ..BlobProps::default()
                },
                blocks: vec![Block { id: vec![], size: 5000, chunks: vec![chunk, chunk].into() }],
                single_put: true,
            },
        },
        Record::ContainerPurge { account: "devstoreaccount1".into(), name: "ctr".into(), id: 9 },
    ];
    let dir = corpus_dir("record");
    std::fs::create_dir_all(&dir).unwrap();
    let mut frames = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let payload = r.encode();
        std::fs::write(dir.join(format!("record-{i}")), &payload[..]).unwrap();
        edgeblob_meta::wal::encode_frame(&mut frames, 10 + i as u64, 10, &payload);
    }
    std::fs::write(dir.join("frames"), &frames).unwrap();
}

/// One random change: a byte flipped, inserted, removed, or a run duplicated.
fn mutate(rng: &mut rand::rngs::StdRng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.gen_range(1..4) {
        let at = if v.is_empty() { 0 } else { rng.gen_range(0..v.len()) };
        match rng.gen_range(0..4) {
            0 if !v.is_empty() => v[at] ^= 1 << rng.gen_range(0..8),
            1 => v.insert(at, rng.gen()),
            2 if !v.is_empty() => {
                v.remove(at);
            }
            _ => {
                let end = (at + rng.gen_range(1..16)).min(v.len());
                let run = v[at..end].to_vec();
                v.splice(at..at, run);
            }
        }
    }
    v
}

#[test]
fn every_fuzz_target_replays_its_corpus_and_mutations_of_it() {
    if std::env::var_os("EDGEBLOB_BLESS").is_some() {
        bless_record_seeds();
    }
    let mutations: usize = std::env::var("EDGEBLOB_FUZZ_MUTATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    for (name, check) in harness::TARGETS {
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for entry in std::fs::read_dir(corpus_dir(name)).unwrap_or_else(|e| panic!("corpus of {name}: {e}")) {
            inputs.push(std::fs::read(entry.unwrap().path()).unwrap());
        }
        assert!(!inputs.is_empty(), "the {name} corpus is empty");
        for input in &inputs {
            check(input);
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(0xED6E);
        for _ in 0..mutations {
            let base = &inputs[rng.gen_range(0..inputs.len())];
            check(&mutate(&mut rng, base));
        }
    }
}
