//! The host as sysfs and procfs describe it: platform, CPUs and NUMA nodes, memory, NVMe
//! namespaces (and which of them edgeblob may use, with the reason for each it may not), NICs.
//! Every path is read under a root (`/` on a host; a fake tree in tests).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::PathBuf;

use serde::Serialize;

use crate::cpulist;
use crate::signature::{self, Signature};

/// Models of NVMe controllers that are remote disks (Azure managed disks on NVMe controllers,
/// the OS disk of Lasv5 and v6 sizes): never local data devices.
const REMOTE_MODELS: &[&str] = &["MSFT NVMe Accelerator"];

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Host {
    /// `azure` or `bare-metal`.
    pub platform: String,
    pub sys_vendor: String,
    pub product_name: String,
    pub cpus: usize,
    /// The online CPUs, as a CPU list.
    pub online: String,
    pub smt: bool,
    pub memory_bytes: u64,
    pub numa: Vec<Numa>,
    pub nvme: Vec<Nvme>,
    pub nic: Vec<Nic>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Numa {
    pub id: u32,
    pub cpus: String,
    pub memory_bytes: u64,
}

/// Whether edgeblob may use a namespace.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Use {
    /// Local, unused, blank: edgeblob may format it (prepare still asks the profile or the
    /// operator).
    Data,
    /// It holds an edgeblob superblock: the ledger says whether it is this node's.
    Edgeblob,
    /// Local and unused, but its first bytes are not zeros and name nothing known: only an
    /// operator who names it may have it formatted.
    Unrecognised,
    /// Never offered; `reasons` say why.
    Excluded,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Nvme {
    /// The namespace's block device, e.g. `nvme1n1`.
    pub name: String,
    pub controller: String,
    pub model: String,
    pub serial: String,
    pub firmware: String,
    pub transport: String,
    /// PCI address, when the transport is PCIe.
    pub address: String,
    /// The NUMA node of its controller; -1 when unknown.
    pub numa: i32,
    pub size_bytes: u64,
    pub logical_block_size: u32,
    #[serde(rename = "use")]
    pub usage: Use,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Nic {
    pub name: String,
    /// Link speed in Mb/s as the driver reports it; 0 when unknown (Azure's synthetic NICs).
    pub speed_mbps: u64,
    pub numa: i32,
    pub driver: String,
}

/// Where sysfs, procfs, /dev and /etc are: under `root`.
#[derive(Debug, Clone)]
pub struct Root(pub PathBuf);

impl Root {
    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel.trim_start_matches('/'))
    }

    fn read(&self, rel: &str) -> Option<String> {
        fs::read_to_string(self.path(rel)).ok().map(|s| s.trim().to_owned())
    }

    fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    /// The entries of a directory, sorted by name (a walk's order must not depend on the file
    /// system's).
    fn list(&self, rel: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.path(rel))
            .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
            .unwrap_or_default();
        names.sort_by_key(|n| natural(n));
        names
    }
}

/// Sorts `nvme10` after `nvme2`.
fn natural(s: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            if !digits.is_empty() {
                out.push((std::mem::take(&mut text), digits.parse().unwrap_or(u64::MAX)));
                digits.clear();
            }
            text.push(c);
        }
    }
    out.push((text, digits.parse().unwrap_or(0)));
    out
}

/// One mount from `/proc/self/mountinfo`.
struct Mount {
    dev: String,
    point: String,
    source: String,
}

fn mounts(root: &Root) -> Vec<Mount> {
    let text = root.read("proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            Some(Mount {
                dev: fields.get(2)?.to_string(),
                point: unescape(fields.get(4)?),
                source: fields.get(dash + 2).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash in octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `azure` or `bare-metal`. Scylla's rule: Microsoft's DMI vendor alone is also Hyper-V on
/// premises; the Azure agent is what marks an Azure VM.
pub fn platform(root: &Root) -> &'static str {
    let azure = root.read("sys/class/dmi/id/sys_vendor").is_some_and(|v| v == "Microsoft Corporation")
        && (root.exists("etc/waagent.conf") || root.exists("var/lib/waagent"));
    if azure {
        "azure"
    } else {
        "bare-metal"
    }
}

/// Reads the host under `root`.
pub fn detect(root: &Root) -> Host {
    let sys_vendor = root.read("sys/class/dmi/id/sys_vendor").unwrap_or_default();
    let product_name = root.read("sys/class/dmi/id/product_name").unwrap_or_default();
    let online_list = root.read("sys/devices/system/cpu/online").unwrap_or_default();
    let online = cpulist::parse(&online_list).unwrap_or_default();
    let smt = root
        .read("sys/devices/system/cpu/cpu0/topology/thread_siblings_list")
        .and_then(|l| cpulist::parse(&l).ok())
        .is_some_and(|s| s.len() > 1);
    let memory_bytes = meminfo_total(&root.read("proc/meminfo").unwrap_or_default());
    Host {
        platform: platform(root).into(),
        sys_vendor,
        product_name,
        cpus: online.len(),
        online: cpulist::format(&online),
        smt,
        memory_bytes,
        numa: numa_nodes(root),
        nvme: nvme_namespaces(root),
        nic: nics(root),
    }
}

/// `MemTotal:  123 kB` in bytes.
fn meminfo_total(text: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            let rest = l.split_once("MemTotal:")?.1.trim();
            let kb: u64 = rest.trim_end_matches("kB").trim().parse().ok()?;
            Some(kb * 1024)
        })
        .unwrap_or(0)
}

