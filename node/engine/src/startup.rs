//! Starting a node: open (or create and format) the device, start the shards (each recovers its
//! own log), then rebuild what is derived from the logs: the published catalog, reference counts,
//! the dedup index and every region's allocator.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use edgeblob_io::executor::{spawn_shards, InitFuture, Peers};
use edgeblob_io::fault::SimDisk;
use edgeblob_io::superblock::Superblock;
use edgeblob_io::sync_device::SyncDevice;
use edgeblob_io::uring::{Ring, UringDevice};
use edgeblob_io::{AlignedBuf, BlockDevice, DeviceFile, Extent, ExtentAllocator, FixedPool, PAGE_SIZE};
use edgeblob_meta::index::db::Index;
use edgeblob_meta::index::region::{IndexPlace, RegionBackend, Segments, SharedDevice};
use edgeblob_meta::index::room::Room;
use edgeblob_meta::index::shard::{HoldsIndex, IndexConfig, ShardIndex};
use edgeblob_meta::index::thread::IndexThread;
use edgeblob_meta::model::BlobKey;
use edgeblob_meta::refs::RefCounts;
use edgeblob_meta::wal::LogPlace;
use edgeblob_meta::{shard_store, MetaStore, ShardStore};

use super::error::{EngineError, Result};
use super::index_space::IndexSpace;
use super::reduce::Reducer;
use super::refs::{RefTable, Space};
use super::shard::{NodeShared, Shard, CATALOG_SHARD};
use super::Node;
use crate::config::EngineConfig;

/// Slot size of the registered buffer pool: small and random reads and writes go through it;
/// large chunk I/O uses plain buffers (pinning cost is small next to a 1 MiB transfer).
const FIXED_SLOT: usize = 64 * 1024;

pub fn log_place(sb: &Superblock, shard: u32) -> LogPlace {
    LogPlace { shard, uuid: sb.uuid, halves: [sb.layout.log_half(shard, 0), sb.layout.log_half(shard, 1)] }
}

/// Where a shard's metadata index lives (format v2; None in v1).
pub fn index_place(sb: &Superblock, shard: u32) -> Option<IndexPlace> {
    let header = sb.layout.index_header(shard)?;
    Some(IndexPlace { shard, uuid: sb.uuid, header, segment_len: sb.layout.segment_len })
}

/// The segments a new index starts in: the first two of its shard's data area, so that it can be
/// created before the shard knows what else is free.
fn first_segments(sb: &Superblock, shard: u32) -> Vec<u64> {
    let (start, _) = sb.layout.data_area(shard);
    (0..2).map(|i| start + i * sb.layout.segment_len).collect()
}

/// Where a node's bytes live: each shard gets its own device over them. The data file or block
/// device of the configuration ([`FileMedia`]), or a simulated disk that injects faults
/// ([`SimDisk`], for tests).
pub trait Media: Send + Sync + 'static {
    /// Bytes addressable.
    fn len(&self) -> u64;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A device for shard `index`, made on the shard's thread; `register` is a buffer pool to
    /// register with it where the backend can.
    fn device(&self, index: usize, register: Option<&FixedPool>) -> Rc<dyn BlockDevice>;

    /// A device whose operations complete at once, for the calling thread (format, superblock).
    fn sync_device(&self) -> Rc<dyn BlockDevice>;

    /// A device whose operations complete at once, for any thread (the metadata index's).
    fn shared_device(&self) -> SharedDevice;

    /// What to call it in errors and logs.
    fn name(&self) -> String;
}

/// A data file or a raw block device, driven by io_uring (pread/pwrite where io_uring is not
/// available).
pub struct FileMedia {
    pub file: Arc<DeviceFile>,
    /// Operations a shard keeps in the kernel at once ([`EngineConfig::queue_depth`]).
    pub queue_depth: usize,
}

impl FileMedia {
    pub fn new(file: Arc<DeviceFile>) -> FileMedia {
        FileMedia { file, queue_depth: EngineConfig::default().queue_depth }
    }
}

impl Media for FileMedia {
    fn len(&self) -> u64 {
        self.file.len()
    }

