//! Write-back of a linked container (`write_back = true`): every blob committed here goes to the
//! lake under the same name, as a plain block blob with the same bytes, block ids, content
//! headers, metadata and Content-MD5, `upload_after_secs` after its commit. One thread for the
//! node's links (`edgeblob-links`, which evicts too: `link_evict`), a task per write-back link,
//! `uploads_at_once` uploads at a time per link, their blocks in memory bounded together; the
//! engine is reached through the shards' inboxes, the lake through the link's client.
//!
//! What a blob's metadata says (`edgeblob_engine::reserved_metadata`): `$lake` = this version is
//! the lake's (uploaded, or fetched): nothing to do. Otherwise it waits for upload, and
//! `$lake-base` names the lake's version it replaces: the commit in the lake is `If-Match` that
//! ETag (`If-None-Match: *` without one), so a lake blob someone else changed is never
//! overwritten: a conflict, reported and left as it is on both sides, and marked on the version
//! (`$lake-conflict`, kept through restarts until a new version is written). An upload resumes
//! with the blocks the lake already holds staged (Get Block List), so a crash or a lost link
//! costs at most the blocks in flight.

use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edgeblob_engine::reserved_metadata::{client_metadata, lake_base, lake_conflict, lake_etag};
use edgeblob_engine::{ops, EngineError, PropsChange, Shard, CATALOG_SHARD};
use edgeblob_io::executor::Peers;
use edgeblob_meta::listing::{BlobSummary, ListEntry, ListQuery};
use edgeblob_meta::model::BlobKey;
use edgeblob_proto::conditions::{Conditions, ETagMatch};
use edgeblob_remote::{RemoteError, Replaces, WriteProps};
use futures::{StreamExt, TryStreamExt};

use crate::link::{Link, Links};
use crate::link_config::UploadOrder;

/// Blocks larger than this are not sent as they are (a Put Block is one request held in
/// memory): such a blob goes up in blocks of [`CUT`] with ids of the node's.
const MIRROR_MAX: u64 = 64 << 20;
const CUT: u64 = 8 << 20;

/// Blocks of one upload in flight at once (each held in memory while it is sent).
const BLOCKS_IN_FLIGHT: usize = 4;

/// MiB of blocks a link's uploads hold in memory at once, all together.
const MEMORY_MIB: u32 = 256;

/// A blob this small, written by Put Blob, goes up in one Put Blob.
const WHOLE_MAX: u64 = 4 << 20;

/// Names listed in a link's status per state at most.
const NAMES_SHOWN: usize = 1000;

/// A link's write-back as `link status` shows it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct UploadState {
    /// Blobs waiting for upload at the last pass, their bytes, and the longest wait.
    pub pending: u64,
    pub lag_bytes: u64,
    pub lag_secs: f64,
    /// The blobs uploading now.
    pub uploading: Vec<String>,
    /// Blobs uploaded since the node started, and their bytes.
    pub uploaded: u64,
    pub uploaded_bytes: u64,
    /// Blocks sent, and blocks the lake already held (a resumed upload).
    pub blocks_sent: u64,
    pub blocks_resumed: u64,
    /// Versions not uploaded because the lake's blob is not the one they replace: name, why.
    pub conflicts: BTreeMap<String, String>,
    pub errors: u64,
    pub last_error: Option<String>,
    /// Seconds since the lake stopped taking uploads (out of reach, or failing); 0 while it does.
    pub lake_down_secs: f64,
    /// Blob names by state (at most 1,000 each): waiting, uploaded lately (the latest last),
    /// and those whose last try failed, with why (tried again at the next pass).
    pub pending_names: Vec<String>,
    pub done_names: std::collections::VecDeque<String>,
    pub failed: BTreeMap<String, String>,
}

/// The engine, from a thread that is not a shard.
#[derive(Clone)]
pub(crate) struct Engine {
    pub peers: Peers<Shard>,
    pub shards: usize,
}

/// Why a pass stopped.
pub(crate) enum Stop {
    /// The node is stopping: the task ends.
    Gone,
    Failed(String),
}

impl From<EngineError> for Stop {
    fn from(e: EngineError) -> Stop {
        match e {
            EngineError::Stopped => Stop::Gone,
            e => Stop::Failed(e.to_string()),
        }
    }
}

