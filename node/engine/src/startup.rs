//! Starting a node: open (or create and format) its devices, start the shards (each recovers its
//! own log), then rebuild what is derived from the logs: the published catalog, reference counts,
//! the dedup index and every region's allocator.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use edgeblob_io::executor::{spawn_shards, InitFuture, Peers};
use edgeblob_io::fault::SimDisk;
use edgeblob_io::routed::{DeviceLost, Member};
use edgeblob_io::superblock::Superblock;
use edgeblob_io::volume::NodeLayout;
use edgeblob_io::{AlignedBuf, BlockDevice, DeviceFile, Extent, ExtentAllocator, FixedPool, PAGE_SIZE};
use edgeblob_meta::index::db::Index;
use edgeblob_meta::index::region::{IndexPlace, RegionBackend, Segments};
use edgeblob_meta::index::room::Room;
use edgeblob_meta::index::shard::{HoldsIndex, IndexConfig, ShardIndex};
use edgeblob_meta::index::thread::IndexThread;
use edgeblob_meta::model::BlobKey;
use edgeblob_meta::refs::RefCounts;
use edgeblob_meta::wal::LogPlace;
use edgeblob_meta::{shard_store, MetaStore, ShardStore};

use super::error::{EngineError, Result};
use super::index_space::IndexSpace;
use super::media;
pub use super::media::{read_superblock, superblock_of, FileMedia, Media};
use super::reduce::Reducer;
use super::refs::{RefTable, Space};
use super::shard::{NodeShared, Shard, CATALOG_SHARD};
use super::Node;
use crate::config::EngineConfig;

/// Slot size of the registered buffer pool: small and random reads and writes go through it;
/// large chunk I/O uses plain buffers (pinning cost is small next to a 1 MiB transfer).
const FIXED_SLOT: usize = 64 * 1024;

pub fn log_place(node: &[u8; 16], layout: &NodeLayout, shard: u32) -> LogPlace {
    LogPlace { shard, uuid: *node, halves: [layout.log_half(shard, 0), layout.log_half(shard, 1)] }
}

/// Where a shard's metadata index lives (format v2; None in v1).
pub fn index_place(node: &[u8; 16], layout: &NodeLayout, shard: u32) -> Option<IndexPlace> {
    let header = layout.index_header(shard)?;
    Some(IndexPlace { shard, uuid: *node, header, segment_len: layout.segment_len(shard) })
}

/// The segments a new index starts in: the first two of its shard's data area, so that it can be
/// created before the shard knows what else is free.
fn first_segments(layout: &NodeLayout, shard: u32) -> Vec<u64> {
    let (start, _) = layout.data_area(shard);
    (0..2).map(|i| start + i * layout.segment_len(shard)).collect()
}

/// Formats a new data file at `path`: built under a temporary name and renamed into place once
/// complete, so a crash during format never leaves a half-formatted file to refuse later.
pub fn format_file(path: &Path, size: u64, shards: u32) -> Result<Superblock> {
    format_file_version(path, size, shards, edgeblob_io::superblock::FORMAT_VERSION)
}

/// [`format_file`] in format `version` (1 only for tests and upgrade checks).
pub fn format_file_version(path: &Path, size: u64, shards: u32, version: u32) -> Result<Superblock> {
    let sb = Superblock::new_version(size, shards, version).map_err(sb_err)?;
    format_file_as(path, sb)
}

/// [`format_file`] with a given superblock (a restore formats a node's device as it was: its
/// uuid, secret and geometry).
pub fn format_file_as(path: &Path, sb: Superblock) -> Result<Superblock> {
    let mut sbs = format_files_as(&[path.to_owned()], vec![sb])?;
    Ok(sbs.remove(0))
}

/// Formats a new node on data files of `size` bytes each, `shards` shards on each.
pub fn format_files(paths: &[PathBuf], size: u64, shards: u32, version: u32) -> Result<Vec<Superblock>> {
    let sbs = Superblock::new_node(&vec![size; paths.len()], shards, version).map_err(sb_err)?;
    format_files_as(paths, sbs)
}

