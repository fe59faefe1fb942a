//! The storage engine: blobs as block lists of deduplicated, compressed, checksummed chunks on
//! direct-I/O devices, spread over shards.
//!
//! Three kinds of ownership decide where work runs:
//! - the **receiving shard** (the one that accepted the request) cuts, hashes, compresses and
//!   writes data into its own region, and reads any region;
//! - the **owner shard** of a blob (hash of account, container, name) keeps its metadata and runs
//!   every change to it;
//! - the **ref owner** of a chunk (its hash owner when deduplicated, else its region's shard)
//!   counts references to it.
//!
//! The free functions in the submodules run on a shard; [`Node`] is the handle other threads use.
//! The public surface: [`Node`] and its operations, [`ops`] (what a shard runs for a request),
//! [`config`], [`error`], [`read::BlobReader`], [`write::Stored`], [`stats`] and [`startup`]
//! (the admin tool's views of a device). Nothing here knows about HTTP.

pub mod access_tier;
pub mod background;
pub mod blob;
mod cache;
pub mod config;
pub mod container;
mod counts;
pub mod error;
mod index_space;
pub mod media;
pub mod ops;
pub mod plan;
pub mod read;
mod reduce;
mod refs;
pub mod reserved_metadata;
pub mod shard;
pub mod startup;
pub mod stats;
pub mod tier;
pub mod write;

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use edgeblob_io::executor::Peers;
use edgeblob_meta::index::shard::HoldsIndex;
use edgeblob_meta::listing::{BlobSummary, ListPage, ListQuery};
use edgeblob_meta::model::{BlobKey, BlobProps, Container, Metadata};
use edgeblob_proto::conditions::Conditions;

pub use blob::{BlockList, BlockListItem, PropsChange};
pub use error::{EngineError, Result};
pub use shard::{NodeShared, Shard, CATALOG_SHARD};

use crate::config::EngineConfig;

/// A running node's engine. Dropping it stops the shards.
pub struct Node {
    peers: Peers<Shard>,
    threads: Vec<JoinHandle<()>>,
    shared: Arc<NodeShared>,
}

/// A request body: pieces of bytes as they arrive.
pub type Body = Vec<Bytes>;

fn body_stream(body: Body) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Unpin {
    futures::stream::iter(body.into_iter().map(Ok))
}

impl Node {
    /// Opens the device (formatting a new data file), starts the shards and recovers.
    pub fn open(config: EngineConfig) -> Result<Node> {
        startup::open(config)
    }

    /// Opens a node on a simulated disk that injects faults (tests), formatting it when blank.
    pub fn open_simulated(config: EngineConfig, disk: edgeblob_io::fault::SimDisk) -> Result<Node> {
        startup::open_simulated(config, disk)
    }

    pub fn shards(&self) -> usize {
        self.peers.len()
    }

    pub fn peers(&self) -> &Peers<Shard> {
        &self.peers
    }

    pub fn shared(&self) -> &Arc<NodeShared> {
        &self.shared
    }

