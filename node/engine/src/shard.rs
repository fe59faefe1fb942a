//! A shard's state and the rules for finding the shard that owns a thing.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use edgeblob_io::executor::Peers;
use edgeblob_io::routed::DeviceLost;
use edgeblob_io::superblock::Superblock;
use edgeblob_io::volume::NodeLayout;
use edgeblob_io::{BlockDevice, Extent, FixedPool};
use edgeblob_meta::index::shard::HoldsIndex;
use edgeblob_meta::model::{BlobKey, ChunkRef, Container};
use edgeblob_meta::refs::RefCounts;
use edgeblob_meta::shard_store::{self, Want};
use edgeblob_meta::ShardStore;
use xxhash_rust::xxh3::xxh3_64;

use super::error::{EngineError, Result};
use super::reduce::Reducer;
use super::refs::{ReadEpochs, RefTable, Space};
use super::write::Placed;
use crate::config::EngineConfig;

/// The shard that holds the container catalog.
pub const CATALOG_SHARD: usize = 0;

/// State shared by all shards of a node (read-mostly).
pub struct NodeShared {
    pub config: EngineConfig,
    /// The node's superblock (device 0's, or the first device present): its identity, secret
    /// and version; `layout` says where everything lies on all of its devices.
    pub sb: Superblock,
    pub layout: NodeLayout,
    /// What each device is called (its path), in the node's order.
    pub device_names: Vec<String>,
    /// Why each device that cannot be used is lost (missing, unreadable, damaged): its shards
    /// are offline, and the node serves what the others hold, read-only.
    pub lost: Vec<Option<DeviceLost>>,
    /// Live containers, published by the catalog shard once their creation is durable.
    pub catalog: RwLock<BTreeMap<(String, String), Container>>,
    pub epochs: Arc<ReadEpochs>,
    clock: AtomicU64,
    /// The Azure tier, when configured (format v2).
    pub tier: Option<Arc<super::tier::Tier>>,
    /// Which chunks may have left the flash (released to the tier).
    pub released: super::tier::ReleasedMap,
    /// The highest tier generation any shard had logged at start (each starts the next).
    pub tier_floor: AtomicU64,
    /// What the tier releases first, and what never.
    pub policy: super::tier::policy::Policy,
    /// Device counters (operations, bytes, errors, in flight) by shard, then by device: each
    /// set written by one shard's thread only.
    pub io: Vec<Vec<Arc<edgeblob_io::counted::DeviceStats>>>,
    /// Panics of the shards' background tasks, by task.
    pub background: super::background::Panics,
}

impl NodeShared {
    pub fn new(config: EngineConfig, sb: Superblock, layout: NodeLayout, device_names: Vec<String>) -> NodeShared {
        let released = super::tier::ReleasedMap::new(&layout);
        let policy = super::tier::policy::Policy::new(&layout, config.chunk_size as u64, config.tier.as_ref());
        let io = (0..layout.shards()).map(|_| (0..layout.devices()).map(|_| Default::default()).collect()).collect();
        NodeShared {
            config,
            sb,
            layout,
            lost: vec![None; device_names.len()],
            device_names,
            catalog: RwLock::new(BTreeMap::new()),
            epochs: Arc::new(ReadEpochs::default()),
            clock: AtomicU64::new(0),
            tier: None,
            released,
            tier_floor: AtomicU64::new(0),
            policy,
            io,
            background: Default::default(),
        }
    }

    pub fn shards(&self) -> usize {
        self.layout.shards() as usize
    }

