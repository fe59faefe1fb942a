//! Node configuration. Everything has an embedded default so `edgeblob` runs with no file: a data
//! file under `./data`, port 10000, the development account.

use std::path::PathBuf;

use serde::Deserialize;

pub use edgeblob_engine::config::{parse_size, EngineConfig};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Unset: loopback while an account uses the public development key
    /// (anyone could use the node otherwise), every interface when none does.
    pub listen: Option<String>,
    pub port: u16,
    /// Storage accounts and their keys. Default: the well-known development account.
    pub accounts: Vec<Account>,
    /// Requests in flight per shard before answering 503 ServerBusy.
    pub max_requests_per_shard: usize,
    /// Connections a shard holds open; past it a new connection is closed at once. Default:
    /// the open-file limit (less a reserve for data files and copies) over the shards.
    pub max_connections_per_shard: Option<usize>,
    /// Seconds a client has for a request's head (from the first byte, or from the end of the
    /// previous answer on a kept-alive connection) and for a TLS handshake; past them the
    /// connection is closed. An idle keep-alive connection is closed after the same time.
    pub header_timeout_secs: u64,
    /// Seconds a body may go without progress: a request body that sends nothing for this
    /// long, or an answer the client reads nothing of, ends its connection (and frees its
    /// request slot).
    pub body_timeout_secs: u64,
    /// Internal addresses (CIDR blocks or single addresses) a copy source may be fetched from:
    /// loopback, private, link-local and the other special ranges are refused otherwise. Default:
    /// loopback while the node itself listens on loopback only, else none. Public addresses are
    /// always allowed.
    pub copy_source_allow: Option<Vec<String>>,
    /// Seconds a copy waits for its source's name, connection and first answer.
    pub copy_source_timeout_secs: u64,
    /// A second, TLS listener (for clients that insist on `https://<account>.blob.core.windows.net`).
    pub tls: Option<TlsConfig>,
    /// The admin listener: metrics, health and the tier's operations while the node serves.
    pub admin: AdminConfig,
    /// Entra ID tokens and role bindings.
    pub auth: crate::auth_config::AuthConfig,
    pub engine: EngineConfig,
    /// Local containers linked to a remote container (read-through of a data lake).
    pub links: Vec<crate::link_config::LinkConfig>,
    /// The disk ledger `edgeblob-admin node prepare` keeps on the OS disk; when it says the
    /// node's disks were erased under it (an Azure redeploy), the node reports itself rebuilding
    /// (not ready, no writes) instead of serving as a new empty node.
    pub ledger: Option<PathBuf>,
    /// `text` (stderr, for people) or `json` (stdout, one object a line, each request's events
    /// carrying its request id: for journald and log shippers).
    pub log_format: LogFormat,
    /// Azure's scheduled events: a notice that the VM's local disks will be erased drains the
    /// node.
    pub azure: AzureConfig,
    /// At start: `warn` runs without what the host lacks (io_uring, locked memory, open
    /// files, O_DIRECT), slower, and says so; `strict` refuses to start instead.
    pub preflight: Preflight,
    /// A hardware profile (`hw-profiles/`): `auto` picks the shipped one that fits the host, or
    /// a profile file. Its plan sets the shards, their cores and the device queue depth that
    /// `[engine]` leaves unset.
    pub profile: Option<String>,
    /// Whether `[engine]` sets `queue_depth` itself (a profile then leaves it).
    #[serde(skip)]
    pub queue_depth_set: bool,
    /// The file this configuration was read from (not a key of it): watched for changes to
    /// `[auth]`.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AzureConfig {
    /// `auto` (watch when the host is an Azure VM: DMI vendor and the Azure agent), `on`, `off`.
    pub scheduled_events: Switch,
    /// The instance metadata service (plain HTTP, as Azure serves it).
    pub metadata_endpoint: String,
    /// Seconds between polls: Azure's shortest notice (Preempt) is 30 s.
    pub poll_secs: u64,
}

