//! The engine's settings: where its data lives and how it cuts, reduces and caches it. The
//! server reads them from the `[engine]` table of its configuration.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// A data file (created and formatted when missing) or a raw block device.
    pub data_path: PathBuf,
    /// A node on several devices: their paths (data files or raw block devices), in place of
    /// `data_path`, in any order (each device's superblock says its place in the node). Shards
    /// are spread evenly over them; each blob's chunks stay on its shard's device.
    pub devices: Vec<PathBuf>,
    /// Size of each data file created at first start.
    pub data_size: u64,
    /// Shards, in all; at format, defaults to the number of cores (rounded down to a multiple
    /// of the devices, at least one a device). Afterwards the devices' layout decides, and a
    /// different explicit value is an error.
    pub shards: Option<usize>,
    /// Pin each shard's thread to a core.
    pub pin_threads: bool,
    /// The cores shards are pinned to, in shard order (a hardware profile's plan leaves out
    /// the cores it keeps for interrupts); default: every core the process may run on.
    pub cpus: Option<Vec<usize>>,
    /// On-disk bytes per chunk, the unit of hashing, compression, dedup and checksums. Each
    /// 4096-byte page holds 4092 bytes of data and a checksum, so a chunk carries
    /// `chunk_size / 4096 * 4092` bytes of a blob.
    pub chunk_size: usize,
    /// zstd compression of chunks that a probe finds compressible.
    pub compression: bool,
    pub zstd_level: i32,
    /// Store identical chunks once.
    pub dedup: bool,
    /// Chunks of one request written or read concurrently.
    pub io_depth: usize,
    /// Device operations a shard keeps in the kernel at once (its io_uring's depth); the rest
    /// wait in order. A hardware profile derives it from the device's limit shared by the
    /// shards on it (Azure's local NVMe: 1024 a queue pair).
    pub queue_depth: usize,
    /// Bytes per shard of io_uring registered buffers (capped by RLIMIT_MEMLOCK).
    pub registered_buffer_bytes: usize,
    /// How often staged blocks are checked for expiry (seconds).
    pub expiry_sweep_secs: u64,
    /// Bytes of request data a shard holds in flight (chunks being hashed, compressed and
    /// written); uploads past it wait for room, so memory stays bounded whatever clients send.
    pub write_buffer_bytes: usize,
    /// Bytes of decoded chunks kept in memory for re-reads (small objects and compressed
    /// chunks), split over the shards; 0 turns the cache off.
    pub read_cache_bytes: usize,
    /// Format version of a data file created at first start: 2 (metadata in an on-flash index)
    /// unless a test or an upgrade check needs a version 1 file.
    pub format_version: u32,
    /// Bytes of metadata entries each shard keeps in memory beyond those not yet flushed (v2).
    pub meta_cache_bytes: usize,
    /// Bytes of the index's page cache, per shard (v2).
    pub index_cache_bytes: usize,
    /// Bytes of metadata records after which a shard flushes its changes to its index (v2).
    pub meta_flush_bytes: usize,
    /// Bytes of chunk lists past which a blob's staged blocks keep only their ids, places and
    /// sizes in memory once flushed (v2; `IndexConfig::apart_bytes`).
    pub meta_apart_bytes: usize,
    /// The Azure tier (format v2 only): every chunk is uploaded to it soon after it is written.
    pub tier: Option<TierConfig>,
}

