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
    let devices: Vec<String> = host
        .nvme
        .iter()
        .filter(|n| matches!(n.usage, Use::Data | Use::Edgeblob) && profile.names_device(n))
        .map(|n| n.name.clone())
        .collect();
    // The same number of shards on every device (blobs spread evenly over shards: a device with
    // more would fill first), as many as the cores allow, at least one a device. Cores past a
    // multiple of the devices are left to the rest of the host.
    let shards_per_device = (cpus.len() / devices.len().max(1)).max(1);
    let shards = shards_per_device * devices.len().max(1);
    cpus.truncate(shards);
    let io_depth =
        (profile.storage.device_queue_depth_limit / shards_per_device).clamp(1, profile.storage.max_inflight_per_shard);
    debug_assert!(io_depth * shards_per_device <= profile.storage.device_queue_depth_limit.max(shards_per_device));
    Plan {
        profile: profile.profile.id.clone(),
        cpus: cpulist::format(&cpus),
        shards,
        devices,
        shards_per_device,
        io_depth,
    }
}

impl Plan {
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print the plan: {e}\n"))
    }
}