impl Default for AzureConfig {
    fn default() -> Self {
        AzureConfig { scheduled_events: Switch::Auto, metadata_endpoint: "http://169.254.169.254".into(), poll_secs: 1 }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    #[default]
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Preflight {
    #[default]
    Warn,
    Strict,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    pub enabled: bool,
    /// `host:port`; [`DEFAULT_ADMIN`] when unset, apart from the Blob port so that no container
    /// name (`health`, `metrics`) is taken from clients. Unset, a port already taken (a second
    /// node on one host, a node_exporter) leaves the node without an admin listener, with a
    /// warning; set, it stops the start.
    pub listen: Option<String>,
    /// A bearer token the operations (POST) require. Without one they are taken from loopback
    /// peers only; a listener on another address needs one.
    pub token: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { enabled: true, listen: None, token: None }
    }
}

/// The admin listener's address when none is configured.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9100";

impl AdminConfig {
    pub fn address(&self) -> &str {
        self.listen.as_deref().unwrap_or(DEFAULT_ADMIN)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        let addr: std::net::SocketAddr =
            self.address().parse().map_err(|e| format!("admin listen {:?}: {e}", self.address()))?;
        if let Some(t) = &self.token {
            if t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err("admin token: at least 16 printable characters".into());
            }
        } else if !addr.ip().is_loopback() {
            return Err(format!("admin listen {addr} is not loopback: set admin.token for its operations"));
        }
        Ok(())
    }
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
            listen: None,
            port: 10000,
            accounts: vec![Account { name: DEV_ACCOUNT.into(), keys: vec![DEV_KEY.into()] }],
            max_requests_per_shard: 1024,
            max_connections_per_shard: None,
            header_timeout_secs: 60,
            body_timeout_secs: 60,
            copy_source_allow: None,
            copy_source_timeout_secs: 30,
            tls: None,
            admin: AdminConfig::default(),
            auth: Default::default(),
            engine: EngineConfig::default(),
            links: Vec::new(),
            ledger: None,
            log_format: LogFormat::Text,
            azure: AzureConfig::default(),
            preflight: Preflight::Warn,
            profile: None,
            queue_depth_set: false,
            source: None,
        }
    }
}

impl Config {
    /// Whether an account uses the public development key.
    pub fn public_key_in_use(&self) -> bool {
        self.accounts.iter().any(|a| a.keys.iter().any(|k| k == DEV_KEY))
    }

    /// The address to listen on: as configured, else loopback while the public key is in use.
    pub fn listen_address(&self) -> &str {
        match &self.listen {
            Some(l) => l,
            None if self.public_key_in_use() => "127.0.0.1",
            None => "0.0.0.0",
        }
    }

