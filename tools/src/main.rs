//! `edgeblob-admin`: format a device, inspect its layout, check it (fsck), report data reduction,
//! upgrade a v1 data file to v2. Every command but `inspect` opens the device exclusively: stop
//! the node first.

mod hw;
mod prepare;
mod upgrade;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use edgeblob_engine::config::EngineConfig;
use edgeblob_engine::startup::{
    format_devices, format_files, index_place, log_place, read_superblock, shards_per_device,
};
use edgeblob_engine::Node;
use edgeblob_io::sync_device::SyncDevice;
use edgeblob_io::{AlignedBuf, BlockDevice, DeviceFile, PAGE_SIZE};
use edgeblob_meta::index::region::{RegionBackend, Segments};
use edgeblob_meta::wal::HalfHeader;

#[derive(Parser)]
#[command(version, about = "edgeblob administration")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create and format data files, or format block devices: one node on every --data given.
    Format {
        /// A device of the node (repeat for a node on several).
        #[arg(long, required = true)]
        data: Vec<PathBuf>,
        /// Size of a new data file, e.g. 8G, 512M.
        #[arg(long, default_value = "8G", value_parser = edgeblob_engine::config::parse_size)]
        size: u64,
        /// Shards in all, a multiple of the devices (default: one per core, at least one a
        /// device).
        #[arg(long)]
        shards: Option<u32>,
        /// Format even if the path already holds data.
        #[arg(long)]
        force: bool,
    },
    /// Print each device's superblock and the state of the logs and indexes of its shards.
    Inspect {
        /// A device (repeat to inspect several; each is read alone, in the order given).
        #[arg(long, required = true)]
        data: Vec<PathBuf>,
    },
    /// Recover, cross-check reference counts and space, and read and verify every chunk.
    Fsck {
        /// A device of the node (repeat: every device of a node on several).
        #[arg(long, required = true)]
        data: Vec<PathBuf>,
    },
    /// Carry a format v1 data file's containers and blobs into a new format v2 data file (see
    /// docs/operations.md). The old file is only read.
    Upgrade {
        /// The v1 data file.
        #[arg(long)]
        from: PathBuf,
        /// The v2 data file to create (must not exist); as large as the old one unless --size.
        #[arg(long)]
        to: PathBuf,
        #[arg(long, value_parser = edgeblob_engine::config::parse_size)]
        size: Option<u64>,
    },
    /// Data-reduction ratio of the node, or of one container (ACCOUNT/CONTAINER).
    Stats {
        /// A device of the node (repeat: every device of a node on several).
        #[arg(long, required = true)]
        data: Vec<PathBuf>,
        #[arg(long)]
        container: Option<String>,
    },
    /// The node on its host: its devices.
    Node {
        #[command(subcommand)]
        cmd: NodeCmd,
    },
    /// The host: what it has, and the profile and plan for it.
    Hw {
        #[command(subcommand)]
        cmd: hw::HwCmd,
    },
    /// The Azure tier: what is uploaded and released, and the customer key.
    Tier {
        #[command(subcommand)]
        cmd: TierCmd,
    },
    /// Linked containers of a running node (its admin listener): their status, prefetches from
    /// the lake, and syncs of its listing.
    Link {
        #[command(subcommand)]
        cmd: LinkCmd,
    },
    /// The restore points the tier holds (epochs: when cut, what they hold), and whether a
    /// restore into the `--data` devices did not finish.
    RestoreStatus {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        data: Vec<PathBuf>,
        #[arg(long)]
        node: Option<String>,
    },
    /// Builds a node from its tier alone onto new data files or blank raw devices: takes the
    /// tier over (the old node writes nothing more to it), formats them as the old devices were,
    /// and restores the metadata of an epoch. The node then serves at once; data comes from the
    /// tier as read.
    Restore {
        /// A device of the node (repeat for a node of several, as many as it had): a data file
        /// to create (it must not exist, unless a restore into it did not finish) or a blank raw
        /// device.
        #[arg(long, required = true)]
        data: Vec<PathBuf>,
        /// A configuration file with the `[engine.tier]` table: where the tier is, and the
        /// customer key.
        #[arg(long)]
        config: PathBuf,
        /// The node's uuid, when the tier holds more than one node.
        #[arg(long)]
        node: Option<String>,
        /// The epoch to restore (default: the newest).
        #[arg(long)]
        epoch: Option<u64>,
    },
    /// Replaces one lost device of a node of several from the tier, the others kept as they
    /// are (the node stopped): formats the new one as the node's member and brings back its
    /// shards' blobs as the newest epoch has them. Blobs of the kept devices whose chunks lay
    /// on the lost one after that epoch are deleted and listed.
    ReplaceDevice {
        /// Every device of the node, in order (as the node's configuration lists them); the
        /// replaced one absent, or a blank raw device.
        #[arg(long, required = true)]
        data: Vec<PathBuf>,
        /// Which of them is replaced (its place in the list, from 0).
        #[arg(long)]
        device: usize,
        /// A configuration file with the `[engine.tier]` table.
        #[arg(long)]
        config: PathBuf,
        /// The epoch its blobs come from (default: the newest).
        #[arg(long)]
        epoch: Option<u64>,
    },
}