/// Formats a node's data files as `sbs` say, in two steps: every file complete under its
/// temporary name ([`media::formatting_name`]), then each renamed into place. A crash in the
/// first step leaves no device, so the next start formats again; in the second, the next start
/// finishes the renames ([`finish_format`]).
pub fn format_files_as(paths: &[PathBuf], sbs: Vec<Superblock>) -> Result<Vec<Superblock>> {
    debug_assert_eq!(paths.len(), sbs.len());
    let tmps: Vec<PathBuf> = paths.iter().map(|p| media::formatting_name(p)).collect();
    let remove_all = || {
        // Their space is reserved: give it back rather than leave it until the next start.
        for t in &tmps {
            let _ = std::fs::remove_file(t);
        }
    };
    remove_all();
    let mut files = Vec::with_capacity(paths.len());
    for (t, sb) in tmps.iter().zip(&sbs) {
        match DeviceFile::create(t, sb.device_len) {
            Ok(f) => files.push(Member::Present(Arc::new(f))),
            Err(e) => {
                drop(files);
                remove_all();
                return Err(e.into());
            }
        }
    }
    let media = FileMedia::of(files);
    let sbs = format_with(&media, sbs).inspect_err(|_| remove_all())?;
    drop(media);
    for (t, p) in tmps.iter().zip(paths) {
        std::fs::rename(t, p)?;
        sync_dir(p)?;
    }
    Ok(sbs)
}

/// Finishes the renames of a format that was interrupted after every device was complete: a
/// device missing from its path whose temporary file is a complete device of the node that the
/// present ones belong to (or, when none is present, of a node on all the paths).
pub fn finish_format(paths: &[PathBuf]) -> Result<()> {
    let pending: Vec<(usize, PathBuf)> = paths
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.exists())
        .map(|(i, p)| (i, media::formatting_name(p)))
        .filter(|(_, t)| t.exists())
        .collect();
    if pending.is_empty() {
        return Ok(());
    }
    let uuid_of = |p: &Path| media::superblock_of(p).ok().map(|sb| sb.uuid);
    let present: Vec<[u8; 16]> = paths.iter().filter(|p| p.exists()).filter_map(|p| uuid_of(p)).collect();
    let Some(node) = present.first().copied() else {
        // None renamed yet: the format finished its first step only if every device did.
        if pending.len() < paths.len() {
            return Ok(());
        }
        let all: Vec<Option<[u8; 16]>> = pending.iter().map(|(_, t)| uuid_of(t)).collect();
        if all.iter().any(|u| u.is_none() || *u != all[0]) {
            return Ok(());
        }
        return rename_pending(paths, &pending);
    };
    let ours: Vec<(usize, PathBuf)> = pending.into_iter().filter(|(_, t)| uuid_of(t) == Some(node)).collect();
    rename_pending(paths, &ours)
}

fn rename_pending(paths: &[PathBuf], pending: &[(usize, PathBuf)]) -> Result<()> {
    for (i, t) in pending {
        tracing::warn!(device = %paths[*i].display(), "finishing a format that was interrupted");
        std::fs::rename(t, &paths[*i])?;
        sync_dir(&paths[*i])?;
    }
    Ok(())
}

fn sync_dir(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::File::open(if dir.as_os_str().is_empty() { Path::new(".") } else { dir })?.sync_all()?;
    }
    Ok(())
}

fn sb_err(e: edgeblob_io::superblock::SuperblockError) -> EngineError {
    EngineError::Io(std::io::Error::other(e.to_string()))
}

/// Writes a superblock and an empty log for every shard.
pub fn format_device(file: &Arc<DeviceFile>, shards: u32) -> Result<Superblock> {
    let mut sbs = format_devices(std::slice::from_ref(file), shards)?;
    Ok(sbs.remove(0))
}

/// Formats open devices (raw block devices, or files that exist) as one node, `shards` shards
/// on each, in the order given.
pub fn format_devices(files: &[Arc<DeviceFile>], shards: u32) -> Result<Vec<Superblock>> {
    let lens: Vec<u64> = files.iter().map(|f| f.len()).collect();
    let sbs = Superblock::new_node(&lens, shards, edgeblob_io::superblock::FORMAT_VERSION).map_err(sb_err)?;
    format_devices_as(files, sbs)
}

