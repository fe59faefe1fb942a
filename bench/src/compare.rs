//! The baseline, in one run on one machine: fio (the disk's limit), the static in-memory HTTP
//! server (the loopback ceiling), edgeblob with data reduction off and on, Azurite, and AzCopy
//! against edgeblob and Azurite; then edgeblob with 1 shard against all cores. Prints Markdown
//! tables of figures and ratios; `--json` keeps every job's full report.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::{Conn, Request};
use crate::job::human;
use crate::report::JobReport;
use crate::target::{Credential, Endpoint, DEV_ACCOUNT, DEV_KEY};
use crate::{fio, job, run, static_server};

#[derive(clap::Args)]
pub struct Args {
    /// Working directory (data files of the nodes, Azurite and fio); on the disk to measure.
    #[arg(long, default_value = "bench-data/compare")]
    dir: PathBuf,
    /// Bytes per sequential workload (checkpoint, shards, the random-read blob, hydrate).
    #[arg(long, default_value = "1G", value_parser = job::parse_size)]
    size: u64,
    /// Seconds per time-bound workload (random ranges, small objects, listing, mixed).
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Blobs in the listing container.
    #[arg(long, default_value_t = 100_000)]
    list_blobs: u64,
    /// Blobs in Azurite's listing container: Azurite rewrites its whole JSON database as it
    /// grows, so filling 100,000 takes it over half an hour; listing a smaller container
    /// flatters it, which keeps the ratio conservative.
    #[arg(long, default_value_t = 10_000)]
    azurite_list_blobs: u64,
    /// Parts to leave out: fio, static, off, on, azurite, azcopy, scaling.
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// Where to write every job's JSON report.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Size of each node's data file (default: ten times `--size`, at least 8 GiB, so that
    /// time-bound write workloads never fill it).
    #[arg(long, value_parser = job::parse_size)]
    data_size: Option<u64>,
    /// The edgeblob binary (default: next to this one).
    #[arg(long)]
    edgeblob: Option<PathBuf>,
}

/// One workload of the comparison: a name and its job settings.
struct Case {
    name: &'static str,
    /// What the table compares: bytes per second, or operations (or entries) per second.
    unit: Unit,
    settings: Vec<String>,
    /// Servers that cannot run it, and why.
    needs_from_url: bool,
    needs_listing: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Unit {
    MiBs,
    Ops,
    Entries,
}

fn cases(a: &Args) -> Vec<Case> {
    let (whole, half, quarter) =
        (format!("--size={}", a.size), format!("--size={}", a.size / 2), format!("--size={}", a.size / 4));
    let runtime = format!("--runtime={}", a.secs);
    let list_blobs = format!("--nrfiles={}", a.list_blobs);
    let c = |name: &'static str, unit: Unit, settings: &[&str]| Case {
        name,
        unit,
        settings: settings.iter().map(|s| s.to_string()).collect(),
        needs_from_url: false,
        needs_listing: false,
    };
    let writer = ["--workload=checkpoint-write", "--numjobs=2", "--iodepth=8", "--bs=4M"];
    vec![
        c("checkpoint-write", Unit::MiBs, &[&writer[..], &[&half]].concat()),
        c(
            "checkpoint-read",
            Unit::MiBs,
            &["--workload=checkpoint-read", "--numjobs=2", "--iodepth=8", "--bs=4M", &half],
        ),
        c("checkpoint-write 4:1 compressible", Unit::MiBs, &[&writer[..], &["--compress_ratio=4", &half]].concat()),
        c("shard-read", Unit::MiBs, &["--workload=shard-read", "--numjobs=2", "--iodepth=2", "--nrfiles=4", &quarter]),
        c(
            "random-range 4 KiB",
            Unit::Ops,
            &["--workload=random-range", "--numjobs=2", "--iodepth=16", "--bs=4K", "--nrfiles=1", &whole, &runtime],
        ),
        c(
            "small-objects GET 4 KiB",
            Unit::Ops,
            &[
                "--workload=small-objects",
                "--numjobs=2",
                "--iodepth=16",
                "--size=4K",
                "--nrfiles=1000",
                "--mix=get:1",
                &runtime,
            ],
        ),
        c(
            "small-objects PUT 64 KiB",
            Unit::Ops,
            &[
                "--workload=small-objects",
                "--numjobs=2",
                "--iodepth=16",
                "--size=64K",
                "--nrfiles=1",
                "--mix=put:1",
                &runtime,
            ],
        ),
        c(
            "mixed 70/30, 64 KiB",
            Unit::MiBs,
            &[
                "--workload=mixed",
                "--numjobs=2",
                "--iodepth=16",
                "--bs=64K",
                "--nrfiles=1",
                "--rwmixread=70",
                &whole,
                &runtime,
            ],
        ),
        Case {
            needs_listing: true,
            ..c(
                "list (flat + delimiter)",
                Unit::Entries,
                &["--workload=list", "--numjobs=1", "--iodepth=2", &list_blobs, &runtime],
            )
        },
        Case {
            needs_from_url: true,
            ..c(
                "hydrate (Put Block From URL)",
                Unit::MiBs,
                &["--workload=hydrate", "--numjobs=2", "--iodepth=4", "--bs=8M", "--nrfiles=2", &half],
            )
        },
    ]
}

