//! Linked containers, node-wide: each `[[links]]` entry's lake client, the fetches in flight
//! (one per blob, whichever shard asked first), and when each cached blob was last checked
//! against the lake. The request path is `http::read_through`.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgeblob_remote::{Remote, RemoteConfig};
use tokio::sync::watch;

use crate::link_config::{LinkConfig, Revalidate};
use crate::link_flight::{Feed, FlightState, Outcome, ENDED_EARLY};

/// How many cached blobs' last checks are remembered per link; a blob forgotten is checked at
/// its next read (a check too many, never one too few).
const CHECKED_REMEMBERED: usize = 100_000;

pub struct Link {
    pub cfg: LinkConfig,
    pub remote: Remote,
    /// Fetches in flight by local blob name: the readers who came second wait on it.
    flights: Mutex<HashMap<String, watch::Receiver<FlightState>>>,
    /// When each cached blob was last found current in the lake.
    checked: Mutex<lru::LruCache<String, Instant>>,
    /// The blobs read lately, least recent first: what eviction keeps longest.
    read: Mutex<lru::LruCache<String, ()>>,
    /// Bounds the fetches running at once (each holds up to two ranges in memory).
    pub fetches: tokio::sync::Semaphore,
    pub stats: LinkStats,
    /// The last prefetch started (`edgeblob-admin link prefetch`), running or ended.
    pub prefetch: Slot<Prefetched>,
    /// The last sync of the lake's listing started (`edgeblob-admin link sync`).
    pub sync: Slot<crate::link_sync::Synced>,
    /// The write-back's state, where the link writes back.
    pub upload: Mutex<crate::link_upload::UploadState>,
    /// What eviction deleted here since the node started.
    pub evicted: Mutex<crate::link_evict::Evicted>,
}

/// A link's operation in the background (a prefetch, a sync of its listing): its prefix,
/// whether it runs, what it counts (`T`), what failed, and for how long.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Progress<T> {
    pub prefix: String,
    pub running: bool,
    #[serde(flatten)]
    pub counts: T,
    pub errors: u64,
    pub last_error: Option<String>,
    /// Seconds since it started (to its end, once it ended).
    pub secs: f64,
    #[serde(skip)]
    pub started: Option<Instant>,
}

/// Where a link keeps the last of one kind of operation.
pub type Slot<T> = Mutex<Option<Progress<T>>>;

/// Starts an operation in `slot` under `prefix`; `Err` when one of its kind runs.
pub fn begin<T: Default>(slot: &Slot<T>, prefix: &str, what: &str) -> Result<(), String> {
    let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
    if slot.as_ref().is_some_and(|p| p.running) {
        return Err(format!("a {what} of this container is running"));
    }
    *slot = Some(Progress {
        prefix: prefix.to_owned(),
        running: true,
        started: Some(Instant::now()),
        ..Progress::default()
    });
    Ok(())
}

/// Changes what the operation in `slot` shows.
pub fn update<T>(slot: &Slot<T>, f: impl FnOnce(&mut Progress<T>)) {
    if let Some(p) = slot.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        f(p);
        p.secs = p.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
    }
}

/// Counts an error of the operation in `slot`.
pub fn failed<T>(slot: &Slot<T>, why: String) {
    update(slot, |p| {
        p.errors += 1;
        p.last_error = Some(why);
    });
}

/// Ends the operation in `slot`, with what it ended with.
pub fn end<T>(slot: &Slot<T>, res: Result<(), String>) {
    if let Err(why) = res {
        failed(slot, why);
    }
    update(slot, |p| p.running = false);
}

/// What a prefetch counts: blobs of the lake listed under its prefix, and those made current
/// here (fetched now, or already), with their bytes.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Prefetched {
    pub listed: u64,
    pub listed_bytes: u64,
    pub done: u64,
    pub done_bytes: u64,
}

/// What a link did, since the node started.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Blobs stored from the lake (first reads and refetches of changed blobs).
    pub fetched: AtomicU64,
    pub fetched_bytes: AtomicU64,
    /// Reads that waited on another reader's fetch instead of starting their own.
    pub joined: AtomicU64,
    /// Checks of a cached blob against the lake, and how many found it changed or gone.
    pub revalidated: AtomicU64,
    pub stale: AtomicU64,
    /// Cached blobs served without a check because the lake did not answer.
    pub served_unchecked: AtomicU64,
    /// Ranges of blobs not here yet served straight from the lake (their fetch behind them).
    pub passed_through: AtomicU64,
}

/// Whether a reader leads a blob's fetch or waits on the one in flight.
pub enum Flight {
    Lead(FlightGuard),
    Join(watch::Receiver<FlightState>),
}

/// Held by the fetch that leads: ends the flight (every joined reader learns the outcome) when
/// dropped, with the outcome given or, if none was (a panic), an error.
pub struct FlightGuard {
    link: Arc<Link>,
    name: String,
    feed: Feed,
    outcome: Option<Outcome>,
}