/// Where the tier is and how the node writes to it (docs/architecture.md, "The tier").
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TierConfig {
    /// The remote container, with an optional prefix under it: any Blob endpoint
    /// (`https://<account>.blob.core.windows.net/<container>[/<prefix>]`, Azurite's path-style
    /// URL, another edgeblob). The node writes under `<prefix>/<node uuid>/`.
    pub url: String,
    /// The remote account's name and key (base64), for SharedKey; or `sas`.
    pub account: Option<String>,
    pub account_key: Option<String>,
    /// A SAS token (without the leading `?`) granting create, write, read, list and delete.
    pub sas: Option<String>,
    /// Instead of a key or a SAS: tokens of the host's managed identity (`identity_endpoint`,
    /// `identity_client_id`), which needs Storage Blob Data Contributor on the container; over
    /// https only.
    pub managed_identity: bool,
    /// A PEM file of certificate authorities trusted for the tier besides the system's (a
    /// private CA in front of the lake).
    pub ca_file: Option<std::path::PathBuf>,
    /// The customer's key: a file of 32 bytes, raw or base64. It wraps the node key, which
    /// wraps each pack's data key; without it nothing in the tier can be read.
    pub key_file: std::path::PathBuf,
    /// Instead of `key_file`: a key in Azure Key Vault that wraps the node key
    /// (`https://<vault>.vault.azure.net/keys/<name>[/<version>]`; without a version, the
    /// newest), reached with the host's managed identity. Disabling the key, or the identity's
    /// access to it, makes the tier unreadable within `key_recheck_secs`.
    pub key_vault_key: Option<String>,
    /// The managed identity endpoint (default: `IDENTITY_ENDPOINT` where the host sets it, else
    /// IMDS), and a user-assigned identity's client id (default: the system-assigned one).
    pub identity_endpoint: Option<String>,
    pub identity_client_id: Option<String>,
    /// The audience of Key Vault tokens (Azure's public cloud: `https://vault.azure.net`).
    pub key_vault_resource: String,
    /// Seconds between checks that the Key Vault key still unwraps the node key: a key found
    /// revoked stops every read and write of the tier (Azure Storage checks its customer keys
    /// within an hour too).
    pub key_recheck_secs: u64,
    /// Bytes at which a pack is cut and uploaded (64 MiB: few requests, and ranges read inside).
    pub pack_bytes: usize,
    /// Seconds a pack not yet full waits for more chunks before it is uploaded as it is: with the
    /// upload's own time, what a disaster that takes the node may lose of acknowledged data.
    pub upload_after_secs: u64,
    /// Bytes per second the tier may send and receive, all calls together (none: no cap).
    pub bytes_per_sec: Option<u64>,
    /// Releasing local copies of chunks in the tier starts when a shard's data area is this
    /// full (a fraction), and stops once it is below `release_below`.
    pub release_above: f64,
    pub release_below: f64,
    /// Seconds since a chunk was last read or written (to a minute) before the watermarks may
    /// release it (0: at once); the coldest go first either way. A start forgets what was
    /// read before it: what was not touched since counts as coldest.
    pub release_idle_secs: u64,
    /// Blobs whose local copies are never released (they are still uploaded, and restored
    /// from the tier like any other): a whole container (its opt-out), or the blobs under a
    /// prefix of one (pins). Applied at start.
    pub keep: Vec<KeepRule>,
    /// The unit of the last-access clock (a minute; shorter only in tests). Not a
    /// configuration key.
    #[serde(skip)]
    pub access_tick: std::time::Duration,
    /// Seconds between garbage collections of the tier: packs no chunk is in are deleted (once
    /// dead for `gc_grace_secs`, so reads that found them finish), packs whose garbage is past
    /// `repack_above` (a fraction of their bytes) have their live chunks packed anew, and packs
    /// a crash left unrecorded are deleted.
    pub gc_interval_secs: u64,
    pub gc_grace_secs: u64,
    pub repack_above: f64,
    /// Seconds between epochs: the node's metadata written to the tier with a manifest that
    /// makes it a restore point (0: only when asked). With `upload_after_secs`, what bounds
    /// what a node lost whole can be restored to.
    pub epoch_interval_secs: u64,
    /// Manifests (restore points) kept: the newest this many; the collection never deletes a
    /// pack one of them names.
    pub manifests_kept: usize,
    /// Reads and checks only: no upload, release or collection (the admin tool's `tier verify`,
    /// which must not change the tier it checks). Not a configuration key.
    #[serde(skip)]
    pub passive: bool,
    /// Seconds one remote call may take with its retries (busy answers, cut connections) before
    /// it fails; the upload is then tried again later from the chunks still local.
    pub retry_budget_secs: u64,
}

/// Blobs the tier keeps on flash: every blob of `account`/`container` whose name starts with
/// `prefix` (empty: the whole container).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeepRule {
    pub account: String,
    pub container: String,
    #[serde(default)]
    pub prefix: String,
}

impl KeepRule {
    pub fn covers(&self, account: &str, container: &str, name: &str) -> bool {
        self.account == account && self.container == container && name.starts_with(&self.prefix)
    }
}

impl Default for TierConfig {
    fn default() -> Self {
        TierConfig {
            url: String::new(),
            account: None,
            account_key: None,
            sas: None,
            managed_identity: false,
            ca_file: None,
            key_file: std::path::PathBuf::new(),
            key_vault_key: None,
            identity_endpoint: None,
            identity_client_id: None,
            key_vault_resource: "https://vault.azure.net".into(),
            key_recheck_secs: 3600,
            pack_bytes: 64 << 20,
            upload_after_secs: 10,
            bytes_per_sec: None,
            retry_budget_secs: 300,
            release_above: 0.9,
            release_below: 0.8,
            release_idle_secs: 0,
            keep: Vec::new(),
            access_tick: std::time::Duration::from_secs(60),
            gc_interval_secs: 3600,
            gc_grace_secs: 600,
            repack_above: 0.13,
            epoch_interval_secs: 600,
            manifests_kept: 8,
            passive: false,
        }
    }
}