/// A server under test.
enum Server {
    Static,
    Node { child: Child },
    Azurite { child: Child },
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Server::Node { child } | Server::Azurite { child } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn dev_endpoint(addr: &str) -> Result<Endpoint, String> {
    let key = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, DEV_KEY).map_err(|e| e.to_string())?;
    Endpoint::new(&format!("http://{addr}/{DEV_ACCOUNT}"), Some(DEV_ACCOUNT), Credential::Key(key))
}

fn start_node(
    bin: &Path,
    dir: &Path,
    data_size: u64,
    reduction: bool,
    shards: Option<usize>,
) -> Result<(Server, String), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let data = dir.join("edgeblob.dat");
    let _ = std::fs::remove_file(&data);
    let config = format!(
        "listen = \"127.0.0.1\"\nport = 0\n[admin]\nlisten = \"127.0.0.1:0\"\n[engine]\ndata_path = \"{}\"\ndata_size = {data_size}\ncompression = {reduction}\ndedup = {reduction}\n{}",
        data.display(),
        shards.map(|n| format!("shards = {n}\n")).unwrap_or_default()
    );
    let cfg = dir.join("edgeblob.toml");
    std::fs::write(&cfg, config).map_err(|e| e.to_string())?;
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("edgeblob.log")).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("{}: {e} (build it: cargo build --release -p edgeblob)", bin.display()))?;
    let mut line = String::new();
    let out = child.stdout.take().ok_or("no stdout")?;
    BufReader::new(out).read_line(&mut line).map_err(|e| e.to_string())?;
    let addr = line.trim().strip_prefix("edgeblob listening on ").ok_or_else(|| {
        let log = std::fs::read_to_string(dir.join("edgeblob.log")).unwrap_or_default();
        format!("edgeblob did not start: {line:?}\n{log}")
    })?;
    // The address is the first word; a note may follow it.
    let addr = addr.split_whitespace().next().unwrap_or(addr);
    Ok((Server::Node { child }, addr.to_owned()))
}

