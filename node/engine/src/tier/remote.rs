//! The tier thread: the remote client, the node key, and the sealing and upload of packs.
//!
//! The thread runs its own tokio runtime; shards hand it packs to upload ([`Tier::ship`]) and
//! wait for the answer. At start it makes sure of the remote container and of the node key: the
//! key object `<node>/keys/node` (the node key wrapped by the customer's key) is read, or, where
//! the remote answers that it does not exist, made create-only (a race with an earlier start of
//! this node that made it ends with reading it). Any other failure is not "absent": it is tried
//! again later, and packs wait.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edgeblob_remote::{Credential, Remote, RemoteConfig, RemoteError};
use edgeblob_tier::{ChunkInfo, Entry, Header, NodeKey, PackId, PackWriter, Trailer, HEADER_LEN, TRAILER_LEN};
use tokio::sync::{mpsc, oneshot, watch};

use super::fetch::Fetcher;
use super::guard::{Guard, KeyError};
use super::stats::TierStats;
use crate::config::TierConfig;

/// Bytes of each Put Block of a pack.
pub const BLOCK_BYTES: usize = 8 << 20;

/// A pack committed remotely: its header (with its wrapped data key), its length, and where
/// each chunk landed in it.
#[derive(Debug)]
pub struct Shipped {
    pub header: Vec<u8>,
    pub len: u64,
    pub entries: Vec<Entry>,
}

enum Job {
    Ship {
        id: PackId,
        chunks: Vec<(ChunkInfo, Vec<u8>)>,
        reply: oneshot::Sender<Result<Shipped, String>>,
    },
    Fetch {
        place: TierPlace,
        reply: oneshot::Sender<Result<Bytes, String>>,
    },
    /// Every name under a prefix (a failure is an error, never an empty list).
    List {
        prefix: String,
        reply: oneshot::Sender<Result<Vec<String>, String>>,
    },
    /// Deletes a name (one already gone is fine).
    Delete {
        name: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Reads a whole pack and checks it: its structure and checksum, its header against the one
    /// kept locally, its footer and every chunk's seal; its entries, or why it is damaged.
    Verify {
        header: Vec<u8>,
        len: u64,
        reply: oneshot::Sender<Result<Vec<Entry>, String>>,
    },
    /// A pack's entries, from its trailer and footer alone.
    Footer {
        header: Vec<u8>,
        len: u64,
        reply: oneshot::Sender<Result<Vec<Entry>, String>>,
    },
    /// Any other work with the remote client and the node key (it answers through its own
    /// channel).
    Run(RunJob),
}

/// Work the tier thread runs with its client and the node key.
pub type RunJob = Box<dyn FnOnce(Arc<Remote>, Arc<NodeKey>) -> futures::future::BoxFuture<'static, ()> + Send>;

/// The node's claim on its part of the tier (see [`super::fence`]).
#[derive(Default)]
pub struct ClaimState {
    /// The generation this process claimed (0: none yet).
    generation: std::sync::atomic::AtomicU64,
    /// Why this node writes nothing more to the tier, once another claimed it.
    fenced: std::sync::Mutex<Option<String>>,
    /// One claim at a time.
    claiming: tokio::sync::Mutex<()>,
}

impl ClaimState {
    fn fence(&self, why: String) -> String {
        tracing::error!(%why, "the tier is fenced");
        *self.fenced.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
        why
    }