impl TierConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.url.is_empty() {
            return Err("tier.url is required".into());
        }
        match (self.key_file.as_os_str().is_empty(), &self.key_vault_key) {
            (true, None) => {
                return Err(
                    "tier: key_file or key_vault_key is required: the customer key that guards everything tiered"
                        .into(),
                )
            }
            (false, Some(_)) => return Err("tier: key_file and key_vault_key both set: give one".into()),
            (true, Some(url)) => {
                edgeblob_remote::keyvault::key_base(url).map_err(|e| format!("tier.key_vault_key: {e}"))?;
            }
            (false, None) => {}
        }
        match (&self.account, &self.account_key, &self.sas, self.managed_identity) {
            (Some(_), Some(_), None, false) | (None, None, Some(_), false) | (None, None, None, true) => {}
            _ => return Err("tier: give either account and account_key, or sas, or managed_identity = true".into()),
        }
        if !(0.0..=1.0).contains(&self.release_below)
            || !(0.0..=1.0).contains(&self.release_above)
            || self.release_below > self.release_above
        {
            return Err("tier: release_below and release_above are fractions, the first not above the second".into());
        }
        if let Some(r) = self.keep.iter().find(|r| r.account.is_empty() || r.container.is_empty()) {
            return Err(format!("tier.keep: {r:?} needs an account and a container"));
        }
        if !(1 << 20..=1 << 30).contains(&self.pack_bytes) {
            return Err(format!("tier.pack_bytes {} must be between 1 MiB and 1 GiB", self.pack_bytes));
        }
        Ok(())
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            data_path: PathBuf::from("data/edgeblob.dat"),
            devices: Vec::new(),
            data_size: 8 << 30,
            shards: None,
            pin_threads: true,
            cpus: None,
            chunk_size: 1 << 20,
            compression: true,
            zstd_level: 1,
            dedup: true,
            io_depth: 8,
            queue_depth: 512,
            registered_buffer_bytes: 2 << 20,
            expiry_sweep_secs: 3600,
            write_buffer_bytes: 256 << 20,
            read_cache_bytes: 512 << 20,
            format_version: edgeblob_io::superblock::FORMAT_VERSION,
            meta_cache_bytes: 64 << 20,
            index_cache_bytes: 64 << 20,
            meta_flush_bytes: 8 << 20,
            meta_apart_bytes: edgeblob_meta::shard_store::IndexConfig::default().apart_bytes,
            tier: None,
        }
    }
}

impl EngineConfig {
    /// Data reduction (compression and dedup) on or off together.
    pub fn with_reduction(mut self, on: bool) -> Self {
        self.compression = on;
        self.dedup = on;
        self
    }

    /// The node's devices: `devices`, or `data_path` alone.
    pub fn device_paths(&self) -> Vec<PathBuf> {
        if self.devices.is_empty() {
            vec![self.data_path.clone()]
        } else {
            self.devices.clone()
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let paths = self.device_paths();
        if paths.len() > edgeblob_io::superblock::MAX_DEVICES as usize {
            return Err(format!(
                "{} devices: a node has at most {}",
                paths.len(),
                edgeblob_io::superblock::MAX_DEVICES
            ));
        }
        if let Some(p) = paths.iter().enumerate().find_map(|(i, p)| paths[..i].contains(p).then_some(p)) {
            return Err(format!("devices: {} is listed twice", p.display()));
        }
        if !(4096..=64 << 20).contains(&self.chunk_size) {
            return Err(format!("chunk_size {} must be between 4 KiB and 64 MiB", self.chunk_size));
        }
        if !(-7..=22).contains(&self.zstd_level) {
            return Err(format!("zstd_level {} must be between -7 and 22", self.zstd_level));
        }
        if self.io_depth == 0 {
            return Err("io_depth must be at least 1".into());
        }
        if !(1..=32768).contains(&self.queue_depth) {
            return Err(format!("queue_depth {} must be between 1 and 32768", self.queue_depth));
        }
        if self.cpus.as_ref().is_some_and(|c| c.is_empty()) {
            return Err("cpus must name at least one core".into());
        }
        if self.shards == Some(0) {
            return Err("shards must be at least 1".into());
        }
        if !edgeblob_io::superblock::READABLE_VERSIONS.contains(&self.format_version) {
            return Err(format!("format_version {} is not one this build writes (1 or 2)", self.format_version));
        }
        if let Some(t) = &self.tier {
            t.validate()?;
        }
        Ok(())
    }
}

/// A byte count with an optional K, M, G or T suffix (powers of 1024), as the tools take it.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, shift) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 30),
        Some('T' | 't') => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    let n: u64 = num.parse().map_err(|e| format!("size {s:?}: {e}"))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("size {s:?} is too large"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(super::parse_size("4096"), Ok(4096));
        assert_eq!(super::parse_size("64K"), Ok(64 << 10));
        assert_eq!(super::parse_size("8G"), Ok(8 << 30));
        assert!(super::parse_size("1.5G").is_err());
        assert!(super::parse_size("99999999999T").is_err());
    }
}