fn numa_nodes(root: &Root) -> Vec<Numa> {
    root.list("sys/devices/system/node")
        .into_iter()
        .filter_map(|n| {
            let id: u32 = n.strip_prefix("node")?.parse().ok()?;
            let cpus = root.read(&format!("sys/devices/system/node/{n}/cpulist")).unwrap_or_default();
            let cpus = cpulist::format(&cpulist::parse(&cpus).unwrap_or_default());
            let memory_bytes =
                meminfo_total(&root.read(&format!("sys/devices/system/node/{n}/meminfo")).unwrap_or_default());
            Some(Numa { id, cpus, memory_bytes })
        })
        .collect()
}

fn numa_of(root: &Root, dir: &str) -> i32 {
    root.read(&format!("{dir}/device/numa_node")).and_then(|s| s.parse().ok()).unwrap_or(-1)
}

fn nvme_namespaces(root: &Root) -> Vec<Nvme> {
    let mounts = mounts(root);
    let swaps: Vec<String> = root
        .read("proc/swaps")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    let mut out = Vec::new();
    for ctrl in root.list("sys/class/nvme") {
        let cdir = format!("sys/class/nvme/{ctrl}");
        let model = root.read(&format!("{cdir}/model")).unwrap_or_default();
        let numa = numa_of(root, &cdir);
        // Namespaces are the controller's entries named `<ctrl>n<N>` (multipath controllers name
        // theirs `nvme<subsys>c<ctrl>n<N>`: hidden, the block device is the subsystem's).
        for ns in root.list(&cdir).into_iter().filter(|n| is_namespace_of(n, &ctrl)) {
            let bdir = format!("sys/block/{ns}");
            let sectors: u64 = root.read(&format!("{bdir}/size")).and_then(|s| s.parse().ok()).unwrap_or(0);
            let mut n = Nvme {
                name: ns.clone(),
                controller: ctrl.clone(),
                model: model.clone(),
                serial: root.read(&format!("{cdir}/serial")).unwrap_or_default(),
                firmware: root.read(&format!("{cdir}/firmware_rev")).unwrap_or_default(),
                transport: root.read(&format!("{cdir}/transport")).unwrap_or_default(),
                address: root.read(&format!("{cdir}/address")).unwrap_or_default(),
                numa,
                size_bytes: sectors * 512,
                logical_block_size: root
                    .read(&format!("{bdir}/queue/logical_block_size"))
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(512),
                usage: Use::Data,
                reasons: Vec::new(),
            };
            n.reasons = exclusions(root, &n, &mounts, &swaps);
            n.usage = if !n.reasons.is_empty() {
                Use::Excluded
            } else {
                match probe(root, &ns) {
                    Ok(Signature::Blank) => Use::Data,
                    Ok(Signature::Edgeblob) => Use::Edgeblob,
                    Ok(Signature::Unrecognised) => Use::Unrecognised,
                    Ok(Signature::Foreign(name)) => {
                        n.reasons.push(format!("holds a {name} signature"));
                        Use::Excluded
                    }
                    Err(e) => {
                        n.reasons.push(format!("its first bytes could not be read: {e}"));
                        Use::Excluded
                    }
                }
            };
            out.push(n);
        }
    }
    out
}

