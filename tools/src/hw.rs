//! `edgeblob-admin hw detect|match`: what the host has, and which shipped profile it fits with
//! the plan the node derives from it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use edgeblob_hw::detect::{detect, Root};
use edgeblob_hw::{plan, profile};

#[derive(Subcommand)]
pub enum HwCmd {
    /// Prints the host as detected (TOML): platform, CPUs and NUMA nodes, memory, NVMe
    /// namespaces with serials, NUMA nodes and whether edgeblob may use them (with the reasons
    /// when not), NICs. Reads sysfs, procfs and each candidate's first bytes; writes nothing.
    Detect {
        /// Where sysfs, procfs, /dev and /etc are found (a fake tree in tests).
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
    /// Picks the shipped profile that fits the host and prints it with the plan derived from it
    /// (shards, their CPUs, devices, queue depths). Exits 1 when none fits.
    Match {
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// The profiles (default: the installed ones, else ./hw-profiles).
        #[arg(long)]
        profiles: Option<PathBuf>,
        /// Azure's name for the VM size, which decides between profiles. Default: on an Azure
        /// VM, what the instance metadata service says (see --imds).
        #[arg(long)]
        vm_size: Option<String>,
        /// The instance metadata service, asked for the VM size on an Azure VM; `off` asks
        /// nothing.
        #[arg(long, default_value = edgeblob_hw::imds::ENDPOINT)]
        imds: String,
    },
}

/// The VM size the metadata service gives, on an Azure VM and unless `imds` is `off`.
pub fn asked_size(host: &edgeblob_hw::Host, imds: &str) -> Option<String> {
    (host.platform == "azure" && imds != "off").then(|| edgeblob_hw::imds::vm_size(imds)).flatten()
}

pub fn run(cmd: HwCmd) -> Result<ExitCode, String> {
    match cmd {
        HwCmd::Detect { root } => {
            print!("{}", detect(&Root(root)).to_toml());
            Ok(ExitCode::SUCCESS)
        }
        HwCmd::Match { root, profiles, vm_size, imds } => {
            let host = detect(&Root(root));
            let vm_size = vm_size.or_else(|| asked_size(&host, &imds));
            let all = profile::load_dir(&profiles.unwrap_or_else(profile::default_dir))?;
            match profile::best(&all, &host, vm_size.as_deref()) {
                Ok(p) => {
                    println!("# profile {}: {}", p.profile.id, p.profile.description);
                    print!("{}", plan::derive(p, &host).to_toml());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("edgeblob-admin: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}
