//! Hardware profiles (`hw-profiles/**/*.toml`): what a kind of host is, every figure with where it
//! came from, and which detected hosts it fits. The Azure L-series profiles are generated from
//! one table of Microsoft's published figures (`hw-profiles/azure/l-series.csv`, see
//! [`azure_profile`]), so a test can hold every file to it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::detect::{Host, Nvme};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub schema: u32,
    pub profile: About,
    #[serde(rename = "match")]
    pub fits: Match,
    pub cpu: Cpu,
    pub memory: Memory,
    #[serde(default)]
    pub numa: Vec<NumaSpec>,
    #[serde(default)]
    pub nic: Vec<NicSpec>,
    pub storage: Storage,
    pub expect: Expect,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct About {
    pub id: String,
    pub description: String,
    /// Where the figures come from (a document, a measurement, a template).
    pub source: String,
    pub confidence: String,
}

/// What a detected host must show for the profile to fit it; fields left out are not checked.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Match {
    pub platform: String,
    pub azure_vm_size: Option<String>,
    pub dmi_sys_vendor: Option<String>,
    pub vcpus: Option<usize>,
    pub numa_nodes: Option<usize>,
    /// Local NVMe namespaces are those whose model starts with this.
    pub nvme_model_prefix: Option<String>,
    pub local_nvme_count: Option<usize>,
    /// Each local namespace's size, within 3% (vendors' "1.92 TB" is not an exact byte count).
    pub nvme_size_bytes: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cpu {
    pub vcpus: usize,
    /// CPUs kept from the shards (IRQs, housekeeping), as a CPU list.
    #[serde(default)]
    pub reserved_cpus: String,
    pub provenance: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    pub total_gib: u64,
    pub provenance: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NumaSpec {
    pub id: u32,
    pub cpus: String,
    pub mem_gib: u64,
    pub provenance: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NicSpec {
    /// `primary`, `name:<ifname>` or `pci:<address>`.
    #[serde(rename = "match")]
    pub which: String,
    #[serde(default = "unknown_numa")]
    pub numa: i32,
    pub gbps: f64,
    pub provenance: String,
}

fn unknown_numa() -> i32 {
    -1
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// Erased when the host is deallocated or moved (Azure's local NVMe).
    pub ephemeral: bool,
    /// Requests a shard keeps in flight on its device at most.
    pub max_inflight_per_shard: usize,
    /// What one device (or its queue pair) takes at once; the shards on a device share it.
    pub device_queue_depth_limit: usize,
    pub provenance: String,
    #[serde(default)]
    pub device: Vec<DeviceSpec>,
    pub io: Io,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    /// `model-prefix:<prefix>`, `pci:<address>[,<address>…]` or `any`.
    #[serde(rename = "match")]
    pub which: String,
    pub count: usize,
    pub size_bytes: Option<u64>,
    #[serde(default = "unknown_numa")]
    pub numa: i32,
    pub role: String,
    pub provenance: String,
}

/// Whole-host device figures (bytes per second, operations per second).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Io {
    pub read_iops: u64,
    pub read_bandwidth: u64,
    pub write_iops: u64,
    pub write_bandwidth: u64,
    pub basis: String,
    pub provenance: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `disk`, `network`, `balanced` or `unknown`: which limits a serving node first.
    pub bound: String,
}

/// What a figure's provenance may begin with.
pub const PROVENANCES: &[&str] = &["vendor-spec", "measured", "default", "unmeasured"];

impl Profile {
    pub fn from_toml(text: &str) -> Result<Profile, String> {
        let p: Profile = toml::from_str(text).map_err(|e| e.to_string())?;
        p.validate()?;
        Ok(p)
    }

    fn validate(&self) -> Result<(), String> {
        if self.schema != 1 {
            return Err(format!("schema {} (this build reads 1)", self.schema));
        }
        let mut provenances = vec![
            ("cpu", &self.cpu.provenance),
            ("memory", &self.memory.provenance),
            ("storage", &self.storage.provenance),
            ("storage.io", &self.storage.io.provenance),
        ];
        provenances.extend(self.numa.iter().map(|n| ("numa", &n.provenance)));
        provenances.extend(self.nic.iter().map(|n| ("nic", &n.provenance)));
        provenances.extend(self.storage.device.iter().map(|d| ("storage.device", &d.provenance)));
        for (section, p) in provenances {
            if !PROVENANCES.iter().any(|k| p.starts_with(k)) {
                return Err(format!("[{section}] provenance {p:?}: begin with one of {PROVENANCES:?}"));
            }
        }
        crate::cpulist::parse(&self.cpu.reserved_cpus)?;
        if self.storage.max_inflight_per_shard == 0 || self.storage.device_queue_depth_limit == 0 {
            return Err("storage: queue depths must be at least 1".into());
        }
        if !["azure", "bare-metal"].contains(&self.fits.platform.as_str()) {
            return Err(format!("match.platform {:?}: azure or bare-metal", self.fits.platform));
        }
        Ok(())
    }

    /// How well the profile fits `host` (the number of facts it checked), or why it does not.
    /// `vm_size` is Azure's name for the VM, when known (the metadata service or the operator):
    /// a profile naming another size never fits.
    pub fn fit(&self, host: &Host, vm_size: Option<&str>) -> Result<usize, String> {
        let m = &self.fits;
        let mut checked = 1;
        if m.platform != host.platform {
            return Err(format!("platform {} (the host is {})", m.platform, host.platform));
        }
        if let (Some(want), Some(have)) = (&m.azure_vm_size, vm_size) {
            if want != have {
                return Err(format!("VM size {want} (the host is {have})"));
            }
            checked += 10;
        }
        if let Some(v) = &m.dmi_sys_vendor {
            if v != &host.sys_vendor {
                return Err(format!("vendor {v:?} (the host's is {:?})", host.sys_vendor));
            }
            checked += 1;
        }
        if let Some(n) = m.vcpus {
            if n != host.cpus {
                return Err(format!("{n} vCPUs (the host has {})", host.cpus));
            }
            checked += 1;
        }
        if let Some(n) = m.numa_nodes {
            let have = host.numa.len().max(1);
            if n != have {
                return Err(format!("{n} NUMA nodes (the host has {have})"));
            }
            checked += 1;
        }
        let local = self.local_nvme(host);
        if let Some(n) = m.local_nvme_count {
            if n != local.len() {
                return Err(format!("{n} local NVMe namespaces (the host has {})", local.len()));
            }
            checked += 1;
        }
        if let Some(size) = m.nvme_size_bytes {
            if let Some(off) = local.iter().find(|d| d.size_bytes.abs_diff(size) > size / 33) {
                return Err(format!("local NVMe of {size} bytes ({} has {})", off.name, off.size_bytes));
            }
            checked += 1;
        }
        Ok(checked)
    }

    /// The host's local NVMe namespaces as this profile counts them: of its model, and neither a
    /// remote disk nor the one holding the root file system (whatever else they hold).
    pub fn local_nvme<'h>(&self, host: &'h Host) -> Vec<&'h Nvme> {
        host.nvme
            .iter()
            .filter(|n| self.fits.nvme_model_prefix.as_deref().is_none_or(|p| n.model.starts_with(p)))
            .filter(|n| !n.reasons.iter().any(|r| r.starts_with("a remote disk") || r.starts_with("holds the root")))
            .collect()
    }

    /// Whether `n` is one of the data devices the profile names.
    pub fn names_device(&self, n: &Nvme) -> bool {
        if self.storage.device.is_empty() {
            return true;
        }
        self.storage.device.iter().filter(|d| d.role == "data").any(|d| {
            let w = d.which.as_str();
            if w == "any" {
                true
            } else if let Some(prefix) = w.strip_prefix("model-prefix:") {
                n.model.starts_with(prefix)
            } else if let Some(list) = w.strip_prefix("pci:") {
                list.split(',').any(|a| a.trim() == n.address)
            } else {
                false
            }
        })
    }
}