    fn fenced(&self) -> Option<String> {
        self.fenced.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether this node may write now: it holds a claim and no higher one exists (a listing,
    /// just before the write it guards).
    pub(super) async fn writer(&self, remote: &Remote, prefix: &str) -> Result<u64, String> {
        if let Some(why) = self.fenced() {
            return Err(why);
        }
        let own = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        if own == 0 {
            return Err("the tier's generation is not claimed yet".into());
        }
        match super::fence::highest_claim(remote, prefix).await? {
            by if by > own => Err(self.fence(super::fence::fenced_message(own, by))),
            _ => Ok(own),
        }
    }
}

/// Where a chunk's sealed bytes are in the tier, and what opens them: its pack's header (which
/// names the pack and holds its data key, wrapped), its entry, where the entry starts, and the
/// chunk as its references name it (the seal is bound to all of it).
#[derive(Debug, Clone)]
pub struct TierPlace {
    pub header: Vec<u8>,
    pub entry: u32,
    pub at: u64,
    pub chunk: ChunkInfo,
}

/// The node's way to the tier. Dropping it ends the tier thread: its uploads in flight are
/// dropped where they stand (a pack committed remotely but not recorded is an orphan, which
/// names no chunk and is removed by the tier's garbage collection). The thread is not waited
/// for: it touches no device, and a remote that does not answer must not hold up a stop.
pub struct Tier {
    jobs: mpsc::UnboundedSender<Job>,
    /// The node's uuid: the name of its part of the remote container.
    pub node: [u8; 16],
    pub pack_bytes: usize,
    pub upload_after: Duration,
    pub release_above: f64,
    pub release_below: f64,
    pub gc_interval: Duration,
    pub gc_grace: Duration,
    pub repack_above: f64,
    pub epoch_interval: Duration,
    /// Asks for an epoch before its interval (see `super::epoch::run`).
    pub epoch_wanted: tokio::sync::Notify,
    pub manifests_kept: usize,
    pub passive: bool,
    /// How long one remote call may take with its retries.
    retry_budget: Duration,
    /// Whether the node key is in hand (uploads wait until it is).
    ready: watch::Receiver<bool>,
    /// Why not, while it is not.
    trouble: Arc<std::sync::Mutex<String>>,
    claim: Arc<ClaimState>,
    /// The tier's counters, and the remote client's.
    pub stats: Arc<TierStats>,
    remote_stats: Arc<edgeblob_remote::RemoteStats>,
}

/// The node's part of the remote container: its uuid in hex.
pub fn node_prefix(node: &[u8; 16]) -> String {
    node.iter().map(|b| format!("{b:02x}")).collect()
}

/// The remote client a tier configuration describes.
pub fn client(cfg: &TierConfig) -> Result<Remote, String> {
    let credential = Credential::from_settings(
        "tier",
        cfg.account.as_deref(),
        cfg.account_key.as_deref(),
        cfg.sas.as_deref(),
        cfg.managed_identity,
        cfg.identity_endpoint.as_deref(),
        cfg.identity_client_id.clone(),
    )?;
    let mut rc = RemoteConfig::new(&cfg.url, credential);
    if let Some(ca) = &cfg.ca_file {
        rc.extra_roots = edgeblob_remote::pem_roots(ca).map_err(|e| format!("tier.ca_file {e}"))?;
    }
    rc.bytes_per_sec = cfg.bytes_per_sec;
    rc.retry.budget = Duration::from_secs(cfg.retry_budget_secs.max(1));
    rc.retry.max_backoff = rc.retry.max_backoff.min(rc.retry.budget / 4);
    Remote::new(rc)
}

impl Tier {
    /// Reads the customer's key and starts the tier thread for node `node`.
    pub fn start(cfg: &TierConfig, node: [u8; 16]) -> Result<Tier, String> {
        let thread_cfg = cfg.clone();
        let remote = client(cfg)?;
        let remote_stats = remote.stats();
        let stats = Arc::new(TierStats::default());
        let counters = stats.clone();
        let (jobs, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready) = watch::channel(false);
        let trouble = Arc::new(std::sync::Mutex::new("the tier thread is starting".to_owned()));
        let told = trouble.clone();
        let claim = Arc::new(ClaimState::default());
        let claims = claim.clone();
        std::thread::Builder::new()
            .name("edgeblob-tier".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => return tracing::error!(%e, "the tier thread could not start its runtime"),
                };
                rt.block_on(serve(remote, thread_cfg, node, rx, ready_tx, told, claims, counters));
            })
            .map_err(|e| format!("tier thread: {e}"))?;
        Ok(Tier {
            jobs,
            node,
            pack_bytes: cfg.pack_bytes,
            upload_after: Duration::from_secs(cfg.upload_after_secs),
            release_above: cfg.release_above,
            release_below: cfg.release_below,
            gc_interval: Duration::from_secs(cfg.gc_interval_secs),
            gc_grace: Duration::from_secs(cfg.gc_grace_secs),
            repack_above: cfg.repack_above,
            epoch_interval: Duration::from_secs(cfg.epoch_interval_secs),
            epoch_wanted: tokio::sync::Notify::new(),
            manifests_kept: cfg.manifests_kept.max(1),
            passive: cfg.passive,
            retry_budget: Duration::from_secs(cfg.retry_budget_secs.max(1)),
            ready,
            trouble,
            claim,
            stats,
            remote_stats,
        })
    }