    fn device(&self, index: usize, register: Option<&FixedPool>) -> Rc<dyn BlockDevice> {
        match Ring::new(256, self.queue_depth) {
            Ok(ring) => {
                tokio::task::spawn_local(ring.driver());
                let registered = register.is_some_and(|pool| {
                    ring.register_pool(pool)
                        .map_err(|e| tracing::warn!(shard = index, %e, "buffer registration refused; plain buffers"))
                        .is_ok()
                });
                Rc::new(UringDevice::new(ring, self.file.clone(), registered))
            }
            Err(e) => {
                tracing::warn!(shard = index, %e, "io_uring unavailable; falling back to pread/pwrite");
                self.sync_device()
            }
        }
    }

    fn sync_device(&self) -> Rc<dyn BlockDevice> {
        Rc::new(SyncDevice::new(self.file.clone()))
    }

    fn shared_device(&self) -> SharedDevice {
        Arc::new(SyncDevice::new(self.file.clone()))
    }

    fn name(&self) -> String {
        self.file.path().display().to_string()
    }
}

impl Media for SimDisk {
    fn len(&self) -> u64 {
        SimDisk::len(self)
    }

    fn device(&self, _: usize, _: Option<&FixedPool>) -> Rc<dyn BlockDevice> {
        Rc::new(SimDisk::device(self))
    }

    fn sync_device(&self) -> Rc<dyn BlockDevice> {
        Rc::new(SimDisk::device(self))
    }

    fn shared_device(&self) -> SharedDevice {
        Arc::new(SimDisk::device(self))
    }

    fn name(&self) -> String {
        "simulated disk".into()
    }
}

/// Reads and verifies the superblock of an open device.
pub fn read_superblock(file: &DeviceFile) -> Result<Superblock> {
    let mut page = AlignedBuf::zeroed(PAGE_SIZE);
    file.file().read_exact_at(&mut page, 0)?;
    Superblock::decode(&page, file.len())
        .map_err(|e| EngineError::Io(std::io::Error::other(format!("{}: {e}", file.path().display()))))
}

fn superblock_of(media: &dyn Media) -> Result<Superblock> {
    let dev = media.sync_device();
    let (res, page) = futures::executor::block_on(dev.read(AlignedBuf::zeroed(PAGE_SIZE), 0));
    res?;
    Superblock::decode(&page, media.len())
        .map_err(|e| EngineError::Io(std::io::Error::other(format!("{}: {e}", media.name()))))
}

/// Formats a new data file at `path`: built under a temporary name and renamed into place once
/// complete, so a crash during format never leaves a half-formatted file to refuse later.
pub fn format_file(path: &Path, size: u64, shards: u32) -> Result<Superblock> {
    format_file_version(path, size, shards, edgeblob_io::superblock::FORMAT_VERSION)
}

/// [`format_file`] in format `version` (1 only for tests and upgrade checks).
pub fn format_file_version(path: &Path, size: u64, shards: u32, version: u32) -> Result<Superblock> {
    let sb = Superblock::new_version(size, shards, version)
        .map_err(|e| EngineError::Io(std::io::Error::other(e.to_string())))?;
    format_file_as(path, sb)
}

/// [`format_file`] with a given superblock (a restore formats a node's device as it was: its
/// uuid, secret and geometry).
pub fn format_file_as(path: &Path, sb: Superblock) -> Result<Superblock> {
    let tmp = path.with_extension("formatting");
    let _ = std::fs::remove_file(&tmp);
    let file = Arc::new(DeviceFile::create(&tmp, sb.device_len)?);
    let sb = format_with(&FileMedia::new(file.clone()), sb).inspect_err(|_| {
        // Its space is reserved: give it back rather than leave it until the next start.
        let _ = std::fs::remove_file(&tmp);
    })?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(if dir.as_os_str().is_empty() { Path::new(".") } else { dir })?.sync_all()?;
    }
    Ok(sb)
}

/// Writes a superblock and an empty log for every shard.
pub fn format_device(file: &Arc<DeviceFile>, shards: u32) -> Result<Superblock> {
    format_media(&FileMedia::new(file.clone()), shards, edgeblob_io::superblock::FORMAT_VERSION)
}

fn format_media(media: &dyn Media, shards: u32, version: u32) -> Result<Superblock> {
    let sb = Superblock::new_version(media.len(), shards, version)
        .map_err(|e| EngineError::Io(std::io::Error::other(e.to_string())))?;
    format_with(media, sb)
}