/// Where the installed package keeps the profiles.
pub const INSTALLED: &str = "/usr/share/edgeblob/hw-profiles";

/// The installed profiles, else `./hw-profiles` (a source checkout).
pub fn default_dir() -> PathBuf {
    let installed = Path::new(INSTALLED);
    if installed.is_dir() {
        installed.to_path_buf()
    } else {
        PathBuf::from("hw-profiles")
    }
}

/// Every profile under `dir` (its subfolders too), by path.
pub fn load_dir(dir: &Path) -> Result<Vec<(PathBuf, Profile)>, String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        for e in entries {
            let path = e.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "toml") {
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                out.push((path.clone(), Profile::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?));
            }
        }
    }
    out.sort_by(|a, b| a.1.profile.id.cmp(&b.1.profile.id));
    Ok(out)
}

/// The profile that fits `host` best: the one that checked the most facts. Two that fit equally
/// well are an error (a profile set that cannot tell two hosts apart), as is none.
pub fn best<'p>(profiles: &'p [(PathBuf, Profile)], host: &Host, vm_size: Option<&str>) -> Result<&'p Profile, String> {
    let mut fits: Vec<(usize, &Profile)> =
        profiles.iter().filter_map(|(_, p)| p.fit(host, vm_size).ok().map(|s| (s, p))).collect();
    fits.sort_by_key(|f| std::cmp::Reverse(f.0));
    match fits.as_slice() {
        [] => Err("no profile fits this host (see `hw detect`; name one with --profile)".into()),
        [(a, p), (b, q), ..] if a == b => {
            Err(format!("{} and {} fit this host equally well", p.profile.id, q.profile.id))
        }
        [(_, p), ..] => Ok(p),
    }
}

