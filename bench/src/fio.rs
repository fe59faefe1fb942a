//! Running fio as the physical reference: same directory, io_uring, O_DIRECT.

use std::path::Path;
use std::process::Command;

pub struct FioResult {
    pub mib_s: f64,
    pub iops: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// One fio run: `jobs` jobs (one submitting thread each, as the engine has one ring per shard)
/// over disjoint parts of one file.
pub struct Job<'a> {
    pub name: &'a str,
    /// fio's `rw`: write, read, randread.
    pub rw: &'a str,
    pub bs: usize,
    pub size: u64,
    /// Total across jobs.
    pub iodepth: usize,
    pub jobs: usize,
    /// 0: until `size` is done.
    pub runtime_s: u64,
}

pub fn run(dir: &Path, job: &Job) -> Result<FioResult, String> {
    let Job { name, rw, bs, size, iodepth, jobs, runtime_s } = *job;
    let file = dir.join("fio.dat");
    let per_job = size / jobs as u64;
    let mut cmd = Command::new("fio");
    cmd.arg(format!("--name={name}"))
        .arg(format!("--filename={}", file.display()))
        .arg(format!("--rw={rw}"))
        .arg(format!("--bs={bs}"))
        .arg(format!("--size={per_job}"))
        .arg(format!("--offset_increment={per_job}"))
        .arg(format!("--iodepth={}", (iodepth / jobs).max(1)))
        .arg(format!("--numjobs={jobs}"))
        .args(["--ioengine=io_uring", "--direct=1", "--group_reporting", "--output-format=json"]);
    if runtime_s > 0 {
        cmd.args([format!("--runtime={runtime_s}"), "--time_based".into()]);
    }
    if rw == "write" {
        // The engine's writes are durable when acknowledged: make fio's count the same way.
        cmd.arg("--end_fsync=1");
    }
    let out = cmd.output().map_err(|e| format!("fio: {e} (install it: apt-get install fio)"))?;
    if !out.status.success() {
        return Err(format!("fio failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("fio output: {e}"))?;
    let job = &v["jobs"][0];
    let side = if rw.contains("write") { &job["write"] } else { &job["read"] };
    let pct = |p: &str| side["clat_ns"]["percentile"][p].as_f64().unwrap_or(0.0) / 1000.0;
    Ok(FioResult {
        mib_s: side["bw_bytes"].as_f64().unwrap_or(0.0) / (1 << 20) as f64,
        iops: side["iops"].as_f64().unwrap_or(0.0),
        p50_us: pct("50.000000"),
        p99_us: pct("99.000000"),
    })
}
