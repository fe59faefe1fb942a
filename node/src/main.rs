//! `edgeblob`: the storage node. With no arguments it runs on an embedded default configuration
//! (a data file under ./data, port 10000, the development account).

use std::path::PathBuf;

use clap::Parser;
use edgeblob::config::{Config, LogFormat};
use edgeblob_engine::Node;

// Per-request allocations (hyper's header maps, response bodies) freed on whichever shard a reply
// finishes: glibc's malloc spent about 10% of the node's CPU on small GETs, in arena locking and
// consolidation. mimalloc keeps per-thread free lists.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(version, about = "edgeblob storage node")]
struct Args {
    /// TOML configuration file; without it the embedded defaults apply.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data file or block device (overrides the configuration); repeat it for a node on
    /// several devices.
    #[arg(long)]
    data: Vec<PathBuf>,
    /// Size of a data file created at first start, e.g. 8G (overrides the configuration).
    #[arg(long, value_parser = edgeblob::config::parse_size)]
    data_size: Option<u64>,
    /// Shards when formatting a new data file (default: one per core).
    #[arg(long)]
    shards: Option<usize>,
    /// Port of the Blob API (overrides the configuration; 0 picks a free one).
    #[arg(long)]
    port: Option<u16>,
    /// Address to listen on (overrides the configuration).
    #[arg(long)]
    listen: Option<String>,
    /// Port of a TLS listener (with --tls-cert and --tls-key).
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    tls_port: Option<u16>,
    /// PEM certificate chain for the TLS listener.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key for the TLS listener.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// A hardware profile: `auto` (the shipped profile that fits this host) or a profile file
    /// (overrides the configuration). Its plan sets shards, their cores and queue depths.
    #[arg(long)]
    profile: Option<String>,
    /// Checks what the node needs from the host (io_uring, locked memory, open files,
    /// O_DIRECT on the data device), prints each finding with its fix, and exits: 0 when
    /// nothing is missing, 1 otherwise. Starts nothing.
    #[arg(long)]
    preflight: bool,
    /// `text` (stderr) or `json` (stdout, one object a line) logs (overrides the configuration).
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Address of the admin listener (metrics, health, operations), e.g. 127.0.0.1:9100;
    /// `off` turns it off (overrides the configuration).
    #[arg(long)]
    admin_listen: Option<String>,
}

fn main() {
    let args = Args::parse();
    let config = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("edgeblob: {e}");
            std::process::exit(1);
        }
    };
    init_logs(config.log_format);
    if let Err(e) = run(args, config) {
        tracing::error!("{e}");
        eprintln!("edgeblob: {e}");
        std::process::exit(1);
    }
}

/// Whether logs go to stdout as JSON (then the lines for scripts are log events too).
static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Text: to stderr, for people; stdout carries only the lines scripts read. JSON: one object a
/// line on stdout (journald, log shippers), each with the span of its request (its request id).
fn init_logs(format: LogFormat) {
    let filter = || tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => {
            JSON_LOGS.store(true, std::sync::atomic::Ordering::Relaxed);
            tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .with_env_filter(filter())
                .with_writer(std::io::stdout)
                .init()
        }
    }
}

/// A line for whoever started the node. A reader that took the first line and closed the pipe
/// must not stop the node (println! would panic on the closed pipe).
fn say(line: &str) {
    use std::io::Write;
    if JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed) {
        tracing::info!(target: "edgeblob::start", "{line}");
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|_| out.flush());
}

/// The configuration: the file's (or the defaults), then the flags over it.
fn load(args: &Args) -> Result<Config, String> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Config::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Config::default(),
    };
    if let Some(f) = args.log_format {
        config.log_format = f;
    }
    Ok(config)
}

