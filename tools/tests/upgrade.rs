//! `edgeblob-admin upgrade`: a format v1 data file's containers and blobs arrive in a new v2 file
//! byte for byte, with their properties, metadata and block ids; the v1 file is left as it was.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use edgeblob_engine::config::EngineConfig;
use edgeblob_engine::{BlockListItem, Node};
use edgeblob_meta::listing::ListQuery;
use edgeblob_meta::model::{BlobProps, PublicAccess};
use edgeblob_testkit::engine::*;

fn admin(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edgeblob-admin")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn props(i: usize) -> BlobProps {
    BlobProps {
        content_type: Some(format!("application/x-{i}")),
        cache_control: Some("no-cache".into()),
        metadata: vec![("Index".into(), i.to_string())],
        ..BlobProps::default()
    }
}

#[test]
fn a_v1_file_upgrades_to_v2_with_every_blob_intact() {
    let dir = tempfile::tempdir().unwrap();
    let old_path = dir.path().join("old.dat");
    let new_path = dir.path().join("new.dat");
    let v1 = EngineConfig { data_path: old_path.clone(), format_version: 1, ..config(dir.path()) };
    let rt = rt();
    // Single puts (one empty), a blob of blocks with a repeated id, metadata, two containers.
    let mut expect = Vec::new();
    let mut stamps = std::collections::HashMap::new();
    {
        let node = Node::open(v1.clone()).unwrap();
        rt.block_on(async {
            node.create_container(ACCOUNT, "public", vec![("Owner".into(), "me".into())]).await.unwrap();
            node.create_container(ACCOUNT, "private", vec![]).await.unwrap();
            node.on(0, |s| async move {
                edgeblob_engine::ops::set_container_access(
                    &s,
                    ACCOUNT.into(),
                    "public".into(),
                    PublicAccess::Container,
                    vec![],
                )
                .await
            })
            .await
            .unwrap()
            .unwrap();
            for i in 0..40 {
                let c = if i % 2 == 0 { "public" } else { "private" };
                let name = format!("dir{}/blob-{i:03}", i % 3);
                let d = data(i as u64, if i == 7 { 0 } else { 1000 * i + 1 }, i % 4 == 0);
                node.put_blob(i % 2, key(c, &name), body(&d), props(i), Default::default()).await.unwrap();
                expect.push((c, name, d, None));
            }
            let parts = [data(100, 70_000, false), data(101, 5, true), data(102, 300_000, false)];
            for (i, p) in parts.iter().enumerate() {
                node.put_block(i % 2, key("private", "blocks"), format!("id-{i}").into_bytes(), body(p)).await.unwrap();
            }
            let list: Vec<BlockListItem> =
                [0, 1, 2, 1].iter().map(|i| BlockListItem::Latest(format!("id-{i}").into_bytes())).collect();
            node.commit_block_list(key("private", "blocks"), list, props(99), Default::default()).await.unwrap();
            let whole: Vec<u8> =
                [&parts[0], &parts[1], &parts[2], &parts[1]].iter().flat_map(|p| p.iter().copied()).collect();
            let ids: Vec<(Vec<u8>, u64)> =
                [0usize, 1, 2, 1].iter().map(|&i| (format!("id-{i}").into_bytes(), parts[i].len() as u64)).collect();
            expect.push(("private", "blocks".to_string(), whole, Some(ids)));
            node.sync().await.unwrap();
            for (c, name, _, _) in &expect {
                let b = node.head_blob(key(c, name), Default::default()).await.unwrap();
                stamps.insert((c.to_string(), name.clone()), (b.etag, b.created_ns, b.modified_ns));
            }
        });
        node.stop();
    }
    let old_bytes = std::fs::read(&old_path).unwrap();
    let (code, out) = admin(&["upgrade", "--from", old_path.to_str().unwrap(), "--to", new_path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 containers, 41 blobs"), "{out}");
    assert!(std::fs::read(&old_path).unwrap() == old_bytes, "the v1 file is only read");
    let (code, out) =
        admin(&["upgrade", "--from", new_path.to_str().unwrap(), "--to", dir.path().join("x").to_str().unwrap()]);
    assert_ne!(code, 0, "a v2 file is not upgraded again: {out}");
    assert!(out.contains("already format version 2"), "{out}");
    let (code, out) = admin(&["inspect", "--data", new_path.to_str().unwrap()]);
    assert!(code == 0 && out.contains("format       version 2") && out.contains("index:"), "{out}");

    let node = Node::open(EngineConfig { data_path: new_path, format_version: 2, ..config(dir.path()) }).unwrap();
    rt.block_on(async {
        let public = node.get_container(ACCOUNT, "public").unwrap();
        assert_eq!(public.metadata, vec![("Owner".to_string(), "me".to_string())]);
        assert_eq!(public.public_access, PublicAccess::Container);
        for (c, name, d, ids) in &expect {
            let (summary, _, got) = node.read_blob(0, key(c, name), None, Default::default()).await.unwrap();
            assert!(got[..] == d[..], "{c}/{name}: other bytes");
            let before = &stamps[&(c.to_string(), name.clone())];
            assert_eq!(
                (summary.etag, summary.created_ns, summary.modified_ns),
                *before,
                "{c}/{name}: ETag and times are kept"
            );
            let want = if name == "blocks" { props(99) } else { props(name[name.len() - 3..].parse().unwrap()) };
            assert_eq!(summary.props.content_type, want.content_type, "{c}/{name}");
            assert_eq!(summary.props.metadata, want.metadata, "{c}/{name}");
            let list = node.get_block_list(key(c, name)).await.unwrap();
            assert_eq!(list.committed.unwrap(), ids.clone().unwrap_or_default(), "{c}/{name}: block ids");
        }
        let mut n = 0;
        for c in ["public", "private"] {
            n +=
                node.list_blobs(ACCOUNT, c, ListQuery { max: 1000, ..Default::default() }).await.unwrap().entries.len();
        }
        assert_eq!(n, expect.len(), "nothing more, nothing less");
        // The new node's own ETags come after every one it took over.
        let newest = stamps.values().map(|s| s.0).max().unwrap();
        let fresh = node.put_blob(0, key("private", "fresh"), body(b"x"), BlobProps::default(), Default::default());
        assert!(fresh.await.unwrap().etag > newest);
    });
}
