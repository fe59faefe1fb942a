//! How the node uses a host: shards on the cores the profile leaves to them, one per core, spread
//! over the data devices, and each shard's queue depth from the device's limit shared by the
//! shards on it. Deterministic: the same profile and host give the same plan.

use serde::Serialize;

use crate::cpulist;
use crate::detect::{Host, Use};
use crate::profile::Profile;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Plan {
    pub profile: String,
    /// The CPUs the shards run on, one shard each, as a CPU list.
    pub cpus: String,
    /// Each shard's CPU, in shard order: the shards of device `d` (`d * shards_per_device ..`,
    /// the order `node prepare` formats `devices` in) on cores of its NUMA node while that node
    /// has cores left, so that a shard's memory, its core and its device's interrupts meet.
    pub shard_cpus: Vec<u32>,
    pub shards: usize,
    /// The namespaces the node may use (blank or already edgeblob's), in detection order.
    pub devices: Vec<String>,
    pub shards_per_device: usize,
    /// Requests each shard keeps in flight on its device.
    pub io_depth: usize,
}

/// The plan for `host` under `profile`.
pub fn derive(profile: &Profile, host: &Host) -> Plan {
    let online = cpulist::parse(&host.online).unwrap_or_default();
    let reserved = cpulist::parse(&profile.cpu.reserved_cpus).unwrap_or_default();
    let mut cpus: Vec<u32> = online.iter().copied().filter(|c| !reserved.contains(c)).collect();
    if cpus.is_empty() {
        // A profile that reserves every core the host has (a profile for a bigger host):
        // serving on all of them beats not serving.
        cpus = online;
    }
    let used: Vec<&crate::detect::Nvme> =
        host.nvme.iter().filter(|n| matches!(n.usage, Use::Data | Use::Edgeblob) && profile.names_device(n)).collect();
    let devices: Vec<String> = used.iter().map(|n| n.name.clone()).collect();
    // The same number of shards on every device (blobs spread evenly over shards: a device with
    // more would fill first), as many as the cores allow, at least one a device. Cores past a
    // multiple of the devices are left to the rest of the host.
    let shards_per_device = (cpus.len() / devices.len().max(1)).max(1);
    let shards = shards_per_device * devices.len().max(1);
    let shard_cpus = numa_local(host, &used, &cpus, shards_per_device, shards);
    cpus = shard_cpus.clone();
    cpus.sort_unstable();
    let io_depth =
        (profile.storage.device_queue_depth_limit / shards_per_device).clamp(1, profile.storage.max_inflight_per_shard);
    debug_assert!(io_depth * shards_per_device <= profile.storage.device_queue_depth_limit.max(shards_per_device));
    Plan {
        profile: profile.profile.id.clone(),
        cpus: cpulist::format(&cpus),
        shard_cpus,
        shards,
        devices,
        shards_per_device,
        io_depth,
    }
}

/// `shards` cores from `cpus`, `per` for each device in turn, from its NUMA node's first free
/// cores, then (a node short of cores, or a device of no known node) from any free ones. Cores
/// may repeat only when there are more shards than cores (at least one shard a device).
fn numa_local(host: &Host, devices: &[&crate::detect::Nvme], cpus: &[u32], per: usize, shards: usize) -> Vec<u32> {
    let nodes: Vec<(u32, Vec<u32>)> =
        host.numa.iter().map(|n| (n.id, cpulist::parse(&n.cpus).unwrap_or_default())).collect();
    let node_of = |c: u32| nodes.iter().find(|(_, cpus)| cpus.contains(&c)).map(|(id, _)| *id);
    let mut free: Vec<(u32, Option<u32>)> = cpus.iter().map(|&c| (c, node_of(c))).collect();
    let mut out = Vec::with_capacity(shards);
    for i in 0..shards {
        let want = devices.get(i / per.max(1)).and_then(|d| u32::try_from(d.numa).ok());
        let at = free.iter().position(|(_, n)| want.is_some() && *n == want).or((!free.is_empty()).then_some(0));
        match at {
            Some(at) => out.push(free.remove(at).0),
            // More shards than cores: they share, in order.
            None => out.push(cpus.get(i % cpus.len().max(1)).copied().unwrap_or(0)),
        }
    }
    out
}

impl Plan {
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print the plan: {e}\n"))
    }
}
