//! Entra ID for the Blob API: the tenant's signing keys and the role bindings, shared by every
//! shard, and the thread that keeps them current. A request never waits on the network: it is
//! checked against the keys held now; a token naming a key not held asks the thread for a fetch
//! (at most one a minute, `jwks_min_refetch_secs`) and is refused meanwhile. The configuration file is watched too, so
//! bindings change without a restart.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edgeblob_proto::bearer::{self, KeySet, Policy, Principal, TokenError};
use edgeblob_proto::rbac::{self, Action, Binding};

use crate::config::Config;

/// How often the thread looks at the files it watches.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Where the signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeySource {
    File(PathBuf),
    /// `every`: the least seconds between two fetches (`jwks_min_refetch_secs`).
    Url {
        url: String,
        cache: Option<PathBuf>,
        refresh: u64,
        every: u64,
        ca: Option<PathBuf>,
    },
}

/// What the configuration says, swapped whole on a reload.
#[derive(Debug)]
struct Settings {
    policy: Policy,
    bindings: Vec<Binding>,
    source: KeySource,
}

pub struct Entra {
    settings: RwLock<Arc<Settings>>,
    keys: RwLock<Arc<KeySet>>,
    /// When the keys held were obtained (seconds since the epoch; 0: none yet).
    keys_at: AtomicU64,
    /// A token named a key not held: fetch when allowed.
    want_fetch: AtomicBool,
    pub fetches: AtomicU64,
    pub fetch_errors: AtomicU64,
    pub reloads: AtomicU64,
    /// Bumped whenever the keys or the settings change: what was validated under the ones
    /// before is validated again (see `http/tokens.rs`).
    generation: AtomicU64,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn settings_of(config: &Config) -> Result<Option<Settings>, String> {
    let Some(e) = &config.auth.entra else { return Ok(None) };
    let source = match (&e.jwks_file, &e.jwks_url) {
        (Some(f), _) => KeySource::File(f.clone()),
        (None, Some(u)) => KeySource::Url {
            url: u.clone(),
            cache: e.jwks_cache.clone(),
            refresh: e.jwks_refresh_secs.max(e.jwks_min_refetch_secs),
            every: e.jwks_min_refetch_secs.max(1),
            ca: e.jwks_ca.clone(),
        },
        (None, None) => return Err("auth.entra: set one of jwks_file and jwks_url".into()),
    };
    Ok(Some(Settings { policy: e.policy()?, bindings: config.auth.bindings()?, source }))
}

fn read_keys(path: &Path) -> Result<KeySet, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    KeySet::from_jwks(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

impl Entra {
    /// Entra for the node `config` describes (None without `[auth.entra]`), with its watcher.
    /// A key file that cannot be read stops the start; a fetched key set not yet cached does
    /// not (tokens are refused until the first fetch lands).
    pub fn start(config: &Config) -> Result<Option<Arc<Entra>>, String> {
        let Some(settings) = settings_of(config)? else {
            if !config.auth.role_binding.is_empty() {
                tracing::warn!("auth.role_binding is set without auth.entra: no token is accepted");
            }
            return Ok(None);
        };
        let (keys, at) = match &settings.source {
            KeySource::File(p) => (read_keys(p)?, modified(p)),
            KeySource::Url { cache: Some(c), .. } if c.exists() => match read_keys(c) {
                Ok(k) => (k, modified(c)),
                Err(e) => {
                    tracing::warn!("the cached key set is unreadable, fetching anew: {e}");
                    (KeySet::default(), None)
                }
            },
            KeySource::Url { .. } => (KeySet::default(), None),
        };
        let at = at.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs());
        let entra = Arc::new(Entra {
            settings: RwLock::new(Arc::new(settings)),
            keys: RwLock::new(Arc::new(keys)),
            keys_at: AtomicU64::new(at),
            want_fetch: AtomicBool::new(false),
            fetches: AtomicU64::new(0),
            fetch_errors: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&entra);
        let source = config.source.clone();
        std::thread::Builder::new()
            .name("edgeblob-entra".into())
            .spawn(move || watch(weak, source))
            .map_err(|e| format!("cannot start the key watcher: {e}"))?;
        Ok(Some(entra))
    }

    fn settings(&self) -> Arc<Settings> {
        self.settings.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn key_set(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Validates a token presented to `account`.
    pub fn validate(&self, token: &str, account: &str) -> Result<Principal, TokenError> {
        let now = now_secs().min(i64::MAX as u64) as i64;
        let r = bearer::validate(token, &self.key_set(), &self.settings().policy, account, now);
        if r == Err(TokenError::UnknownKey) {
            self.want_fetch.store(true, Ordering::Relaxed);
        }
        r
    }

    /// Whether a binding lets `p` take `action` there.
    pub fn allows(&self, p: &Principal, account: &str, container: Option<&str>, action: Action) -> bool {
        rbac::allows(&self.settings().bindings, p, account, container, action)
    }

    /// The 401 challenge: the first tenant, and the audience to ask a token for.
    pub fn challenge(&self) -> String {
        let s = self.settings();
        let tenant = s.policy.tenants.first().map_or("common", String::as_str);
        let resource = s.policy.audiences.first().map_or(bearer::STORAGE_AUDIENCE, String::as_str);
        bearer::challenge(tenant, resource)
    }

    /// Seconds since the keys held were obtained (None: no keys yet), and how many there are.
    pub fn keys_age(&self) -> (Option<u64>, usize) {
        let at = self.keys_at.load(Ordering::Relaxed);
        let age = (at > 0).then(|| now_secs().saturating_sub(at));
        (age, self.key_set().keys.len())
    }

    fn set_keys(&self, keys: KeySet, at: u64) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        self.keys_at.store(at, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Which keys and settings are in force: a validation is good only under the same.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// The watcher: reloads `[auth]` when the configuration file changes, the key file when it
/// changes, and fetches the key set when it is due or asked for. Ends with the last holder of
/// the node's Entra.
fn watch(entra: Weak<Entra>, config_path: Option<PathBuf>) {
    let mut config_seen = config_path.as_deref().and_then(modified);
    let mut keys_seen: Option<(PathBuf, Option<SystemTime>)> = None;
    let mut last_fetch = 0u64;
    let mut fetcher: Option<(String, edgeblob_remote::jwks::JwksSource)> = None;
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("the key watcher cannot start a runtime: {e}");
            return;
        }
    };
    loop {
        let Some(e) = entra.upgrade() else { return };
        if let Some(path) = &config_path {
            let m = modified(path);
            if m != config_seen {
                config_seen = m;
                reload(&e, path);
            }
        }
        match e.settings().source.clone() {
            KeySource::File(p) => {
                let m = modified(&p);
                let first = keys_seen.as_ref().is_none_or(|(q, _)| *q != p);
                if first {
                    keys_seen = Some((p, m));
                } else if keys_seen.as_ref().is_some_and(|(_, seen)| *seen != m) {
                    match read_keys(&p) {
                        Ok(k) => {
                            tracing::info!(keys = k.keys.len(), "key set reloaded from {}", p.display());
                            e.set_keys(k, now_secs());
                        }
                        Err(err) => tracing::warn!("the key file changed but cannot be read (keys kept): {err}"),
                    }
                    keys_seen = Some((p, m));
                }
            }
            KeySource::Url { url, cache, refresh, every, ca } => {
                let now = now_secs();
                let (age, held) = e.keys_age();
                let due = held == 0 || age.is_none_or(|a| a >= refresh) || e.want_fetch.load(Ordering::Relaxed);
                if due && now.saturating_sub(last_fetch) >= every {
                    last_fetch = now;
                    e.want_fetch.store(false, Ordering::Relaxed);
                    if fetcher.as_ref().is_none_or(|(u, _)| *u != url) {
                        fetcher = jwks_source(&url, ca.as_deref()).map(|f| (url.clone(), f)).ok();
                    }
                    let got = match &fetcher {
                        Some((_, f)) => rt.block_on(f.fetch()),
                        None => Err("the key set's client could not be made".into()),
                    };
                    e.fetches.fetch_add(1, Ordering::Relaxed);
                    match got.and_then(|doc| KeySet::from_jwks(&doc).map(|k| (k, doc))) {
                        Ok((k, doc)) => {
                            tracing::info!(keys = k.keys.len(), "key set fetched");
                            if let Some(c) = &cache {
                                if let Err(err) = write_cache(c, &doc) {
                                    tracing::warn!("the key set could not be cached: {err}");
                                }
                            }
                            e.set_keys(k, now);
                        }
                        Err(err) => {
                            e.fetch_errors.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!("fetching the key set failed (keys held are kept): {err}");
                        }
                    }
                }
            }
        }
        drop(e);
        std::thread::sleep(WATCH_EVERY);
    }
}

fn jwks_source(url: &str, ca: Option<&Path>) -> Result<edgeblob_remote::jwks::JwksSource, String> {
    use rustls_pki_types::pem::PemObject;
    let roots = match ca {
        Some(p) => rustls_pki_types::CertificateDer::pem_file_iter(p)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e}", p.display()))?,
        None => Vec::new(),
    };
    edgeblob_remote::jwks::JwksSource::new(url, roots).inspect_err(|e| tracing::warn!("{e}"))
}

/// Writes the cache whole or not at all (a crash mid-write leaves the previous one).
fn write_cache(path: &Path, doc: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, doc)?;
    std::fs::rename(&tmp, path)
}

/// Takes the `[auth]` of the configuration file as it is now; a file that does not parse, or
/// whose `[auth]` is wrong, changes nothing.
fn reload(e: &Entra, path: &Path) {
    let parsed = std::fs::read_to_string(path)
        .map_err(|err| err.to_string())
        .and_then(|text| Config::from_toml(&text))
        .and_then(|c| settings_of(&c));
    match parsed {
        Ok(Some(s)) => {
            tracing::info!(bindings = s.bindings.len(), "auth configuration reloaded");
            *e.settings.write().unwrap_or_else(|err| err.into_inner()) = Arc::new(s);
            e.reloads.fetch_add(1, Ordering::Relaxed);
            e.generation.fetch_add(1, Ordering::Release);
        }
        Ok(None) => tracing::warn!("auth.entra was removed from {}: restart to turn tokens off", path.display()),
        Err(err) => tracing::warn!("{} changed but is not valid (auth kept): {err}", path.display()),
    }
}