impl Engine {
    /// The blobs of `link`'s container that `keep` keeps, in name order, a page at a time.
    pub(crate) async fn blobs(&self, link: &Link, keep: fn(&BlobSummary) -> bool) -> Result<Vec<BlobSummary>, Stop> {
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            let q = ListQuery {
                prefix: String::new(),
                delimiter: None,
                marker: marker.clone(),
                max: 5000,
                uncommitted: false,
            };
            let (a, c) = (link.cfg.account.clone(), link.cfg.container.clone());
            let page = self.on(CATALOG_SHARD, move |s| async move { ops::list_blobs(&s, &a, &c, q).await }).await??;
            out.extend(page.entries.into_iter().filter_map(|e| match e {
                ListEntry::Blob(b) if keep(&b) => Some(*b),
                _ => None,
            }));
            match page.next_marker {
                Some(m) => marker = Some(m),
                None => return Ok(out),
            }
        }
    }

    pub(crate) async fn on<R, F, Fut>(&self, shard: usize, f: F) -> Result<R, Stop>
    where
        R: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = R> + 'static,
    {
        self.peers.call(shard % self.shards.max(1), f).await.map_err(|_| Stop::Gone)
    }
}

/// Starts the links' thread (`edgeblob-links`): each write-back link's uploads, and the eviction
/// of cached lake blobs when the node fills.
pub fn start(peers: Peers<Shard>, shards: usize, links: Arc<Links>) -> std::io::Result<()> {
    if links.is_empty() {
        return Ok(());
    }
    let writing: Vec<Arc<Link>> = links.iter().filter(|l| l.cfg.write_back).cloned().collect();
    let engine = Engine { peers, shards };
    std::thread::Builder::new().name("edgeblob-links".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return tracing::error!(%e, "the links' thread could not start its runtime"),
        };
        rt.block_on(async move {
            let mut tasks: Vec<_> = writing.into_iter().map(|l| tokio::spawn(run(engine.clone(), l))).collect();
            tasks.push(tokio::spawn(crate::link_evict::run(engine, links)));
            for t in tasks {
                let _ = t.await;
            }
        });
    })?;
    Ok(())
}

async fn run(engine: Engine, link: Arc<Link>) {
    let every = Duration::from_secs((link.cfg.upload_after_secs / 2).clamp(1, 10));
    let memory = Arc::new(tokio::sync::Semaphore::new(MEMORY_MIB as usize));
    let mut wait = every;
    let mut down_since: Option<std::time::Instant> = None;
    loop {
        match pass(&engine, &link, &memory).await {
            Ok(Lake::Took) => (wait, down_since) = (every, None),
            // Out of reach: the pass stopped at its first failure (not one lake timeout for
            // each blob waiting), and the next comes later each time, up to a minute, so a long
            // outage costs the lake a request a minute and its end is found within one.
            Ok(Lake::Down) => {
                let since = *down_since.get_or_insert_with(std::time::Instant::now);
                state(&link, |s| s.lake_down_secs = since.elapsed().as_secs_f64());
                wait = (wait * 2).min(LAKE_DOWN_WAIT_MAX).max(every);
            }
            Err(Stop::Gone) => return,
            Err(Stop::Failed(why)) => {
                tracing::warn!(container = %link.cfg.container, %why, "write-back pass failed; trying again");
                note_error(&link, why);
            }
        }
        if down_since.is_none() {
            state(&link, |s| s.lake_down_secs = 0.0);
        }
        tokio::time::sleep(wait).await;
    }
}

/// The longest wait between passes while the lake is out of reach.
const LAKE_DOWN_WAIT_MAX: Duration = Duration::from_secs(60);

/// Whether a pass found the lake taking uploads.
enum Lake {
    Took,
    Down,
}

fn state<R>(link: &Link, f: impl FnOnce(&mut UploadState) -> R) -> R {
    f(&mut link.upload.lock().unwrap_or_else(|p| p.into_inner()))
}

fn note_error(link: &Link, why: String) {
    state(link, |s| {
        s.errors += 1;
        s.last_error = Some(why);
    });
}

/// Every blob of the container not the lake's version, in the link's order.
async fn waiting(engine: &Engine, link: &Link) -> Result<Vec<BlobSummary>, Stop> {
    let mut out = engine.blobs(link, |b| lake_etag(&b.props.metadata).is_none()).await?;
    match link.cfg.upload_order {
        UploadOrder::Oldest => out.sort_by_key(|b| b.modified_ns),
        UploadOrder::Newest => out.sort_by_key(|b| std::cmp::Reverse(b.modified_ns)),
    }
    Ok(out)
}