fn format_with(media: &dyn Media, sb: Superblock) -> Result<Superblock> {
    let shards = sb.layout.shards;
    let dev = media.sync_device();
    futures::executor::block_on(async {
        for s in 0..shards {
            edgeblob_meta::replay::format_log(&log_place(&sb, s), dev.as_ref()).await?;
            if let Some(place) = index_place(&sb, s) {
                RegionBackend::format_with(dev.as_ref(), &place, &first_segments(&sb, s))?;
            }
        }
        let mut page = AlignedBuf::zeroed(PAGE_SIZE);
        page.copy_from_slice(&sb.encode());
        let (res, _) = dev.write(page, 0).await;
        res?;
        dev.flush().await
    })?;
    tracing::info!(media = media.name(), shards, bytes = media.len(), uuid = ?sb, "formatted");
    Ok(sb)
}

fn default_shards(config: &EngineConfig) -> usize {
    config.shards.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The file beside a data file that says a restore into it has not finished.
pub fn restoring_marker(data: &Path) -> std::path::PathBuf {
    let mut name = data.as_os_str().to_owned();
    name.push(".restoring");
    std::path::PathBuf::from(name)
}

pub fn open(config: EngineConfig) -> Result<Node> {
    config.validate().map_err(|e| EngineError::Io(std::io::Error::other(e)))?;
    let path = &config.data_path;
    if restoring_marker(path).exists() {
        return Err(EngineError::Io(std::io::Error::other(format!(
            "a restore into {} has not finished: run edgeblob-admin restore again (it starts over)",
            path.display()
        ))));
    }
    if !path.exists() {
        format_file_version(path, config.data_size, default_shards(&config) as u32, config.format_version)?;
    }
    let file = Arc::new(DeviceFile::open(path)?);
    let queue_depth = config.queue_depth;
    open_on(config, Arc::new(FileMedia { file, queue_depth }))
}

/// Opens a node on a simulated disk, formatting it first when it holds no superblock.
pub fn open_simulated(config: EngineConfig, disk: SimDisk) -> Result<Node> {
    config.validate().map_err(|e| EngineError::Io(std::io::Error::other(e)))?;
    if superblock_of(&disk).is_err() && disk.image()[..PAGE_SIZE].iter().all(|&b| b == 0) {
        format_media(&disk, default_shards(&config) as u32, config.format_version)?;
    }
    open_on(config, Arc::new(disk))
}

fn open_on(config: EngineConfig, media: Arc<dyn Media>) -> Result<Node> {
    let sb = superblock_of(media.as_ref())?;
    let shards = sb.layout.shards as usize;
    if let Some(want) = config.shards.filter(|&n| n != shards) {
        return Err(EngineError::Io(std::io::Error::other(format!(
            "{} was formatted with {shards} shards but the configuration asks for {want}",
            media.name()
        ))));
    }
    // Registered buffers count against RLIMIT_MEMLOCK for the whole process: leave half of it.
    let per_shard = config.registered_buffer_bytes.min(edgeblob_io::sys::memlock_limit() / 2 / shards);
    let slots = (per_shard / FIXED_SLOT).min(u16::MAX as usize) as u16;
    let mut shared = NodeShared::new(config.clone(), sb.clone());
    if let Some(tier) = &config.tier {
        // The tier names chunks by the ids and locations only format 2 keeps.
        if sb.version < 2 {
            return Err(EngineError::Tier(format!(
                "{} is format version {}: the tier needs version 2 (edgeblob-admin upgrade)",
                media.name(),
                sb.version
            )));
        }
        shared.tier = Some(Arc::new(super::tier::Tier::start(tier, sb.uuid).map_err(EngineError::Tier)?));
    }
    let shared = Arc::new(shared);
    let init_shared = shared.clone();
    let init = move |index: usize, peers: Peers<Shard>| -> InitFuture<Shard> {
        let shared = init_shared.clone();
        let media = media.clone();
        Box::pin(async move { init_shard(index, peers, shared, media.as_ref(), slots).await })
    };
    let (peers, threads) = spawn_shards(shards, config.pin_threads, config.cpus.clone(), init)?;
    let node = Node { peers, threads, shared };
    if let Err(e) = rebuild(&node) {
        node.stop();
        return Err(e);
    }
    Ok(node)
}

async fn init_shard(
    index: usize,
    peers: Peers<Shard>,
    node: Arc<NodeShared>,
    media: &dyn Media,
    slots: u16,
) -> std::io::Result<Rc<Shard>> {
    let pool = FixedPool::new(slots.max(1), FIXED_SLOT);
    let dev: Rc<dyn BlockDevice> = Rc::new(edgeblob_io::counted::Counted::new(
        media.device(index, (slots > 0).then_some(&pool)),
        node.devices[index].clone(),
    ));
    let place = log_place(&node.sb, index as u32);
    let (offset, len) = node.sb.layout.data_area(index as u32);
    let (meta, index_space, replayed) = match index_place(&node.sb, index as u32) {
        None => {
            let (meta, report) = MetaStore::open(place, dev.clone()).await.map_err(std::io::Error::other)?;
            tracing::info!(
                shard = index,
                device = dev.describe(),
                registered_bytes = slots as usize * FIXED_SLOT,
                format = 1,
                records = report.records,
                torn_tail = report.torn_tail,
                half = report.half,
                generation = report.generation,
                "shard recovered"
            );
            (ShardStore::V1(Box::new(meta)), None, report.records)
        }
        Some(ix_place) => {
            let segments = Arc::new(Segments::default());
            let backend = RegionBackend::open(media.shared_device(), ix_place, segments.clone())?;
            let (held, spares) = (backend.segments(), backend.spares());
            let db = Index::open(backend, node.config.index_cache_bytes).map_err(std::io::Error::other)?;
            let thread = IndexThread::spawn(format!("edgeblob-index-{index}"), db)?;
            let cfg = IndexConfig {
                cache_bytes: node.config.meta_cache_bytes,
                flush_bytes: node.config.meta_flush_bytes,
                ..IndexConfig::default()
            };
            let (meta, report) =
                ShardIndex::open(place, dev.clone(), thread, cfg).await.map_err(std::io::Error::other)?;
            tracing::info!(
                shard = index,
                device = dev.describe(),
                registered_bytes = slots as usize * FIXED_SLOT,
                format = 2,
                index_lsn = report.index_lsn,
                index_segments = held.len(),
                records = report.replayed,
                torn_tail = report.torn_tail,
                "shard recovered"
            );
            let space = IndexSpace::new(Room::new(segments, ix_place.segment_len), held, spares, len);
            (ShardStore::V2(Box::new(meta)), Some(space), report.replayed)
        }
    };
    let reducer =
        Reducer::new(node.sb.secret, node.config.compression, node.config.zstd_level).map_err(std::io::Error::other)?;
    Ok(Rc::new(Shard {
        index,
        dev,
        pool,
        meta: std::cell::RefCell::new(meta),
        replayed,
        index_space,
        refs: Default::default(),
        space: std::cell::RefCell::new(Space::new(ExtentAllocator::new(Extent { offset, len }))),
        reducer,
        peers,
        // Room for a full pipeline of chunks, a partial one and one more body piece (hyper
        // reads at most about 400 KiB at a time), whatever is configured: the budget bounds
        // memory; it must never stop a lone upload.
        write_budget: Arc::new(tokio::sync::Semaphore::new(super::write::budget_units(
            node.config.write_buffer_bytes.max((node.config.io_depth + 2) * node.config.chunk_size + (1 << 20)),
        ))),
        cache: super::cache::ChunkCache::new(node.config.read_cache_bytes / node.sb.layout.shards.max(1) as usize),
        refs_stalled: Default::default(),
        unpins: Default::default(),
        tier: Default::default(),
        node,
    }))
}

/// The derived state, rebuilt from every shard's recovered metadata.
fn rebuild(node: &Node) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let catalog = node.on(CATALOG_SHARD, |s| async move { s.meta.borrow().state().containers.clone() }).await?;
        let live: Arc<BTreeMap<(String, String), u64>> =
            Arc::new(catalog.iter().map(|(k, c)| (k.clone(), c.id)).collect());
        let mut floor = catalog.values().map(|c| c.id.max(c.etag)).max().unwrap_or(0);
        *node.shared.catalog.write().unwrap_or_else(|p| p.into_inner()) = catalog;

        // Each shard that must reports its references grouped by the shard that counts them
        // (see `shard_refs`).
        let n = node.shards();
        // v2: which sources each shard has never logged reference changes of, and the LSN each
        // source's metadata is at (see `counts::adopt`).
        let mut unadopted: Vec<Vec<usize>> = Vec::with_capacity(n);
        let mut at_lsn: Vec<u64> = Vec::with_capacity(n);
        // v2: the last LSN of each source each shard has logged the changes of.
        let mut logged: Vec<BTreeMap<u32, u64>> = Vec::with_capacity(n);
        // v2: each shard's clock floor, when its index keeps it.
        let mut clocks: Vec<Option<u64>> = Vec::with_capacity(n);
        for i in 0..n {
            let (missing, lsn, applied, clock) = node
                .on(i, move |s| async move {
                    let meta = s.meta.borrow();
                    match meta.index() {
                        Some(m) => {
                            let missing = (0..n).filter(|src| m.state.refs_pending(*src as u32, 0)).collect();
                            (missing, m.applied(), m.state.applied.clone(), m.clock())
                        }
                        None => (Vec::new(), 0, BTreeMap::new(), None),
                    }
                })
                .await?;
            unadopted.push(missing);
            at_lsn.push(lsn);
            logged.push(applied);
            clocks.push(clock);
        }
        let logged = Arc::new(logged);
        let mut adoptions: Vec<(usize, usize, RefCounts)> = Vec::new();
        let mut to_owner: Vec<RefCounts> = vec![RefCounts::default(); n];
        // All shards at once: each scan waits on its own index's reads.
        let scans = (0..n).map(|i| {
            let live = live.clone();
            // A v2 shard is scanned only for what its index does not keep yet: its clock floor,
            // counts not adopted (a file written before they were kept), or the check of debug
            // builds; v1 holds everything in memory.
            let wanted: Vec<bool> = (0..n)
                .map(|owner| !node.shared.counts_kept() || cfg!(debug_assertions) || unadopted[owner].contains(&i))
                .collect();
            let scan = wanted.iter().any(|w| *w) || clocks[i].is_none();
            node.on(i, move |s| async move { shard_refs(&s, &live, &wanted, scan).await })
        });
        floor = floor.max(clocks.iter().flatten().copied().max().unwrap_or(0));
        for (source, found) in futures::future::join_all(scans).await.into_iter().enumerate() {
            let found = found??;
            match clocks[source] {
                Some(kept) => debug_assert!(
                    kept >= found.max_etag,
                    "shard {source} keeps a clock floor {kept} below a stamp it holds, {}",
                    found.max_etag
                ),
                // An index written before the floor was kept: the scan supplies it, once.
                None if node.shared.counts_kept() => {
                    let max = found.max_etag;
                    floor = floor.max(max);
                    node.on(source, move |s| async move {
                        if let Some(m) = s.meta.borrow_mut().index_mut() {
                            m.raise_clock(max);
                        }
                    })
                    .await?;
                }
                None => floor = floor.max(found.max_etag),
            }
            for (owner, list) in found.by_owner.into_iter().enumerate() {
                if unadopted[owner].contains(&source) {
                    adoptions.push((owner, source, list.clone()));
                }
                to_owner[owner].append(list);
            }
        }
        node.shared.raise_clock(floor);

        // The space live chunks hold, by region. v1: the owners count the references found and
        // report the distinct extents. v2: what the chunk tables count, what outboxes will add
        // to them and what adoptions will (`counts::live_extents`); the owners count only to
        // check the chunk tables once every change is delivered (debug builds).
        let counts_kept = node.shared.counts_kept();
        let mut to_region: Vec<BTreeSet<(u64, u64)>> = vec![BTreeSet::new(); n];
        // Space that more than one source may name (undelivered additions, adoptions).
        let mut also: Vec<Vec<Extent>> = vec![Vec::new(); n];
        let mut derived: Vec<RefTable> = Vec::with_capacity(n);
        for (owner, list) in to_owner.into_iter().enumerate() {
            if counts_kept && !cfg!(debug_assertions) {
                break;
            }
            let (groups, refs) = node
                .on(owner, move |s| async move {
                    let mut refs = RefTable::default();
                    for (c, n) in list.iter() {
                        refs.rebuild_add(c, *n);
                    }
                    if s.node.counts_kept() {
                        return (Vec::new(), refs);
                    }
                    let groups: Vec<Extent> = refs.chunks().map(|(c, _)| c.extent()).collect();
                    *s.refs.borrow_mut() = refs;
                    (groups, RefTable::default())
                })
                .await?;
            for e in groups {
                to_region[node.shared.region_of(e.offset)].insert((e.offset, e.len));
            }
            derived.push(refs);
        }
        if counts_kept {
            let all = (0..n).map(|i| {
                let logged = logged.clone();
                node.on(i, move |s| async move { super::counts::live_space(&s, &logged).await })
            });
            for found in futures::future::join_all(all).await {
                let found = found??;
                for e in found.counted {
                    to_region[node.shared.region_of(e.offset)].insert((e.offset, e.len));
                }
                for e in found.pending {
                    also[node.shared.region_of(e.offset)].push(e);
                }
            }
            for (_, _, refs) in &adoptions {
                for (c, _) in refs.iter() {
                    also[node.shared.region_of(c.offset)].push(c.extent());
                }
            }
        }
        for (region, (list, also)) in to_region.into_iter().zip(also).enumerate() {
            node.on(region, move |s| async move {
                let mut space = s.space.borrow_mut();
                let segment_len = s.index_space.as_ref().map_or(0, |ix| ix.segment_len());
                let index =
                    s.index_space.iter().flat_map(|ix| &ix.held).map(|&offset| Extent { offset, len: segment_len });
                for e in index.chain(list.into_iter().map(|(offset, len)| Extent { offset, len })) {
                    space.alloc.reserve(e).map_err(|err| {
                        EngineError::Corrupt(format!(
                            "shard {}: two live chunks (or a chunk and the index) claim overlapping space: {err}",
                            s.index
                        ))
                    })?;
                }
                for e in also {
                    space.alloc.reserve_free_parts(e);
                }
                // The index's spares as its header named them, where they are still free (data
                // may have been written into one given back after the header was written), and
                // only now, with everything live reserved, may the index ask for more.
                if let Some(ix) = &s.index_space {
                    let free = ix
                        .spares_at_open
                        .iter()
                        .filter(|&&offset| space.alloc.reserve(Extent { offset, len: segment_len }).is_ok());
                    ix.room.segments.grant(free.copied().collect::<Vec<_>>());
                    let shard = Rc::downgrade(&s);
                    let grow = Box::new(move |want: usize| {
                        if let Some(s) = shard.upgrade() {
                            s.top_up_index(want);
                        }
                    });
                    if let Some(m) = s.meta.borrow_mut().index_mut() {
                        m.set_room(ix.room.clone(), grow);
                    }
                }
                Ok::<(), EngineError>(())
            })
            .await??;
        }
        // v2: counts kept in the index take over what they have never seen from the scan, then
        // every shard sends what its outbox holds (records replayed, or not delivered before a
        // crash); in debug builds the counts are then checked against the scan's.
        for (counter, source, refs) in adoptions {
            let lsn = at_lsn[source];
            node.on(counter, move |s| async move { super::counts::adopt(&s, source as u32, lsn, refs).await })
                .await??;
        }
        for i in 0..n {
            node.on(i, |s| async move {
                tokio::task::spawn_local(super::counts::deliver(s.clone()));
            })
            .await?;
        }
        for i in 0..n {
            node.on(i, |s| async move { super::counts::drained(&s).await }).await?;
        }
        // Only once every shard has sent everything: any of them may count for any other.
        if cfg!(debug_assertions) {
            for (i, refs) in derived.into_iter().enumerate() {
                node.on(i, |s| async move { super::counts::verify(&s, &refs).await }).await??;
            }
        }
        for i in 0..n {
            let g = node.on(i, |s| async move { s.meta.borrow().state().tier_generation }).await?;
            node.shared.tier_floor.fetch_max(g, std::sync::atomic::Ordering::SeqCst);
        }
        for i in 0..n {
            node.on(i, |s| async move {
                if s.node.counts_kept() {
                    tokio::task::spawn_local(filters_and_purges(s.clone()));
                    tokio::task::spawn_local(super::tier::upload::run(s.clone()));
                    if s.index == CATALOG_SHARD {
                        tokio::task::spawn_local(super::tier::epoch::run(s.clone()));
                        tokio::task::spawn_local(super::tier::policy::mark_at_start(s.clone()));
                    }
                }
                tokio::task::spawn_local(super::tier::released::mark_at_start(s.clone()));
                super::spawn_background(&s)
            })
            .await?;
        }
        Ok(())
    })
}