    /// What the remote client did so far: attempts by call and outcome, bytes each way.
    pub fn remote_stats(&self) -> edgeblob_remote::StatsSnapshot {
        self.remote_stats.snapshot()
    }

    /// Runs `f` on the tier thread with the remote client and the node key; its answer.
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Remote>, Arc<NodeKey>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, String>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: RunJob = Box::new(move |remote, key| {
            Box::pin(async move {
                let _ = reply.send(f(remote, key).await);
            })
        });
        self.jobs.send(Job::Run(job)).map_err(|_| "the tier thread has stopped".to_owned())?;
        // Refused unrun while the node key is not open.
        answer.await.map_err(|_| format!("the tier cannot be used: {}", self.trouble()))?
    }

    /// Claims generation `generation` for this node (see [`super::fence`]); an error once
    /// another writer holds it or a higher one (the node is then fenced for good).
    pub async fn claim(&self, generation: u64) -> Result<(), String> {
        let (claim, node) = (self.claim.clone(), self.node);
        self.run(move |remote, _| async move {
            let _one = claim.claiming.lock().await;
            if let Some(why) = claim.fenced() {
                return Err(why);
            }
            if claim.generation.load(std::sync::atomic::Ordering::SeqCst) >= generation {
                return Ok(());
            }
            match super::fence::claim(&remote, &node_prefix(&node), generation).await? {
                super::fence::Claim::Claimed(g) => {
                    claim.generation.store(g, std::sync::atomic::Ordering::SeqCst);
                    tracing::info!(generation = g, "this node holds its tier's generation");
                    Ok(())
                }
                super::fence::Claim::Fenced { by } => Err(claim.fence(super::fence::fenced_message(generation, by))),
            }
        })
        .await
    }

    /// The generation this node holds in the tier, once claimed.
    pub fn generation(&self) -> Option<u64> {
        Some(self.claim.generation.load(std::sync::atomic::Ordering::SeqCst)).filter(|g| *g > 0)
    }

    /// Why this node writes nothing more to the tier, if another writer took it over.
    pub fn fenced(&self) -> Option<String> {
        self.claim.fenced()
    }

    /// Seals and writes metadata object `name`, once this node is checked to be the writer.
    pub async fn put_object(
        &self,
        kind: edgeblob_tier::ObjectKind,
        name: String,
        plaintext: Vec<u8>,
    ) -> Result<super::objects::Written, String> {
        let (claim, node) = (self.claim.clone(), self.node);
        self.run(move |remote, key| async move {
            claim.writer(&remote, &node_prefix(&node)).await?;
            super::objects::put(&remote, &key, &node, kind, &name, &plaintext).await
        })
        .await
    }

    /// Reads and opens metadata object `name`.
    pub async fn get_object(
        &self,
        kind: edgeblob_tier::ObjectKind,
        name: String,
        expect: Option<super::objects::Written>,
    ) -> Result<Vec<u8>, String> {
        let node = self.node;
        self.run(move |remote, key| async move {
            super::objects::get(&remote, &key, &node, kind, &name, expect, super::epoch::MAX_PART_PLAIN).await
        })
        .await
    }

