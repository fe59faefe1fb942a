//! `edgeblob-bench`: benchmarks.
//! - `run`: a fio-style load generator for any Blob endpoint (job files or flags, workloads named
//!   after real patterns, latency percentiles, errors by Azure code, JSON and SVG).
//! - `compare`: the side-by-side baseline (fio, a static HTTP server, edgeblob with reduction off
//!   and on, Azurite, AzCopy) in one run.
//! - `engine`: the storage engine without HTTP, beside fio.
//! - `static-server`: the in-memory HTTP server used as the loopback ceiling.

// The node's allocator (node/src/main.rs): `engine`, `fill`, `small` and `index` run the engine
// in this process, and measured it with glibc's malloc, which took a third of a 10-million-blob
// listing's CPU (docs/performance.md); the node never runs so.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod big_blob;
mod client;
mod compare;
mod data;
mod engine;
mod fill;
mod fio;
mod index;
mod job;
mod link;
mod plot;
mod report;
mod restore;
mod run;
mod small;
mod static_server;
mod stats;
mod target;
mod tier;
mod workload;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "edgeblob benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load any Blob endpoint: `edgeblob-bench run [JOBFILE…] [--key=value…] [--name=JOB --key=value…]`.
    /// Keys are the job file's (docs/bench.md); `--output-format=json`, `--output=FILE`,
    /// `--plot=FILE.svg`, `--threads=N` are global.
    #[command(disable_help_flag = true)]
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The baseline: fio, the static server, edgeblob (reduction off and on), Azurite and AzCopy
    /// on the same workloads in one run; prints a Markdown table with ratios.
    Compare(compare::Args),
    /// Sequential write and read and 4 KiB random reads through the engine, with data reduction
    /// off and on, next to fio (io_uring, O_DIRECT) on the same file system.
    Engine(engine::Args),
    /// The metadata-at-scale fill (format v2): millions of zero-byte and small blobs over many
    /// containers, SIGKILL at the end, then the restart, cold HEADs and a listing of everything.
    Fill(fill::Args),
    /// One shard's metadata over its log and index (format v2): ingest of small blobs, restart,
    /// cold point reads, a listing of everything, memory.
    Index(index::Args),
    /// Small objects through the engine in each on-disk format side by side: Put, Get and Get
    /// Properties, warm and after a restart.
    Small(small::Args),
    /// One blob of many distinct blocks: staged, committed, then ranged Get Blobs and Get Blob
    /// Properties after a restart (what a huge blob's metadata costs a read).
    BigBlob(big_blob::Args),
    /// The Azure tier end to end: write, upload, release, then read back from the tier (first
    /// byte, random 4 KiB ranges, whole blobs), against another edgeblob or `--remote`.
    Tier(tier::Args),
    /// Linked containers: reads straight from the lake, through a linked container (first and
    /// again), a prefetch, and a checkpoint written back, timed.
    Link(link::Args),
    /// A node restored from its tier alone: epoch, restore, open and first GET, timed.
    Restore(restore::Args),
    /// Serve blobs from memory (no auth, no durability): the loopback ceiling.
    StaticServer {
        #[arg(long, default_value = "127.0.0.1:10100")]
        listen: std::net::SocketAddr,
        /// Server threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
    },
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn main() {
    // As the node does (node/src/main.rs), for the same allocator's sake.
    edgeblob_io::sys::no_transparent_huge_pages();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let res = match Cli::parse().cmd {
        Cmd::Engine(a) => engine::run(a).map(|_| 0),
        Cmd::Fill(a) => fill::run(a).map(|_| 0),
        Cmd::Index(a) => index::run(a).map(|_| 0),
        Cmd::Small(a) => small::run(a).map(|_| 0),
        Cmd::BigBlob(a) => big_blob::run(a).map(|_| 0),
        Cmd::Tier(a) => tier::run(a).map(|_| 0),
        Cmd::Link(a) => link::run(a).map(|_| 0),
        Cmd::Restore(a) => restore::run(a).map(|_| 0),
        Cmd::Run { args } => run_cmd(&args),
        Cmd::Compare(a) => compare::run(a).map(|_| 0),
        Cmd::StaticServer { listen, threads } => {
            static_server::start(listen, threads.unwrap_or_else(cores)).map_err(|e| e.to_string()).map(|addr| {
                println!("static server listening on {addr}");
                loop {
                    std::thread::park();
                }
            })
        }
    };
    match res {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("edgeblob-bench: {e}");
            std::process::exit(1);
        }
    }
}

/// `run`: every job in order; exit status 1 when any read-back differed from what was written.
fn run_cmd(args: &[String]) -> Result<i32, String> {
    if args.iter().any(|a| a == "--help" || a == "-h") || args.is_empty() {
        println!("{}", include_str!("run_help.txt"));
        return Ok(0);
    }
    let (global, jobs) = job::resolve(job::parse_args(args)?)?;
    // Checked before the jobs run, not after: a typo must not cost a whole run.
    let format = global.output_format.as_deref().unwrap_or("normal");
    if !["normal", "json", "json+normal", "normal+json"].contains(&format) {
        return Err(format!("output-format={format}: use normal, json or json+normal"));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(global.threads.unwrap_or_else(cores))
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let progress = global.progress.unwrap_or_else(|| std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let mut reports = Vec::new();
    for job in jobs {
        let outcome = rt.block_on(run::run_job(job, progress))?;
        reports.push(report::JobReport::new(&outcome));
    }
    let mut text = String::new();
    if format.split('+').any(|f| f == "normal") {
        for r in &reports {
            text.push_str(&r.human());
        }
    }
    if format.split('+').any(|f| f == "json") {
        let doc = serde_json::json!({ "edgeblob-bench": env!("CARGO_PKG_VERSION"), "jobs": reports });
        text.push_str(&serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?);
        text.push('\n');
    }
    match &global.output {
        Some(path) => std::fs::write(path, &text).map_err(|e| format!("{path}: {e}"))?,
        None => print!("{text}"),
    }
    if let Some(path) = &global.plot {
        for r in &reports {
            let file = if reports.len() == 1 { path.clone() } else { plot_name(path, &r.name) };
            std::fs::write(&file, plot::svg(r)).map_err(|e| format!("{file}: {e}"))?;
        }
    }
    Ok(if reports.iter().any(|r| !r.mismatches.is_empty()) { 1 } else { 0 })
}

/// `out.svg` for job `read` → `out-read.svg`.
fn plot_name(path: &str, job: &str) -> String {
    let safe: String = job.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    match path.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}-{safe}.{ext}"),
        None => format!("{path}-{safe}"),
    }
}