    /// Whether the node listens on loopback only.
    pub fn listens_on_loopback(&self) -> bool {
        self.listen_address().parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// Where copies may fetch from.
    pub fn egress(&self) -> Result<crate::http::Egress, String> {
        let timeout = std::time::Duration::from_secs(self.copy_source_timeout_secs.max(1));
        crate::http::Egress::new(self.copy_source_allow.as_deref(), self.listens_on_loopback(), timeout)
    }

    pub fn from_toml(text: &str) -> Result<Config, String> {
        let mut c: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        let raw: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        c.queue_depth_set = raw.get("engine").and_then(|e| e.get("queue_depth")).is_some();
        c.engine.validate()?;
        c.egress()?;
        c.admin.validate()?;
        c.auth.validate()?;
        for l in &c.links {
            l.validate()?;
        }
        let mut linked: Vec<(&str, &str)> =
            c.links.iter().map(|l| (l.account.as_str(), l.container.as_str())).collect();
        linked.sort_unstable();
        if let Some(w) = linked.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("links: {}/{} is linked twice", w[0].0, w[0].1));
        }
        if !c.azure.metadata_endpoint.starts_with("http://") {
            return Err(format!("azure.metadata_endpoint {:?}: http://host[:port]", c.azure.metadata_endpoint));
        }
        for a in &c.accounts {
            if !edgeblob_proto::addr::valid_account_name(&a.name) {
                return Err(format!("account name {:?}: letters and digits only, at most 24", a.name));
            }
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
    fn the_public_key_listens_on_loopback_unless_told_otherwise() {
        assert_eq!(Config::default().listen_address(), "127.0.0.1");
        let own_key = "[[accounts]]\nname = \"a\"\nkeys = [\"a2V5\"]\n";
        assert_eq!(Config::from_toml(own_key).unwrap().listen_address(), "0.0.0.0");
        assert_eq!(Config::from_toml("listen = \"0.0.0.0\"\n").unwrap().listen_address(), "0.0.0.0");
    }

    #[test]
    fn the_admin_listener_is_loopback_unless_a_token_guards_it() {
        let c = Config::from_toml("").unwrap();
        assert_eq!((c.admin.enabled, c.admin.address()), (true, "127.0.0.1:9100"));
        assert!(Config::from_toml("[admin]\nlisten = \"0.0.0.0:9100\"\n").is_err());
        assert!(Config::from_toml("[admin]\nlisten = \"0.0.0.0:9100\"\ntoken = \"short\"\n").is_err());
        let open = "[admin]\nlisten = \"0.0.0.0:9100\"\ntoken = \"0123456789abcdef\"\n";
        assert_eq!(Config::from_toml(open).unwrap().admin.token.as_deref(), Some("0123456789abcdef"));
        assert!(Config::from_toml("[admin]\nlisten = \"nowhere\"\n").is_err());
        assert!(!Config::from_toml("[admin]\nenabled = false\nlisten = \"x\"\n").unwrap().admin.enabled);
    }

    #[test]
    fn bad_values_and_unknown_keys_are_errors() {
        assert!(Config::from_toml("[engine]\nchunk_size = 100\n").is_err());
        assert!(Config::from_toml("[engine]\nchunk_sise = 4096\n").is_err());
    }

    #[test]
    fn a_tier_is_a_table_of_the_engine_and_checked_whole() {
        let tier = "[engine.tier]\nurl = \"https://lake.blob.core.windows.net/tier/site-a\"\nsas = \"sv=2025-01-05&sig=x\"\nkey_file = \"/etc/edgeblob/cmk\"\n";
        let c = Config::from_toml(tier).unwrap();
        let t = c.engine.tier.expect("a tier");
        assert_eq!((t.pack_bytes, t.upload_after_secs), (64 << 20, 10), "defaults for the rest");
        assert!(Config::from_toml(&format!("{tier}account = \"a\"\n")).is_err(), "a SAS and an account at once");
        assert!(Config::from_toml(&format!("{tier}pack_bytes = 4096\n")).is_err(), "a pack too small");
        assert!(Config::from_toml("[engine.tier]\nsas = \"s\"\nkey_file = \"k\"\n").is_err(), "no url");
        assert!(Config::from_toml(&format!("{tier}pack_size = 1\n")).is_err(), "an unknown key");
    }
}

#[cfg(test)]
mod link_tests {
    use super::Config;
    use crate::link_config::Revalidate;

    const LINK: &str =
        "[[links]]\ncontainer = \"data\"\nurl = \"https://lake.blob.core.windows.net/data/x\"\nsas = \"sp=rl&sig=s\"\n";

    #[test]
    fn a_link_needs_one_credential_and_says_when_to_revalidate() {
        let c = Config::from_toml(LINK).unwrap();
        let l = &c.links[0];
        assert_eq!((l.account.as_str(), l.revalidate, l.max_fetches), ("devstoreaccount1", Revalidate::Always, 16));
        for (value, want) in [
            ("\"never\"", Revalidate::Never),
            ("\"always\"", Revalidate::Always),
            ("0", Revalidate::Always),
            ("300", Revalidate::After(300)),
        ] {
            let c = Config::from_toml(&format!("{LINK}revalidate = {value}\n")).unwrap();
            assert_eq!(c.links[0].revalidate, want, "revalidate = {value}");
        }
        assert!(Config::from_toml(&format!("{LINK}revalidate = \"sometimes\"\n")).is_err());
        assert!(Config::from_toml(&format!("{LINK}remote_account = \"a\"\n")).is_err(), "a SAS and an account at once");
        assert!(Config::from_toml(&LINK.replace("sas", "nothing")).is_err(), "no credential");
        assert!(Config::from_toml(&LINK.replace("https://", "ftp://")).is_err(), "not a Blob endpoint");
        assert!(Config::from_toml(&LINK.replace("\"data\"", "\"Data!\"")).is_err(), "not a container name");
        assert!(Config::from_toml(&format!("{LINK}{LINK}")).is_err(), "one container linked twice");
    }
}

#[cfg(test)]
mod profile_tests {
    use super::{Config, LogFormat};

    #[test]
    fn every_example_is_a_valid_configuration() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                Config::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 1, "no examples found in {}", dir.display());
        let packaged = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/edgeblob.toml");
        let c = Config::from_toml(&std::fs::read_to_string(&packaged).unwrap()).unwrap();
        assert_eq!((c.profile.as_deref(), c.log_format), (Some("auto"), LogFormat::Json), "the package's defaults");
    }
}
