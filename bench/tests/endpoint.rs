//! `edgeblob-bench run` against real servers: an edgeblob node (in this process), the harness's
//! own static server, and Azurite from the client kit. Every workload runs with verification on,
//! and the figures in its JSON must add up to what the job asked for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use edgeblob::config::DEV_KEY;
use edgeblob_testkit::node::InProcess;
use edgeblob_testkit::peers::{self, Azurite};
use serde_json::Value;

fn node(dir: &Path, max_requests: Option<usize>) -> InProcess {
    InProcess::start(dir, 2 << 30, 2, |c| {
        if let Some(m) = max_requests {
            c.max_requests_per_shard = m;
        }
    })
}

fn endpoint_args(addr: impl std::fmt::Display) -> Vec<String> {
    vec![format!("--endpoint=http://{addr}/devstoreaccount1"), format!("--key={DEV_KEY}")]
}

/// Runs `edgeblob-bench run` with JSON output; returns the exit status and the jobs.
fn bench(args: &[String]) -> (i32, Vec<Value>) {
    let out = Command::new(env!("CARGO_BIN_EXE_edgeblob-bench"))
        .arg("run")
        .args(args)
        .arg("--output-format=json")
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let doc: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap_or(-1), doc["jobs"].as_array().unwrap().clone())
}

fn op<'a>(job: &'a Value, name: &str) -> &'a Value {
    job["by_op"].as_array().unwrap().iter().find(|o| o["op"] == name).unwrap_or_else(|| panic!("no {name} in {job}"))
}

fn errors(job: &Value) -> u64 {
    job["errors"].as_array().unwrap().iter().map(|e| e["count"].as_u64().unwrap()).sum()
}