/// Formats open devices, in place, as `sbs` say (a restore onto raw devices).
pub fn format_devices_as(files: &[Arc<DeviceFile>], sbs: Vec<Superblock>) -> Result<Vec<Superblock>> {
    format_with(&FileMedia::of(files.iter().map(|f| Member::Present(f.clone())).collect()), sbs)
}

fn format_media(media: &dyn Media, shards: u32, version: u32) -> Result<Superblock> {
    let sb = Superblock::new_version(media.len(0), shards, version).map_err(sb_err)?;
    let mut sbs = format_with(media, vec![sb])?;
    Ok(sbs.remove(0))
}

fn format_with(media: &dyn Media, sbs: Vec<Superblock>) -> Result<Vec<Superblock>> {
    format_devices_of(media, sbs, None)
}

/// Formats device `device` of the node whose superblocks are `sbs` onto `target` (a new data
/// file or a blank raw device), leaving the node's other devices as they are: the shards on it
/// start empty. A device replaced from the tier (`tier::replace`).
pub fn format_member(target: Arc<DeviceFile>, sbs: Vec<Superblock>, device: usize) -> Result<()> {
    let members = (0..sbs.len())
        .map(|d| match d == device {
            true => Member::Present(target.clone()),
            false => Member::Lost(edgeblob_io::routed::DeviceLost {
                index: d,
                name: format!("device {d}"),
                reason: "not written by the format of another device".into(),
            }),
        })
        .collect();
    format_devices_of(&FileMedia::of(members), sbs, Some(device)).map(|_| ())
}

/// Formats the shards of every device of `sbs`, or of device `only`, then their superblocks.
fn format_devices_of(media: &dyn Media, sbs: Vec<Superblock>, only: Option<usize>) -> Result<Vec<Superblock>> {
    let layout = NodeLayout::of(&sbs).map_err(sb_err)?;
    let node = sbs[0].uuid;
    let dev = media.sync_device();
    let devices: Vec<usize> = match only {
        Some(d) => vec![d],
        None => (0..sbs.len()).collect(),
    };
    futures::executor::block_on(async {
        for s in devices.iter().flat_map(|&d| layout.shards_on(d)).map(|s| s as u32) {
            edgeblob_meta::replay::format_log(&log_place(&node, &layout, s), dev.as_ref()).await?;
            if let Some(place) = index_place(&node, &layout, s) {
                RegionBackend::format_with(dev.as_ref(), &place, &first_segments(&layout, s))?;
            }
        }
        // The superblocks last, once the logs are durable: a device without one is not
        // formatted, whatever else it holds, and one with it has its logs.
        dev.flush().await?;
        for (d, sb) in sbs.iter().enumerate().filter(|(d, _)| devices.contains(d)) {
            let mut page = AlignedBuf::zeroed(PAGE_SIZE);
            page.copy_from_slice(&sb.encode());
            let (res, _) = dev.write(page, edgeblob_io::volume::at(d, 0)).await;
            res?;
        }
        dev.flush().await
    })?;
    for (d, sb) in sbs.iter().enumerate().filter(|(d, _)| devices.contains(d)) {
        tracing::info!(media = media.name(d), device = d, shards = sb.layout.shards, bytes = sb.device_len, uuid = ?sb, "formatted");
    }
    Ok(sbs)
}

/// The shards on each device of a new node on `devices` devices: `shards` in all (by default
/// one a core, at least one a device) spread evenly. Even, because blobs spread evenly over
/// shards: a device with more shards than another would fill first.
pub fn shards_per_device(shards: Option<usize>, devices: usize) -> Result<u32> {
    match shards {
        Some(n) if n == 0 || n % devices != 0 => Err(EngineError::Io(std::io::Error::other(format!(
            "shards = {n} cannot be spread evenly over {devices} devices: give a multiple of {devices}"
        )))),
        Some(n) => Ok((n / devices) as u32),
        None => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            Ok((cores / devices).max(1) as u32)
        }
    }
}

/// The first of `paths` whose superblock says a restore into it has not finished.
pub fn restore_unfinished(paths: &[PathBuf]) -> Option<PathBuf> {
    paths.iter().find(|p| media::superblock_of(p).is_ok_and(|sb| sb.restoring)).cloned()
}

