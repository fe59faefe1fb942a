//! `[[links]]`: a local container linked to a container of a remote Blob account (the "lake"),
//! read through (docs/architecture.md, "Linked containers").

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::DEV_ACCOUNT;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// The local account and container (made at the first request that needs it).
    #[serde(default = "dev_account")]
    pub account: String,
    pub container: String,
    /// The lake's container, with an optional prefix under it: any Blob endpoint
    /// (`https://<account>.blob.core.windows.net/<container>[/<prefix>]`, Azurite's path-style
    /// URL, another edgeblob). A local name `n` is the lake's `<prefix>/n`.
    pub url: String,
    /// The lake account's name and key (base64), for SharedKey; or `sas` (read and list); or
    /// the host's managed identity (Storage Blob Data Reader on the container; https only).
    pub remote_account: Option<String>,
    pub remote_key: Option<String>,
    pub sas: Option<String>,
    #[serde(default)]
    pub managed_identity: bool,
    pub identity_endpoint: Option<String>,
    pub identity_client_id: Option<String>,
    /// A PEM file of certificate authorities trusted for the lake besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Bytes per second the link may take from the lake, all its calls together.
    pub bytes_per_sec: Option<u64>,
    /// When a blob already cached is checked against the lake's ETag before it is served:
    /// `"never"`, `"always"` (every read), or a number of seconds since it was last checked.
    #[serde(default)]
    pub revalidate: Revalidate,
    /// Seconds a read waits for the lake, retries included, before it is answered 503 (a
    /// blob not cached) or served as cached without a check.
    #[serde(default = "default_retry_budget")]
    pub retry_budget_secs: u64,
    /// Reads and listings go through to the lake (blobs not here are fetched; the listing is
    /// the lake's merged with what is here).
    #[serde(default = "yes")]
    pub read_through: bool,
    /// Every blob committed here is uploaded to the lake under the same name, as a plain block
    /// blob with its content headers, metadata, MD5 and block ids, `upload_after_secs` after
    /// its commit; a lake blob changed by someone else meanwhile is not overwritten (a
    /// conflict, reported).
    #[serde(default)]
    pub write_back: bool,
    #[serde(default = "default_upload_after")]
    pub upload_after_secs: u64,
    /// Deletes the blob here once it is uploaded (unless written again meanwhile).
    #[serde(default)]
    pub delete_after_upload: bool,
    /// Which blobs waiting for upload go first.
    #[serde(default)]
    pub upload_order: UploadOrder,
    /// Blobs uploaded at once (a checkpoint of many small files is bound by the lake's round
    /// trips, not its bandwidth); the blocks they hold in memory are bounded apart.
    #[serde(default = "default_uploads")]
    pub uploads_at_once: usize,
    /// When the node's data areas are fuller than this fraction, blobs fetched from the lake (or
    /// uploaded to it) are deleted here, least recently read first, down to `evict_below`: they
    /// can always be fetched again. Blobs not in the lake are never evicted.
    #[serde(default = "default_evict_above")]
    pub evict_above: f64,
    #[serde(default = "default_evict_below")]
    pub evict_below: f64,
    /// A lake blob larger than this is fetched block by block under the lake's block ids (Get
    /// Block List here is the lake's); at most Put Blob's limit (5,000 MiB), past which every
    /// blob is fetched so.
    #[serde(default = "default_by_block")]
    pub fetch_by_block_above: u64,
    /// A range read or Get Blob Properties of a blob not here yet (answered straight from the
    /// lake) fetches the whole behind it, while a fetch slot is free, for the reads after it;
    /// `false` keeps only what is read whole here (blobs read by scattered ranges then always
    /// come from the lake).
    #[serde(default = "yes")]
    pub fetch_behind_ranges: bool,
    /// Blobs fetched from the lake at once, node-wide (each holds up to two 4 MiB ranges in
    /// memory while it is stored).
    #[serde(default = "default_fetches")]
    pub max_fetches: usize,
}

fn dev_account() -> String {
    DEV_ACCOUNT.to_owned()
}

fn yes() -> bool {
    true
}