impl FlightGuard {
    /// What the fetch shows the readers that follow it.
    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// A receiver for the reader who leads, to follow the fetch as the others do.
    pub fn subscribe(&self) -> watch::Receiver<FlightState> {
        self.feed.0.subscribe()
    }

    pub fn finish(mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.link.flights.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.name);
        self.feed.end(self.outcome.take().unwrap_or_else(|| Err(ENDED_EARLY.into())));
    }
}

impl Link {
    fn new(cfg: LinkConfig) -> Result<Link, String> {
        let mut rc = RemoteConfig::new(&cfg.url, cfg.credential()?);
        if let Some(ca) = &cfg.ca_file {
            rc.extra_roots = edgeblob_remote::pem_roots(ca).map_err(|e| format!("links ca_file {e}"))?;
        }
        rc.bytes_per_sec = cfg.bytes_per_sec;
        // A reader waits for the lake: a short budget, then an answer it can retry.
        rc.retry.budget = Duration::from_secs(cfg.retry_budget_secs.max(1));
        rc.retry.max_backoff = rc.retry.max_backoff.min(rc.retry.budget / 4);
        rc.timeout = Duration::from_secs(60);
        let remote = Remote::new(rc)?;
        let fetches = tokio::sync::Semaphore::new(cfg.max_fetches);
        Ok(Link {
            cfg,
            remote,
            flights: Mutex::default(),
            checked: Mutex::new(lru::LruCache::new(NonZeroUsize::new(CHECKED_REMEMBERED).unwrap_or(NonZeroUsize::MIN))),
            read: Mutex::new(lru::LruCache::new(NonZeroUsize::new(CHECKED_REMEMBERED).unwrap_or(NonZeroUsize::MIN))),
            fetches,
            stats: LinkStats::default(),
            prefetch: Mutex::default(),
            sync: Mutex::default(),
            upload: Mutex::default(),
            evicted: Mutex::default(),
        })
    }

    /// Leads the fetch of `name`, or joins the one in flight.
    pub fn flight(self: &Arc<Link>, name: &str) -> Flight {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = flights.get(name) {
            self.stats.joined.fetch_add(1, Ordering::Relaxed);
            return Flight::Join(rx.clone());
        }
        let (feed, rx) = Feed::new();
        flights.insert(name.to_owned(), rx);
        Flight::Lead(FlightGuard { link: self.clone(), name: name.to_owned(), feed, outcome: None })
    }

    /// Whether a fetch of `name` is in flight (a read behind which one would start only joins
    /// it, and waits for nothing it needs).
    pub fn fetching(&self, name: &str) -> bool {
        self.flights.lock().unwrap_or_else(|p| p.into_inner()).contains_key(name)
    }

    /// Whether a cached blob is due a check against the lake before it is served.
    pub fn due(&self, name: &str) -> bool {
        match self.cfg.revalidate {
            Revalidate::Never => false,
            Revalidate::Always => true,
            Revalidate::After(secs) => {
                let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
                checked.get(name).is_none_or(|at| at.elapsed() >= Duration::from_secs(secs))
            }
        }
    }

    /// Notes a read of `name` (eviction keeps the most recently read longest).
    pub fn was_read(&self, name: &str) {
        self.read.lock().unwrap_or_else(|p| p.into_inner()).put(name.to_owned(), ());
    }

    /// The blobs read lately, each with its rank: higher for more recently read.
    pub fn read_order(&self) -> HashMap<String, usize> {
        let read = self.read.lock().unwrap_or_else(|p| p.into_inner());
        read.iter().rev().enumerate().map(|(i, (n, _))| (n.clone(), i)).collect()
    }

    /// Notes that `name` was found current in the lake now.
    pub fn checked(&self, name: &str) {
        if matches!(self.cfg.revalidate, Revalidate::After(_)) {
            self.checked.lock().unwrap_or_else(|p| p.into_inner()).put(name.to_owned(), Instant::now());
        }
    }
}

/// Every link of the node, by local account and container.
#[derive(Default)]
pub struct Links {
    /// A node links a few containers: found by a scan that allocates nothing on a request's way.
    links: Vec<Arc<Link>>,
}

impl Links {
    pub fn new(cfgs: &[LinkConfig]) -> Result<Links, String> {
        let mut links: Vec<Arc<Link>> = Vec::with_capacity(cfgs.len());
        for cfg in cfgs {
            if links.iter().any(|l| l.cfg.account == cfg.account && l.cfg.container == cfg.container) {
                return Err(format!("links: {}/{} is linked twice", cfg.account, cfg.container));
            }
            links.push(Arc::new(Link::new(cfg.clone())?));
        }
        Ok(Links { links })
    }

    /// The link of a container whose reads go through to the lake.
    pub fn reading(&self, account: &str, container: &str) -> Option<&Arc<Link>> {
        self.get(account, container).filter(|l| l.cfg.read_through)
    }

    pub fn get(&self, account: &str, container: &str) -> Option<&Arc<Link>> {
        self.links.iter().find(|l| l.cfg.container == container && l.cfg.account == account)
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Link>> {
        self.links.iter()
    }
}