    /// Whether the node key is in hand: until it is, nothing is uploaded.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until the node key is in hand, for as long as one call may take with its retries
    /// (at most 30 s): a start's first moments are not an outage.
    pub async fn ready_soon(&self) -> bool {
        let mut ready = self.ready.clone();
        let wait = self.retry_budget.min(Duration::from_secs(30));
        let got = tokio::time::timeout(wait, ready.wait_for(|r| *r)).await.is_ok_and(|r| r.is_ok());
        got
    }

    /// Why the tier cannot be used yet (the last failure to open it).
    pub fn trouble(&self) -> String {
        self.trouble.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Seals `chunks` (each with its stored stream) as pack `id` and commits it remotely.
    pub async fn ship(&self, id: PackId, chunks: Vec<(ChunkInfo, Vec<u8>)>) -> Result<Shipped, String> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job::Ship { id, chunks, reply }).map_err(|_| "the tier thread has stopped".to_owned())?;
        answer.await.map_err(|_| "the tier thread has stopped".to_owned())?
    }

    /// Every name in the tier under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, String> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::List { prefix: prefix.to_owned(), reply })
            .map_err(|_| "the tier thread has stopped".to_owned())?;
        answer.await.map_err(|_| "the tier thread has stopped".to_owned())?
    }

    /// Reads the pack `header` names whole and checks every byte of it (see `Job::Verify`).
    pub async fn verify(&self, header: Vec<u8>, len: u64) -> Result<Vec<Entry>, String> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job::Verify { header, len, reply }).map_err(|_| "the tier thread has stopped".to_owned())?;
        answer.await.map_err(|_| "the tier thread has stopped".to_owned())?
    }

    /// The entries of the pack `header` names (`len` bytes long), from its footer.
    pub async fn footer(&self, header: Vec<u8>, len: u64) -> Result<Vec<Entry>, String> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job::Footer { header, len, reply }).map_err(|_| "the tier thread has stopped".to_owned())?;
        answer.await.map_err(|_| "the tier thread has stopped".to_owned())?
    }

    /// Deletes `name` from the tier.
    pub async fn delete(&self, name: &str) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Delete { name: name.to_owned(), reply })
            .map_err(|_| "the tier thread has stopped".to_owned())?;
        answer.await.map_err(|_| "the tier thread has stopped".to_owned())?
    }

    /// A chunk's stored stream from the tier, opened and checked against its seal. Readers of
    /// one chunk at once share one download.
    pub async fn fetch(&self, place: TierPlace) -> Result<Bytes, String> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job::Fetch { place, reply }).map_err(|_| "the tier thread has stopped".to_owned())?;
        answer.await.map_err(|_| "the tier thread has stopped".to_owned())?
    }
}