/// Clears the restoring flag of every device of `paths` that has it: the restore into them is
/// complete. Each superblock is written and synced on its own; one left flagged by a crash
/// keeps the node from opening, and the next restore starts over.
pub fn finish_restore(paths: &[PathBuf]) -> Result<()> {
    use std::os::unix::fs::FileExt;
    for p in paths {
        let file = DeviceFile::open(p)?;
        let sb = media::read_superblock(&file)?;
        if sb.restoring {
            let mut page = AlignedBuf::zeroed(PAGE_SIZE);
            page.copy_from_slice(&Superblock { restoring: false, ..sb }.encode());
            file.file().write_all_at(&page, 0)?;
            file.file().sync_data()?;
        }
    }
    Ok(())
}

/// How a node is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opening {
    Normal,
    /// A restore writes it (its devices flagged restoring).
    Restoring,
    /// Device `d` was formatted anew and is flagged restoring, the others kept
    /// (`tier::replace`): the counts of the shards kept are not checked against the references
    /// found (those the lost shards held are still in them), and the new shards send no
    /// reference changes until the replacement lets them.
    Replacing(usize),
}

pub fn open(config: EngineConfig) -> Result<Node> {
    open_checked(config, Opening::Normal)
}

/// Opens the node a restore (or a replacement of a device) is writing.
pub(crate) fn open_restoring(config: EngineConfig, opening: Opening) -> Result<Node> {
    open_checked(config, opening)
}

fn open_checked(config: EngineConfig, opening: Opening) -> Result<Node> {
    let restoring = opening != Opening::Normal;
    config.validate().map_err(|e| EngineError::Io(std::io::Error::other(e)))?;
    let paths = config.device_paths();
    finish_format(&paths)?;
    if !media::any_exists(&paths) {
        let per_device = shards_per_device(config.shards, paths.len())?;
        format_files(&paths, config.data_size, per_device, config.format_version)?;
    }
    let (mut media, sbs) = media::open_devices(&paths)?;
    if let Some(d) = sbs.iter().position(|r| r.as_ref().is_ok_and(|sb| sb.restoring)).filter(|_| !restoring) {
        return Err(EngineError::Io(std::io::Error::other(format!(
            "a restore into {} has not finished: run edgeblob-admin restore (or replace-device, when that device alone was being replaced) again: it starts over",
            media.name(d)
        ))));
    }
    media.queue_depth = config.queue_depth;
    open_on(config, Arc::new(media), sbs, opening)
}

/// Opens a node on a simulated disk, formatting it first when it holds no superblock.
pub fn open_simulated(config: EngineConfig, disk: SimDisk) -> Result<Node> {
    config.validate().map_err(|e| EngineError::Io(std::io::Error::other(e)))?;
    if media::superblock_at(&disk, 0).is_err() && disk.image()[..PAGE_SIZE].iter().all(|&b| b == 0) {
        format_media(&disk, shards_per_device(config.shards, 1)?, config.format_version)?;
    }
    let sb = media::superblock_at(&disk, 0)?;
    open_on(config, Arc::new(disk), vec![Ok(sb)], Opening::Normal)
}