/// One row of `hw-profiles/azure/l-series.csv`: Microsoft's published figures for an L-series
/// size (whole-VM totals; MB/s are 10^6 bytes; NIC in Mb/s).
#[derive(Debug, Clone, PartialEq)]
pub struct AzureSize {
    pub size: String,
    pub vcpus: usize,
    pub memory_gib: u64,
    pub disks: usize,
    pub disk_gb: u64,
    pub read_iops: u64,
    pub read_mbps: u64,
    pub write_iops: u64,
    pub write_mbps: u64,
    pub nic_mbps: u64,
    pub source: String,
}

/// The table's rows; `#` lines and the header are skipped.
pub fn azure_sizes(csv: &str) -> Result<Vec<AzureSize>, String> {
    let mut rows = Vec::new();
    for (i, line) in csv.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("size,") {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let num = |k: usize| -> Result<u64, String> {
            f.get(k).and_then(|v| v.replace('_', "").parse().ok()).ok_or(format!("line {}: field {}", i + 1, k + 1))
        };
        if f.len() != 11 {
            return Err(format!("line {}: 11 fields wanted, {} found", i + 1, f.len()));
        }
        rows.push(AzureSize {
            size: f[0].to_owned(),
            vcpus: num(1)? as usize,
            memory_gib: num(2)?,
            disks: num(3)? as usize,
            disk_gb: num(4)?,
            read_iops: num(5)?,
            read_mbps: num(6)?,
            write_iops: num(7)?,
            write_mbps: num(8)?,
            nic_mbps: num(9)?,
            source: f[10].to_owned(),
        });
    }
    Ok(rows)
}

/// Azure's limit on outstanding commands per NVMe queue pair (Microsoft's NVMe performance
/// guidance for storage-optimized VMs).
pub const AZURE_QUEUE_DEPTH_LIMIT: usize = 1024;
/// One core kept for interrupts and housekeeping per this many (perftune's default ratio), none
/// on hosts this small or smaller.
pub const CORES_PER_RESERVED: usize = 16;