fn default_upload_after() -> u64 {
    10
}

/// Which of the blobs waiting for upload goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadOrder {
    /// The longest waiting (the lake's copy lags least in time).
    #[default]
    Oldest,
    /// The newest (the latest checkpoint first).
    Newest,
}

fn default_by_block() -> u64 {
    edgeblob_meta::model::limits::MAX_PUT_BLOB_SIZE
}

fn default_evict_above() -> f64 {
    0.9
}

fn default_evict_below() -> f64 {
    0.8
}

fn default_retry_budget() -> u64 {
    30
}

fn default_fetches() -> usize {
    16
}

fn default_uploads() -> usize {
    4
}

/// When a cached lake blob is checked against the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Revalidate {
    /// Served from flash as fetched until deleted here (a lake that does not change).
    Never,
    /// Checked after this many seconds since the last check.
    After(u64),
    /// Checked on every read.
    #[default]
    Always,
}

impl<'de> Deserialize<'de> for Revalidate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            Secs(u64),
        }
        match Raw::deserialize(d)? {
            Raw::Word(w) if w == "never" => Ok(Revalidate::Never),
            Raw::Word(w) if w == "always" => Ok(Revalidate::Always),
            Raw::Secs(0) => Ok(Revalidate::Always),
            Raw::Secs(n) => Ok(Revalidate::After(n)),
            Raw::Word(w) => {
                Err(serde::de::Error::custom(format!("revalidate {w:?}: \"never\", \"always\" or seconds")))
            }
        }
    }
}

impl LinkConfig {
    /// A read-through link of the development account's `container` to `url`, every other
    /// setting its default and no credential yet.
    pub fn new(container: &str, url: &str) -> LinkConfig {
        LinkConfig {
            account: dev_account(),
            container: container.to_owned(),
            url: url.to_owned(),
            remote_account: None,
            remote_key: None,
            sas: None,
            managed_identity: false,
            identity_endpoint: None,
            identity_client_id: None,
            ca_file: None,
            bytes_per_sec: None,
            revalidate: Revalidate::default(),
            retry_budget_secs: default_retry_budget(),
            read_through: true,
            write_back: false,
            upload_after_secs: default_upload_after(),
            delete_after_upload: false,
            upload_order: UploadOrder::default(),
            uploads_at_once: default_uploads(),
            evict_above: default_evict_above(),
            evict_below: default_evict_below(),
            fetch_by_block_above: default_by_block(),
            fetch_behind_ranges: true,
            max_fetches: default_fetches(),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let what = format!("links ({}/{})", self.account, self.container);
        if !edgeblob_proto::addr::valid_account_name(&self.account) {
            return Err(format!("{what}: not an account name"));
        }
        if !edgeblob_proto::addr::valid_container_name(&self.container) {
            return Err(format!("{what}: not a container name"));
        }
        edgeblob_remote::Endpoint::parse(&self.url).map_err(|e| format!("{what}: url: {e}"))?;
        self.credential()?;
        if !self.read_through && !self.write_back {
            return Err(format!("{what}: neither read_through nor write_back"));
        }
        if !(0.0..=1.0).contains(&self.evict_below)
            || !(0.0..=1.0).contains(&self.evict_above)
            || self.evict_below > self.evict_above
        {
            return Err(format!("{what}: evict_below and evict_above are fractions, the first not above the second"));
        }
        if self.max_fetches == 0 {
            return Err(format!("{what}: max_fetches must be at least 1"));
        }
        if !(1..=64).contains(&self.uploads_at_once) {
            return Err(format!("{what}: uploads_at_once must be 1 to 64"));
        }
        Ok(())
    }

    pub fn credential(&self) -> Result<edgeblob_remote::Credential, String> {
        edgeblob_remote::Credential::from_settings(
            &format!("links ({}/{})", self.account, self.container),
            self.remote_account.as_deref(),
            self.remote_key.as_deref(),
            self.sas.as_deref(),
            self.managed_identity,
            self.identity_endpoint.as_deref(),
            self.identity_client_id.clone(),
        )
    }
}
