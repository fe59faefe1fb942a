//! `edgeblob-admin`: format a device, inspect its layout, check it (fsck), report data reduction.
//! Every command but `inspect` opens the device exclusively: stop the node first.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use edgeblob_engine::config::EngineConfig;
use edgeblob_engine::startup::{format_device, format_file, log_place, read_superblock};
use edgeblob_engine::Node;
use edgeblob_io::sync_device::SyncDevice;
use edgeblob_io::{AlignedBuf, BlockDevice, DeviceFile, PAGE_SIZE};
use edgeblob_meta::wal::HalfHeader;

#[derive(Parser)]
#[command(version, about = "edgeblob administration")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create and format a data file, or format a block device.
    Format {
        #[arg(long)]
        data: PathBuf,
        /// Size of a new data file, e.g. 8G, 512M.
        #[arg(long, default_value = "8G", value_parser = edgeblob_engine::config::parse_size)]
        size: u64,
        /// Shards (default: one per core).
        #[arg(long)]
        shards: Option<u32>,
        /// Format even if the path already holds data.
        #[arg(long)]
        force: bool,
    },
    /// Print the superblock and the state of every shard's log.
    Inspect {
        #[arg(long)]
        data: PathBuf,
    },
    /// Recover, cross-check reference counts and space, and read and verify every chunk.
    Fsck {
        #[arg(long)]
        data: PathBuf,
    },
    /// Data-reduction ratio of the node, or of one container (ACCOUNT/CONTAINER).
    Stats {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        container: Option<String>,
    },
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

fn run(cmd: Cmd) -> Result<ExitCode, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    match cmd {
        Cmd::Format { data, size, shards, force } => {
            let shards = shards.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
            let sb = if data.exists() {
                let file = Arc::new(DeviceFile::open(&data).map_err(|e| e.to_string())?);
                if !force {
                    return Err(format!("{} exists; add --force to format it (all its data is lost)", data.display()));
                }
                format_device(&file, shards).map_err(|e| e.to_string())?
            } else {
                format_file(&data, size, shards).map_err(|e| e.to_string())?
            };
            println!(
                "formatted {}: {} bytes, {} shards, uuid {}",
                data.display(),
                sb.device_len,
                sb.layout.shards,
                uuid_str(&sb.uuid)
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Inspect { data } => {
            let file = Arc::new(DeviceFile::open(&data).map_err(|e| e.to_string())?);
            let sb = read_superblock(&file).map_err(|e| e.to_string())?;
            let l = sb.layout;
            println!("device       {} ({} bytes)", data.display(), file.len());
            println!("format       version {}, uuid {}, created {}", sb.version, uuid_str(&sb.uuid), sb.created_unix);
            println!(
                "layout       {} shards, regions from {} of {} bytes, log {} bytes each",
                l.shards, l.regions_start, l.region_len, l.log_len
            );
            let dev = SyncDevice::new(file.clone());
            for s in 0..l.shards {
                let place = log_place(&sb, s);
                let mut halves = Vec::new();
                for (h, (off, _)) in place.halves.iter().enumerate() {
                    let (res, page) = rt.block_on(dev.read(AlignedBuf::zeroed(PAGE_SIZE), *off));
                    res.map_err(|e| e.to_string())?;
                    halves.push(match HalfHeader::decode(&page, s, &sb.uuid) {
                        Some(hd) => format!("half {h}: generation {} from LSN {}", hd.generation, hd.first_lsn),
                        None => format!("half {h}: unused"),
                    });
                }
                let (doff, dlen) = l.data_area(s);
                println!("shard {s:<6} data {doff}+{dlen}; {}", halves.join("; "));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Fsck { data } => {
            let node = Node::open(engine_config(data)).map_err(|e| e.to_string())?;
            let r = rt.block_on(node.check_all()).map_err(|e| e.to_string())?;
            println!(
                "{} blobs, {} staged blocks, {} chunks, {} bytes stored",
                r.blobs, r.staged_blocks, r.chunks, r.stored_bytes
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
        Cmd::Stats { data, container } => {
            let node = Node::open(engine_config(data)).map_err(|e| e.to_string())?;
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
    }
}

fn uuid_str(u: &[u8; 16]) -> String {
    u.iter().map(|b| format!("{b:02x}")).collect()
}
