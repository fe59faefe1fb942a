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
use edgeblob_tier::{ChunkInfo, CustomerKey, Entry, NodeKey, PackId, PackWriter, WrappedNodeKey, HEADER_LEN};
use tokio::sync::{mpsc, oneshot, watch};

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

struct Job {
    id: PackId,
    chunks: Vec<(ChunkInfo, Vec<u8>)>,
    reply: oneshot::Sender<Result<Shipped, String>>,
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
    /// Whether the node key is in hand (uploads wait until it is).
    ready: watch::Receiver<bool>,
}

/// The node's part of the remote container: its uuid in hex.
pub fn node_prefix(node: &[u8; 16]) -> String {
    node.iter().map(|b| format!("{b:02x}")).collect()
}

/// The remote client a tier configuration describes.
pub fn client(cfg: &TierConfig) -> Result<Remote, String> {
    let credential = match (&cfg.account, &cfg.account_key, &cfg.sas) {
        (Some(account), Some(key), None) => Credential::shared_key(account, key)?,
        (None, None, Some(sas)) => Credential::sas(sas),
        _ => return Err("tier: give either account and account_key, or sas".into()),
    };
    let mut rc = RemoteConfig::new(&cfg.url, credential);
    rc.bytes_per_sec = cfg.bytes_per_sec;
    rc.retry.budget = Duration::from_secs(cfg.retry_budget_secs.max(1));
    rc.retry.max_backoff = rc.retry.max_backoff.min(rc.retry.budget / 4);
    Remote::new(rc)
}

impl Tier {
    /// Reads the customer's key and starts the tier thread for node `node`.
    pub fn start(cfg: &TierConfig, node: [u8; 16]) -> Result<Tier, String> {
        let contents =
            std::fs::read(&cfg.key_file).map_err(|e| format!("tier.key_file {}: {e}", cfg.key_file.display()))?;
        let name = cfg.key_file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let cmk = CustomerKey::from_file(&name, &contents).map_err(|e| format!("tier.key_file: {e}"))?;
        let remote = client(cfg)?;
        let (jobs, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready) = watch::channel(false);
        std::thread::Builder::new()
            .name("edgeblob-tier".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => return tracing::error!(%e, "the tier thread could not start its runtime"),
                };
                rt.block_on(serve(remote, cmk, node, rx, ready_tx));
            })
            .map_err(|e| format!("tier thread: {e}"))?;
        Ok(Tier {
            jobs,
            node,
            pack_bytes: cfg.pack_bytes,
            upload_after: Duration::from_secs(cfg.upload_after_secs),
            ready,
        })
    }

    /// Whether the node key is in hand: until it is, nothing is uploaded.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Seals `chunks` (each with its stored stream) as pack `id` and commits it remotely.
    pub async fn ship(&self, id: PackId, chunks: Vec<(ChunkInfo, Vec<u8>)>) -> Result<Shipped, String> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job { id, chunks, reply }).map_err(|_| "the tier thread has stopped".to_owned())?;
        answer.await.map_err(|_| "the tier thread has stopped".to_owned())?
    }
}

async fn serve(
    remote: Remote,
    cmk: CustomerKey,
    node: [u8; 16],
    mut jobs: mpsc::UnboundedReceiver<Job>,
    ready: watch::Sender<bool>,
) {
    let remote = Arc::new(remote);
    let prefix = node_prefix(&node);
    let mut backoff = Duration::from_secs(1);
    let key = loop {
        match open(&remote, &cmk, &prefix).await {
            Ok(k) => break Arc::new(k),
            Err(e) => {
                tracing::warn!(%e, retry_in = ?backoff, "the tier is not reachable yet; nothing is uploaded until it is");
                // Packs asked for meanwhile fail at once (their shards try again later).
                let until = tokio::time::sleep(backoff);
                tokio::pin!(until);
                loop {
                    tokio::select! {
                        _ = &mut until => break,
                        job = jobs.recv() => match job {
                            Some(j) => { let _ = j.reply.send(Err(format!("the tier is not reachable: {e}"))); }
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
    while let Some(job) = jobs.recv().await {
        let (remote, key, prefix) = (remote.clone(), key.clone(), prefix.clone());
        // Each shard has one pack in flight at most: as many uploads at once as shards.
        tokio::spawn(async move {
            let res = upload(&remote, &key, &prefix, job.id, job.chunks).await;
            let _ = job.reply.send(res);
        });
    }
}

/// Makes sure of the remote container, and reads (or makes) the node key.
async fn open(remote: &Remote, cmk: &CustomerKey, prefix: &str) -> Result<NodeKey, String> {
    remote.create_container().await.map_err(|e| e.to_string())?;
    let name = format!("{prefix}/keys/node");
    loop {
        match remote.get(&name).await {
            Ok(bytes) => {
                let wrapped = WrappedNodeKey::decode(&bytes).map_err(|e| format!("{name}: {e}"))?;
                return wrapped.unwrap(cmk).map_err(|e| format!("{name} does not open with the customer key: {e}"));
            }
            // Only an answer that it is not there, never a failure, makes a new key.
            Err(e) if e.status() == Some(404) => {
                let key = NodeKey::generate().map_err(|e| e.to_string())?;
                let wrapped = WrappedNodeKey::wrap(&key, cmk).map_err(|e| e.to_string())?;
                match remote.put_blob(&name, Bytes::from(wrapped.encode()), true).await {
                    Ok(_) => return Ok(key),
                    Err(RemoteError::AlreadyExists { .. }) => continue,
                    Err(e) => return Err(e.to_string()),
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Seals and uploads one pack: blocks of [`BLOCK_BYTES`] named by their place (a retry puts the
/// same block again), then a create-only commit.
async fn upload(
    remote: &Remote,
    key: &Arc<NodeKey>,
    prefix: &str,
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
    remote.put_block_list(&name, &ids, true, None).await.map_err(|e| e.to_string())?;
    Ok(Shipped { header: bytes[..HEADER_LEN].to_vec(), len: bytes.len() as u64, entries })
}