async fn pass(engine: &Engine, link: &Arc<Link>, memory: &Arc<tokio::sync::Semaphore>) -> Result<Lake, Stop> {
    let (conflicted, all): (Vec<BlobSummary>, Vec<BlobSummary>) =
        waiting(engine, link).await?.into_iter().partition(|b| lake_conflict(&b.props.metadata).is_some());
    let now = edgeblob_engine::shard::now_ns();
    let after_ns = i64::try_from(link.cfg.upload_after_secs.saturating_mul(1_000_000_000)).unwrap_or(i64::MAX);
    state(link, |s| {
        // A version in conflict stays reported (it is marked) until a new one is written.
        s.conflicts = conflicted
            .iter()
            .take(NAMES_SHOWN)
            .map(|b| (b.name.clone(), lake_conflict(&b.props.metadata).unwrap_or_default().to_owned()))
            .collect();
        s.pending = all.len() as u64;
        s.lag_bytes = all.iter().map(|b| b.size).sum();
        s.lag_secs = all.iter().map(|b| now.saturating_sub(b.modified_ns)).max().unwrap_or(0) as f64 / 1e9;
        s.pending_names = all.iter().take(NAMES_SHOWN).map(|b| b.name.clone()).collect();
        if !s.failed.is_empty() {
            let waiting: HashSet<&str> = all.iter().map(|b| b.name.as_str()).collect();
            s.failed.retain(|name, _| waiting.contains(name.as_str()));
        }
    });
    let due = all.into_iter().filter(|b| now.saturating_sub(b.modified_ns) >= after_ns);
    // Set by the first upload the lake fails: no more start in this pass.
    let down = std::sync::atomic::AtomicBool::new(false);
    let uploads = futures::stream::iter(due).take_while(|_| std::future::ready(!down.load(Relaxed))).map(|b| {
        let down = &down;
        async move {
            state(link, |s| s.uploading.push(b.name.clone()));
            let res = upload(engine, link, &b, memory).await;
            state(link, |s| s.uploading.retain(|n| *n != b.name));
            if matches!(res, Err(Upload::LakeDown(_))) {
                down.store(true, Relaxed);
            }
            (b, res)
        }
    });
    let mut uploads = uploads.buffer_unordered(link.cfg.uploads_at_once.max(1));
    while let Some((b, res)) = uploads.next().await {
        match res {
            Ok(()) => state(link, |s| {
                s.failed.remove(&b.name);
                s.done_names.push_back(b.name.clone());
                while s.done_names.len() > NAMES_SHOWN {
                    s.done_names.pop_front();
                }
            }),
            Err(Upload::Conflict(why)) => {
                tracing::warn!(container = %link.cfg.container, %why, "a write-back conflict: the lake's blob was changed by someone else");
                let (key, cond, note) =
                    (BlobKey::new(&link.cfg.account, &link.cfg.container, &b.name), this_version(&b), why.clone());
                let marked = engine
                    .on(CATALOG_SHARD, move |s| async move {
                        ops::set_blob_props(&s, key, PropsChange::LakeConflict(note), cond).await
                    })
                    .await?;
                match marked {
                    // Written or deleted here meanwhile: the newer version is tried at the next pass.
                    Ok(_) | Err(EngineError::ConditionNotMet | EngineError::BlobNotFound) => {}
                    Err(e) => note_error(link, format!("{}: the conflict not marked: {e}", b.name)),
                }
                state(link, |s| {
                    s.failed.remove(&b.name);
                    s.conflicts.insert(b.name.clone(), why);
                });
            }
            // Written or deleted here meanwhile: the next pass takes the newest version.
            Err(Upload::Superseded) => {}
            Err(Upload::Stop(Stop::Gone)) => return Err(Stop::Gone),
            Err(Upload::Stop(Stop::Failed(why)) | Upload::LakeDown(why)) => {
                state(link, |s| {
                    if s.failed.len() < NAMES_SHOWN || s.failed.contains_key(&b.name) {
                        s.failed.insert(b.name.clone(), why.clone());
                    }
                });
                note_error(link, format!("{}: {why}", b.name));
            }
        }
    }
    Ok(if down.load(Relaxed) { Lake::Down } else { Lake::Took })
}

enum Upload {
    Conflict(String),
    Superseded,
    /// The lake did not take it: out of reach, or failing after the link's retries.
    LakeDown(String),
    Stop(Stop),
}

impl From<Stop> for Upload {
    fn from(s: Stop) -> Upload {
        Upload::Stop(s)
    }
}

impl From<EngineError> for Upload {
    fn from(e: EngineError) -> Upload {
        match e {
            EngineError::ConditionNotMet | EngineError::BlobNotFound => Upload::Superseded,
            e => Upload::Stop(e.into()),
        }
    }
}