fn is_namespace_of(name: &str, ctrl: &str) -> bool {
    name.strip_prefix(ctrl)
        .and_then(|rest| rest.strip_prefix('n'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Why a namespace is not for edgeblob, from what the system says of it (its bytes are read
/// only when it passes all of these).
fn exclusions(root: &Root, n: &Nvme, mounts: &[Mount], swaps: &[String]) -> Vec<String> {
    let mut reasons = Vec::new();
    if REMOTE_MODELS.iter().any(|m| n.model.starts_with(m)) {
        reasons.push(format!("a remote disk (model {:?}), not local NVMe", n.model));
    }
    let bdir = format!("sys/block/{}", n.name);
    let partitions: Vec<String> =
        root.list(&bdir).into_iter().filter(|p| p.starts_with(&n.name) && p != &n.name).collect();
    // The namespace and its partitions, by name and by major:minor.
    let mut devices: BTreeMap<String, String> = BTreeMap::new();
    devices.insert(n.name.clone(), root.read(&format!("{bdir}/dev")).unwrap_or_default());
    for p in &partitions {
        devices.insert(p.clone(), root.read(&format!("{bdir}/{p}/dev")).unwrap_or_default());
    }
    for (dev, majmin) in &devices {
        for m in mounts.iter().filter(|m| (!majmin.is_empty() && &m.dev == majmin) || m.source == format!("/dev/{dev}"))
        {
            if m.point == "/" {
                reasons.push(format!("holds the root file system ({dev})"));
            } else {
                reasons.push(format!("mounted at {} ({dev})", m.point));
            }
        }
        if swaps.iter().any(|s| s == &format!("/dev/{dev}")) {
            reasons.push(format!("used as swap ({dev})"));
        }
    }
    if !partitions.is_empty() {
        reasons.push(format!("partitioned ({})", partitions.join(", ")));
    }
    let mut holders = root.list(&format!("{bdir}/holders"));
    for p in &partitions {
        holders.extend(root.list(&format!("{bdir}/{p}/holders")));
    }
    if !holders.is_empty() {
        reasons.push(format!("held by {}", holders.join(", ")));
    }
    reasons.dedup();
    reasons
}

/// The first bytes of a block device, read (never written) from `/dev/<name>` under the root.
fn probe(root: &Root, name: &str) -> std::io::Result<Signature> {
    let mut f = fs::File::open(root.path(&format!("dev/{name}")))?;
    let mut head = Vec::with_capacity(signature::PROBE_BYTES);
    f.by_ref().take(signature::PROBE_BYTES as u64).read_to_end(&mut head)?;
    Ok(signature::identify(&head))
}

fn nics(root: &Root) -> Vec<Nic> {
    root.list("sys/class/net")
        .into_iter()
        .filter(|n| {
            let dir = format!("sys/class/net/{n}");
            // No `device`: virtual (lo, bridges, tunnels). A `master`: enslaved, e.g. the VF that
            // Azure's accelerated networking pairs with a synthetic NIC, counted once as that NIC.
            root.exists(&format!("{dir}/device")) && !root.exists(&format!("{dir}/master"))
        })
        .map(|n| {
            let dir = format!("sys/class/net/{n}");
            let speed = root.read(&format!("{dir}/speed")).and_then(|s| s.parse::<i64>().ok()).unwrap_or(-1);
            Nic {
                name: n.clone(),
                speed_mbps: speed.max(0) as u64,
                numa: numa_of(root, &dir),
                driver: driver_of(root, &dir),
            }
        })
        .collect()
}

/// The name of the driver a device's `driver` link points at.
fn driver_of(root: &Root, dir: &str) -> String {
    fs::read_link(root.path(&format!("{dir}/device/driver")))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

impl Host {
    /// The namespaces edgeblob may use or already uses.
    pub fn candidates(&self) -> impl Iterator<Item = &Nvme> {
        self.nvme.iter().filter(|n| n.usage != Use::Excluded)
    }

    /// As TOML (what `edgeblob-admin hw detect` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print the host: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_naturally_and_namespaces_are_told_from_other_entries() {
        let mut v = vec!["nvme10", "nvme2", "nvme1"];
        v.sort_by_key(|n| natural(n));
        assert_eq!(v, ["nvme1", "nvme2", "nvme10"]);
        assert!(is_namespace_of("nvme1n1", "nvme1"));
        assert!(!is_namespace_of("nvme1n1p1", "nvme1"));
        assert!(!is_namespace_of("nvme10n1", "nvme1"));
        assert!(!is_namespace_of("nvme1c1n1", "nvme1"));
        assert_eq!(unescape(r"/mnt/my\040disk"), "/mnt/my disk");
        assert_eq!(meminfo_total("MemTotal:       65536 kB\n"), 64 << 20);
        assert_eq!(meminfo_total("Node 1 MemTotal:       1024 kB\n"), 1 << 20);
    }
}