#[derive(Subcommand)]
enum NodeCmd {
    /// Sorts the local NVMe into this node's, blank, foreign and never touched (by serial,
    /// against the ledger on the OS disk) and formats only what may be: blank devices on hosts
    /// whose disks are ephemeral, or devices named with --allow-format. Run before every start
    /// (edgeblob-prepare.service); --dry-run changes nothing.
    Prepare(prepare::PrepareArgs),
}

#[derive(Subcommand)]
enum TierCmd {
    /// Per shard: chunks only on flash (not yet uploaded: what a disaster would lose), on flash
    /// and in the tier, in the tier only; packs and their bytes; the tier generation.
    Status {
        #[arg(long)]
        data: PathBuf,
    },
    /// Reads every pack in the tier whole and checks it (checksum, header, footer, every chunk's
    /// seal, and the places the chunk tables record); names each damaged pack. Uploads,
    /// releases and collects nothing.
    Verify {
        #[arg(long)]
        data: PathBuf,
        /// The node's configuration file (its `[engine.tier]` table).
        #[arg(long)]
        config: PathBuf,
    },
    /// Uploads everything not yet in the tier and writes a restore point of it: what a node
    /// about to lose its disks (a Lasv5 redeploy notice) runs. Prints what was pending and how
    /// long it took.
    Drain {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        config: PathBuf,
    },
    /// Writes an epoch now: every chunk uploaded, the metadata sealed into the tier, and a
    /// manifest that makes it a restore point (a running node does this every
    /// `epoch_interval_secs`).
    Epoch {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        config: PathBuf,
    },
    /// On a running node (its admin listener): moves a container's blobs (under a prefix) to
    /// the tier now: uploads what is pending, commits a restore point, releases their local
    /// copies. Prints the node's answer.
    Now {
        #[command(flatten)]
        online: Online,
    },
    /// On a running node (its admin listener): brings a container's blobs (under a prefix) back
    /// to flash, e.g. before a job reads them, or after a restore.
    Hydrate {
        #[command(flatten)]
        online: Online,
    },
    /// Wraps the node key with a new customer key (one small object; no pack is touched). With
    /// `--new-key FILE`, then set the node's `tier.key_file` to it; without, the configured Key
    /// Vault key wraps it again: its newest version (add one in the vault first).
    RotateKey {
        #[arg(long)]
        data: PathBuf,
        /// The node's configuration file (its `[engine.tier]` table: where the tier is, and the
        /// current key).
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        new_key: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum LinkCmd {
    /// Every link: its lake, what it fetched and checked, and its last prefetch (JSON).
    Status {
        #[command(flatten)]
        admin: AdminListener,
    },
    /// Fetches every blob of a linked container's lake under a prefix that is not here, or not
    /// current, before a job reads it; prints its progress each second until it ends. Fails
    /// when a blob could not be fetched.
    Prefetch {
        /// The linked container (or `--container`).
        name: Option<String>,
        #[command(flatten)]
        online: Online,
        /// Blobs fetched at once (default: the link's max_fetches).
        #[arg(long)]
        parallel: Option<usize>,
        /// At most this many bytes a second fetched from the lake by the prefetch (the link's
        /// `bytes_per_sec`, if set, caps everything it does besides).
        #[arg(long)]
        bytes_per_sec: Option<u64>,
    },
    /// Keeps the lake's listing of a linked container under a prefix on the node (names,
    /// properties, metadata: no bytes), so List Blobs under it is answered without the lake;
    /// run again to refresh it. Prints its progress each second until it ends.
    Sync {
        /// The linked container (or `--container`).
        name: Option<String>,
        #[command(flatten)]
        online: Online,
    },
}

/// A running node's admin listener.
#[derive(clap::Args)]
struct AdminListener {
    #[arg(long, default_value = "127.0.0.1:9100")]
    admin: String,
    /// A file holding the admin token, where the node has one configured.
    #[arg(long)]
    token_file: Option<PathBuf>,
}

/// A running node's admin listener, and what an operation names.
#[derive(clap::Args)]
struct Online {
    /// The container (`hydrate` without one: every container of the account, the background
    /// prefetch after a restore).
    #[arg(long)]
    container: Option<String>,
    #[arg(long, default_value = "")]
    prefix: String,
    /// The account (default: the node's only one).
    #[arg(long)]
    account: Option<String>,
    /// The node's admin listener.
    #[arg(long, default_value = "127.0.0.1:9100")]
    admin: String,
    /// A file holding the admin token, where the node has one configured (a file, not an
    /// argument: arguments are visible to every user of the host).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

/// POSTs operation `op` to a running node's admin listener: its status and answer.
fn operate(op: &str, o: &Online) -> Result<(u16, String), String> {
    admin_call("POST", &format!("/tier/{op}?{}", o.query()), &o.admin, o.token_file.as_deref())
}

impl Online {
    /// The query naming what the operation works on.
    /// The container named as an argument, where `--container` did not name it.
    fn naming(mut self, name: Option<String>) -> Result<Online, String> {
        match (&self.container, name) {
            (Some(a), Some(b)) if *a != b => return Err(format!("two containers named: {a} and {b}")),
            (None, Some(b)) => self.container = Some(b),
            _ => {}
        }
        Ok(self)
    }

    fn query(&self) -> String {
        let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
        let mut q = format!("prefix={}", enc(&self.prefix));
        if let Some(c) = &self.container {
            q.push_str(&format!("&container={}", enc(c)));
        }
        if let Some(a) = &self.account {
            q.push_str(&format!("&account={}", enc(a)));
        }
        q
    }
}

/// One request to a running node's admin listener: its status and answer.
fn admin_call(
    method: &str,
    target: &str,
    admin: &str,
    token_file: Option<&std::path::Path>,
) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let token = match token_file {
        Some(f) => Some(std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?.trim().to_owned()),
        None => None,
    };
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let mut s = std::net::TcpStream::connect(admin).map_err(|e| format!("the admin listener {admin}: {e}"))?;
    write!(s, "{method} {target} HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\n{auth}Connection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    let status = answer.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or("not an HTTP answer")?;
    Ok((status, answer.split_once("\r\n\r\n").map(|(_, b)| b.trim().to_owned()).unwrap_or_default()))
}

/// Starts a prefetch and follows it to its end, a line of progress a second.
fn prefetch(o: &Online, parallel: Option<usize>, bytes_per_sec: Option<u64>) -> Result<ExitCode, String> {
    let mut target = format!("/links/prefetch?{}", o.query());
    if let Some(n) = parallel {
        target.push_str(&format!("&parallel={n}"));
    }
    if let Some(n) = bytes_per_sec {
        target.push_str(&format!("&bytes_per_sec={n}"));
    }
    follow_link(o, &target, "prefetch", |p| {
        format!(
            "listed {} ({} bytes), here {} ({} bytes), errors {}",
            p["listed"], p["listed_bytes"], p["done"], p["done_bytes"], p["errors"]
        )
    })
}

/// Starts a sync of a link's listing and follows it to its end.
fn sync(o: &Online) -> Result<ExitCode, String> {
    follow_link(o, &format!("/links/sync?{}", o.query()), "sync", |p| {
        format!(
            "listed {}, added {}, updated {}, removed {}, errors {}",
            p["listed"], p["added"], p["updated"], p["removed"], p["errors"]
        )
    })
}

/// Starts a link's background operation (`target`) and prints its progress (the link status's
/// `field`, as `line` words it) each second until it ends; failure if it ended with errors.
fn follow_link(
    o: &Online,
    target: &str,
    field: &str,
    line: fn(&serde_json::Value) -> String,
) -> Result<ExitCode, String> {
    let container = o.container.clone().ok_or("name the container (--container)")?;
    let (status, body) = admin_call("POST", target, &o.admin, o.token_file.as_deref())?;
    if status != 202 {
        return Err(format!("the node answered {status}: {body}"));
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let (status, body) = admin_call("GET", "/links/status", &o.admin, o.token_file.as_deref())?;
        if status != 200 {
            return Err(format!("the node answered {status}: {body}"));
        }
        let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("the node's status: {e}"))?;
        let link = v["links"]
            .as_array()
            .and_then(|ls| {
                ls.iter().find(|l| {
                    l["container"] == container.as_str()
                        && o.account.as_ref().is_none_or(|a| l["account"] == a.as_str())
                })
            })
            .ok_or("the node no longer lists the link")?;
        let p = &link[field];
        println!("{}, {:.0} s", line(p), p["secs"].as_f64().unwrap_or(0.0));
        if p["running"] != true {
            return match p["errors"].as_u64() {
                Some(0) => Ok(ExitCode::SUCCESS),
                _ => Err(format!("the {field} ended with errors; the last: {}", p["last_error"])),
            };
        }
    }
}

/// Prints a node's answer; failure unless it succeeded.
fn print_answer((status, body): (u16, String)) -> Result<ExitCode, String> {
    match status {
        200 => {
            println!("{body}");
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(format!("the node answered {status}: {body}")),
    }
}

/// The `[engine.tier]` table of a node's configuration file.
fn tier_config(path: &std::path::Path) -> Result<edgeblob_engine::config::TierConfig, String> {
    #[derive(serde::Deserialize, Default)]
    struct Engine {
        tier: Option<edgeblob_engine::config::TierConfig>,
    }
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        engine: Engine,
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: File = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let tier = file.engine.tier.ok_or_else(|| format!("{} has no [engine.tier] table", path.display()))?;
    tier.validate()?;
    Ok(tier)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    match run(Cli::parse().cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("edgeblob-admin: {e}");
            ExitCode::from(2)
        }
    }
}

fn engine_config(data: PathBuf) -> EngineConfig {
    EngineConfig { data_path: data, pin_threads: false, expiry_sweep_secs: u64::MAX / 4, ..EngineConfig::default() }
}

/// The configuration of a node on the devices given (one: `data_path`, several: `devices`).
fn node_config(mut data: Vec<PathBuf>) -> EngineConfig {
    match data.len() {
        1 => engine_config(data.remove(0)),
        _ => EngineConfig { devices: data, ..engine_config(PathBuf::new()) },
    }
}

fn run(cmd: Cmd) -> Result<ExitCode, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    match cmd {
        Cmd::Hw { cmd } => hw::run(cmd),
        Cmd::Node { cmd: NodeCmd::Prepare(a) } => prepare::run(a),
        Cmd::Format { data, size, shards, force } => {
            let per_device = shards_per_device(shards.map(|n| n as usize), data.len()).map_err(|e| e.to_string())?;
            let exists: Vec<&PathBuf> = data.iter().filter(|p| p.exists()).collect();
            let sbs = if exists.is_empty() {
                let version = edgeblob_io::superblock::FORMAT_VERSION;
                format_files(&data, size, per_device, version).map_err(|e| e.to_string())?
            } else if exists.len() < data.len() {
                return Err(
                    "some of the --data paths exist and some do not: format existing devices, or new files".into()
                );
            } else {
                if !force {
                    return Err(format!(
                        "{} exists; add --force to format it (all its data is lost)",
                        exists[0].display()
                    ));
                }
                let files = data
                    .iter()
                    .map(|p| DeviceFile::open(p).map(Arc::new).map_err(|e| format!("{}: {e}", p.display())))
                    .collect::<Result<Vec<_>, _>>()?;
                format_devices(&files, per_device).map_err(|e| e.to_string())?
            };
            for (p, sb) in data.iter().zip(&sbs) {
                println!(
                    "formatted {}: {} bytes, {} shards, uuid {}, device {} of {} ({})",
                    p.display(),
                    sb.device_len,
                    sb.layout.shards,
                    uuid_str(&sb.uuid),
                    sb.index(),
                    sb.devices(),
                    uuid_str(&sb.device_uuid())
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Inspect { data } => {
            for d in &data {
                inspect(&rt, d)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Fsck { data } => {
            let node = Node::open(node_config(data)).map_err(|e| e.to_string())?;
            let r = rt.block_on(node.check_all()).map_err(|e| e.to_string())?;
            println!(
                "{} blobs, {} staged blocks, {} chunks ({} only in the tier, not read), {} bytes stored",
                r.blobs, r.staged_blocks, r.chunks, r.tiered_chunks, r.stored_bytes
            );
            for d in &r.damaged {
                println!("DAMAGED {d}");
            }
            if r.damaged.is_empty() {
                println!("clean");
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::from(1))
            }
        }
        Cmd::Upgrade { from, to, size } => {
            let file = DeviceFile::open(&from).map_err(|e| format!("{}: {e}", from.display()))?;
            let sb = read_superblock(&file).map_err(|e| e.to_string())?;
            if sb.version != 1 {
                return Err(format!("{} is already format version {}", from.display(), sb.version));
            }
            let len = file.len();
            drop(file);
            if to.exists() {
                return Err(format!("{} exists: upgrade writes a new file", to.display()));
            }
            // Built under another name and renamed once complete: a crash leaves no half file.
            let building = to.with_extension("upgrading");
            let _ = std::fs::remove_file(&building);
            let old = Node::open(engine_config(from.clone())).map_err(|e| e.to_string())?;
            let new_cfg = EngineConfig {
                data_size: size.unwrap_or(len),
                shards: Some(sb.layout.shards as usize),
                format_version: 2,
                ..engine_config(building.clone())
            };
            let new = Node::open(new_cfg).map_err(|e| e.to_string())?;
            let report = rt.block_on(async {
                let r = upgrade::copy_all(&old, &new).await?;
                new.sync().await.map_err(|e| e.to_string())?;
                Ok::<_, String>(r)
            });
            new.stop();
            old.stop();
            let report = report.inspect_err(|_| {
                let _ = std::fs::remove_file(&building);
            })?;
            std::fs::rename(&building, &to).map_err(|e| e.to_string())?;
            println!(
                "upgraded {} to {}: {} containers, {} blobs, {} bytes",
                from.display(),
                to.display(),
                report.containers,
                report.blobs,
                report.bytes
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Stats { data, container } => {
            let node = Node::open(node_config(data)).map_err(|e| e.to_string())?;
            let r = match container {
                None => rt.block_on(node.reduction()),
                Some(c) => {
                    let (a, n) = c.split_once('/').ok_or("--container takes ACCOUNT/CONTAINER")?;
                    rt.block_on(node.container_reduction(a, n))
                }
            }
            .map_err(|e| e.to_string())?;
            println!(
                "logical {} bytes, stored {} bytes, reduction ratio {:.3}",
                r.logical_bytes,
                r.stored_bytes,
                r.ratio()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Tier { cmd: TierCmd::Status { data } } => {
            let node = Node::open(engine_config(data)).map_err(|e| e.to_string())?;
            let all = rt.block_on(node.tier_status()).map_err(|e| e.to_string());
            node.stop();
            println!("shard  generation  local-only chunks (bytes)  both  tiered-only  packs (bytes)");
            for (i, s) in all?.iter().enumerate() {
                println!(
                    "{i:<6} {:<11} {:>6} ({:>12})  {:>10}  {:>11}  {:>5} ({})",
                    s.generation, s.local_chunks, s.local_bytes, s.both_chunks, s.tiered_chunks, s.packs, s.pack_bytes
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Tier { cmd: TierCmd::Now { online } } => print_answer(operate("now", &online)?),
        Cmd::Link { cmd: LinkCmd::Status { admin } } => {
            print_answer(admin_call("GET", "/links/status", &admin.admin, admin.token_file.as_deref())?)
        }
        Cmd::Link { cmd: LinkCmd::Prefetch { name, online, parallel, bytes_per_sec } } => {
            prefetch(&online.naming(name)?, parallel, bytes_per_sec)
        }
        Cmd::Link { cmd: LinkCmd::Sync { name, online } } => sync(&online.naming(name)?),
        Cmd::Tier { cmd: TierCmd::Hydrate { online } } => print_answer(operate("hydrate", &online)?),
        Cmd::Tier { cmd: TierCmd::Verify { data, config } } => {
            let tier = edgeblob_engine::config::TierConfig { passive: true, ..tier_config(&config)? };
            let node =
                Node::open(EngineConfig { tier: Some(tier), ..engine_config(data) }).map_err(|e| e.to_string())?;
            let report = rt.block_on(node.tier_verify()).map_err(|e| e.to_string());
            let points = rt.block_on(node.tier_check_restore_points()).map_err(|e| e.to_string());
            node.stop();
            let (report, (kept, wrong)) = (report?, points?);
            for d in &report.damaged {
                println!("DAMAGED {d}");
            }
            for w in &wrong {
                println!("RESTORE POINT {w}");
            }
            println!(
                "{} packs, {} damaged; {kept} restore points, {} problems",
                report.packs,
                report.damaged.len(),
                wrong.len()
            );
            Ok(if report.damaged.is_empty() && wrong.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Cmd::Tier { cmd: TierCmd::Drain { data, config } } => {
            let tier = tier_config(&config)?;
            let node =
                Node::open(EngineConfig { tier: Some(tier), ..engine_config(data) }).map_err(|e| e.to_string())?;
            let started = std::time::Instant::now();
            let drained = rt.block_on(async {
                let pending: u64 = node.tier_status().await?.iter().map(|s| s.local_bytes).sum();
                node.tier_flush().await?;
                let epoch = node.tier_epoch().await?;
                let left: u64 = node.tier_status().await?.iter().map(|s| s.local_bytes).sum();
                Ok::<_, edgeblob_engine::EngineError>((pending, epoch, left))
            });
            node.stop();
            let (pending, epoch, left) = drained.map_err(|e| e.to_string())?;
            println!(
                "drained {pending} bytes pending upload in {:.1} s ({left} left); restore point {} (epoch {})",
                started.elapsed().as_secs_f64(),
                epoch.manifest,
                epoch.epoch
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Tier { cmd: TierCmd::Epoch { data, config } } => {
            let tier = tier_config(&config)?;
            let node =
                Node::open(EngineConfig { tier: Some(tier), ..engine_config(data) }).map_err(|e| e.to_string())?;
            let report = rt.block_on(node.tier_epoch()).map_err(|e| e.to_string());
            node.stop();
            let r = report?;
            println!(
                "epoch {} committed as {}: {} parts, {} packs, {} containers, {} blobs, {} chunks",
                r.epoch, r.manifest, r.parts, r.packs, r.counts.containers, r.counts.blobs, r.counts.chunks
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::RestoreStatus { config, data, node } => {
            let tier = tier_config(&config)?;
            match edgeblob_engine::startup::restore_unfinished(&data) {
                Some(d) => println!("{}: a restore did not finish (run restore again: it starts over)", d.display()),
                None => {
                    for d in &data {
                        match d.exists() {
                            true => println!("{}: no restore in progress", d.display()),
                            false => println!("{}: no data file", d.display()),
                        }
                    }
                }
            }
            let (node, points) = rt
                .block_on(edgeblob_engine::tier::restore::restore_points(&tier, node.as_deref()))
                .map_err(|e| e.to_string())?;
            println!("node {node}: {} restore points", points.len());
            println!("epoch  generation  cut (unix s)  blobs  bytes  manifest");
            for p in &points {
                println!(
                    "{:<6} {:<11} {:<13} {:<6} {:<6} {}",
                    p.epoch,
                    p.generation,
                    p.cut_ns / 1_000_000_000,
                    p.counts.blobs,
                    p.counts.bytes,
                    p.name
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Restore { data, config, node, epoch } => {
            let tier = tier_config(&config)?;
            let cfg = EngineConfig { tier: Some(tier), ..node_config(data) };
            let r = rt
                .block_on(edgeblob_engine::tier::restore::restore(&cfg, node.as_deref(), epoch))
                .map_err(|e| e.to_string())?;
            println!(
                "restored node {} from {} (epoch {}) as generation {}: {} containers, {} blobs ({} left out), {} chunks in {} packs; {} bytes of metadata read in {:.1} s; wrote {}",
                r.node, r.from, r.epoch, r.generation, r.containers, r.blobs, r.blobs_left_out, r.chunks, r.packs,
                r.metadata_bytes, r.elapsed.as_secs_f64(), r.written
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::ReplaceDevice { data, device, config, epoch } => {
            let tier = tier_config(&config)?;
            let cfg = EngineConfig { tier: Some(tier), ..node_config(data) };
            let r =
                rt.block_on(edgeblob_engine::tier::replace::replace(&cfg, device, epoch)).map_err(|e| e.to_string())?;
            println!(
                "replaced device {} (shards {:?}) of node {} from {} (epoch {}): {} blobs back ({} left out), {} chunks in the tier, {} references replaced; {} bytes of metadata read in {:.1} s",
                r.device, r.shards, r.node, r.from, r.epoch, r.blobs, r.blobs_left_out, r.chunks, r.references_replaced,
                r.metadata_bytes, r.elapsed.as_secs_f64()
            );
            if r.lost_count > 0 || r.staged_dropped > 0 {
                println!(
                    "lost with the device: {} blobs of the kept devices (deleted), and the uncommitted blocks of {} more:",
                    r.lost_count, r.staged_dropped
                );
                for name in &r.lost {
                    println!("  {name}");
                }
                if r.lost_count > r.lost.len() as u64 {
                    println!("  ... and {} more", r.lost_count - r.lost.len() as u64);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Tier { cmd: TierCmd::RotateKey { data, config, new_key } } => {
            let tier = tier_config(&config)?;
            let file = DeviceFile::open(&data).map_err(|e| format!("{}: {e}", data.display()))?;
            let sb = read_superblock(&file).map_err(|e| e.to_string())?;
            use edgeblob_engine::tier::guard::{file_key, Guard};
            let new = match &new_key {
                Some(f) => Guard::File(file_key(f)?),
                None if tier.key_vault_key.is_some() => Guard::of(&tier)?,
                None => return Err("--new-key is required: the node's key is a key file".into()),
            };
            let name = rt.block_on(edgeblob_engine::tier::remote::rotate(&tier, sb.uuid, &new))?;
            match new_key {
                Some(f) => println!("wrote {name}: set tier.key_file to {} before the next start", f.display()),
                None => println!("wrote {name}: wrapped by {}", new.name()),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn uuid_str(u: &[u8; 16]) -> String {
    u.iter().map(|b| format!("{b:02x}")).collect()
}

/// One device alone: its superblock, and the log halves and index of each shard on it.
fn inspect(rt: &tokio::runtime::Runtime, data: &std::path::Path) -> Result<(), String> {
    let file = Arc::new(DeviceFile::open(data).map_err(|e| format!("{}: {e}", data.display()))?);
    let sb = read_superblock(&file).map_err(|e| e.to_string())?;
    let l = sb.layout;
    println!("device       {} ({} bytes)", data.display(), file.len());
    println!("format       version {}, uuid {}, created {}", sb.version, uuid_str(&sb.uuid), sb.created_unix);
    println!("member       device {} of {}, device uuid {}", sb.index(), sb.devices(), uuid_str(&sb.device_uuid()));
    println!(
        "layout       {} shards, regions from {} of {} bytes, log {} bytes each",
        l.shards, l.regions_start, l.region_len, l.log_len
    );
    // Read alone, the device is a node of one: the same regions at its own offsets, its shards
    // numbered as in the node.
    let alone = edgeblob_io::superblock::Superblock { member: None, ..sb.clone() };
    let layout = edgeblob_io::volume::NodeLayout::of(std::slice::from_ref(&alone)).map_err(|e| e.to_string())?;
    let first = sb.index() as u32 * l.shards;
    let dev = SyncDevice::new(file.clone());
    for local in 0..l.shards {
        let s = first + local;
        let mut place = log_place(&sb.uuid, &layout, local);
        place.shard = s;
        let mut halves = Vec::new();
        for (h, (off, _)) in place.halves.iter().enumerate() {
            let (res, page) = rt.block_on(dev.read(AlignedBuf::zeroed(PAGE_SIZE), *off));
            res.map_err(|e| e.to_string())?;
            halves.push(match HalfHeader::decode(&page, s, &sb.uuid) {
                Some(hd) => format!("half {h}: generation {} from LSN {}", hd.generation, hd.first_lsn),
                None => format!("half {h}: unused"),
            });
        }
        let (doff, dlen) = l.data_area(local);
        if let Some(mut place) = index_place(&sb.uuid, &layout, local) {
            place.shard = s;
            let shared = Arc::new(SyncDevice::new(file.clone()));
            halves.push(match RegionBackend::open(shared, place, Arc::new(Segments::default())) {
                Ok(b) => {
                    let h = b.header();
                    let held = b.segments().len();
                    format!(
                        "index: {} bytes, {held} segments of {} and {} spare, header #{}",
                        h.len,
                        place.segment_len,
                        h.spares.len(),
                        h.seq
                    )
                }
                Err(e) => format!("index: {e}"),
            });
        }
        println!("shard {s:<6} data {doff}+{dlen}; {}", halves.join("; "));
    }
    Ok(())
}