/// The profile file of an Azure size, as generated from its row.
pub fn azure_profile(s: &AzureSize) -> String {
    let reserved: Vec<u32> = if s.vcpus > CORES_PER_RESERVED {
        (0..s.vcpus / CORES_PER_RESERVED).map(|i| (i * CORES_PER_RESERVED) as u32).collect()
    } else {
        Vec::new()
    };
    let shards = s.vcpus - reserved.len();
    let per_device = shards.div_ceil(s.disks.max(1));
    let inflight = (AZURE_QUEUE_DEPTH_LIMIT / per_device).min(128);
    let disk_bps = s.read_mbps * 1_000_000;
    let nic_bps = s.nic_mbps * 1_000_000 / 8;
    let bound = if disk_bps * 10 > nic_bps * 12 {
        "network"
    } else if nic_bps * 10 > disk_bps * 12 {
        "disk"
    } else {
        "balanced"
    };
    let family = if s.size.ends_with("_v4") { "Lasv4 (AMD EPYC 9004)" } else { "Lasv5 (AMD EPYC 9005)" };
    let src = &s.source;
    format!(
        r#"# Generated from hw-profiles/azure/l-series.csv (edgeblob-hw's `azure_profile`); edit the table,
# then run `EDGEBLOB_BLESS=1 cargo test -p edgeblob-hw --test profiles` to write this file again.
schema = 1

[profile]
id = "azure/{size}"
description = "Azure {family}, {vcpus} vCPU, {mem} GiB, {disks} x {gb} GB local NVMe, {nic} Mbps"
source = "{src}"
confidence = "vendor-spec"

[match]
platform = "azure"
azure_vm_size = "{size}"
dmi_sys_vendor = "Microsoft Corporation"
vcpus = {vcpus}
nvme_model_prefix = "Microsoft NVMe Direct Disk"
local_nvme_count = {disks}
nvme_size_bytes = {size_bytes}

[cpu]
vcpus = {vcpus}
reserved_cpus = "{reserved}"
provenance = "vendor-spec (vCPUs: {src}); default (reserved: one core per {per} above {per}, perftune's ratio)"

[memory]
total_gib = {mem}
provenance = "vendor-spec: {src}"

[[nic]]
match = "primary"
gbps = {gbps}
provenance = "vendor-spec: {src} (the VM's cap over all its NICs)"

[storage]
ephemeral = true
max_inflight_per_shard = {inflight}
device_queue_depth_limit = {qd}
provenance = "vendor-spec (ephemeral; at most {qd} commands per queue pair: Microsoft's NVMe guidance for storage-optimized VMs); default (in flight per shard: the limit over the {per_device} shards on a device, at most 128)"

[[storage.device]]
match = "model-prefix:Microsoft NVMe Direct Disk"
count = {disks}
size_bytes = {size_bytes}
role = "data"
provenance = "vendor-spec: {src}"

[storage.io]
read_iops = {riops}
read_bandwidth = {rbw}
write_iops = {wiops}
write_bandwidth = {wbw}
basis = "whole VM, best case: 4 KiB at queue depth 256 for IOPS, 256 KiB at 64 for bandwidth, on a clean device; steady-state writes are lower"
provenance = "vendor-spec: {src}"

[expect]
bound = "{bound}"
"#,
        size = s.size,
        vcpus = s.vcpus,
        mem = s.memory_gib,
        disks = s.disks,
        gb = s.disk_gb,
        nic = s.nic_mbps,
        size_bytes = s.disk_gb * 1_000_000_000,
        reserved = crate::cpulist::format(&reserved),
        per = CORES_PER_RESERVED,
        gbps = format_gbps(s.nic_mbps),
        inflight = inflight,
        qd = AZURE_QUEUE_DEPTH_LIMIT,
        per_device = per_device,
        riops = s.read_iops,
        rbw = disk_bps,
        wiops = s.write_iops,
        wbw = s.write_mbps * 1_000_000,
    )
}

fn format_gbps(mbps: u64) -> String {
    let g = mbps as f64 / 1000.0;
    if g.fract() == 0.0 {
        format!("{g:.1}")
    } else {
        format!("{g}")
    }
}