/// The tier thread: opens the node key (reading the customer's key anew each attempt: a key
/// file restored, or a tier back, is found without a restart), then uploads and downloads. With
/// a Key Vault key, it checks every `key_recheck_secs` that the key still unwraps the node key:
/// once the vault refuses (the key disabled or deleted, the identity's access revoked), the
/// node key is dropped and everything asked of the tier fails, naming the key, until the vault
/// unwraps it again.
// What the thread shares with its `Tier`, each part its own: one argument each reads plainer
// than a struct made only to carry them here.
#[allow(clippy::too_many_arguments)]
async fn serve(
    remote: Remote,
    cfg: TierConfig,
    node: [u8; 16],
    mut jobs: mpsc::UnboundedReceiver<Job>,
    ready: watch::Sender<bool>,
    trouble: Arc<std::sync::Mutex<String>>,
    claim: Arc<ClaimState>,
    stats: Arc<TierStats>,
) {
    let remote = Arc::new(remote);
    let prefix = node_prefix(&node);
    let fetcher: Arc<Fetcher> = Arc::default();
    let recheck = cfg.key_vault_key.as_ref().map(|_| Duration::from_secs(cfg.key_recheck_secs.max(1)));
    loop {
        let mut backoff = Duration::from_secs(1);
        let key = loop {
            let opened = match Guard::of(&cfg) {
                Ok(guard) => open(&remote, &guard, &prefix).await.map_err(|e| e.message),
                Err(e) => Err(e),
            };
            match opened {
                Ok(k) => break Arc::new(k),
                Err(e) => {
                    tracing::warn!(%e, retry_in = ?backoff, "the tier cannot be used yet; nothing is uploaded until it can");
                    *trouble.lock().unwrap_or_else(|p| p.into_inner()) = e.clone();
                    // Packs asked for meanwhile fail at once (their shards try again later).
                    let until = tokio::time::sleep(backoff);
                    tokio::pin!(until);
                    loop {
                        tokio::select! {
                            _ = &mut until => break,
                            job = jobs.recv() => match job {
                                Some(j) => refuse(j, format!("the tier cannot be used: {e}")),
                                None => return,
                            },
                        }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        };
        let _ = ready.send(true);
        tracing::info!(node = %prefix, "the tier is reachable and its node key open");
        // Recent chunks were opened with a key that may since have been revoked.
        fetcher.forget();
        let mut next_check = recheck.map(|every| tokio::time::Instant::now() + every);
        loop {
            let job = tokio::select! {
                job = jobs.recv() => match job {
                    Some(job) => job,
                    None => return,
                },
                _ = async { tokio::time::sleep_until(next_check.unwrap_or_else(tokio::time::Instant::now)).await }, if next_check.is_some() => {
                    next_check = recheck.map(|every| tokio::time::Instant::now() + every);
                    match still_opens(&remote, &cfg, &prefix).await {
                        Err(e) if e.refused => {
                            tracing::error!(error = %e.message, "the customer's key no longer opens the node key: the tier is closed");
                            let _ = ready.send(false);
                            *trouble.lock().unwrap_or_else(|p| p.into_inner()) = e.message;
                            break;
                        }
                        Err(e) => tracing::warn!(error = %e.message, "the customer's key could not be checked; the node key stays open"),
                        Ok(()) => {}
                    }
                    continue;
                }
            };
            let Job::Fetch { place, reply } = job else {
                dispatch(job, &remote, &key, &prefix, &claim, &stats, &fetcher);
                continue;
            };
            // Others asked for at the same time may lie beside it: one GET for them all. Only
            // what is already queued (after one turn for senders just behind): a lone read
            // waits for nothing.
            let mut asks = vec![(place, reply)];
            let mut ended = false;
            for turn in 0..2 {
                if turn == 1 {
                    tokio::task::yield_now().await;
                }
                while asks.len() < super::fetch::GATHER_MAX {
                    match jobs.try_recv() {
                        Ok(Job::Fetch { place, reply }) => asks.push((place, reply)),
                        Ok(other) => dispatch(other, &remote, &key, &prefix, &claim, &stats, &fetcher),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            ended = true;
                            break;
                        }
                    }
                }
            }
            fetcher.start(asks, &remote, &key, &stats);
            if ended {
                return;
            }
        }
    }
}

/// Whether the customer's key still opens the newest wrapping of the node key.
async fn still_opens(remote: &Remote, cfg: &TierConfig, prefix: &str) -> Result<(), KeyError> {
    let guard = Guard::of(cfg).map_err(unrefused)?;
    let (_, name) = latest_key(remote, prefix)
        .await
        .map_err(unrefused)?
        .ok_or_else(|| unrefused("the tier lists no node key".into()))?;
    read_key(remote, &name, &guard).await.map(|_| ())
}

/// Runs one job of the tier thread.
#[allow(clippy::too_many_arguments)]
fn dispatch(
    job: Job,
    remote: &Arc<Remote>,
    key: &Arc<NodeKey>,
    prefix: &str,
    claim: &Arc<ClaimState>,
    stats: &Arc<TierStats>,
    fetcher: &Arc<Fetcher>,
) {
    {
        let (remote, key, prefix) = (remote.clone(), key.clone(), prefix.to_owned());
        match job {
            // Each shard has one pack in flight at most: as many uploads at once as shards.
            Job::Ship { id, chunks, reply } => {
                let (prefix, claim, stats) = (prefix.clone(), claim.clone(), stats.clone());
                tokio::spawn(async move {
                    let res = upload(&remote, &key, &prefix, &claim, id, chunks).await;
                    if let Ok(shipped) = &res {
                        TierStats::bump(&stats.packs_committed, 1);
                        TierStats::bump(&stats.pack_bytes_committed, shipped.len);
                    }
                    let _ = reply.send(res);
                });
            }
            Job::Run(f) => {
                tokio::spawn(f(remote, key));
            }
            Job::List { prefix, reply } => {
                tokio::spawn(async move {
                    let _ = reply.send(list_all(&remote, &prefix).await);
                });
            }
            Job::Verify { header, len, reply } => {
                tokio::spawn(async move {
                    let _ = reply.send(verify_pack(&remote, &key, &header, len).await);
                });
            }
            Job::Footer { header, len, reply } => {
                tokio::spawn(async move {
                    let _ = reply.send(footer(&remote, &key, &header, len).await);
                });
            }
            Job::Delete { name, reply } => {
                let (prefix, claim) = (prefix.clone(), claim.clone());
                tokio::spawn(async move {
                    let deleted = async {
                        claim.writer(&remote, &prefix).await?;
                        remote.delete(&name).await.map(|_| ()).map_err(|e| e.to_string())
                    };
                    let _ = reply.send(deleted.await);
                });
            }
            Job::Fetch { place, reply } => fetcher.start(vec![(place, reply)], &remote, &key, stats),
        }
    }
}

fn refuse(job: Job, why: String) {
    match job {
        Job::Ship { reply, .. } => {
            let _ = reply.send(Err(why));
        }
        Job::Fetch { reply, .. } => {
            let _ = reply.send(Err(why));
        }
        Job::List { reply, .. } => {
            let _ = reply.send(Err(why));
        }
        Job::Delete { reply, .. } => {
            let _ = reply.send(Err(why));
        }
        Job::Verify { reply, .. } | Job::Footer { reply, .. } => {
            let _ = reply.send(Err(why));
        }
        // Its answer channel is dropped with it: the caller hears the thread cannot serve.
        Job::Run(_) => {}
    }
}

/// A pack's entries from its trailer and its sealed footer (two small range reads).
async fn footer(remote: &Remote, key: &NodeKey, local: &[u8], len: u64) -> Result<Vec<Entry>, String> {
    let header = Header::parse(local).map_err(|e| format!("the header kept locally: {e}"))?;
    let name = format!("{}/{}", node_prefix(&header.id.node), header.id.name());
    let tail = len.checked_sub(TRAILER_LEN as u64).ok_or("a pack shorter than its trailer")?;
    let trailer = remote.get_range(&name, tail, TRAILER_LEN as u64).await.map_err(|e| e.to_string())?;
    let trailer = Trailer::parse(&trailer).map_err(|e| format!("{name}: {e}"))?;
    let r = trailer.footer_range();
    let sealed = remote.get_sealed_range(&name, r.start, r.end - r.start).await.map_err(|e| e.to_string())?;
    let data_key = header.data_key(key).map_err(|e| e.to_string())?;
    trailer.entries(&header.id, &data_key, &sealed).map_err(|e| format!("{name}: {e}"))
}

/// A whole pack, checked (see `Job::Verify`).
async fn verify_pack(remote: &Remote, key: &NodeKey, local: &[u8], len: u64) -> Result<Vec<Entry>, String> {
    let header = Header::parse(local).map_err(|e| format!("the header kept locally: {e}"))?;
    let name = format!("{}/{}", node_prefix(&header.id.node), header.id.name());
    // By ranges of a block each: a pack may pass the client's bound on a whole answer.
    let mut pack = Vec::with_capacity(len as usize);
    for at in (0..len).step_by(BLOCK_BYTES) {
        let part = remote.get_range(&name, at, (BLOCK_BYTES as u64).min(len - at)).await.map_err(|e| e.to_string())?;
        pack.extend_from_slice(&part);
    }
    if remote.properties(&name).await.map_err(|e| e.to_string())?.map(|p| p.len) != Some(len) {
        return Err(format!("not {len} bytes long, as recorded"));
    }
    let trailer = edgeblob_tier::verify(&pack).map_err(|e| e.to_string())?;
    if pack[..HEADER_LEN] != local[..HEADER_LEN] {
        return Err("its header is not the one recorded when it was committed".into());
    }
    let data_key = header.data_key(key).map_err(|e| e.to_string())?;
    let footer = trailer.footer_range();
    let sealed_footer = &pack[footer.start as usize..footer.end as usize];
    let entries = trailer.entries(&header.id, &data_key, sealed_footer).map_err(|e| e.to_string())?;
    for e in &entries {
        let r = e.range();
        let sealed = pack.get(r.start as usize..r.end as usize).ok_or("an entry past the pack's end")?;
        e.open(&header.id, &data_key, sealed).map_err(|err| format!("entry {}: {err}", e.index))?;
    }
    Ok(entries)
}

/// Every name under `prefix`, all pages (a failure is an error, never an empty list).
pub(crate) async fn list_all(remote: &Remote, prefix: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = remote.list(prefix, marker.as_deref(), 5000).await.map_err(|e| e.to_string())?;
        out.extend(page.blobs.into_iter().map(|b| b.name));
        match page.next {
            Some(m) => marker = Some(m),
            None => return Ok(out),
        }
    }
}

/// The name of the node key's wrapping number `n`: the first is `keys/node`, each rotation of
/// the customer's key adds `keys/node.<n>` (create-only, like every name in the tier).
fn key_name(prefix: &str, n: u64) -> String {
    match n {
        0 => format!("{prefix}/keys/node"),
        n => format!("{prefix}/keys/node.{n:08}"),
    }
}

/// The newest wrapping of the node key: its number and name. None only when a listing that
/// succeeded found none (a failed listing is an error, never "absent").
pub(crate) async fn latest_key(remote: &Remote, prefix: &str) -> Result<Option<(u64, String)>, String> {
    let base = format!("{prefix}/keys/node");
    let number = |name: &str| match name.strip_prefix(&base)? {
        "" => Some(0),
        rest => rest.strip_prefix('.')?.parse::<u64>().ok(),
    };
    let names = list_all(remote, &base).await?;
    Ok(names.into_iter().filter_map(|n| Some((number(&n)?, n))).max_by_key(|(n, _)| *n))
}

/// Reads and opens wrapping `name` of the node key with `guard`; an error names the key that
/// wraps it and the key tried.
pub(crate) async fn read_key(remote: &Remote, name: &str, guard: &Guard) -> Result<NodeKey, KeyError> {
    let bytes = remote.get(name).await.map_err(|e| KeyError { message: e.to_string(), refused: false })?;
    guard.open(name, &bytes).await
}

fn unrefused(message: String) -> KeyError {
    KeyError { message, refused: false }
}

/// Makes sure of the remote container, and reads (or makes) the node key.
async fn open(remote: &Remote, guard: &Guard, prefix: &str) -> Result<NodeKey, KeyError> {
    remote.create_container().await.map_err(|e| unrefused(e.to_string()))?;
    // The node's name where a restore finds it (`edgeblob-admin restore` lists `nodes/`).
    match remote.put_blob(&format!("nodes/{prefix}"), Bytes::new(), true).await {
        Ok(_) | Err(RemoteError::AlreadyExists { .. }) => {}
        Err(e) => return Err(unrefused(e.to_string())),
    }
    loop {
        if let Some((_, name)) = latest_key(remote, prefix).await.map_err(unrefused)? {
            return read_key(remote, &name, guard).await;
        }
        // Only a listing that answered "none", never a failure, makes a new key.
        let key = NodeKey::generate().map_err(|e| unrefused(e.to_string()))?;
        let wrapped = guard.wrap(&key).await.map_err(unrefused)?;
        match remote.put_blob(&key_name(prefix, 0), Bytes::from(wrapped), true).await {
            Ok(_) => return Ok(key),
            Err(RemoteError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(unrefused(e.to_string())),
        }
    }
}

/// Rotates the customer's key: the node key, opened with the key `cfg` names, is wrapped by
/// `new` as a new object (a few hundred bytes); no pack is touched. With a key file, the node
/// then starts with the new file as its `key_file`; with Key Vault, `new` is the configured key
/// again, whose newest version (added in the vault) now wraps. Returns the new object's name.
///
/// Then the older wrappings are deleted, once the new one is read back and opens: a retired
/// key that still opened one of them would still open the tier. A rotation cut short (a crash,
/// a failed delete) is finished by running it again with the same keys: the newest wrapping
/// opening with `new` and not with the old key means the new one was written.
pub async fn rotate(cfg: &TierConfig, node: [u8; 16], new: &Guard) -> Result<String, String> {
    let old = Guard::of(cfg)?;
    let remote = client(cfg)?;
    let prefix = node_prefix(&node);
    let (n, name) = latest_key(&remote, &prefix).await?.ok_or("the tier holds no node key of this node")?;
    let newest = match read_key(&remote, &name, &old).await {
        Ok(key) => {
            edgeblob_io::failpoint::crash_point("rotate-key:opened");
            let wrapped = new.wrap(&key).await?;
            let next = key_name(&prefix, n + 1);
            remote.put_blob(&next, Bytes::from(wrapped), true).await.map_err(|e| e.to_string())?;
            edgeblob_io::failpoint::crash_point("rotate-key:wrapped");
            next
        }
        Err(e) => match read_key(&remote, &name, new).await {
            Ok(_) => {
                tracing::info!(%name, "the newest wrapping is already the new key's: finishing an earlier rotation");
                name
            }
            Err(_) => return Err(e.message),
        },
    };
    // What is durable opens with the new key before anything older goes.
    read_key(&remote, &newest, new).await.map_err(|e| format!("the new wrapping does not open: {}", e.message))?;
    let base = format!("{prefix}/keys/node");
    for older in list_all(&remote, &base).await? {
        if older != newest && (older == base || older.starts_with(&format!("{base}."))) {
            remote.delete(&older).await.map_err(|e| format!("{older}: {e} (run the rotation again to finish it)"))?;
            edgeblob_io::failpoint::crash_point("rotate-key:retired-one");
        }
    }
    Ok(newest)
}

/// Seals and uploads one pack: blocks of [`BLOCK_BYTES`] named by their place (a retry puts the
/// same block again), then a create-only commit.
async fn upload(
    remote: &Remote,
    key: &Arc<NodeKey>,
    prefix: &str,
    claim: &ClaimState,
    id: PackId,
    chunks: Vec<(ChunkInfo, Vec<u8>)>,
) -> Result<Shipped, String> {
    let key = key.clone();
    let created_ns = crate::shard::now_ns();
    let (bytes, entries) = tokio::task::spawn_blocking(move || {
        let mut w = PackWriter::start(id, created_ns, &key).map_err(|e| e.to_string())?;
        for (info, stored) in &chunks {
            w.add(*info, stored).map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(w.finish())
    })
    .await
    .map_err(|e| e.to_string())??;
    let bytes = Bytes::from(bytes);
    let name = format!("{prefix}/{}", id.name());
    let mut ids = Vec::new();
    for (i, at) in (0..bytes.len()).step_by(BLOCK_BYTES).enumerate() {
        let block_id = format!("{i:08}").into_bytes();
        let part = bytes.slice(at..(at + BLOCK_BYTES).min(bytes.len()));
        remote.put_block(&name, &block_id, part).await.map_err(|e| e.to_string())?;
        ids.push(block_id);
    }
    // The commit is the write a fenced node must not make (its blocks alone are no object).
    claim.writer(remote, prefix).await?;
    remote.put_block_list(&name, &ids, true, None).await.map_err(|e| e.to_string())?;
    Ok(Shipped { header: bytes[..HEADER_LEN].to_vec(), len: bytes.len() as u64, entries })
}