/// v2, once the shard serves: builds its key filters (until then a new key costs an index read)
/// and, from the same pass, purges what containers deleted before a crash left behind (their
/// entries are invisible meanwhile, and keep their space).
async fn filters_and_purges(s: Rc<Shard>) {
    // Keys come in container order: one catalog lookup per container, not per entry.
    let mut last: Option<(String, String, Option<u64>)> = None;
    let mut dead = std::collections::BTreeSet::new();
    let mut check = |k: &BlobKey, cid: u64| {
        let live = match &last {
            Some((a, c, id)) if *a == k.account && *c == k.container => *id,
            _ => {
                let id = s.node.container(&k.account, &k.container).map(|c| c.id);
                last = Some((k.account.clone(), k.container.clone(), id));
                id
            }
        };
        // Ids are never reused, and a container's never changes: an entry whose incarnation is
        // not the live one belongs to a deleted container, now or whenever it is checked.
        if live != Some(cid) {
            dead.insert((k.account.clone(), k.container.clone(), cid));
        }
    };
    let found = edgeblob_meta::index::shard::build_filters(&s.meta, &mut check).await;
    if let Err(e) = found {
        tracing::error!(shard = s.index, %e, "key filters not built: every new key costs an index read");
    }
    // And what only memory holds yet (records replayed at start).
    let resident: Vec<(BlobKey, u64)> = {
        let meta = s.meta.borrow();
        let st = meta.state();
        let blobs = st.blobs.iter().map(|(k, b)| (k.clone(), b.container_id));
        blobs.chain(st.staged.iter().map(|(k, x)| (k.clone(), x.container_id))).collect()
    };
    for (k, cid) in resident {
        check(&k, cid);
    }
    if !dead.is_empty() {
        tracing::warn!(shard = s.index, containers = dead.len(), "purging entries of deleted containers");
        super::container::spawn_purges(&s, dead.into_iter().collect());
    }
}

