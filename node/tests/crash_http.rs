//! SIGKILL of the `edgeblob` binary with many clients writing at once over HTTP: every write the
//! node acknowledged (201 or 202 read whole) reads back byte for byte after the restart, a write
//! cut short by the kill is wholly there or wholly absent, and the node serves again within
//! seconds. The metadata cache and flush threshold are 16 KiB, so each kill lands among flushes,
//! read-backs of evicted entries and reference changes on their way between shards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use edgeblob_testkit::crash::{version_bytes, Expect, Version};
use edgeblob_testkit::node::spawn_configured;
use edgeblob_testkit::raw::{signed, try_signed};

const WRITERS: usize = 16;
/// Blobs per writer: each name is written by one writer alone, so what it must hold follows
/// from that writer's order.
const NAMES: u64 = 4;
const CONFIG: &str = "[engine]\nmeta_cache_bytes = 16384\nmeta_flush_bytes = 16384\n";
const CONTAINER: &str = "/devstoreaccount1/crash";

type Model = Arc<Mutex<HashMap<String, Expect>>>;

/// The bytes of version `v` of `name`.
fn content(name: &str, v: u64) -> Vec<u8> {
    version_bytes(name, v, &[0, 1, 4095, 70_000, 300_000])
}

fn block_id(version: u64, i: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{version:012}-{i:04}"))
}

/// A write's answer: acknowledged, refused (nothing changed), or cut short by the kill.
enum Outcome {
    Acked,
    Refused,
    Cut,
}

fn outcome(res: std::io::Result<(u16, String, Vec<u8>)>, what: &str) -> Outcome {
    match res {
        Ok((201 | 202, _, _)) => Outcome::Acked,
        // Pressure the node reports as Azure does: the client would retry.
        Ok((503, _, _)) => Outcome::Refused,
        Ok((status, _, body)) => panic!("{what}: {status} {}", String::from_utf8_lossy(&body)),
        Err(_) => Outcome::Cut,
    }
}

/// Writes, replaces and deletes writer `w`'s blobs until the node stops answering; returns how
/// many changes it acknowledged.
async fn writer(addr: String, w: usize, first_version: u64, model: Model) -> u64 {
    let mut acked = 0;
    let mut x = (first_version + w as u64 * 7919) | 1;
    let mut version = first_version;
    loop {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        version += 1;
        let name = format!("w{w:02}-blob-{}", x % NAMES);
        let path = format!("{CONTAINER}/{name}");
        let delete = (x >> 16).is_multiple_of(8);
        let change = if delete { Version::Deleted } else { Version::V(version) };
        model.lock().unwrap().entry(name.clone()).or_default().in_flight = Some(change);
        let done = if delete {
            match try_signed(&addr, "DELETE", &path, &[], b"").await {
                // Absent already: absent now, durably.
                Ok((404, _, _)) => Outcome::Acked,
                res => outcome(res, "Delete Blob"),
            }
        } else {
            let data = content(&name, version);
            if (x >> 20).is_multiple_of(3) {
                put_block_list(&addr, &path, version, &data).await
            } else {
                let headers = [("x-ms-blob-type", "BlockBlob")];
                outcome(try_signed(&addr, "PUT", &path, &headers, &data).await, "Put Blob")
            }
        };
        match done {
            Outcome::Acked => {
                let mut m = model.lock().unwrap();
                let e = m.get_mut(&name).unwrap();
                e.durable = Some(change);
                e.in_flight = None;
                acked += 1;
            }
            Outcome::Refused => {}
            Outcome::Cut => return acked,
        }
    }
}

/// Stages `data` in blocks of up to 100,000 bytes and commits them.
async fn put_block_list(addr: &str, path: &str, version: u64, data: &[u8]) -> Outcome {
    let pieces: Vec<&[u8]> = if data.is_empty() { vec![data] } else { data.chunks(100_000).collect() };
    let mut list = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
    for (i, piece) in pieces.iter().enumerate() {
        let id = block_id(version, i);
        let query = percent_encoding::utf8_percent_encode(&id, percent_encoding::NON_ALPHANUMERIC);
        let target = format!("{path}?comp=block&blockid={query}");
        match outcome(try_signed(addr, "PUT", &target, &[], piece).await, "Put Block") {
            Outcome::Acked => {}
            other => return other,
        }
        list.push_str(&format!("<Latest>{id}</Latest>"));
    }
    list.push_str("</BlockList>");
    let target = format!("{path}?comp=blocklist");
    outcome(try_signed(addr, "PUT", &target, &[], list.as_bytes()).await, "Put Block List")
}

#[tokio::test]
async fn acknowledged_http_writes_survive_sigkill_of_the_node() {
    let cycles: u64 = std::env::var("EDGEBLOB_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(30) / 5;
    let dir = tempfile::tempdir().unwrap();
    let model: Model = Arc::default();
    let mut node = spawn_configured(dir.path(), "1G", CONFIG);
    let (status, _, _) = signed(&node.http, "PUT", &format!("{CONTAINER}?restype=container"), &[], b"").await;
    assert_eq!(status, 201);
    let mut acked = 0;
    for cycle in 0..cycles.max(3) {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(writer(node.http.clone(), w, cycle * 1_000_000, model.clone())))
            .collect();
        // A varying time into the load, so the kill lands at different points of the writes.
        tokio::time::sleep(Duration::from_millis(300 + (cycle * 397) % 1200)).await;
        drop(node); // SIGKILL
        for w in writers {
            acked += w.await.unwrap();
        }
        let started = Instant::now();
        node = spawn_configured(dir.path(), "1G", CONFIG);
        let restart = started.elapsed();
        assert!(restart < Duration::from_secs(10), "cycle {cycle}: serving again took {restart:?}");
        let mut m = model.lock().unwrap().drain().collect::<Vec<_>>();
        for (name, e) in &mut m {
            let (status, _, body) = signed(&node.http, "GET", &format!("{CONTAINER}/{name}"), &[], b"").await;
            let found = match status {
                200 => Some(&body[..]),
                404 => None,
                _ => panic!("cycle {cycle}: reading {name}: {status} {}", String::from_utf8_lossy(&body)),
            };
            assert!(
                e.settle(found, |v| content(name, v)),
                "cycle {cycle}: {name} answers {status} with {} bytes, but {e:?}",
                body.len()
            );
        }
        model.lock().unwrap().extend(m);
    }
    eprintln!("{} cycles of {WRITERS} writers: {acked} acknowledged changes", cycles.max(3));
    assert!(acked >= cycles.max(3) * WRITERS as u64, "too few acknowledged changes to mean anything: {acked}");
}
