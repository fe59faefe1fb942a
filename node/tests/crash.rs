//! Crash test: a separate process writes through the engine and is killed with SIGKILL in the
//! middle of its load, over and over. After each kill the data file is opened again and every
//! acknowledged write must be there byte for byte; a write in flight at the kill must be wholly
//! there or wholly absent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use edgeblob::crashload::{config, content, ACCOUNT, CONTAINER};
use edgeblob::engine::{EngineError, Node};
use edgeblob_meta::model::BlobKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    Deleted,
    V(u64),
}

#[derive(Debug, Default)]
struct Expect {
    /// The state the blob must be in, unless an unacknowledged change in flight took effect.
    durable: Option<Version>,
    in_flight: Option<Version>,
}

fn parse(line: &str) -> Option<(&str, &str, Version)> {
    let mut it = line.split(' ');
    let (kind, name, what) = (it.next()?, it.next()?, it.next()?);
    let v = if what == "delete" { Version::Deleted } else { Version::V(what.parse().ok()?) };
    Some((kind, name, v))
}

#[test]
fn acknowledged_writes_survive_sigkill_over_many_cycles() {
    let cycles: u64 = std::env::var("EDGEBLOB_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("crash.dat");
    let mut model: HashMap<String, Expect> = HashMap::new();
    let mut total_acks = 0;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for cycle in 0..cycles {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgeblob-crashload"))
            .arg(&data)
            .arg((cycle * 7919 + 1).to_string())
            .arg((cycle * 1_000_000).to_string())
            .arg("120")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Kill after a varying number of acknowledgements, plus a varying delay, so the kill
        // lands at different points of a write.
        let want_acks = 3 + (cycle * 5) % 17;
        let started = Instant::now();
        let mut acks = 0;
        let mut lines = Vec::new();
        while acks < want_acks && started.elapsed() < Duration::from_secs(60) {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
                acks += l.starts_with("ACK ") as u64;
                lines.push(l);
            }
        }
        std::thread::sleep(Duration::from_millis((cycle * 37) % 90));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        assert!(acks > 0, "cycle {cycle}: the load made no progress");
        for l in &lines {
            assert!(!l.starts_with("NACK"), "the load saw an error: {l}");
            let Some((kind, name, v)) = parse(l) else { continue };
            let e = model.entry(name.to_owned()).or_default();
            match kind {
                "BEGIN" => e.in_flight = Some(v),
                "ACK" => {
                    assert_eq!(e.in_flight, Some(v));
                    e.durable = Some(v);
                    e.in_flight = None;
                    total_acks += 1;
                }
                _ => {}
            }
        }
        // Reopen and check every blob the load touched.
        let node = Node::open(config(&data)).unwrap_or_else(|e| panic!("cycle {cycle}: reopen failed: {e}"));
        rt.block_on(async {
            for (name, e) in model.iter_mut() {
                let key = BlobKey::new(ACCOUNT, CONTAINER, name);
                let found = match node.read_blob(0, key, None, Default::default()).await {
                    Ok((_, _, bytes)) => {
                        let matches = |v: Option<Version>| match v {
                            Some(Version::V(n)) => bytes[..] == content(name, n)[..],
                            _ => false,
                        };
                        if matches(e.durable) {
                            e.durable
                        } else if matches(e.in_flight) {
                            e.in_flight
                        } else {
                            panic!(
                                "cycle {cycle}: {name} holds bytes of no version it may hold ({e:?}, {} bytes)",
                                bytes.len()
                            )
                        }
                    }
                    Err(EngineError::BlobNotFound) => {
                        let ok = |v: Option<Version>| v == Some(Version::Deleted);
                        assert!(
                            ok(e.durable) || ok(e.in_flight) || e.durable.is_none(),
                            "cycle {cycle}: {name} is missing but {e:?}"
                        );
                        Some(Version::Deleted)
                    }
                    Err(err) => panic!("cycle {cycle}: reading {name}: {err}"),
                };
                // What is there now is durable: the next cycle builds on it.
                e.durable = found;
                e.in_flight = None;
            }
        });
        node.stop();
    }
    assert!(total_acks >= cycles * 3, "too few acknowledged writes to mean anything: {total_acks}");
}