/// What one shard's metadata says at start.
struct ShardRefs {
    /// Chunk references by the shard that counts them.
    by_owner: Vec<RefCounts>,
    max_etag: u64,
}

/// The references a shard's metadata holds to chunks each shard counts (those `wanted`), and
/// its largest stamp; nothing when not `scan` (v2 keeps both).
async fn shard_refs(
    s: &Rc<Shard>,
    live: &BTreeMap<(String, String), u64>,
    wanted: &[bool],
    scan: bool,
) -> Result<ShardRefs> {
    let any = wanted.iter().any(|w| *w);
    let is_live = |k: &BlobKey, id: u64| live.get(&(k.account.clone(), k.container.clone())) == Some(&id);
    if let ShardStore::V1(meta) = &mut *s.meta.borrow_mut() {
        let dropped = meta.drop_orphans(&is_live);
        if dropped > 0 {
            tracing::warn!(shard = s.index, dropped, "dropped blobs of deleted containers");
        }
    }
    let mut out = ShardRefs { by_owner: vec![RefCounts::default(); s.peers.len()], max_etag: 0 };
    if !scan {
        return Ok(out);
    }
    let node = &s.node;
    // Entries of a dead incarnation (v2) hold their chunks until the purge deletes them.
    let mut add = |refs: RefCounts| {
        for (owner, group) in refs.split_by(|c| node.ref_owner(c)) {
            if wanted[owner] {
                out.by_owner[owner].append(group);
            }
        }
    };
    let mut max_etag = 0;
    let mut staged = RefCounts::default();
    shard_store::scan_all(
        &s.meta,
        |_, b| {
            max_etag = max_etag.max(b.etag);
            if any {
                add(b.refs());
            }
        },
        |_, _, b| {
            if any {
                staged.append(RefCounts::of_block(&b.block));
            }
        },
    )
    .await?;
    add(staged);
    out.max_etag = max_etag;
    Ok(out)
}