fn run(args: Args, mut config: Config) -> Result<(), String> {
    edgeblob_io::sys::raise_nofile();
    if !edgeblob_io::sys::no_transparent_huge_pages() {
        tracing::info!("transparent huge pages stay on for the node's heap (MIMALLOC_ALLOW_THP)");
    }
    config.source = args.config.clone();
    match args.data.len() {
        0 => {}
        1 => {
            config.engine.data_path = args.data[0].clone();
            config.engine.devices.clear();
        }
        _ => config.engine.devices = args.data.clone(),
    }
    if args.shards.is_some() {
        config.engine.shards = args.shards;
    }
    if let Some(n) = args.data_size {
        config.engine.data_size = n;
    }
    if let Some(p) = args.port {
        config.port = p;
    }
    if let Some(l) = args.listen {
        config.listen = Some(l);
    }
    if let (Some(port), Some(cert), Some(key)) = (args.tls_port, args.tls_cert, args.tls_key) {
        config.tls = Some(edgeblob::config::TlsConfig { port, cert, key });
    }
    match args.admin_listen.as_deref() {
        Some("off") => config.admin.enabled = false,
        Some(a) => (config.admin.enabled, config.admin.listen) = (true, Some(a.to_owned())),
        None => {}
    }
    if let Some(p) = args.profile {
        config.profile = Some(p);
    }
    if let Some(which) = config.profile.clone() {
        if let Some(plan) = edgeblob::profile::apply(&mut config, &which, std::path::Path::new("/"))? {
            tracing::info!(
                profile = %plan.profile,
                planned_shards = plan.shards,
                cpus = %plan.cpus,
                devices = ?plan.devices,
                queue_depth = plan.io_depth,
                "hardware profile (the configuration's own values win)"
            );
        }
    }
    if let Some(serials) = edgeblob::devices::from_ledger(&mut config, std::path::Path::new("/"))? {
        tracing::info!(?serials, devices = ?config.engine.devices, "data devices: the ledger's");
    }
    config.engine.validate()?;
    config.admin.validate()?;
    let findings = edgeblob::preflight::run(&config, std::path::Path::new("/"));
    if args.preflight {
        for f in &findings {
            say(&f.to_string());
        }
        std::process::exit(if findings.iter().all(|f| f.ok()) { 0 } else { 1 });
    }
    for f in &findings {
        match &f.fix {
            None => tracing::info!(check = f.check, "preflight: {}", f.detail),
            Some(fix) => tracing::warn!(check = f.check, fix = %fix, "preflight: {}", f.detail),
        }
    }
    let missing: Vec<String> = findings.iter().filter(|f| !f.ok()).map(|f| f.to_string()).collect();
    if config.preflight == edgeblob::config::Preflight::Strict && !missing.is_empty() {
        return Err(format!("preflight (strict) found what the host lacks:\n{}", missing.join("\n")));
    }
    match edgeblob::rebuild::before_open(&config)? {
        edgeblob::rebuild::Rebuild::Left(why) => {
            tracing::warn!(%why, "the ledger says rebuilding; the node does not restore itself")
        }
        edgeblob::rebuild::Rebuild::Restored { .. } | edgeblob::rebuild::Rebuild::NotAsked => {}
    }
    let node = Node::open(config.engine.clone()).map_err(|e| e.to_string())?;
    // Recovery read each shard's log half whole (up to 512 MiB apiece) and has freed it, but
    // mimalloc returns freed memory to the OS only as its threads go on allocating: an idle node
    // would hold it until traffic came. Hand it back now.
    edgeblob_io::sys::release_free_memory();
    tracing::info!(data = %config.engine.data_path.display(), shards = node.shards(), "engine ready");
    let bound = edgeblob::http::serve(&node, &config).map_err(|e| format!("cannot serve: {e}"))?;
    // Before any listener is announced: a client (or a test) that sees the admin address must
    // find the node not ready while its ledger says it is rebuilding.
    if let Some(path) = &config.ledger {
        match edgeblob_hw::ledger::Ledger::load(path)? {
            Some(l) if l.rebuilding => bound.shared.lifecycle.begin(
                "rebuilding",
                format!("rebuilding: node {}'s disks were erased under it (an Azure redeploy); restore it from the tier, then clear `rebuilding` in {}", l.node, path.display()),
            ),
            _ => {}
        }
    }
    // Lines for scripts and tests that start the node on port 0.
    // The address is the line's first word after "on"; a note may follow it.
    if config.listen.is_none() && config.public_key_in_use() {
        say(&format!(
            "edgeblob listening on {} (loopback only: an account uses the public development key; set `listen` to serve other hosts)",
            bound.http
        ));
    } else {
        say(&format!("edgeblob listening on {}", bound.http));
    }
    if let Some(tls) = &bound.https {
        say(&format!("edgeblob listening with TLS on {tls}"));
    }
    let node = std::sync::Arc::new(node);
    let admin = edgeblob::admin::serve(node.clone(), &config, bound.shared.clone())
        .map_err(|e| format!("cannot serve: {e}"))?;
    if let Some(a) = &admin {
        say(&format!("edgeblob admin on {}", a.addr));
    }
    // Every listener is bound and the engine recovered: what /health/ready answers 200 to.
    edgeblob::notify::notify(&format!("READY=1\nSTATUS=serving on {}", bound.http));
    let watchdog = edgeblob::notify::Watchdog::start(node.clone());
    let on_azure = match config.azure.scheduled_events {
        edgeblob::config::Switch::On => true,
        edgeblob::config::Switch::Off => false,
        edgeblob::config::Switch::Auto => {
            edgeblob_hw::detect::platform(&edgeblob_hw::detect::Root("/".into())) == "azure"
        }
    };
    let events = if on_azure {
        let w = edgeblob::azure_events::EventWatcher::start(
            node.clone(),
            bound.shared.lifecycle.clone(),
            &config.azure,
            config.engine.tier.is_some(),
        )
        .map_err(|e| format!("cannot watch Azure's scheduled events: {e}"))?;
        tracing::info!(endpoint = %config.azure.metadata_endpoint, "watching Azure's scheduled events");
        Some(w)
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok::<(), String>(())
    })?;
    tracing::info!("stopping");
    edgeblob::notify::notify("STOPPING=1\nSTATUS=stopping: flushing the metadata indexes");
    if let Some(w) = watchdog {
        w.stop();
    }
    if let Some(e) = events {
        e.stop();
    }
    if let Some(a) = admin {
        a.stop();
    }
    match std::sync::Arc::try_unwrap(node) {
        Ok(node) => node.stop(),
        // Not reached: the admin thread, the only other holder, has ended. The shards stop
        // when the last holder drops it; acknowledged writes are durable in the logs already.
        Err(_) => tracing::warn!("the engine is still held; stopping without flushing the indexes"),
    }
    Ok(())
}