struct StaticServer(Child, String);

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn static_server() -> StaticServer {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgeblob-bench"))
        .args(["static-server", "--listen", "127.0.0.1:0", "--threads", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("static server listening on ").unwrap().to_owned();
    StaticServer(child, addr)
}

const MIB: u64 = 1 << 20;

#[test]
fn every_workload_runs_verified_against_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path(), None);
    let source = static_server();
    let job_file = dir.path().join("all.ini");
    std::fs::write(
        &job_file,
        format!(
            "[global]
endpoint=http://{}/devstoreaccount1
key={DEV_KEY}
verify=1
numjobs=2
iodepth=4
compress_ratio=2
dedupe_percentage=25

[ckpt-write]
workload=checkpoint-write
size=24M
bs=4M

[ckpt-read]
workload=checkpoint-read
size=24M
bs=3M

[shards]
workload=shard-read
size=5M
nrfiles=3

[ranges]
workload=random-range
size=16M
bs=4K-256K
nrfiles=2
number_ios=300

[small]
workload=small-objects
nrfiles=40
size=1K-64K
mix=get:6,put:2,head:2
number_ios=200

[listing]
workload=list
nrfiles=1200
list_page=500
number_ios=4

[hydrate]
workload=hydrate
source_endpoint=http://{}/devstoreaccount1
size=20M
bs=8M
nrfiles=2

[mixed]
workload=mixed
size=8M
bs=64K
nrfiles=1
rwmixread=50
number_ios=200
",
            n.addr, source.1
        ),
    )
    .unwrap();
    let plot = dir.path().join("p.svg");
    let (code, jobs) = bench(&[job_file.display().to_string(), format!("--plot={}", plot.display())]);
    assert_eq!(code, 0);
    let names: Vec<&str> = jobs.iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ckpt-write", "ckpt-read", "shards", "ranges", "small", "listing", "hydrate", "mixed"]);
    for j in &jobs {
        assert_eq!(errors(j), 0, "{}: {}", j["name"], j["errors"]);
    }
    let by = |name: &str| jobs.iter().find(|j| j["name"] == name).unwrap();
    // Two writers, one 24 MiB checkpoint each: 6 blocks (4 MiB) and one block list per blob, each
    // read back whole and checked.
    let w = by("ckpt-write");
    assert_eq!((op(w, "PutBlock")["ops"].as_u64(), w["bytes"].as_u64()), (Some(12), Some(48 * MIB)));
    assert_eq!(op(w, "PutBlockList")["ops"], 2);
    assert_eq!(op(w, "GetBlob(verify)")["bytes"].as_u64(), Some(48 * MIB));
    // Read back in 3 MiB ranges: 8 per blob.
    let r = by("ckpt-read");
    assert_eq!((op(r, "GetBlob")["ops"].as_u64(), r["bytes"].as_u64()), (Some(16), Some(48 * MIB)));
    // Every shard once in all: 3 × 5 MiB split over two readers, rounded up to whole shards.
    let s = by("shards");
    assert_eq!(s["bytes"].as_u64(), Some(4 * 5 * MIB));
    assert_eq!(by("ranges")["ops"], 600);
    let small = by("small");
    assert_eq!(small["ops"], 400);
    assert!(op(small, "PutBlob")["ops"].as_u64().unwrap() > 40);
    // Each listing of 1,200 blobs in pages of 500 (checked by count), or of 12 (100 folded) prefixes.
    let l = by("listing");
    let listed: u64 = l["by_op"].as_array().unwrap().iter().map(|o| o["items"].as_u64().unwrap()).sum();
    let flat_pages =
        l["by_op"].as_array().unwrap().iter().find(|o| o["op"] == "ListBlobs").map(|o| o["ops"].as_u64().unwrap());
    let flat_listings = flat_pages.unwrap_or(0) / 3;
    assert_eq!(listed, flat_listings * 1200 + (8 - flat_listings) * 100);
    let h = by("hydrate");
    assert_eq!((op(h, "PutBlockFromURL")["ops"].as_u64(), h["bytes"].as_u64()), (Some(6), Some(40 * MIB)));
    assert_eq!(op(h, "GetBlob(verify)")["bytes"].as_u64(), Some(40 * MIB));
    let m = by("mixed");
    let (reads, writes) = (op(m, "GetBlob")["ops"].as_u64().unwrap(), op(m, "PutBlob")["ops"].as_u64().unwrap());
    assert_eq!(reads + writes, 400);
    assert!((120..280).contains(&reads), "rwmixread=50 gave {reads} reads of 400");
    // A plot per job, each with throughput, p50, p99 and distribution lines.
    let svg = std::fs::read_to_string(dir.path().join("p-ckpt-write.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 4);
    assert!(dir.path().join("p-mixed.svg").exists());
}

#[test]
fn verification_reports_other_bytes_and_fails_the_run() {
    let server = static_server();
    let mut args = endpoint_args(&server.1);
    args.extend(["--workload=checkpoint-read", "--size=8M", "--numjobs=1", "--verify=1"].map(String::from));
    let (code, jobs) = bench(&args);
    assert_eq!((code, errors(&jobs[0])), (0, 0));
    // Same blob, read as if written with another seed: every range differs.
    args.extend(["--randseed=99", "--prepare=0"].map(String::from));
    let (code, jobs) = bench(&args);
    assert_eq!(code, 1);
    let e = &jobs[0]["errors"][0];
    assert_eq!((e["code"].as_str(), e["count"].as_u64()), (Some("DataMismatch"), Some(2)));
    assert_eq!(jobs[0]["mismatches"][0][0], "ckpt/0");
}

#[test]
fn errors_are_counted_by_azure_code_and_throttling_apart() {
    let dir = tempfile::tempdir().unwrap();
    // A node that takes one request per shard at a time: the rest get 503 ServerBusy.
    let n = node(dir.path(), Some(1));
    let mut args = endpoint_args(n.addr);
    args.extend(
        ["--workload=small-objects", "--nrfiles=20", "--mix=get:1", "--iodepth=32", "--runtime=2", "--prepare=0"]
            .map(String::from),
    );
    args.push("--container=empty".into());
    let (code, jobs) = bench(&args);
    assert_eq!(code, 0);
    let errs = jobs[0]["errors"].as_array().unwrap();
    let count =
        |code: &str| errs.iter().filter(|e| e["code"] == code).map(|e| e["count"].as_u64().unwrap()).sum::<u64>();
    // Nothing was prepared: every answered GET is 404 BlobNotFound.
    assert!(count("BlobNotFound") > 0, "{errs:?}");
    assert!(errs.iter().filter(|e| e["code"] == "BlobNotFound").all(|e| e["status"] == 404 && e["throttled"] == false));
    assert!(count("ServerBusy") > 0, "{errs:?}");
    assert_eq!(jobs[0]["throttled"].as_u64(), Some(count("ServerBusy")));
    assert_eq!(jobs[0]["ops"], 0);

    // A wrong key: the container cannot be created, and the run says why.
    let out = Command::new(env!("CARGO_BIN_EXE_edgeblob-bench"))
        .args(["run", "--workload=list", "--runtime=1"])
        .arg(format!("--endpoint=http://{}/devstoreaccount1", n.addr))
        .arg("--key=d3Jvbmc=")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("403 AuthenticationFailed"));
}

#[test]
fn azurite_through_a_connection_string() {
    let dir = tempfile::tempdir().unwrap();
    if peers::kit("Azurite comes with the client kit").is_none() {
        return;
    }
    let azurite = Azurite::start(dir.path());
    let cs = format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_KEY};BlobEndpoint={}/devstoreaccount1;",
        azurite.endpoint()
    );
    let args: Vec<String> = [
        format!("--connection_string={cs}"),
        "--workload=small-objects".into(),
        "--nrfiles=30".into(),
        "--size=1K-32K".into(),
        "--number_ios=60".into(),
        "--verify=1".into(),
    ]
    .to_vec();
    let (code, jobs) = bench(&args);
    drop(azurite);
    assert_eq!((code, errors(&jobs[0])), (0, 0), "{}", jobs[0]["errors"]);
    assert_eq!(jobs[0]["ops"].as_u64(), Some(120));
}

#[test]
fn compare_prints_the_side_by_side_table() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_edgeblob-bench")).with_file_name("edgeblob");
    assert!(bin.exists(), "{} is built by `cargo test --workspace`", bin.display());
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edgeblob-bench"))
        .args(["compare", "--size", "32M", "--secs", "1", "--list-blobs", "300", "--skip", "azurite,azcopy,off"])
        .args(["--data-size", "1G"])
        .arg("--dir")
        .arg(dir.path())
        .arg("--json")
        .arg(dir.path().join("c.json"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    for row in
        ["| seq write 1 MiB |", "| checkpoint-write | MiB/s |", "| small-objects GET 4 KiB | ops/s |", "| hydrate"]
    {
        assert!(table.contains(row), "{row} missing from:\n{table}");
    }
    assert!(table.contains("| 1 shard | 2 shards | ratio |") || table.contains("| 1 shard | 1 shards |"), "{table}");
    assert!(table.contains("Errors: none"), "{table}");
    let doc: Value = serde_json::from_slice(&std::fs::read(dir.path().join("c.json")).unwrap()).unwrap();
    let jobs = doc["jobs"].as_array().unwrap();
    let on: Vec<&Value> = jobs.iter().filter(|j| j["server"] == "edgeblob on").collect();
    assert_eq!(on.len(), 10, "every case ran on the node");
    assert!(on.iter().all(|j| j["report"]["ops"].as_u64().unwrap() > 0));
}
