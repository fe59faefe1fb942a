//! `edgeblob-admin node prepare`: before the node starts (edgeblob-prepare.service, every boot),
//! sort the host's local NVMe namespaces into this node's (the ledger names their serial and the
//! superblock on them agrees), blank ones, foreign ones (another node's superblock, a file
//! system, data nobody named) and those never to be touched (the OS disk, mounted, partitioned,
//! held by md/dm/LVM, remote), and format only what may be formatted: a blank device when the
//! hardware profile says its disks are ephemeral (Azure's local NVMe) or the operator named its
//! serial, a foreign one only when named. Devices are named by serial, never by `/dev` name.
//! A dry run prints the same plan and changes nothing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use edgeblob_hw::detect::{detect, Root, Use};
use edgeblob_hw::ledger::{Ledger, LedgerDevice};
use edgeblob_hw::{plan, profile, Nvme, Profile};
use edgeblob_io::DeviceFile;

#[derive(clap::Args)]
pub struct PrepareArgs {
    /// The node's configuration (its `profile`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where sysfs, procfs and /dev are found (a fake tree in tests).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// The disk ledger, on the OS disk.
    #[arg(long, default_value = "/var/lib/edgeblob/ledger.toml")]
    ledger: PathBuf,
    /// The hardware profiles (default: the installed ones, else ./hw-profiles).
    #[arg(long)]
    profiles: Option<PathBuf>,
    /// The instance metadata service, asked for the VM size on an Azure VM; `off` asks nothing.
    #[arg(long, default_value = edgeblob_hw::imds::ENDPOINT)]
    imds: String,
    /// Prints what would be done and changes nothing.
    #[arg(long)]
    dry_run: bool,
    /// Formats the device with this serial even if it is foreign, or blank on a host whose
    /// profile does not format blank devices. Repeat for several.
    #[arg(long = "allow-format", value_name = "SERIAL")]
    allow_format: Vec<String>,
}

/// What a device is to this node.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Ours,
    Blank,
    Foreign(String),
    Untouchable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Keep,
    Format,
    Leave(String),
}

