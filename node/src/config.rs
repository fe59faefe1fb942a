//! Node configuration. Everything has an embedded default so `edgeblob` runs with no file: a data
//! file under `./data`, port 10000, the development account.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: String,
    pub port: u16,
    /// Storage accounts and their keys. Default: the well-known development account.
    pub accounts: Vec<Account>,
    /// Requests in flight per shard before answering 503 ServerBusy.
    pub max_requests_per_shard: usize,
    /// A second, TLS listener (for clients that insist on `https://<account>.blob.core.windows.net`).
    pub tls: Option<TlsConfig>,
    pub engine: EngineConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub port: u16,
    /// PEM certificate chain and private key.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The public key of the development account `devstoreaccount1` (Azurite's, documented by Azure).
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
pub const DEV_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub name: String,
    /// Base64 keys; two allow rotation.
    pub keys: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "0.0.0.0".into(),
            port: 10000,
            accounts: vec![Account { name: DEV_ACCOUNT.into(), keys: vec![DEV_KEY.into()] }],
            max_requests_per_shard: 1024,
            tls: None,
            engine: EngineConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// A data file (created and formatted when missing) or a raw block device.
    pub data_path: PathBuf,
    /// Size of a data file created at first start.
    pub data_size: u64,
    /// Shards; at format, defaults to the number of cores. Afterwards the device's layout
    /// decides, and a different explicit value is an error.
    pub shards: Option<usize>,
    /// Pin each shard's thread to a core.
    pub pin_threads: bool,
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
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            data_path: PathBuf::from("data/edgeblob.dat"),
            data_size: 8 << 30,
            shards: None,
            pin_threads: true,
            chunk_size: 1 << 20,
            compression: true,
            zstd_level: 1,
            dedup: true,
            io_depth: 8,
            registered_buffer_bytes: 2 << 20,
            expiry_sweep_secs: 3600,
            write_buffer_bytes: 256 << 20,
            read_cache_bytes: 512 << 20,
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

    pub fn validate(&self) -> Result<(), String> {
        if !(4096..=64 << 20).contains(&self.chunk_size) {
            return Err(format!("chunk_size {} must be between 4 KiB and 64 MiB", self.chunk_size));
        }
        if !(-7..=22).contains(&self.zstd_level) {
            return Err(format!("zstd_level {} must be between -7 and 22", self.zstd_level));
        }
        if self.io_depth == 0 {
            return Err("io_depth must be at least 1".into());
        }
        if self.shards == Some(0) {
            return Err("shards must be at least 1".into());
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

impl Config {
    pub fn from_toml(text: &str) -> Result<Config, String> {
        let c: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        c.engine.validate()?;
        for a in &c.accounts {
            if a.keys.is_empty() {
                return Err(format!("account {} has no key", a.name));
            }
            for k in &a.keys {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(k)
                    .map_err(|e| format!("account {}: a key is not base64: {e}", a.name))?;
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_file_and_files_override_them() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.port, 10000);
        assert_eq!(c.engine.data_path, PathBuf::from("data/edgeblob.dat"));
        let c = Config::from_toml("port = 9000\n[engine]\nchunk_size = 262144\ndedup = false\n").unwrap();
        assert_eq!((c.port, c.engine.chunk_size, c.engine.dedup), (9000, 262_144, false));
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(super::parse_size("4096"), Ok(4096));
        assert_eq!(super::parse_size("64K"), Ok(64 << 10));
        assert_eq!(super::parse_size("8G"), Ok(8 << 30));
        assert!(super::parse_size("1.5G").is_err());
        assert!(super::parse_size("99999999999T").is_err());
    }

    #[test]
    fn bad_values_and_unknown_keys_are_errors() {
        assert!(Config::from_toml("[engine]\nchunk_size = 100\n").is_err());
        assert!(Config::from_toml("[engine]\nchunk_sise = 4096\n").is_err());
    }
}

#[cfg(test)]
mod profile_tests {
    use super::Config;

    #[test]
    fn every_hardware_profile_is_a_valid_configuration() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../hw-profiles");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                Config::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 1, "no profiles found in {}", dir.display());
    }
}