fn open_on(
    config: EngineConfig,
    media: Arc<dyn Media>,
    sbs: Vec<Result<Superblock, DeviceLost>>,
    opening: Opening,
) -> Result<Node> {
    let Some(sb) = sbs.iter().find_map(|r| r.as_ref().ok()).cloned() else {
        let lost = sbs.into_iter().find_map(|r| r.err());
        return Err(EngineError::Io(lost.map_or_else(|| std::io::Error::other("no device"), |l| l.error())));
    };
    let count = sbs.len();
    let lost: Vec<Option<DeviceLost>> = sbs.iter().map(|r| r.as_ref().err().cloned()).collect();
    // A lost device's own superblock cannot be read: its layout is taken as a present one's.
    // Only its shards' numbers are used (they are offline); nothing is read or written there.
    let sbs: Vec<Superblock> = sbs
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.or_else(|_| sb.sibling(i as u16, count as u16, sb.device_len)))
        .collect::<Result<_, _>>()
        .map_err(sb_err)?;
    let layout = NodeLayout::of(&sbs).map_err(sb_err)?;
    let shards = layout.shards() as usize;
    if let Some(want) = config.shards.filter(|&n| n != shards) {
        return Err(EngineError::Io(std::io::Error::other(format!(
            "{} was formatted with {shards} shards but the configuration asks for {want}",
            media.name(0)
        ))));
    }
    // Registered buffers count against RLIMIT_MEMLOCK for the whole process: leave half of it.
    let per_shard = config.registered_buffer_bytes.min(edgeblob_io::sys::memlock_limit() / 2 / shards);
    let slots = (per_shard / FIXED_SLOT).min(u16::MAX as usize) as u16;
    let names = (0..media.count()).map(|d| media.name(d)).collect();
    let mut shared = NodeShared::new(config.clone(), sb.clone(), layout, names);
    shared.lost = lost;
    for l in shared.lost.iter().flatten() {
        tracing::error!(
            device = l.index,
            shards = ?shared.layout.shards_on(l.index),
            "{l}: its shards are offline; the node serves the other devices read-only (bring the device back, or replace it from the tier: edgeblob-admin replace-device)"
        );
    }
    if let Some(tier) = &config.tier {
        // The tier names chunks by the ids and locations only format 2 keeps.
        if sb.version < 2 {
            return Err(EngineError::Tier(format!(
                "{} is format version {}: the tier needs version 2 (edgeblob-admin upgrade)",
                media.name(0),
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
    let degraded = shared.read_only().is_some();
    let node = Node { peers, threads, shared };
    let rebuilt = if degraded { rebuild_degraded(&node) } else { rebuild(&node, opening) };
    if let Err(e) = rebuilt {
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
    let dev = media.device(index, (slots > 0).then_some(&pool), &node.io[index]);
    let place = log_place(&node.sb.uuid, &node.layout, index as u32);
    let (offset, len) = node.layout.data_area(index as u32);
    let ix_place = index_place(&node.sb.uuid, &node.layout, index as u32);
    let (meta, index_space, replayed) = match ix_place {
        _ if node.offline(index).is_some() => (offline_store(index, &node.sb.uuid).await?, None, 0),
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
                apart_bytes: node.config.meta_apart_bytes,
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
    let mut alloc = ExtentAllocator::new(Extent { offset, len });
    if node.read_only().is_some() {
        // A node short of a device does not rebuild what is free (references and space span
        // every device): all of it counts as taken, so nothing can be handed out over live data
        // (a chunk, the index's growth).
        alloc.reserve(Extent { offset, len }).map_err(std::io::Error::other)?;
    }
    Ok(Rc::new(Shard {
        index,
        dev,
        pool,
        meta: std::cell::RefCell::new(meta),
        replayed,
        index_space,
        refs: Default::default(),
        space: std::cell::RefCell::new(Space::new(alloc)),
        reducer,
        peers,
        // Room for a full pipeline of chunks, a partial one and one more body piece (hyper
        // reads at most about 400 KiB at a time), whatever is configured: the budget bounds
        // memory; it must never stop a lone upload.
        write_budget: Arc::new(tokio::sync::Semaphore::new(super::write::budget_units(
            node.config.write_buffer_bytes.max((node.config.io_depth + 2) * node.config.chunk_size + (1 << 20)),
        ))),
        cache: super::cache::ChunkCache::new(node.config.read_cache_bytes / node.shards().max(1)),
        refs_stalled: Default::default(),
        unpins: Default::default(),
        tier: Default::default(),
        node,
    }))
}

/// The metadata of a shard whose device is lost: none, in memory. Nothing reaches it (requests
/// for what it owns fail first, `ops::at`), but the shard runs like the others, so every
/// shard number keeps its thread and its place in the node.
async fn offline_store(index: usize, node: &[u8; 16]) -> std::io::Result<ShardStore> {
    const HALF: u64 = 1 << 20;
    let disk = SimDisk::new(2 * HALF as usize);
    let place = LogPlace { shard: index as u32, uuid: *node, halves: [(0, HALF), (HALF, HALF)] };
    let dev: Rc<dyn BlockDevice> = Rc::new(disk.device());
    edgeblob_meta::replay::format_log(&place, dev.as_ref()).await?;
    let (meta, _) = MetaStore::open(place, dev).await.map_err(std::io::Error::other)?;
    Ok(ShardStore::V1(Box::new(meta)))
}

/// What a node without some of its devices needs to serve the others read-only: the catalog
/// (from the catalog shard, or, when it is offline, the containers the blobs left name) and the
/// clock. Nothing else: no reference counts or space are rebuilt, and no background work runs,
/// for the node changes nothing (`NodeShared::read_only`).
fn rebuild_degraded(node: &Node) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let online: Vec<usize> = (0..node.shards()).filter(|&i| node.shared.offline(i).is_none()).collect();
        let mut seen: BTreeMap<(String, String), u64> = BTreeMap::new();
        let mut floor = 0;
        for &i in &online {
            let (names, max) = node.on(i, |s| async move { named_containers(&s).await }).await??;
            floor = floor.max(max);
            for (k, id) in names {
                let e = seen.entry(k).or_insert(id);
                *e = (*e).max(id);
            }
        }
        let catalog = match node.shared.offline(CATALOG_SHARD) {
            None => node.on(CATALOG_SHARD, |s| async move { s.meta.borrow().state().containers.clone() }).await?,
            Some(lost) => {
                // Ids only grow: the newest incarnation a blob names is the live one (an older
                // one's entries were waiting for their purge).
                tracing::error!(
                    "{lost}: the container catalog is lost with it; {} containers found from their blobs, without their properties",
                    seen.len()
                );
                seen.into_iter().map(|(k, id)| (k, edgeblob_meta::model::Container::found(id)))
                    .collect()
            }
        };
        floor = floor.max(catalog.values().map(|c| c.id.max(c.etag)).max().unwrap_or(0));
        *node.shared.catalog.write().unwrap_or_else(|p| p.into_inner()) = catalog;
        node.shared.raise_clock(floor);
        // Chunks released to the tier are read from it: marked from the chunk tables the
        // node still has (an offline shard has none, and nothing reaches its blobs).
        for i in 0..node.shards() {
            node.on(i, super::tier::released::mark_at_start).await?;
        }
        Ok(())
    })
}

/// The containers a shard's blobs and staged blocks name (each with the newest id seen), and
/// the largest stamp they hold.
pub(crate) async fn named_containers(s: &Rc<Shard>) -> Result<(BTreeMap<(String, String), u64>, u64)> {
    let mut names: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut max = 0;
    let mut note = |k: &BlobKey, id: u64| {
        let e = names.entry((k.account.clone(), k.container.clone())).or_insert(id);
        *e = (*e).max(id);
    };
    let mut staged = Vec::new();
    shard_store::scan_all(
        &s.meta,
        |k, b| {
            max = max.max(b.etag);
            note(k, b.container_id);
        },
        |k, id, _| staged.push((k.clone(), id)),
    )
    .await?;
    for (k, id) in staged {
        note(&k, id);
    }
    Ok((names, max))
}

/// The derived state, rebuilt from every shard's recovered metadata.
fn rebuild(node: &Node, opening: Opening) -> Result<()> {
    let replaced = |shard: usize| matches!(opening, Opening::Replacing(d) if node.shared.device_of(shard) == d);
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
        // v2: what each shard's undelivered records add that their counting shards have not
        // logged, by record: its space is live, and `repin` pins it again below.
        let mut pending: Vec<Vec<(u64, RefCounts)>> = Vec::new();
        if counts_kept {
            let all = (0..n).map(|i| {
                let logged = logged.clone();
                node.on(i, move |s| async move { super::counts::live_space(&s, &logged).await })
            });
            for found in futures::future::join_all(all).await {
                let found = found??;
                for e in &found.counted {
                    to_region[node.shared.region_of(e.offset)].insert((e.offset, e.len));
                }
                for e in found.pending_space() {
                    also[node.shared.region_of(e.offset)].push(e);
                }
                pending.push(found.pending);
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
        // v2: what undelivered records add is pinned again, as before the restart, before any
        // shard logs another's changes (`counts::repin`).
        if counts_kept {
            for (i, adds) in pending.into_iter().enumerate().filter(|&(i, _)| !replaced(i)) {
                node.on(i, move |s| async move { super::counts::repin(&s, adds).await }).await??;
            }
        }
        // v2: counts kept in the index take over what they have never seen from the scan, then
        // every shard sends what its outbox holds (records replayed, or not delivered before a
        // crash); in debug builds the counts are then checked against the scan's.
        for (counter, source, refs) in adoptions {
            let lsn = at_lsn[source];
            node.on(counter, move |s| async move { super::counts::adopt(&s, source as u32, lsn, refs).await })
                .await??;
        }
        for i in (0..n).filter(|&i| !replaced(i)) {
            node.on(i, |s| async move {
                super::counts::start_delivery(&s);
            })
            .await?;
        }
        for i in 0..n {
            node.on(i, |s| async move { super::counts::drained(&s).await }).await?;
        }
        // Only once every shard has sent everything: any of them may count for any other.
        if cfg!(debug_assertions) && !matches!(opening, Opening::Replacing(_)) {
            for (i, refs) in derived.into_iter().enumerate() {
                node.on(i, |s| async move { super::counts::verify(&s, &refs).await }).await??;
            }
        }
        for i in 0..n {
            let g = node.on(i, |s| async move { s.meta.borrow().state().tier_generation }).await?;
            node.shared.tier_floor.fetch_max(g, std::sync::atomic::Ordering::SeqCst);
        }
        // A replacement's catalog is not whole until it has run (device 0's shard is new): no
        // entry is taken for a deleted container's before it is.
        let purges = !matches!(opening, Opening::Replacing(_));
        for i in 0..n {
            node.on(i, move |s| async move {
                // The outboxes are drained: counts ride the clients' rounds from now on.
                if let Some(m) = s.meta.borrow_mut().index_mut() {
                    m.count_lazily();
                }
                if s.node.counts_kept() {
                    if purges {
                        super::background::spawn(&s, "key-filters", filters_and_purges(s.clone()), || {});
                    }
                    super::background::spawn(&s, "warm-up", warm_up(s.clone()), || {});
                    super::background::spawn(&s, "tier-upload", super::tier::upload::run(s.clone()), || {});
                    if s.index == CATALOG_SHARD {
                        super::background::spawn(&s, "tier-epoch", super::tier::epoch::run(s.clone()), || {});
                        super::background::spawn(
                            &s,
                            "tier-policy",
                            super::tier::policy::mark_at_start(s.clone()),
                            || {},
                        );
                    }
                }
                super::background::spawn(&s, "tier-released", super::tier::released::mark_at_start(s.clone()), || {});
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

/// Blob keys read back from the index at once by [`warm_up`]: one reader of the shard's eight at a
/// time, so the reads of requests go first.
const WARM_BATCH: usize = 32;

/// v2, once the shard serves: reads back the blobs the last clean stop held in memory
/// (`ShardIndex::keep_warm`), a batch at a time, until the cache is full. A restart then serves
/// its working set from memory within a second or so, where every first touch of a blob read
/// the index (a cold small GET is ~15 µs more CPU and a reader's round trip).
async fn warm_up(s: Rc<Shard>) {
    let Some(keys) = s.meta.borrow_mut().index_mut().map(|m| m.take_warm()) else { return };
    let began = std::time::Instant::now();
    let mut read = 0;
    for batch in keys.chunks(WARM_BATCH) {
        if !s.meta.borrow().index().is_some_and(|m| m.cache_has_room()) {
            break;
        }
        let wants: Vec<shard_store::Want> = batch.iter().map(|k| shard_store::Want::Blob(k.clone())).collect();
        if let Err(e) = shard_store::resident(&s.meta, &wants).await {
            tracing::warn!(shard = s.index, %e, read, "metadata warm-up stopped");
            return;
        }
        read += batch.len();
    }
    if !keys.is_empty() {
        tracing::info!(
            shard = s.index,
            read,
            listed = keys.len(),
            took = ?began.elapsed(),
            "metadata cache warmed with what the last stop held"
        );
    }
}

/// What one shard's metadata says at start.
pub(crate) struct ShardRefs {
    /// Chunk references by the shard that counts them.
    pub(crate) by_owner: Vec<RefCounts>,
    max_etag: u64,
}

/// The references a shard's metadata holds to chunks each shard counts (those `wanted`), and
/// its largest stamp; nothing when not `scan` (v2 keeps both).
pub(crate) async fn shard_refs(
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