    /// Runs `f` on shard `shard`.
    pub fn on<R, F, Fut>(&self, shard: usize, f: F) -> impl Future<Output = Result<R>> + Send + 'static
    where
        R: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        let call = self.peers.call(shard, f);
        async move { Ok(call.await?) }
    }

    fn owner(&self, key: &BlobKey) -> usize {
        self.shared.owner_of(key)
    }

    pub async fn create_container(&self, account: &str, name: &str, metadata: Metadata) -> Result<Container> {
        let (a, n) = (account.to_owned(), name.to_owned());
        self.on(
            CATALOG_SHARD,
            move |s| async move { ops::create_container(&s, a, n, metadata, Default::default()).await },
        )
        .await?
    }

    pub async fn delete_container(&self, account: &str, name: &str) -> Result<()> {
        let (a, n) = (account.to_owned(), name.to_owned());
        self.on(CATALOG_SHARD, move |s| async move { ops::delete_container(&s, a, n).await }).await?
    }

    pub async fn set_container_metadata(&self, account: &str, name: &str, metadata: Metadata) -> Result<Container> {
        let (a, n) = (account.to_owned(), name.to_owned());
        self.on(CATALOG_SHARD, move |s| async move { ops::set_container_metadata(&s, a, n, metadata).await }).await?
    }

    /// Stores an account's Blob service properties document (see
    /// [`container::set_service_properties`]).
    pub async fn set_service_properties(&self, account: &str, doc: String) -> Result<Container> {
        let a = account.to_owned();
        self.on(CATALOG_SHARD, move |s| async move { container::set_service_properties(&s, a, doc).await }).await?
    }

    /// Set Container ACL: public access and the stored access policies, replaced whole.
    pub async fn set_container_acl(
        &self,
        account: &str,
        name: &str,
        access: edgeblob_meta::model::PublicAccess,
        policies: Vec<container::AccessPolicy>,
    ) -> Result<Container> {
        let (a, n) = (account.to_owned(), name.to_owned());
        self.on(CATALOG_SHARD, move |s| async move { ops::set_container_access(&s, a, n, access, policies).await })
            .await?
    }

    pub fn get_container(&self, account: &str, name: &str) -> Result<Container> {
        self.shared.container(account, name).ok_or(EngineError::ContainerNotFound)
    }

    /// Containers of an account whose names start with `prefix`, after `marker`.
    pub fn list_containers(
        &self,
        account: &str,
        prefix: &str,
        marker: Option<&str>,
        max: usize,
    ) -> (Vec<(String, Container)>, Option<String>) {
        self.shared.list_containers(account, prefix, marker, max)
    }

    /// Put Blob, received on shard `via`.
    pub async fn put_blob(
        &self,
        via: usize,
        key: BlobKey,
        body: Body,
        props: BlobProps,
        cond: Conditions,
    ) -> Result<BlobSummary> {
        self.on(via, move |s| async move { ops::put_blob(&s, key, body_stream(body), props, cond).await }).await?
    }

    /// Put Blob that keeps the blob's ETag and times (an import: see [`blob::Stamps`]).
    pub async fn import_blob(
        &self,
        via: usize,
        key: BlobKey,
        body: Body,
        props: BlobProps,
        keep: blob::Stamps,
    ) -> Result<BlobSummary> {
        self.on(via, move |s| async move {
            let stored =
                ops::store(&s, &key, body_stream(body), edgeblob_meta::model::limits::MAX_PUT_BLOB_SIZE).await?;
            ops::commit_single(&s, key, stored, props, Conditions::default(), Some(keep)).await
        })
        .await?
    }

    /// Put Block, received on shard `via`.
    pub async fn put_block(&self, via: usize, key: BlobKey, id: Vec<u8>, body: Body) -> Result<u64> {
        self.on(via, move |s| async move { ops::put_block(&s, key, id, body_stream(body)).await }).await?
    }

    pub async fn commit_block_list(
        &self,
        key: BlobKey,
        list: Vec<BlockListItem>,
        props: BlobProps,
        cond: Conditions,
    ) -> Result<BlobSummary> {
        let owner = self.owner(&key);
        self.on(owner, move |o| async move { ops::commit_block_list(&o, key, list, props, cond, None).await }).await?
    }

    /// Put Block List that keeps the blob's ETag and times (an import: see [`blob::Stamps`]).
    pub async fn import_block_list(
        &self,
        key: BlobKey,
        list: Vec<BlockListItem>,
        props: BlobProps,
        keep: blob::Stamps,
    ) -> Result<BlobSummary> {
        let owner = self.owner(&key);
        let any = Conditions::default();
        self.on(owner, move |o| async move { ops::commit_block_list(&o, key, list, props, any, Some(keep)).await })
            .await?
    }

    pub async fn get_block_list(&self, key: BlobKey) -> Result<BlockList> {
        self.on(self.owner(&key), move |o| async move { ops::get_block_list(&o, key).await }).await?
    }

    pub async fn head_blob(&self, key: BlobKey, cond: Conditions) -> Result<BlobSummary> {
        self.on(self.owner(&key), move |o| async move { ops::head_blob(&o, key, cond).await }).await?
    }

    /// Get Blob on shard `via`, collected whole: the blob, the range served, and its bytes.
    pub async fn read_blob(
        &self,
        via: usize,
        key: BlobKey,
        range: Option<(u64, Option<u64>)>,
        cond: Conditions,
    ) -> Result<(BlobSummary, (u64, u64), Bytes)> {
        self.on(via, move |s| async move {
            let (blob, range, reader) = ops::open_read(&s, key, range, cond).await?;
            Ok((blob, range, reader.read_all().await?))
        })
        .await?
    }

    /// Get Blob on shard `via`, streamed and hashed rather than collected (benchmarks, checks):
    /// the bytes read and their xxh3-64.
    pub async fn read_blob_digest(
        &self,
        via: usize,
        key: BlobKey,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<(u64, u64)> {
        self.on(via, move |s| async move { read_digest(&s, key, range).await }).await?
    }

    pub async fn delete_blob(&self, key: BlobKey, cond: Conditions) -> Result<()> {
        self.on(self.owner(&key), move |o| async move { ops::delete_blob(&o, key, cond).await }).await?
    }

    pub async fn set_blob_props(&self, key: BlobKey, change: PropsChange, cond: Conditions) -> Result<BlobSummary> {
        self.on(self.owner(&key), move |o| async move { ops::set_blob_props(&o, key, change, cond).await }).await?
    }

    /// List Blobs: every shard lists its part; the pages are merged in name order.
    pub async fn list_blobs(&self, account: &str, container: &str, q: ListQuery) -> Result<ListPage> {
        let (a, c) = (account.to_owned(), container.to_owned());
        self.on(CATALOG_SHARD, move |s| async move { ops::list_blobs(&s, &a, &c, q).await }).await?
    }

    /// Waits until every shard's metadata log is durable up to now, and (v2) every change so
    /// far is counted by the shards that count its chunks.
    pub async fn sync(&self) -> Result<()> {
        for i in 0..self.shards() {
            self.on(i, |s| async move { counts::drained(&s).await }).await?;
        }
        for i in 0..self.shards() {
            self.on(i, |s| async move {
                let durable = s.meta.borrow().sync();
                durable.await
            })
            .await??;
        }
        Ok(())
    }

    /// Waits until every chunk written before the call is in a committed pack of the tier (each
    /// shard scans its chunk table and ships the pack it fills as it is). Counts still on their
    /// way to the shards that keep them are delivered first: a chunk a blob acknowledged a
    /// moment ago must not be missed by a drain because its count was in flight.
    pub async fn tier_flush(&self) -> Result<()> {
        for i in 0..self.shards() {
            self.on(i, |s| async move { counts::drained(&s).await }).await?;
        }
        for i in 0..self.shards() {
            self.on(i, |s| async move { tier::flush(&s).await }).await??;
        }
        Ok(())
    }

    /// Releases the local copies of chunks that are also in the tier, up to `bytes` on each
    /// shard (None: every one), once a manifest names their packs; returns the bytes freed.
    pub async fn tier_release(&self, bytes: Option<u64>) -> Result<u64> {
        self.tier_cover().await?;
        let mut freed = 0;
        for i in 0..self.shards() {
            freed += self.on(i, move |s| async move { tier::release::release(&s, bytes).await }).await??;
        }
        Ok(freed)
    }

    /// Takes an epoch if a shard holds packs no manifest of this process names yet, so that
    /// their chunks' local copies may be released (see `tier::release`).
    pub async fn tier_cover(&self) -> Result<()> {
        let mut uncovered = false;
        for i in 0..self.shards() {
            uncovered |= self.on(i, |s| async move { tier::release::uncovered(&s) }).await?;
        }
        if uncovered {
            self.tier_epoch().await?;
        }
        Ok(())
    }

    /// Moves the blobs of a container under `prefix` to the tier now (see [`tier::manage::now`]).
    pub async fn tier_now(&self, account: &str, container: &str, prefix: &str) -> Result<tier::manage::ManageReport> {
        tier::manage::now(self, account, container, prefix).await
    }

    /// Brings the blobs of a container under `prefix` back to flash (see
    /// [`tier::manage::hydrate`]).
    pub async fn tier_hydrate(
        &self,
        account: &str,
        container: &str,
        prefix: &str,
    ) -> Result<tier::manage::ManageReport> {
        tier::manage::hydrate(self, account, container, prefix).await
    }

    /// Brings every blob of an account back to flash (see [`tier::manage::hydrate_account`]).
    pub async fn tier_hydrate_account(&self, account: &str) -> Result<tier::manage::ManageReport> {
        tier::manage::hydrate_account(self, account).await
    }

    /// Where the bytes of blob `key` are: on flash, or only in the tier.
    pub async fn tier_residency(&self, key: BlobKey) -> Result<tier::manage::Residency> {
        self.get_container(&key.account, &key.container)?;
        tier::manage::residency(self, key).await
    }

    /// The tier's state and counters for an operator: each shard's view summed (a scan of the
    /// chunk tables), the counters, and whether the tier is usable.
    pub async fn tier_report(&self) -> Result<tier::stats::TierReport> {
        self.tier_report_with(None).await
    }

    /// [`Node::tier_report`] with the chunk tables' part given (a recent scan), or scanned now.
    pub async fn tier_report_with(&self, status: Option<tier::TierStatus>) -> Result<tier::stats::TierReport> {
        let tier = self.shared.tier.clone().ok_or_else(|| EngineError::Tier("no tier is configured".into()))?;
        if let Some(status) = status {
            return Ok(tier::stats::TierReport::of(&tier, status));
        }
        let mut sum = tier::TierStatus::default();
        for st in self.tier_status().await? {
            sum.generation = sum.generation.max(st.generation);
            sum.local_chunks += st.local_chunks;
            sum.local_bytes += st.local_bytes;
            sum.both_chunks += st.both_chunks;
            sum.both_bytes += st.both_bytes;
            sum.tiered_chunks += st.tiered_chunks;
            sum.tiered_bytes += st.tiered_bytes;
            sum.packs += st.packs;
            sum.pack_bytes += st.pack_bytes;
            sum.pending_secs = sum.pending_secs.max(st.pending_secs);
        }
        Ok(tier::stats::TierReport::of(&tier, sum))
    }

    /// A garbage collection of the tier on every shard now (see [`tier::gc`]): each shard's
    /// report.
    pub async fn tier_gc(&self) -> Result<Vec<tier::gc::GcReport>> {
        let mut out = Vec::new();
        for i in 0..self.shards() {
            out.push(self.on(i, |s| async move { tier::gc::collect_now(&s).await }).await??);
        }
        Ok(out)
    }

    /// Reads every pack in the tier whole and checks it against what the shards recorded.
    pub async fn tier_verify(&self) -> Result<tier::verify::VerifyReport> {
        let mut all = tier::verify::VerifyReport::default();
        for i in 0..self.shards() {
            let r = self.on(i, |s| async move { tier::verify::verify(&s).await }).await??;
            all.packs += r.packs;
            all.damaged.extend(r.damaged);
        }
        Ok(all)
    }

    /// Writes an epoch of the node's metadata to the tier now: a restore point (see
    /// [`tier::epoch`]).
    pub async fn tier_epoch(&self) -> Result<tier::epoch::EpochReport> {
        self.on(CATALOG_SHARD, |s| async move { tier::epoch::take(&s).await }).await?
    }

    /// Checks the restore points the tier keeps (see [`tier::epoch::check_restore_points`]):
    /// how many, and what is wrong with them.
    pub async fn tier_check_restore_points(&self) -> Result<(usize, Vec<String>)> {
        let tier = self.shared.tier.clone().ok_or_else(|| EngineError::Tier("no tier is configured".into()))?;
        self.on(
            CATALOG_SHARD,
            move |_| async move { tier::epoch::check_restore_points(&tier, tier.manifests_kept).await },
        )
        .await?
    }

    /// Each shard's view of the tier (a scan of its chunk table); of a node short of a device,
    /// the shards on the others' (readiness and the logs name the lost device).
    pub async fn tier_status(&self) -> Result<Vec<tier::TierStatus>> {
        let mut out = Vec::new();
        for i in (0..self.shards()).filter(|&i| self.shared.offline(i).is_none()) {
            out.push(self.on(i, |s| async move { tier::status(&s).await }).await??);
        }
        Ok(out)
    }

    /// Stops the shards and waits for their threads. Everything acknowledged is already durable
    /// in the logs; a clean stop also writes it into the metadata indexes (v2), so that the next
    /// start replays almost nothing, with the keys of the blobs each shard holds in memory, which
    /// the next start reads back in the background.
    pub fn stop(mut self) {
        // A node short of a device writes nothing (its allocators were not rebuilt): what its
        // logs hold is replayed at the next start, as after a crash.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        if let Some(rt) = runtime.ok().filter(|_| self.shared.read_only().is_none()) {
            for i in 0..self.shards() {
                let flushed = self.on(i, |s| async move {
                    // What the shard holds in memory, for the next start to read back.
                    if let Some(m) = s.meta.borrow_mut().index_mut() {
                        m.keep_warm();
                    }
                    s.flush_index().await
                });
                if let Err(e) = rt.block_on(flushed).and_then(|r| r) {
                    tracing::warn!(shard = i, %e, "metadata not flushed at stop; the next start replays the log");
                }
            }
        }
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.peers.stop_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Reads a blob (or a range) on this shard, streamed and hashed: the bytes read and their xxh3-64.
pub async fn read_digest(s: &Rc<Shard>, key: BlobKey, range: Option<(u64, Option<u64>)>) -> Result<(u64, u64)> {
    let (_, _, mut reader) = ops::open_read(s, key, range, Conditions::default()).await?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut n = 0u64;
    while let Some(piece) = reader.next().await {
        let piece = piece?;
        n += piece.len() as u64;
        h.update(&piece);
    }
    Ok((n, h.digest()))
}

/// Tasks every shard runs for its whole life.
fn spawn_background(s: &Rc<Shard>) {
    let every = std::time::Duration::from_secs(s.node.config.expiry_sweep_secs.max(1));
    let sweep = {
        let s = s.clone();
        async move {
            loop {
                match blob::expire_staged(&s, shard::now_ns()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(shard = s.index, blobs = n, "dropped expired uncommitted blocks"),
                    Err(e) => tracing::error!(shard = s.index, %e, "expiry sweep failed"),
                }
                tokio::time::sleep(every).await;
            }
        }
    };
    background::spawn(s, "expiry-sweep", sweep, || {});
}