    /// A value unique on this node and increasing, near the current time in nanoseconds: used
    /// for ETags and container incarnations.
    pub fn stamp(&self) -> u64 {
        let now = now_ns() as u64;
        let mut cur = self.clock.load(Ordering::SeqCst);
        loop {
            let next = now.max(cur + 1);
            match self.clock.compare_exchange_weak(cur, next, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return next,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Raises the stamp clock past every stamp found in metadata at start.
    pub fn raise_clock(&self, floor: u64) {
        self.clock.fetch_max(floor, Ordering::SeqCst);
    }

    pub fn container(&self, account: &str, name: &str) -> Option<Container> {
        let cat = self.catalog.read().unwrap_or_else(|p| p.into_inner());
        cat.get(&(account.to_owned(), name.to_owned())).cloned()
    }

    /// A page of an account's containers whose names start with `prefix`, after `marker`, and the
    /// marker of the next page.
    pub fn list_containers(
        &self,
        account: &str,
        prefix: &str,
        marker: Option<&str>,
        max: usize,
    ) -> (Vec<(String, Container)>, Option<String>) {
        let cat = self.catalog.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(String, Container)> = cat
            .range((account.to_owned(), prefix.to_owned())..)
            .take_while(|((a, n), _)| a == account && n.starts_with(prefix))
            .filter(|((_, n), _)| marker.is_none_or(|m| n.as_str() > m) && !crate::container::is_node_private(n))
            .take(max + 1)
            .map(|((_, n), c)| (n.clone(), c.clone()))
            .collect();
        let next = (out.len() > max).then(|| {
            out.truncate(max);
            out.last().map(|(n, _)| n.clone()).unwrap_or_default()
        });
        (out, next)
    }

    pub fn owner_of(&self, key: &BlobKey) -> usize {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for part in [&key.account, &key.container, &key.name] {
            h.update(part.as_bytes());
            h.update(&[0]);
        }
        (h.digest() % self.shards() as u64) as usize
    }

    /// The shard that counts a deduplicated chunk of hash `hash` stored on `device`: chunks are
    /// deduplicated within a device, never across, so a blob written on one device reads from
    /// it alone, and a lost device takes no other device's blobs with it.
    pub fn hash_owner(&self, hash: &[u8; 16], device: usize) -> usize {
        let on = self.layout.shards_on(device);
        on.start + (xxh3_64(hash) % on.len() as u64) as usize
    }

    /// Why shard `shard` is offline: its device is lost.
    pub fn offline(&self, shard: usize) -> Option<&DeviceLost> {
        self.lost.get(self.device_of(shard)).and_then(Option::as_ref)
    }

    /// Why the node takes no changes, when it runs without some of its devices.
    pub fn read_only(&self) -> Option<EngineError> {
        let lost: Vec<String> = self.lost.iter().flatten().map(|l| l.to_string()).collect();
        (!lost.is_empty()).then(|| EngineError::ReadOnly(lost.join("; ")))
    }

    /// The device shard `shard`'s region lies on.
    pub fn device_of(&self, shard: usize) -> usize {
        self.layout.place(shard as u32).0
    }

    /// The shard that counts references to `c`.
    pub fn ref_owner(&self, c: &ChunkRef) -> usize {
        if c.is_dedup() {
            self.hash_owner(&c.hash, edgeblob_io::volume::split(c.offset).0)
        } else {
            self.region_of(c.offset)
        }
    }

    /// Whether the index counts references (format v2): the in-memory table then holds pins.
    pub fn counts_kept(&self) -> bool {
        self.sb.version >= 2
    }

    pub fn region_of(&self, offset: u64) -> usize {
        self.layout.shard_of(offset).expect("chunk offsets lie in a region") as usize
    }
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

pub struct Shard {
    pub index: usize,
    pub dev: Rc<dyn BlockDevice>,
    pub pool: FixedPool,
    pub meta: RefCell<ShardStore>,
    /// Log records replayed at open (v2: those the index did not cover yet).
    pub replayed: usize,
    /// Where the metadata index grows (format v2).
    pub index_space: Option<super::index_space::IndexSpace>,
    pub refs: RefCell<RefTable>,
    pub space: RefCell<Space>,
    pub reducer: Reducer,
    pub peers: Peers<Shard>,
    pub node: Arc<NodeShared>,
    /// Chunks of request data this shard may hold in flight (`write_buffer_bytes`).
    pub write_budget: Arc<tokio::sync::Semaphore>,
    /// Decoded small and compressed chunks (`read_cache_bytes` split over the shards).
    pub cache: super::cache::ChunkCache,
    /// Whether the last batch of reference changes this shard sent failed (v2): waiting for
    /// them to be counted is then pointless until one succeeds.
    pub refs_stalled: std::cell::Cell<bool>,
    /// Pins that records of this shard consumed, by LSN, until their changes are counted (v2).
    pub unpins: RefCell<BTreeMap<u64, RefCounts>>,
    /// The tier's loop on this shard, and who waits for it.
    pub tier: super::tier::ShardTier,
}

impl Shard {
    /// Waits, before a commit, for the metadata log to be able to take it without refusing it
    /// as busy (see `MetaStore::ready`), and gives the index room for its next flush.
    pub async fn log_ready(&self) -> super::error::Result<()> {
        // Without some of its devices the node changes nothing: what counts references and
        // space spans them all.
        if let Some(e) = self.node.read_only() {
            return Err(e);
        }
        // Under pressure for the index's room, each wait ends with one flush; the ones due after
        // it (a large one, of many deletes, then what came in meanwhile) go first too, or the
        // commit would be refused as busy. A few at most: past them, the commit decides.
        for _ in 0..8 {
            self.grant_index_space();
            let ready = self.meta.borrow_mut().ready();
            ready.await?;
            if !self.meta.borrow().short_of_room() {
                break;
            }
        }
        Ok(())
    }

    /// Writes every change applied so far into the index (a clean stop, or before a walk of the
    /// index), with room granted for it first: after a restart the replayed changes are dirty
    /// and no commit has granted their flush its segments yet.
    pub async fn flush_index(&self) -> super::error::Result<()> {
        self.grant_index_space();
        Ok(edgeblob_meta::shard_store::flush_all(&self.meta).await?)
    }

    /// Tops up the index's spare segments for the flush in flight and the next (the index
    /// admits changes against what it holds: `edgeblob_meta::index::room`).
    fn grant_index_space(&self) {
        let Some(ix) = &self.index_space else { return };
        let meta = self.meta.borrow();
        let Some(m) = meta.index() else { return };
        let (flight, next) = m.load();
        self.top_up_index(ix.wanted(flight, next));
    }

    /// Sets aside up to `want` spare segments for the index, as far as the region can.
    /// How many items of `item_len` bytes one record may carry: a record must fit a log half
    /// with room to spare (an eighth of it; a v1 shard, or none yet, counts 1 MiB), and carries
    /// at least one.
    pub fn per_record(&self, item_len: usize) -> usize {
        let half = self.meta.borrow().index().map_or(1 << 20, |m| m.half_len());
        (half / 8 / item_len).max(1)
    }

    pub fn top_up_index(&self, want: usize) {
        let Some(ix) = &self.index_space else { return };
        let mut space = self.space.borrow_mut();
        space.reclaim(self.node.epochs.horizon());
        ix.top_up(&mut space.alloc, want);
    }

    /// Takes one reference on each chunk, on the shards that count them (format v1). Posted in
    /// order, so a later give-back from this shard never overtakes it.
    pub fn take_refs(self: &Rc<Self>, refs: RefCounts) {
        debug_assert!(!self.node.counts_kept(), "v2 counts references in the index");
        self.on_ref_owners(refs, Shard::take_local);
    }

    /// Runs `f` with each group of references on the shard that counts them: at once for this
    /// shard, posted (in order) for the others.
    fn on_ref_owners(self: &Rc<Self>, refs: RefCounts, f: fn(&Rc<Shard>, &RefCounts)) {
        for (owner, group) in refs.split_by(|c| self.node.ref_owner(c)) {
            if owner == self.index {
                f(self, &group);
            } else {
                let _ = self.peers.post(owner, move |s| f(s, &group));
            }
        }
    }

    fn take_local(self: &Rc<Self>, refs: &RefCounts) {
        let mut table = self.refs.borrow_mut();
        for (c, n) in refs.iter() {
            table.take(c, *n);
        }
    }

    /// Gives back references (v1: counted ones, whose dropping record is durable; v2: pins);
    /// chunks left with none are freed in their region.
    pub fn give_back_refs(self: &Rc<Self>, refs: RefCounts) {
        self.on_ref_owners(refs, Shard::give_back_local);
    }

    pub(crate) fn give_back_local(self: &Rc<Self>, refs: &RefCounts) {
        if !self.node.counts_kept() {
            let freed: Vec<ChunkRef> = {
                let mut table = self.refs.borrow_mut();
                refs.iter().filter_map(|(c, n)| table.give_back(c, *n)).collect()
            };
            self.free_chunks(freed);
            return;
        }
        // v2: whether a chunk whose last pin goes is still counted is read with the pin's
        // decrement, so the entries must be resident first (they are, almost always: a record's
        // pins go back just after its changes were logged here).
        let wants: Vec<Want> = refs.iter().map(|(c, _)| Want::Chunk(c.id())).collect();
        if self.meta.borrow().all_resident(&wants) {
            self.unpin(refs);
            return;
        }
        let (s, refs) = (self.clone(), refs.clone());
        tokio::task::spawn_local(async move {
            match shard_store::resident(&s.meta, &wants).await {
                Ok(()) => s.unpin(&refs),
                // The pins stay: the chunks are kept (until a restart), never freed unread.
                Err(e) => tracing::error!(shard = s.index, %e, "pins kept: the chunks' counts could not be read"),
            }
        });
    }

    /// Drops pins (v2), with the chunks' entries resident: a chunk left with neither a pin nor a
    /// count is freed once the log holds every count change applied so far (the one that took
    /// its count away may not be durable yet).
    fn unpin(self: &Rc<Self>, refs: &RefCounts) {
        let (freed, durable) = {
            let meta = self.meta.borrow();
            let mut table = self.refs.borrow_mut();
            let freed: Vec<ChunkRef> = refs
                .iter()
                .filter_map(|(c, n)| table.give_back(c, *n))
                .filter(|c| !meta.state().chunks.contains_key(&c.id()))
                .collect();
            (freed, meta.index().map(|m| m.durable(m.applied())))
        };
        if freed.is_empty() {
            return;
        }
        let s = self.clone();
        tokio::task::spawn_local(async move {
            if let Some(durable) = durable {
                if let Err(e) = durable.await {
                    // Kept: a failed log cannot say the change that freed them is durable.
                    tracing::error!(shard = s.index, %e, chunks = freed.len(), "chunks kept: the log failed");
                    return;
                }
            }
            s.free_chunks(freed);
        });
    }

    /// Frees chunks nothing references any more, in their regions (a data file written before
    /// chunks were placed in their counting shard's region may hold some elsewhere).
    pub fn free_chunks(&self, freed: Vec<ChunkRef>) {
        self.free_extents(freed.iter().map(ChunkRef::extent).collect());
    }

    /// Frees space in the regions it lies in, once the reads that began before are done.
    pub fn free_extents(&self, freed: Vec<Extent>) {
        let mut by_region: BTreeMap<usize, Vec<Extent>> = BTreeMap::new();
        for e in freed {
            by_region.entry(self.node.region_of(e.offset)).or_default().push(e);
        }
        for (region, extents) in by_region {
            if region == self.index {
                self.free_local(&extents);
            } else {
                let _ = self.peers.post(region, move |s| s.free_local(&extents));
            }
        }
    }

    fn free_local(&self, extents: &[Extent]) {
        let stamp = self.node.epochs.stamp();
        let mut space = self.space.borrow_mut();
        for e in extents {
            space.free_later(stamp, *e);
        }
    }

    /// Keeps the pins a record consumed (v2) until the shards that count its chunks have logged
    /// its changes: the record's references are counted from then on. They are sent with the
    /// record's changes (`counts::deliver`), which a record holding pins always has: it adds
    /// the chunks they pin.
    pub fn unpin_after_delivery(&self, lsn: u64, held: RefCounts) {
        debug_assert!(
            held.is_empty() || self.meta.borrow().index().is_some_and(|m| m.in_outbox(lsn)),
            "record {lsn} holds pins but changes no count"
        );
        if !held.is_empty() {
            let mut q = self.unpins.borrow_mut();
            match q.get_mut(&lsn) {
                Some(r) => r.append(held),
                None => {
                    q.insert(lsn, held);
                }
            }
        }
    }

    /// The pins records up to `lsn` hold, all together (sent with their changes).
    pub fn pins_through(&self, lsn: u64) -> RefCounts {
        let mut all = RefCounts::default();
        for held in self.unpins.borrow().range(..=lsn).map(|(_, h)| h) {
            all.append(held.clone());
        }
        all
    }

    /// The shards for which `gave_back` holds have given back their part of the pins of the
    /// records up to `lsn`.
    pub fn unpinned_through(&self, lsn: u64, gave_back: impl Fn(usize) -> bool) {
        let mut q = self.unpins.borrow_mut();
        let later = q.split_off(&lsn.saturating_add(1));
        let through = std::mem::replace(&mut *q, later);
        for (l, held) in through {
            if held.iter().all(|(c, _)| gave_back(self.node.ref_owner(c))) {
                continue;
            }
            let left: RefCounts = held
                .split_by(|c| self.node.ref_owner(c))
                .into_iter()
                .filter(|(owner, _)| !gave_back(*owner))
                .fold(RefCounts::default(), |mut all, (_, part)| {
                    all.append(part);
                    all
                });
            if !left.is_empty() {
                q.insert(l, left);
            }
        }
    }

    /// On the shard that counts a new chunk's references: the stored chunk with its hash (one
    /// more reference, or pin, taken) when `lookup`, else room for it in this shard's region.
    pub async fn place_chunk(self: &Rc<Self>, hash: &[u8; 16], lookup: bool, room: u64) -> Result<Placed> {
        // Its allocator holds nothing free then (`init_shard`); this says why.
        if let Some(e) = self.node.read_only() {
            return Err(e);
        }
        if lookup {
            if let Some(found) = self.lookup_chunk(hash).await? {
                return Ok(Placed::Found(found));
            }
        }
        let mut extent = self.allocate(room);
        // A full region may still have room the index holds and will not need: once its flush
        // ends, or once a compaction gives back what deletes freed inside it. A few rounds
        // (the compaction may wait behind a flush), then the region is full.
        for _ in 0..4 {
            if extent.is_some() {
                break;
            }
            let wait = self.meta.borrow_mut().index_mut().and_then(|m| m.room_for_data());
            let Some(wait) = wait else { break };
            wait.await;
            extent = self.allocate(room);
        }
        Ok(match extent {
            Some(e) => Placed::Room(e),
            None => Placed::Full,
        })
    }

    /// The dedup candidate for `hash` with a reference (v2: a pin) taken on it: a pinned chunk,
    /// else (v2) the one the dedup table names, read from the index when not resident.
    async fn lookup_chunk(self: &Rc<Self>, hash: &[u8; 16]) -> Result<Option<ChunkRef>> {
        loop {
            if let Some(found) = self.refs.borrow_mut().lookup_take(hash) {
                return Ok(Some(found));
            }
            if !self.node.counts_kept() {
                return Ok(None);
            }
            let named = {
                let meta = self.meta.borrow();
                let want = Want::Dedup(*hash);
                if meta.index().is_some_and(|m| m.surely_none(&want)) {
                    // A new chunk's hash, as a rule: its key filter answers without a read.
                    Some(None)
                } else {
                    meta.all_resident(&[want]).then(|| meta.state().dedup.get(hash).copied())
                }
            };
            let id = match named {
                Some(None) => return Ok(None),
                Some(Some(id)) => id,
                None => {
                    shard_store::resident(&self.meta, &[Want::Dedup(*hash)]).await?;
                    continue;
                }
            };
            let wants = [Want::Dedup(*hash), Want::Chunk(id)];
            if !self.meta.borrow().all_resident(&wants) {
                shard_store::resident(&self.meta, &wants).await?;
                continue;
            }
            let meta = self.meta.borrow();
            let entry = meta.state().chunks.get(&id);
            debug_assert!(entry.is_some(), "a dedup candidate is counted: {id:?}");
            let Some(entry) = entry else { return Ok(None) };
            // A chunk only in the tier is not a candidate: comparing its bytes would download
            // it. The chunk is stored again (tiering.md 5.4).
            if entry.location.local() != Some(entry.chunk.offset) {
                return Ok(None);
            }
            // Pinned with its count read: a drop that takes the count away now leaves the pin.
            self.refs.borrow_mut().pin(entry.chunk, 1);
            return Ok(Some(entry.chunk));
        }
    }

    /// After a chunk was written into room from [`Shard::place_chunk`]: gives back what it did
    /// not use and registers the chunk with its first reference (none when the write failed).
    pub fn unplace(&self, spare: Extent, written: Option<ChunkRef>) {
        debug_assert!(written.is_none_or(|c| self.node.region_of(c.offset) == self.index));
        if spare.len > 0 {
            self.space.borrow_mut().alloc.free(spare);
        }
        if let Some(c) = written {
            self.refs.borrow_mut().register(c);
        }
    }

    /// Bytes of this shard's data area given to its metadata index (0 in format v1).
    pub fn index_bytes(&self) -> u64 {
        self.index_space.as_ref().map_or(0, |ix| ix.bytes())
    }

    /// An extent of `len` bytes in this shard's region for data: never from the index's spares
    /// unless the index will not need them (above its reserve and its next flushes' worst case,
    /// and no flush running).
    pub fn allocate(&self, len: u64) -> Option<Extent> {
        let mut space = self.space.borrow_mut();
        space.reclaim(self.node.epochs.horizon());
        if let Some(e) = space.alloc.allocate(len) {
            return Some(e);
        }
        let ix = self.index_space.as_ref()?;
        let meta = self.meta.try_borrow().ok()?;
        let m = meta.index().filter(|m| !m.flushing())?;
        let (flight, next) = m.load();
        if ix.give_back(&mut space.alloc, ix.wanted(flight, next)) == 0 {
            return None;
        }
        space.alloc.allocate(len)
    }
}