fn remote_failed(e: RemoteError) -> Upload {
    match e {
        RemoteError::AlreadyExists { .. } => {
            Upload::Conflict("the lake's blob is not the version this one replaces".into())
        }
        e @ RemoteError::Exhausted { .. } => Upload::LakeDown(e.to_string()),
        e if e.transient() => Upload::LakeDown(e.to_string()),
        e => Upload::Stop(Stop::Failed(e.to_string())),
    }
}

/// This very version of `b` (If-Match its ETag here).
fn this_version(b: &BlobSummary) -> Conditions {
    Conditions { if_match: Some(ETagMatch::Tags(vec![edgeblob_proto::etag_string(b.etag)])), ..Conditions::default() }
}

/// The blocks a blob goes up in: id, offset, length.
fn plan(b: &BlobSummary, committed: Option<Vec<(Vec<u8>, u64)>>) -> Vec<(Vec<u8>, u64, u64)> {
    let mirror = committed.filter(|c| {
        !c.is_empty() && c.iter().map(|(_, n)| n).sum::<u64>() == b.size && c.iter().all(|(_, n)| *n <= MIRROR_MAX)
    });
    match mirror {
        Some(blocks) => {
            let mut at = 0;
            blocks
                .into_iter()
                .map(|(id, len)| {
                    at += len;
                    (id, at - len, len)
                })
                .collect()
        }
        None => (0..b.size.div_ceil(CUT))
            .map(|i| (format!("edgeblob-upload-{i:08}").into_bytes(), i * CUT, CUT.min(b.size - i * CUT)))
            .collect(),
    }
}

async fn read_range(
    engine: &Engine,
    key: &BlobKey,
    b: &BlobSummary,
    at: u64,
    len: u64,
    via: usize,
) -> Result<Bytes, Upload> {
    debug_assert!(len > 0);
    let (k, cond) = (key.clone(), this_version(b));
    let res = engine
        .on(via, move |s| async move {
            let (_, _, reader) = ops::open_read(&s, k, Some((at, Some(at + len - 1))), cond).await?;
            reader.read_all().await
        })
        .await?;
    Ok(res?)
}

/// Holds `len` bytes' worth of a link's upload memory (at least 1 MiB, at most all of it) until
/// dropped.
async fn hold(memory: &Arc<tokio::sync::Semaphore>, len: u64) -> Result<tokio::sync::OwnedSemaphorePermit, Upload> {
    let mib = u32::try_from(len.div_ceil(1 << 20)).unwrap_or(MEMORY_MIB).clamp(1, MEMORY_MIB);
    memory.clone().acquire_many_owned(mib).await.map_err(|_| Upload::Stop(Stop::Gone))
}