fn peers_bin(name: &str) -> PathBuf {
    let home = std::env::var_os("PEERS_HOME").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
        cache.join("azure-blob-peers")
    });
    let p = home.join("bin").join(name);
    if p.exists() {
        p
    } else {
        PathBuf::from(name)
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn start_azurite(dir: &Path) -> Result<(Server, String), String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let port = free_port()?;
    let child = Command::new(peers_bin("azurite-blob"))
        .args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--skipApiVersionCheck",
            "--disableTelemetry",
        ])
        .arg("--location")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("azurite.log")).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("azurite-blob: {e} (run ../shared/peers/install.sh)"))?;
    let addr = format!("127.0.0.1:{port}");
    let t0 = Instant::now();
    while TcpStream::connect(&addr).is_err() {
        if t0.elapsed() > Duration::from_secs(30) {
            return Err("Azurite did not start listening in 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((Server::Azurite { child }, addr))
}

/// Empties the static server's benchmark container once its own stage is done: it holds every
/// blob in memory, and the nodes measured next need that memory more. Best effort.
fn delete_static_container(rt: &tokio::runtime::Runtime, addr: &str) {
    let Ok(ep) = dev_endpoint(addr) else { return };
    let req = Request::new(http::Method::DELETE, "edgeblob-bench", None, "restype=container");
    let _ = rt.block_on(Conn::new(std::sync::Arc::new(ep)).send(req));
}

/// Runs one case against `addr`.
fn run_case(
    rt: &tokio::runtime::Runtime,
    case: &Case,
    label: &str,
    addr: &str,
    extra: &[String],
) -> Result<JobReport, String> {
    let ep = dev_endpoint(addr)?;
    let mut args = vec![
        format!("--name={} @ {label}", case.name),
        format!("--endpoint={}{}", ep.url(""), ep.base_path),
        format!("--key={DEV_KEY}"),
    ];
    args.extend(case.settings.iter().cloned());
    args.extend(extra.iter().cloned());
    let (_, mut jobs) = job::resolve(job::parse_args(&args)?)?;
    let job = jobs.pop().ok_or("no job")?;
    eprintln!("  {label}: {}", case.name);
    let outcome = rt.block_on(run::run_job(job, false))?;
    let r = JobReport::new(&outcome);
    if r.error_count() > 0 {
        eprintln!(
            "    {} errors: {:?}",
            r.error_count(),
            r.errors.iter().map(|e| (&e.code, e.count)).collect::<Vec<_>>()
        );
    }
    Ok(r)
}

/// The figure a case is compared by.
fn figure(unit: Unit, r: &JobReport) -> f64 {
    match unit {
        Unit::MiBs => r.mib_per_s,
        Unit::Ops => r.ops_per_s,
        Unit::Entries => r.by_op.iter().map(|o| o.items).sum::<u64>() as f64 / r.elapsed_s,
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<u64>().ok()))
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{} × {cpu}, {} GiB RAM, kernel {}", crate::cores(), mem >> 20, kernel.trim())
}

pub fn run(a: Args) -> Result<(), String> {
    let skip = |p: &str| a.skip.iter().any(|s| s == p);
    let bin = match &a.edgeblob {
        Some(b) => b.clone(),
        None => std::env::current_exe().map_err(|e| e.to_string())?.with_file_name("edgeblob"),
    };
    std::fs::create_dir_all(&a.dir).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(crate::cores())
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let cases = cases(&a);
    let mut reports: BTreeMap<(String, String), JobReport> = BTreeMap::new();
    let started = Instant::now();

    // fio on the same file system: sequential 1 MiB with 32 in flight, random 4 KiB with 32.
    let mut fio_rows = Vec::new();
    if !skip("fio") {
        eprintln!("fio");
        let fio_dir = a.dir.join("fio");
        std::fs::create_dir_all(&fio_dir).map_err(|e| e.to_string())?;
        let jobs = crate::cores();
        for (name, rw, bs, runtime) in [
            ("seq write 1 MiB", "write", 1 << 20, 0),
            ("seq read 1 MiB", "read", 1 << 20, 0),
            ("rand read 4 KiB", "randread", 4096, a.secs),
        ] {
            let job = fio::Job { name: "base", rw, bs, size: a.size, iodepth: 32, jobs, runtime_s: runtime };
            fio_rows.push((name, fio::run(&fio_dir, &job)?));
        }
        let _ = std::fs::remove_dir_all(&fio_dir);
    }

    // The loopback ceiling, then the servers, one at a time.
    let static_addr = static_server::start("127.0.0.1:0".parse().map_err(|_| "address")?, crate::cores())
        .map_err(|e| format!("static server: {e}"))?
        .to_string();
    let data_size = a.data_size.unwrap_or((a.size * 10).max(8 << 30));
    let hydrate_source = {
        let ep = dev_endpoint(&static_addr)?;
        vec![format!("--source_endpoint={}{}", ep.url(""), ep.base_path), format!("--source_key={DEV_KEY}")]
    };
    let mut servers: Vec<&str> = Vec::new();
    for label in ["static", "edgeblob off", "edgeblob on", "azurite"] {
        let part = match label {
            "edgeblob off" => "off",
            "edgeblob on" => "on",
            other => other,
        };
        if skip(part) {
            continue;
        }
        eprintln!("{label}");
        let (server, addr) = match label {
            "static" => (Server::Static, static_addr.clone()),
            "azurite" => start_azurite(&a.dir.join("azurite"))?,
            _ => start_node(&bin, &a.dir.join("edgeblob"), data_size, label == "edgeblob on", None)?,
        };
        servers.push(label);
        for case in &cases {
            let node = matches!(server, Server::Node { .. });
            // Azurite has no Put Block From URL; the static server lists nothing and copies nothing.
            if (case.needs_from_url && !node) || (case.needs_listing && matches!(server, Server::Static)) {
                continue;
            }
            let mut extra = if case.needs_from_url { hydrate_source.clone() } else { Vec::new() };
            if case.needs_listing && label == "azurite" {
                extra.push(format!("--nrfiles={}", a.azurite_list_blobs.min(a.list_blobs)));
            }
            let r = run_case(&rt, case, label, &addr, &extra)?;
            reports.insert((label.to_owned(), case.name.to_owned()), r);
        }
        if label == "edgeblob on" && !skip("azcopy") {
            azcopy(&a, &addr, label, &mut reports)?;
        }
        if label == "azurite" && !skip("azcopy") {
            azcopy(&a, &addr, label, &mut reports)?;
        }
        if label == "static" {
            delete_static_container(&rt, &static_addr);
        }
        drop(server);
        let _ = std::fs::remove_dir_all(a.dir.join("edgeblob"));
        let _ = std::fs::remove_dir_all(a.dir.join("azurite"));
    }

    // Scaling: the same node with one shard, and with one per core.
    let scale_cases = ["checkpoint-write", "checkpoint-read", "random-range 4 KiB", "small-objects GET 4 KiB"];
    let mut scaling = Vec::new();
    if !skip("scaling") {
        for shards in [1, crate::cores()] {
            let label = format!("edgeblob {shards} shard{}", if shards == 1 { "" } else { "s" });
            eprintln!("{label}");
            let (server, addr) = start_node(&bin, &a.dir.join("edgeblob"), data_size, true, Some(shards))?;
            for case in cases.iter().filter(|c| scale_cases.contains(&c.name)) {
                let r = run_case(&rt, case, &label, &addr, &[])?;
                scaling.push((shards, case.name, figure(case.unit, &r), case.unit));
                reports.insert((label.clone(), case.name.to_owned()), r);
            }
            drop(server);
            let _ = std::fs::remove_dir_all(a.dir.join("edgeblob"));
        }
    }

    print!("{}", tables(&a, &cases, &servers, &reports, &fio_rows, &scaling, started.elapsed()));
    if let Some(path) = &a.json {
        let all: Vec<_> =
            reports.iter().map(|((s, c), r)| serde_json::json!({"server": s, "case": c, "report": r})).collect();
        let fio: Vec<_> = fio_rows
            .iter()
            .map(|(n, f)| serde_json::json!({"case": n, "mib_s": f.mib_s, "iops": f.iops, "p50_us": f.p50_us, "p99_us": f.p99_us}))
            .collect();
        let doc = serde_json::json!({"machine": machine(), "fio": fio, "jobs": all});
        std::fs::write(path, serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// AzCopy 1 GiB (or `--size`) upload and download, timed from the outside, checked byte for byte.
fn azcopy(
    a: &Args,
    addr: &str,
    label: &str,
    reports: &mut BTreeMap<(String, String), JobReport>,
) -> Result<(), String> {
    let dir = a.dir.join("azcopy");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let src = dir.join("up.bin");
    let data = crate::data::Pattern { seed: 1, compress_ratio: 1.0, dedupe_percentage: 0, unit: 4 << 20 };
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).map_err(|e| e.to_string())?);
        let mut off = 0;
        while off < a.size {
            let n = (8 << 20).min(a.size - off) as usize;
            f.write_all(&data.generate(7, off, n)).map_err(|e| e.to_string())?;
            off += n as u64;
        }
        f.flush().map_err(|e| e.to_string())?;
    }
    let ep = dev_endpoint(addr)?;
    let sas = ep.account_sas(2)?;
    let url = format!("{}{}/edgeblob-bench/azcopy.bin?{sas}", ep.url(""), ep.base_path);
    let time = |args: &[&str]| -> Result<f64, String> {
        let t0 = Instant::now();
        let out = Command::new(peers_bin("azcopy"))
            .args(args)
            .env("AZCOPY_LOG_LOCATION", dir.join("logs"))
            .env("AZCOPY_JOB_PLAN_LOCATION", dir.join("plans"))
            .output()
            .map_err(|e| format!("azcopy: {e} (run ../shared/peers/install.sh)"))?;
        if !out.status.success() {
            return Err(format!("azcopy {args:?} failed: {}", String::from_utf8_lossy(&out.stdout)));
        }
        Ok(t0.elapsed().as_secs_f64())
    };
    eprintln!("  {label}: azcopy");
    let down = dir.join("down.bin");
    let up_s = time(&["copy", &src.to_string_lossy(), &url, "--from-to", "LocalBlob"])?;
    let down_s = time(&["copy", &url, &down.to_string_lossy(), "--from-to", "BlobLocal"])?;
    let same = std::fs::read(&src).ok() == std::fs::read(&down).ok();
    let _ = std::fs::remove_dir_all(&dir);
    if !same {
        return Err(format!("{label}: the file azcopy downloaded differs from the one it uploaded"));
    }
    for (name, secs) in [("azcopy upload", up_s), ("azcopy download", down_s)] {
        let mib = a.size as f64 / 1048576.0 / secs;
        reports.insert((label.to_owned(), name.to_owned()), azcopy_report(name, secs, mib, a.size));
    }
    Ok(())
}

fn azcopy_report(name: &str, secs: f64, mib: f64, bytes: u64) -> JobReport {
    JobReport {
        name: name.to_owned(),
        workload: "azcopy".into(),
        endpoint: String::new(),
        settings: serde_json::json!({ "size": human(bytes) }),
        connections: 0,
        elapsed_s: secs,
        ops: 1,
        bytes,
        ops_per_s: 1.0 / secs,
        mib_per_s: mib,
        latency_us: Default::default(),
        by_op: Vec::new(),
        errors: Vec::new(),
        throttled: 0,
        mismatches: Vec::new(),
        timeline: Vec::new(),
        distribution: Vec::new(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

fn fmt_fig(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
        None => "–".into(),
    }
}

fn tables(
    a: &Args,
    cases: &[Case],
    servers: &[&str],
    reports: &BTreeMap<(String, String), JobReport>,
    fio_rows: &[(&str, fio::FioResult)],
    scaling: &[(usize, &str, f64, Unit)],
    took: Duration,
) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Machine: {}. Data: {} per sequential case, {} s per timed case. Took {:.0} s.\n",
        machine(),
        human(a.size),
        a.secs,
        took.as_secs_f64()
    );
    if !fio_rows.is_empty() {
        let _ = writeln!(
            s,
            "| fio (io_uring, direct=1, 32 in flight) | MiB/s | IOPS | p50 µs | p99 µs |\n|---|---:|---:|---:|---:|"
        );
        for (n, f) in fio_rows {
            let _ = writeln!(s, "| {n} | {:.0} | {:.0} | {:.0} | {:.0} |", f.mib_s, f.iops, f.p50_us, f.p99_us);
        }
        s.push('\n');
    }
    let fio_of = |case: &str| -> Option<f64> {
        let pick = |n: &str, iops: bool| {
            fio_rows.iter().find(|(x, _)| *x == n).map(|(_, f)| if iops { f.iops } else { f.mib_s })
        };
        match case {
            "checkpoint-write" | "checkpoint-write 4:1 compressible" => pick("seq write 1 MiB", false),
            "checkpoint-read" | "shard-read" => pick("seq read 1 MiB", false),
            "random-range 4 KiB" => pick("rand read 4 KiB", true),
            _ => None,
        }
    };
    let get = |server: &str, case: &Case| {
        reports.get(&(server.to_owned(), case.name.to_owned())).map(|r| figure(case.unit, r))
    };
    let _ = write!(s, "| workload | unit | fio |");
    for sv in servers {
        let _ = write!(s, " {sv} |");
    }
    let _ = writeln!(s, " on/fio | on/static | on/Azurite | off/Azurite |");
    let _ = writeln!(s, "|---|---|---:|{}---:|---:|---:|---:|", "---:|".repeat(servers.len()));
    for case in cases {
        let unit = match case.unit {
            Unit::MiBs => "MiB/s",
            Unit::Ops => "ops/s",
            Unit::Entries => "entries/s",
        };
        let _ = write!(s, "| {} | {unit} | {} |", case.name, fmt_fig(fio_of(case.name)));
        for sv in servers {
            let _ = write!(s, " {} |", fmt_fig(get(sv, case)));
        }
        let on = get("edgeblob on", case);
        let _ = writeln!(
            s,
            " {} | {} | {} | {} |",
            ratio(on, fio_of(case.name)),
            ratio(on, get("static", case)),
            ratio(on, get("azurite", case)),
            ratio(get("edgeblob off", case), get("azurite", case))
        );
    }
    for op in ["azcopy upload", "azcopy download"] {
        let f = |sv: &str| reports.get(&(sv.to_owned(), op.to_owned())).map(|r| r.mib_per_s);
        let _ = write!(s, "| {op} {} | MiB/s | – |", human(a.size));
        for sv in servers {
            let _ = write!(s, " {} |", fmt_fig(f(sv)));
        }
        let _ = writeln!(s, " – | – | {} | – |", ratio(f("edgeblob on"), f("azurite")));
    }
    if servers.contains(&"azurite") && a.azurite_list_blobs < a.list_blobs {
        let _ = writeln!(
            s,
            "\nListing: {} blobs in the container; Azurite's holds {} (`--azurite-list-blobs`).",
            a.list_blobs, a.azurite_list_blobs
        );
    }
    let _ = writeln!(s, "\nLatency, p50 / p99 in µs (all operations of the case):\n");
    let _ = write!(s, "| workload |");
    for sv in servers {
        let _ = write!(s, " {sv} |");
    }
    let _ = writeln!(s, "\n|---|{}", "---:|".repeat(servers.len()));
    for case in cases {
        let _ = write!(s, "| {} |", case.name);
        for sv in servers {
            match reports.get(&(sv.to_string(), case.name.to_owned())) {
                Some(r) => {
                    let _ = write!(s, " {} / {} |", r.latency_us.p50, r.latency_us.p99);
                }
                None => s.push_str(" – |"),
            }
        }
        s.push('\n');
    }
    let errors: Vec<String> = reports
        .iter()
        .filter(|(_, r)| r.error_count() > 0)
        .map(|((sv, c), r)| format!("{sv} / {c}: {} errors ({} throttled)", r.error_count(), r.throttled))
        .collect();
    let _ = writeln!(s, "\nErrors: {}", if errors.is_empty() { "none".to_owned() } else { errors.join("; ") });
    if !scaling.is_empty() {
        let cores = crate::cores();
        let _ = writeln!(s, "\n| workload (reduction on) | 1 shard | {cores} shards | ratio |\n|---|---:|---:|---:|");
        let names: Vec<&str> = scaling.iter().map(|x| x.1).filter(|n| !n.is_empty()).collect();
        let mut seen = Vec::new();
        for n in names {
            if seen.contains(&n) {
                continue;
            }
            seen.push(n);
            let one = scaling.iter().find(|x| x.0 == 1 && x.1 == n).map(|x| x.2);
            let all = scaling.iter().find(|x| x.0 == cores && x.1 == n).map(|x| x.2);
            let unit = scaling
                .iter()
                .find(|x| x.1 == n)
                .map(|x| if x.3 == Unit::MiBs { "MiB/s" } else { "ops/s" })
                .unwrap_or("");
            let _ = writeln!(s, "| {n} ({unit}) | {} | {} | {} |", fmt_fig(one), fmt_fig(all), ratio(all, one));
        }
    }
    s
}