fn hex(u: &[u8]) -> String {
    u.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reasons detection gives that no operator's word overrides.
fn untouchable(n: &Nvme) -> Option<String> {
    let hard = [
        "a remote disk",
        "holds the root",
        "mounted at",
        "used as swap",
        "partitioned",
        "held by",
        "its first bytes could not",
    ];
    let found: Vec<&str> =
        n.reasons.iter().map(String::as_str).filter(|r| hard.iter().any(|h| r.starts_with(h))).collect();
    (!found.is_empty()).then(|| found.join("; "))
}

fn classify(n: &Nvme, dev: &Path, ledger: Option<&Ledger>) -> Kind {
    if let Some(why) = untouchable(n) {
        return Kind::Untouchable(why);
    }
    match n.usage {
        Use::Data => Kind::Blank,
        Use::Edgeblob => {
            let uuid = edgeblob_engine::startup::superblock_of(dev);
            match uuid {
                Ok(sb)
                    if ledger
                        .and_then(|l| l.by_serial(&n.serial))
                        .is_some_and(|d| d.uuid == hex(&sb.device_uuid())) =>
                {
                    Kind::Ours
                }
                // A device the node restored itself onto after its disks were erased: it holds
                // the node the ledger names, on a serial the ledger has not seen yet.
                Ok(sb) if ledger.is_some_and(|l| l.node == hex(&sb.uuid)) && !sb.restoring => Kind::Ours,
                Ok(sb) => Kind::Foreign(format!("another node's edgeblob device (uuid {})", hex(&sb.uuid))),
                Err(e) => Kind::Foreign(format!("an edgeblob signature whose superblock does not read: {e}")),
            }
        }
        Use::Unrecognised => Kind::Foreign("data at its start that names nothing known".into()),
        Use::Excluded => Kind::Foreign(n.reasons.join("; ")),
    }
}

pub fn run(a: PrepareArgs) -> Result<ExitCode, String> {
    let (wanted, tier) = match &a.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let raw: toml::Table = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            let tier = raw.get("engine").and_then(|e| e.get("tier")).is_some();
            (raw.get("profile").and_then(|p| p.as_str()).unwrap_or("auto").to_owned(), tier)
        }
        None => ("auto".to_owned(), false),
    };
    let root = Root(a.root.clone());
    let host = detect(&root);
    let chosen: Option<Profile> = if wanted == "auto" {
        let all = profile::load_dir(&a.profiles.clone().unwrap_or_else(profile::default_dir))?;
        profile::best(&all, &host, crate::hw::asked_size(&host, &a.imds).as_deref()).ok().cloned()
    } else {
        let text = std::fs::read_to_string(&wanted).map_err(|e| format!("profile {wanted}: {e}"))?;
        Some(Profile::from_toml(&text).map_err(|e| format!("profile {wanted}: {e}"))?)
    };
    let ephemeral = chosen.as_ref().is_some_and(|p| p.storage.ephemeral);
    let shards = match &chosen {
        Some(p) => plan::derive(p, &host).shards_per_device,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    } as u32;
    let before = Ledger::load(&a.ledger)?;
    match &chosen {
        Some(p) => println!(
            "profile {} ({}); blank devices {}",
            p.profile.id,
            if ephemeral { "ephemeral disks" } else { "disks kept" },
            if ephemeral { "are formatted" } else { "are formatted only when named" }
        ),
        None => println!("no profile fits this host: devices are formatted only when named"),
    }
    let locals: Vec<&Nvme> = match &chosen {
        Some(p) => p.local_nvme(&host),
        None => host
            .nvme
            .iter()
            .filter(|n| !n.reasons.iter().any(|r| r.starts_with("a remote disk") || r.starts_with("holds the root")))
            .collect(),
    };
    let mut plan: Vec<(&Nvme, Kind, Action)> = Vec::new();
    for n in &locals {
        let dev = a.root.join("dev").join(&n.name);
        let kind = classify(n, &dev, before.as_ref());
        let named = a.allow_format.iter().any(|s| s == &n.serial);
        let action = match &kind {
            Kind::Ours => Action::Keep,
            Kind::Blank if ephemeral || named => Action::Format,
            Kind::Blank => Action::Leave(format!("blank; format it with --allow-format {}", n.serial)),
            Kind::Foreign(_) if named => Action::Format,
            Kind::Foreign(_) => {
                Action::Leave(format!("refused: not this node's; --allow-format {} to erase it", n.serial))
            }
            Kind::Untouchable(_) => Action::Leave("never touched".into()),
        };
        plan.push((n, kind, action));
    }
    for serial in &a.allow_format {
        if let Some((n, Kind::Untouchable(why), _)) = plan.iter().find(|(n, _, _)| &n.serial == serial) {
            return Err(format!("{} ({serial}) is {why}: it is never formatted, even when named", n.name));
        }
        if !plan.iter().any(|(n, _, _)| &n.serial == serial) {
            return Err(format!("--allow-format {serial}: no local NVMe namespace has that serial"));
        }
    }
    // A node's devices are fixed when it is formatted (its shards are spread over them): one
    // that still has devices takes no new ones. Those it would format are left, saying why.
    if plan.iter().any(|(_, k, _)| *k == Kind::Ours) {
        for (_, _, action) in plan.iter_mut().filter(|(_, _, act)| *act == Action::Format) {
            *action = Action::Leave(
                "the node's devices were fixed when it was formatted: a new one cannot join it (restore the node onto a new set)"
                    .into(),
            );
        }
    }
    // The node had devices, none of them is here, and blank ones are to be formatted: its disks
    // were erased under it (an Azure redeploy).
    // (Or it was already found so, and has not restored itself yet: a reboot meanwhile must not
    // make its blank disks a new node.)
    let had = before.as_ref().is_some_and(|l| !l.device.is_empty() || l.rebuilding);
    let erased = had
        && !plan.iter().any(|(_, k, _)| *k == Kind::Ours)
        && plan.iter().any(|(_, k, act)| *k == Kind::Blank && *act == Action::Format);
    // With a tier the node restores itself onto the blank devices at its start (it restores
    // only onto blank ones): they stay blank. Without one, its data is gone; they become a new
    // empty node, still reported rebuilding until the operator says otherwise.
    if erased && tier {
        for (_, _, action) in plan.iter_mut().filter(|(_, k, act)| *k == Kind::Blank && *act == Action::Format) {
            *action = Action::Leave("blank: the node restores itself onto it from the tier when it starts".into());
        }
    }
    for (n, kind, action) in &plan {
        let kind = match kind {
            Kind::Ours => "ours".to_owned(),
            Kind::Blank => "blank".to_owned(),
            Kind::Foreign(why) => format!("foreign ({why})"),
            Kind::Untouchable(why) => format!("excluded ({why})"),
        };
        let action = match action {
            Action::Keep => "keep".to_owned(),
            Action::Format => format!("format ({shards} shards)"),
            Action::Leave(why) => format!("leave: {why}"),
        };
        println!("{:<10} {:<22} {:<32} {kind}: {action}", n.name, n.serial, n.model);
    }
    if erased {
        println!(
            "this node's devices are gone and blank ones are here: it comes back rebuilding ({})",
            if tier { "it restores itself from the tier when it starts" } else { "restore it from the tier" }
        );
    }
    if a.dry_run {
        println!("dry run: nothing changed");
        return Ok(ExitCode::SUCCESS);
    }
    let mut ledger = before.clone().unwrap_or_else(|| Ledger { node: hex(&new_id()), ..Ledger::default() });
    // Every device to format, as the members of one node.
    let chosen: Vec<&Nvme> = plan.iter().filter(|(_, _, act)| *act == Action::Format).map(|(n, _, _)| *n).collect();
    let mut files = Vec::with_capacity(chosen.len());
    for n in &chosen {
        let dev = a.root.join("dev").join(&n.name);
        files.push(Arc::new(DeviceFile::open(&dev).map_err(|e| format!("{}: {e}", dev.display()))?));
    }
    let sbs = match files.is_empty() {
        true => Vec::new(),
        false => edgeblob_engine::startup::format_devices(&files, shards).map_err(|e| e.to_string())?,
    };
    // A new node (not one whose disks were erased: the tier knows that one by the ledger's id)
    // takes the ledger's id as its uuid, so that the ledger names the node its devices hold,
    // and a rebuild restores it by that name.
    if let (Some(sb), false) = (sbs.first(), erased) {
        ledger.node = hex(&sb.uuid);
    }
    // Devices of the node the ledger did not list by serial yet (restored onto after a rebuild).
    let unlisted: Vec<&Nvme> = plan
        .iter()
        .filter(|(n, k, _)| *k == Kind::Ours && ledger.by_serial(&n.serial).is_none())
        .map(|(n, _, _)| *n)
        .collect();
    for n in unlisted {
        let dev = a.root.join("dev").join(&n.name);
        let f = DeviceFile::open(&dev).map_err(|e| format!("{}: {e}", dev.display()))?;
        let sb = edgeblob_engine::startup::read_superblock(&f).map_err(|e| e.to_string())?;
        ledger.device.push(LedgerDevice {
            serial: n.serial.clone(),
            model: n.model.clone(),
            uuid: hex(&sb.device_uuid()),
            formatted: sb.created_unix,
        });
    }
    for (n, sb) in chosen.iter().zip(&sbs) {
        ledger.device.retain(|d| d.serial != n.serial);
        ledger.device.push(LedgerDevice {
            serial: n.serial.clone(),
            model: n.model.clone(),
            uuid: hex(&sb.device_uuid()),
            formatted: sb.created_unix,
        });
        println!(
            "formatted {} ({}): device {} of {}, uuid {} (node {})",
            n.name,
            n.serial,
            sb.index(),
            sb.devices(),
            hex(&sb.device_uuid()),
            hex(&sb.uuid)
        );
    }
    if erased {
        // The devices it had are gone for good: the ledger keeps only what is here.
        let present: Vec<&str> = locals.iter().map(|n| n.serial.as_str()).collect();
        ledger.device.retain(|d| present.contains(&d.serial.as_str()));
        ledger.rebuilding = true;
    }
    // The node's devices while it has none formatted: the blank ones left to its restore.
    ledger.pending = match erased && tier {
        true => plan
            .iter()
            .filter(|(_, k, act)| *k == Kind::Blank && *act != Action::Format)
            .map(|(n, _, _)| n.serial.clone())
            .collect(),
        false => Vec::new(),
    };
    if before.as_ref() != Some(&ledger) {
        ledger.save(&a.ledger)?;
        println!("ledger {} written", a.ledger.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn new_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    // A ledger's node id needs no secrecy, only uniqueness: time and process id suffice where the
    // system's generator fails.
    if getrandom::getrandom(&mut id).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        id[..16].copy_from_slice(&(t ^ u128::from(std::process::id())).to_le_bytes());
    }
    id
}