async fn upload(
    engine: &Engine,
    link: &Arc<Link>,
    b: &BlobSummary,
    memory: &Arc<tokio::sync::Semaphore>,
) -> Result<(), Upload> {
    let key = BlobKey::new(&link.cfg.account, &link.cfg.container, &b.name);
    let replaces = match lake_base(&b.props.metadata) {
        Some(etag) => Replaces::Version(etag.to_owned()),
        None => Replaces::Nothing,
    };
    let p = &b.props;
    let headers = edgeblob_proto::headers::BlobHeaders {
        content_type: p.content_type.clone(),
        content_encoding: p.content_encoding.clone(),
        content_language: p.content_language.clone(),
        content_disposition: p.content_disposition.clone(),
        cache_control: p.cache_control.clone(),
        content_md5: p.content_md5,
    };
    let props = WriteProps { headers, metadata: client_metadata(&p.metadata) };
    // A conflict found before the blocks go, not after: the commit would fail all the same. A
    // base the lake no longer has (deleted there) leaves the name free: created, not a conflict
    // (what an operator does to settle one).
    let there = link.remote.properties(&b.name).await.map_err(remote_failed)?.map(|p| p.etag);
    let replaces = match (replaces, &there) {
        (Replaces::Version(base), Some(etag)) if &base != etag => {
            return Err(Upload::Conflict("the lake's blob is not the version this one replaces".into()))
        }
        (Replaces::Nothing, Some(_)) => {
            return Err(Upload::Conflict("the lake has a blob of this name this node did not write".into()))
        }
        (Replaces::Version(_), None) => Replaces::Nothing,
        (r, _) => r,
    };
    let k = key.clone();
    let list = engine.on(CATALOG_SHARD, move |s| async move { ops::get_block_list(&s, k).await }).await??;
    let blocks = plan(b, list.committed);
    let mirrored = blocks.first().is_some_and(|(id, _, _)| !id.starts_with(b"edgeblob-upload-"));
    let etag = if !mirrored && b.size <= WHOLE_MAX {
        let _held = hold(memory, b.size).await?;
        let data = match b.size {
            0 => Bytes::new(),
            n => read_range(engine, &key, b, 0, n, 0).await?,
        };
        link.remote.put_blob_over(&b.name, data, &props, &replaces).await.map_err(remote_failed)?
    } else {
        let staged: HashSet<(Vec<u8>, u64)> =
            link.remote.uncommitted_blocks(&b.name).await.map_err(remote_failed)?.into_iter().collect();
        let todo: Vec<(usize, Vec<u8>, u64, u64)> = blocks
            .iter()
            .enumerate()
            .filter(|(_, (id, _, len))| !staged.contains(&(id.clone(), *len)))
            .map(|(i, (id, at, len))| (i, id.clone(), *at, *len))
            .collect();
        state(link, |s| s.blocks_resumed += (blocks.len() - todo.len()) as u64);
        // A few blocks in flight: each read here and sent on its own; the first failure ends
        // the upload (the blocks already sent stay staged in the lake for the next try).
        let sends = futures::stream::iter(todo).map(|(i, id, at, len)| {
            let (engine, link, key, b, memory) = (engine.clone(), link.clone(), key.clone(), b.clone(), memory.clone());
            async move {
                let _held = hold(&memory, len).await?;
                let data = read_range(&engine, &key, &b, at, len, i).await?;
                link.remote.put_block(&b.name, &id, data).await.map_err(remote_failed)?;
                state(&link, |s| s.blocks_sent += 1);
                Ok::<(), Upload>(())
            }
        });
        sends.buffer_unordered(BLOCKS_IN_FLIGHT).try_for_each(|()| async { Ok(()) }).await?;
        let ids: Vec<Vec<u8>> = blocks.into_iter().map(|(id, _, _)| id).collect();
        link.remote.put_block_list_over(&b.name, &ids, &props, &replaces).await.map_err(remote_failed)?
    };
    state(link, |s| {
        s.uploaded += 1;
        s.uploaded_bytes += b.size;
    });
    // This version is now the lake's; a newer one written meanwhile replaces what was uploaded.
    let (k, cond, lake) = (key.clone(), this_version(b), etag.clone());
    let marked = engine
        .on(
            CATALOG_SHARD,
            move |s| async move { ops::set_blob_props(&s, k, PropsChange::LakeSynced(lake), cond).await },
        )
        .await?;
    match marked {
        Ok(_) if link.cfg.delete_after_upload => {
            let (k, cond) = (key.clone(), this_version(b));
            match engine.on(CATALOG_SHARD, move |s| async move { ops::delete_blob(&s, k, cond).await }).await? {
                Ok(()) | Err(EngineError::ConditionNotMet | EngineError::BlobNotFound) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        Ok(_) => Ok(()),
        Err(EngineError::ConditionNotMet) => {
            // Written again during the upload: the newer version replaces the one just uploaded.
            let k = key.clone();
            let res = engine
                .on(CATALOG_SHARD, move |s| async move {
                    ops::set_blob_props(&s, k, PropsChange::LakeBase(etag), Conditions::default()).await
                })
                .await?;
            match res {
                Ok(_) | Err(EngineError::BlobNotFound) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        Err(EngineError::BlobNotFound) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(size: u64) -> BlobSummary {
        BlobSummary { name: "b".into(), etag: 1, created_ns: 0, modified_ns: 0, size, props: Default::default() }
    }

    #[test]
    fn a_blob_goes_up_in_its_own_blocks_unless_one_is_too_large() {
        let own = vec![(b"a".to_vec(), 3), (b"b".to_vec(), 5)];
        assert_eq!(plan(&summary(8), Some(own)), [(b"a".to_vec(), 0, 3), (b"b".to_vec(), 3, 5)]);
        // Put Blob (no ids), or a block too large to send whole: blocks of the node's.
        let cut = plan(&summary(CUT * 2 + 1), Some(Vec::new()));
        assert_eq!(
            cut.iter().map(|(_, at, len)| (*at, *len)).collect::<Vec<_>>(),
            [(0, CUT), (CUT, CUT), (2 * CUT, 1)]
        );
        assert!(cut.iter().all(|(id, _, _)| id.len() == cut[0].0.len()), "ids of one length, as Azure requires");
        let big = vec![(b"x".to_vec(), MIRROR_MAX + 1)];
        assert_eq!(plan(&summary(MIRROR_MAX + 1), Some(big)).len(), 9);
        assert!(plan(&summary(0), None).is_empty());
    }
}
