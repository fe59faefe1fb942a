//! One lost device of a node replaced from the tier, its other devices kept
//! (`edgeblob-admin replace-device`; architecture.md, "Several devices per node").
//!
//! A restore (`super::restore`) brings the whole node back to an epoch: what the kept devices
//! changed since is lost with it. A replacement keeps them as they are and brings back only
//! what the lost device's shards held, as the newest epoch (or epoch `E`) has it:
//!
//! 1. Formats the device anew as the node's member (same node uuid, secret and geometry; the
//!    other superblocks are the model), flagged restoring until the end, and opens the node
//!    (`Opening::Replacing`): the new shards count, by adoption at start, the references the
//!    kept shards hold to chunks they count, and send nothing yet.
//! 2. Of those chunks, the ones the epoch placed in a pack are in the tier only now
//!    (`PackCommitted`, then `ChunksReleased`); the others' bytes are lost, and every blob (or
//!    staged block) of a kept shard that names one is deleted and reported: it could never be
//!    read again, and its place on the new device must not be taken by another chunk while a
//!    blob names it.
//! 3. When the device held shard 0, writes the catalog again: the epoch's containers, and
//!    those the kept shards' blobs name under a newer incarnation (without their properties).
//!    Imports the epoch's blobs owned by the new shards whose every chunk is still there: a
//!    chunk they count that the epoch placed (`ChunksRestored`), or one a kept shard counts
//!    and still holds. The others are left out and counted.
//! 4. On every kept shard, replaces the references the lost shards had counted there (its
//!    counts less what the kept shards' own metadata holds) by those of the blobs restored,
//!    in one record per shard (`RefsReplaced`), which also starts the lost shards' LSNs over
//!    (their logs did); then lets the new shards send the changes they hold for each other.
//!
//! A crash anywhere leaves the new device flagged: the node does not open, and the next
//! replacement formats it again and finds, on the kept shards, what the last one changed (its
//! deletions stand; its references are replaced again). Memory: the places of the epoch's
//! chunks the new shards count, and the counts of each kept shard in turn.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgeblob_io::superblock::Superblock;
use edgeblob_io::{DeviceFile, Extent, PAGE_SIZE};
use edgeblob_meta::export::{ExportItem, Manifest};
use edgeblob_meta::index::shard::{HoldsIndex, Want};
use edgeblob_meta::model::{
    Blob, BlobKey, ChunkEntry, ChunkId, ChunkRef, Container, Location, PackInfo, PackedChunk, RestoredChunk,
};
use edgeblob_meta::refs::RefCounts;
use edgeblob_meta::{shard_store, Record};
use edgeblob_remote::Remote;
use edgeblob_tier::{NodeKey, ObjectKind};

use super::epoch::MAX_PART_PLAIN;
use super::objects;
use super::remote::node_prefix;
use super::restore::{blob_records, choose, hold_anchors, log_on_each, node_key, read_part, tier_err, Blobs};
use crate::config::EngineConfig;
use crate::error::{EngineError, Result};
use crate::shard::Shard;
use crate::startup::Opening;
use crate::{Node, CATALOG_SHARD};

/// Names of lost blobs a report keeps (the count is exact).
const LOST_NAMES: usize = 1000;

/// What a replacement did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaceReport {
    pub node: String,
    /// The device replaced, and its shards.
    pub device: usize,
    pub shards: Vec<usize>,
    /// The manifest its shards' blobs came from.
    pub from: String,
    pub epoch: u64,
    /// Containers of the catalog, when the replaced device held it (device 0): the epoch's,
    /// and those the kept devices' blobs name that it does not have (without their properties).
    pub containers: u64,
    /// Blobs of the epoch restored onto the new device's shards.
    pub blobs: u64,
    /// Blobs of the epoch left out: a chunk they name is neither in the epoch's packs nor still
    /// on a kept device.
    pub blobs_left_out: u64,
    /// Blobs of the kept devices deleted because they named a chunk lost with the device (first
    /// [`LOST_NAMES`], as `account/container/name`), and their count.
    pub lost: Vec<String>,
    pub lost_count: u64,
    /// Blobs of the kept devices whose uncommitted blocks were dropped for the same reason.
    pub staged_dropped: u64,
    /// Chunks the new shards count, now in the tier only.
    pub chunks: u64,
    /// References the lost shards had counted on the kept ones, replaced.
    pub references_replaced: u64,
    /// Bytes of metadata read from the tier.
    pub metadata_bytes: u64,
    pub elapsed: Duration,
}

/// A chunk the epoch places, counted by a shard of the new device.
struct Placed {
    chunk: ChunkRef,
    pack: (u32, u64),
    entry: u32,
    at: u64,
    /// Whether a kept shard's blob names it (it is counted at start), or a restored one only.
    adopted: bool,
    named: bool,
}

/// Replaces device `device` of the node `config` names (its data paths, in order; the node
/// stopped) from the tier: see the module's documentation.
pub async fn replace(config: &EngineConfig, device: usize, epoch: Option<u64>) -> Result<ReplaceReport> {
    let started = Instant::now();
    let cfg = config.tier.clone().ok_or_else(|| tier_err("replacing a device needs a [engine.tier] section"))?;
    let paths = config.device_paths();
    let n = paths.len();
    if n < 2 {
        return Err(tier_err("a node of one device is restored whole (edgeblob-admin restore)"));
    }
    if device >= n {
        return Err(tier_err(format!("the node has {n} devices (0 to {}); there is no device {device}", n - 1)));
    }
    let kept = kept_superblocks(&paths, device)?;
    let model = kept.iter().flatten().next().cloned().ok_or_else(|| tier_err("no kept device"))?;
    let target = Target::of(&paths[device], &model, device)?;

    let remote = super::remote::client(&cfg).map_err(tier_err)?;
    let prefix = node_prefix(&model.uuid);
    let key = node_key(&remote, &cfg, &prefix).await?;
    let (from, _) = choose(&remote, &prefix, epoch).await?;
    let bytes = objects::get(&remote, &key, &model.uuid, ObjectKind::Manifest, &from, None, MAX_PART_PLAIN)
        .await
        .map_err(tier_err)?;
    let manifest = Manifest::decode(&bytes).map_err(|e| tier_err(format!("{from}: {e}")))?;
    let lens = manifest.device_lens();
    if lens.len() != n || manifest.secret != model.secret.as_slice() {
        return Err(tier_err(format!(
            "{from} is not of this node's layout ({} devices in it, {n} here, or another chunk-hash secret)",
            lens.len()
        )));
    }
    let mut report = ReplaceReport {
        node: prefix.clone(),
        device,
        from: from.clone(),
        epoch: manifest.epoch,
        metadata_bytes: bytes.len() as u64,
        ..ReplaceReport::default()
    };
    let mut sb = model.sibling(device as u16, n as u16, lens[device]).map_err(|e| tier_err(e.to_string()))?;
    sb.restoring = true;
    let sbs: Vec<Superblock> = kept.into_iter().map(|k| k.unwrap_or_else(|| sb.clone())).collect::<Vec<_>>();
    debug_assert_eq!(sbs[device].index(), device);
    target.format(sbs, device)?;
    tracing::warn!(node = %prefix, device, manifest = %from, "replacing a lost device from the tier");

    let mut cfg_open = config.clone();
    cfg_open.tier = None;
    cfg_open.shards = None;
    let opened =
        tokio::task::spawn_blocking(move || crate::startup::open_restoring(cfg_open, Opening::Replacing(device)))
            .await
            .map_err(|e| tier_err(format!("opening the node: {e}")))?;
    let node = opened?;
    let done = import(&node, &remote, &key, &model.uuid, &manifest, &mut report).await;
    let stopped = tokio::task::spawn_blocking(move || node.stop()).await;
    done?;
    stopped.map_err(|e| tier_err(format!("stopping the node: {e}")))?;
    crate::startup::finish_restore(std::slice::from_ref(&paths[device]))?;
    report.elapsed = started.elapsed();
    tracing::warn!(?report, "device replaced from the tier");
    Ok(report)
}

/// The superblocks of the kept devices (None at `device`): each must be the node's member of
/// its place, not flagged.
fn kept_superblocks(paths: &[PathBuf], device: usize) -> Result<Vec<Option<Superblock>>> {
    let mut out = Vec::with_capacity(paths.len());
    let mut uuid = None;
    for (d, p) in paths.iter().enumerate() {
        if d == device {
            out.push(None);
            continue;
        }
        let sb = crate::media::superblock_of(p).map_err(|e| tier_err(format!("{} (kept): {e}", p.display())))?;
        if sb.index() != d || sb.devices() != paths.len() || sb.restoring || *uuid.get_or_insert(sb.uuid) != sb.uuid {
            return Err(tier_err(format!(
                "{} is not device {d} of this node (or a restore into it has not finished)",
                p.display()
            )));
        }
        out.push(Some(sb));
    }
    Ok(out)
}

/// Where the new device is written.
enum Target {
    /// A new data file (none at the path).
    File(PathBuf),
    /// A raw device, or a file a replacement that did not finish left: formatted in place.
    InPlace(Arc<DeviceFile>),
}

impl Target {
    /// The new device's place: absent, a blank raw device, or this device of this node flagged
    /// by a replacement that did not finish. Anything else holds data and is refused.
    fn of(path: &Path, model: &Superblock, device: usize) -> Result<Target> {
        use std::os::unix::fs::FileTypeExt;
        if !path.exists() {
            return Ok(Target::File(path.to_owned()));
        }
        let file = DeviceFile::open(path).map_err(|e| tier_err(format!("{}: {e}", path.display())))?;
        let raw = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device());
        match crate::media::read_superblock(&file) {
            Ok(sb) if sb.restoring && sb.uuid == model.uuid && sb.index() == device => {
                Ok(Target::InPlace(Arc::new(file)))
            }
            Err(_) if raw => Ok(Target::InPlace(Arc::new(file))),
            _ => Err(tier_err(format!(
                "{} holds data: a replacement writes a new data file, or a raw device that is blank (move the file away, or wipe the device)",
                path.display()
            ))),
        }
    }

    fn format(self, sbs: Vec<Superblock>, device: usize) -> Result<()> {
        let len = sbs[device].device_len;
        match self {
            Target::InPlace(file) => {
                if file.len() < len {
                    return Err(tier_err(format!(
                        "{} has {} bytes; the node's device had {len}",
                        file.path().display(),
                        file.len()
                    )));
                }
                crate::startup::format_member(file, sbs, device)
            }
            Target::File(path) => {
                let tmp = crate::media::formatting_name(&path);
                let _ = std::fs::remove_file(&tmp);
                let file = Arc::new(DeviceFile::create(&tmp, len)?);
                crate::startup::format_member(file, sbs, device).inspect_err(|_| {
                    let _ = std::fs::remove_file(&tmp);
                })?;
                std::fs::rename(&tmp, &path)?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::File::open(dir)?.sync_all()?;
                }
                Ok(())
            }
        }
    }
}

async fn import(
    node: &Node,
    remote: &Remote,
    key: &NodeKey,
    uuid: &[u8; 16],
    manifest: &Manifest,
    report: &mut ReplaceReport,
) -> Result<()> {
    let shared = node.shared().clone();
    let new = shared.layout.shards_on(report.device);
    report.shards = new.clone().collect();
    let is_new = |shard: usize| new.contains(&shard);
    let kept: Vec<usize> = (0..node.shards()).filter(|&s| !is_new(s)).collect();
    let (chunk_parts, blob_parts): (Vec<_>, Vec<_>) = manifest.parts.iter().partition(|p| p.chunks);

    // The epoch's places of the chunks the new shards count, and their packs.
    let mut placed: HashMap<ChunkId, Placed> = HashMap::new();
    let mut packs: BTreeMap<(u32, u64), PackInfo> = BTreeMap::new();
    for part in &chunk_parts {
        for item in read_part(remote, key, uuid, part, &mut report.metadata_bytes).await? {
            match item {
                ExportItem::Chunk { chunk, packed } if is_new(shared.ref_owner(&chunk)) => {
                    let pack = (shared.ref_owner(&chunk) as u32, packed.pack);
                    let p = Placed { chunk, pack, entry: packed.entry, at: packed.at, adopted: false, named: false };
                    placed.entry(chunk.id()).or_insert(p);
                }
                ExportItem::Pack(p) if is_new(p.shard as usize) => {
                    packs.insert((p.shard, p.number), p);
                }
                ExportItem::Chunk { .. } | ExportItem::Pack(_) => {}
                _ => return Err(tier_err("blobs in a part of chunks")),
            }
        }
    }

    // What the new shards counted at start (the kept shards' references): in the tier from now
    // on where the epoch placed it; lost otherwise.
    let mut lost: HashSet<ChunkId> = HashSet::new();
    for c in counted_on(node, &report.shards).await? {
        if placed.get(&c.id()).is_none_or(|p| p.chunk != c) {
            lost.insert(c.id());
        }
    }
    // The kept shards' blobs and staged blocks that name a lost chunk go.
    // Found on every kept shard before any is changed: a full scan needs its shard quiet.
    let lost = Arc::new(lost);
    let mut doomed = Vec::new();
    for &s in &kept {
        let lost = lost.clone();
        doomed.push(node.on(s, move |s| async move { naming_lost(&s, &lost).await }).await??);
    }
    for (&s, (blobs, staged)) in kept.iter().zip(doomed) {
        report.lost_count += blobs.len() as u64;
        report.staged_dropped += staged.len() as u64;
        let room = LOST_NAMES.saturating_sub(report.lost.len());
        report.lost.extend(blobs.iter().take(room).map(|k| format!("{}/{}/{}", k.account, k.container, k.name)));
        let recs: Vec<Record> = blobs
            .into_iter()
            .map(|key| Record::BlobDelete { key })
            .chain(staged.into_iter().map(|key| Record::StagedDropped { key }))
            .collect();
        node.on(s, move |s| async move { super::log_all(&s, recs).await }).await??;
    }
    // Their references dropped: the lost chunks they named are free again (an anchor below may
    // need the place of one).
    for &s in &kept {
        node.on(s, |s| async move { crate::counts::drained(&s).await }).await?;
    }
    // What is still counted of the placed ones once they are gone (a blob deleted for a lost
    // chunk may have held the last reference to a placed one): released below. The others a
    // restored blob may name are restored into their packs.
    for c in counted_on(node, &report.shards).await? {
        if let Some(p) = placed.get_mut(&c.id()).filter(|p| p.chunk == c) {
            p.adopted = true;
        }
    }
    if report.lost_count > 0 {
        tracing::error!(
            blobs = report.lost_count,
            first = ?report.lost.iter().take(8).collect::<Vec<_>>(),
            "blobs of the kept devices named chunks lost with the device and not in the tier's epoch: deleted"
        );
    }

    // The epoch's blobs of the new shards, first to learn which come back: each chunk they name
    // is placed (counted by a new shard) or still held by the kept shard that counts it.
    let mut stream = Blobs::default();
    let mut missing: HashSet<ChunkId> = HashSet::new();
    let mut restored_refs: BTreeMap<usize, RefCounts> = BTreeMap::new();
    let mut containers = Vec::new();
    for part in &blob_parts {
        let items = read_part(remote, key, uuid, part, &mut report.metadata_bytes).await?;
        let blobs = new_shards_blobs(node, items, &new, &mut stream, &mut containers)?;
        let mut ask: BTreeMap<usize, Vec<ChunkRef>> = BTreeMap::new();
        for (_, b) in &blobs {
            for c in b.chunks().filter(|c| !is_new(shared.ref_owner(c))) {
                ask.entry(shared.ref_owner(c)).or_default().push(*c);
            }
        }
        for (s, chunks) in ask {
            missing.extend(node.on(s, move |s| async move { not_held(&s, chunks).await }).await??);
        }
        for (_, b) in &blobs {
            if !whole(b, &placed, &missing, &is_new, &shared) {
                continue;
            }
            for c in b.chunks() {
                if let Some(p) = placed.get_mut(&c.id()) {
                    p.named = true;
                }
            }
            for (s, refs) in b.refs().split_by(|c| shared.ref_owner(c)) {
                if !is_new(s) {
                    restored_refs.entry(s).or_default().append(refs);
                }
            }
        }
    }
    stream.end()?;
    if is_new(CATALOG_SHARD) {
        report.containers = catalog(node, &kept, containers).await?;
    }

    // The new shards' chunks: the packs they are in, those counted at start released to them,
    // the others (named by restored blobs only) restored into them, each holding its first page.
    let mut by_shard: BTreeMap<usize, Vec<Record>> = BTreeMap::new();
    let mut releases: BTreeMap<usize, Vec<ChunkId>> = BTreeMap::new();
    let mut anchors: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    let mut in_pack: BTreeMap<(u32, u64), (Vec<PackedChunk>, Vec<RestoredChunk>)> = BTreeMap::new();
    for p in placed.values().filter(|p| p.adopted || p.named) {
        let e = in_pack.entry(p.pack).or_default();
        if p.adopted {
            e.0.push(PackedChunk { offset: p.chunk.offset, hash: p.chunk.hash, entry: p.entry, at: p.at });
            releases.entry(p.pack.0 as usize).or_default().push(p.chunk.id());
        } else {
            e.1.push(RestoredChunk { chunk: p.chunk, entry: p.entry, at: p.at });
            let region = shared.layout.shard_of(p.chunk.offset).map(|r| r as usize);
            let region = region.filter(|r| is_new(*r)).ok_or_else(|| {
                tier_err(format!("a chunk the new device's shards count lies at {}, off the device", p.chunk.offset))
            })?;
            anchors.entry(region).or_default().push(p.chunk.offset);
        }
        report.chunks += 1;
    }
    for (s, offsets) in anchors {
        node.on(s, move |s| async move {
            // What the deletions freed (no read runs: nothing waits in limbo for one).
            s.space.borrow_mut().reclaim(s.node.epochs.horizon());
            hold_anchors(&s, &offsets)
        })
        .await??;
    }
    // About 64 bytes a chunk (as a restore's records).
    let per_record = node.on(report.shards[0], |s| async move { s.per_record(64) }).await?;
    for ((shard, number), (mut adopted, mut restored)) in in_pack {
        let pack = packs.get(&(shard, number)).cloned().ok_or_else(|| {
            tier_err(format!("the epoch places chunks in pack {number} of shard {shard}, and does not name it"))
        })?;
        let recs = by_shard.entry(shard as usize).or_default();
        adopted.sort_by_key(|c| c.at);
        let mut first = adopted.chunks(per_record);
        let chunks = first.next().map(<[_]>::to_vec).unwrap_or_default();
        recs.push(Record::PackCommitted { pack: Box::new(pack.clone()), chunks, replaces: Vec::new() });
        for batch in first {
            // The same pack again, placing more of its chunks (a pack's record stays small).
            let chunks = batch.to_vec();
            recs.push(Record::PackCommitted { pack: Box::new(pack.clone()), chunks, replaces: Vec::new() });
        }
        restored.sort_by_key(|c| c.at);
        for batch in restored.chunks(per_record) {
            recs.push(Record::ChunksRestored { pack: number, chunks: batch.to_vec() });
        }
    }
    let mut all = vec![Vec::new(); node.shards()];
    for (s, recs) in by_shard {
        all[s] = recs;
    }
    log_on_each(node, all).await?;
    for (s, ids) in releases {
        node.on(s, move |s| async move { keep_in_tier_only(&s, &ids, per_record).await }).await??;
    }

    // The blobs that come back, logged on their owners (their reference changes wait).
    let mut stream = Blobs::default();
    for part in &blob_parts {
        let items = read_part(remote, key, uuid, part, &mut report.metadata_bytes).await?;
        let blobs = new_shards_blobs(node, items, &new, &mut stream, &mut Vec::new())?;
        let mut by_owner: Vec<Vec<Record>> = vec![Vec::new(); node.shards()];
        for (k, blob) in blobs {
            if whole(&blob, &placed, &missing, &is_new, &shared) {
                by_owner[shared.owner_of(&k)].extend(blob_records(k, blob));
                report.blobs += 1;
            } else {
                report.blobs_left_out += 1;
            }
        }
        log_on_each(node, by_owner).await?;
    }
    stream.end()?;

    // The kept shards' counts: what the lost shards had counted there, out; what the restored
    // blobs name, in; the lost shards' LSNs as the new ones' logs are now.
    for &s in &kept {
        node.on(s, |s| async move { crate::counts::drained(&s).await }).await?;
    }
    let mut lsns = Vec::new();
    for &s in &report.shards {
        let lsn = node.on(s, |s| async move { s.meta.borrow().index().map_or(0, |m| m.applied()) }).await?;
        lsns.push((s as u32, lsn));
    }
    let catalog = node.on(CATALOG_SHARD, |s| async move { s.meta.borrow().state().containers.clone() }).await?;
    let live: Arc<BTreeMap<(String, String), u64>> = Arc::new(catalog.iter().map(|(k, c)| (k.clone(), c.id)).collect());
    let wanted: Arc<Vec<bool>> = Arc::new((0..node.shards()).map(|s| !is_new(s)).collect());
    let mut held: Vec<RefCounts> = vec![RefCounts::default(); node.shards()];
    for &s in &kept {
        let (live, wanted) = (live.clone(), wanted.clone());
        let found = node
            .on(s, move |s| async move {
                shard_store::flush_all(&s.meta).await?;
                crate::startup::shard_refs(&s, &live, &wanted, true).await
            })
            .await??;
        for (owner, refs) in found.by_owner.into_iter().enumerate() {
            held[owner].append(refs);
        }
    }
    for &s in &kept {
        let held = std::mem::take(&mut held[s]);
        let restored = restored_refs.remove(&s).unwrap_or_default();
        let sources = lsns.clone();
        report.references_replaced +=
            node.on(s, move |s| async move { replace_counts(&s, held, restored, sources).await }).await??;
    }
    for &s in &report.shards {
        node.on(s, |s| async move {
            crate::counts::start_delivery(&s);
        })
        .await?;
    }
    node.sync().await
}

/// Every chunk `shards` count.
async fn counted_on(node: &Node, shards: &[usize]) -> Result<Vec<ChunkRef>> {
    let mut out = Vec::new();
    for &s in shards {
        out.extend(
            node.on(s, |s| async move {
                let mut all = Vec::new();
                crate::counts::each_counted(&s, |page| all.extend(page.iter().map(|c| c.chunk))).await?;
                Ok::<_, EngineError>(all)
            })
            .await??,
        );
    }
    Ok(out)
}

/// The blobs of one part of the manifest (its items) that the new shards own; its containers go
/// to `containers`.
fn new_shards_blobs(
    node: &Node,
    items: Vec<ExportItem>,
    new: &std::ops::Range<usize>,
    stream: &mut Blobs,
    containers: &mut Vec<(String, String, Container)>,
) -> Result<Vec<(BlobKey, Blob)>> {
    let mut blobs = Vec::new();
    for item in items {
        stream.feed(item, &mut blobs, containers)?;
    }
    Ok(blobs.into_iter().filter(|(k, _)| new.contains(&node.shared().owner_of(k))).collect())
}

/// The catalog of a node whose device 0 (shard 0, the catalog's) was replaced: the epoch's
/// containers, and those the kept shards' blobs name under a newer incarnation (created after
/// the epoch: their properties are lost, as a degraded start finds them), logged on shard 0
/// and published. Returns how many.
async fn catalog(node: &Node, kept: &[usize], epoch: Vec<(String, String, Container)>) -> Result<u64> {
    let mut all: BTreeMap<(String, String), Container> =
        epoch.into_iter().map(|(account, name, c)| ((account, name), c)).collect();
    for &s in kept {
        let (names, _) = node
            .on(s, |s| async move {
                shard_store::flush_all(&s.meta).await?;
                crate::startup::named_containers(&s).await
            })
            .await??;
        for (k, id) in names {
            if all.get(&k).is_none_or(|c| c.id < id) {
                all.insert(k, Container::found(id));
            }
        }
    }
    let n = all.len() as u64;
    let puts: Vec<Record> =
        all.into_iter().map(|((account, name), container)| Record::ContainerPut { account, name, container }).collect();
    node.on(CATALOG_SHARD, move |s| async move { super::log_all(&s, puts).await }).await??;
    let catalog = node.on(CATALOG_SHARD, |s| async move { s.meta.borrow().state().containers.clone() }).await?;
    *node.shared().catalog.write().unwrap_or_else(|p| p.into_inner()) = catalog;
    Ok(n)
}

/// Whether every chunk `b` names is still somewhere: placed by the epoch (counted by a new
/// shard), or held by the kept shard that counts it.
fn whole(
    b: &Blob,
    placed: &HashMap<ChunkId, Placed>,
    missing: &HashSet<ChunkId>,
    is_new: &impl Fn(usize) -> bool,
    shared: &crate::shard::NodeShared,
) -> bool {
    b.chunks().all(|c| match is_new(shared.ref_owner(c)) {
        true => placed.get(&c.id()).is_some_and(|p| p.chunk == *c),
        false => !missing.contains(&c.id()),
    })
}

/// Those of `chunks` (counted here) this shard does not hold as they are named.
async fn not_held(s: &Rc<Shard>, chunks: Vec<ChunkRef>) -> Result<Vec<ChunkId>> {
    let wants: Vec<Want> = chunks.iter().map(|c| Want::Chunk(c.id())).collect();
    shard_store::resident(&s.meta, &wants).await?;
    let meta = s.meta.borrow();
    let held = |c: &ChunkRef| meta.state().chunks.get(&c.id()).is_some_and(|e| e.chunk == *c && e.refs > 0);
    Ok(chunks.iter().filter(|c| !held(c)).map(|c| c.id()).collect())
}

/// This shard's blobs that name a chunk of `lost`, and the blobs whose uncommitted blocks do
/// (all of a blob's are dropped) that are not among the first.
async fn naming_lost(s: &Rc<Shard>, lost: &HashSet<ChunkId>) -> Result<(Vec<BlobKey>, Vec<BlobKey>)> {
    let mut blobs = Vec::new();
    let mut staged = Vec::new();
    let lost_one = |c: &ChunkRef| lost.contains(&c.id());
    shard_store::flush_all(&s.meta).await?;
    shard_store::scan_all(
        &s.meta,
        |k, b| {
            if b.chunks().any(lost_one) {
                blobs.push(k.clone());
            }
        },
        |k, _, b| {
            if b.block.chunks.iter().any(lost_one) && staged.last() != Some(k) {
                staged.push(k.clone());
            }
        },
    )
    .await?;
    staged.dedup();
    staged.retain(|k| !blobs.contains(k));
    Ok((blobs, staged))
}

/// Chunks counted here, on flash (the device is new: their bytes are not) and now in a pack,
/// keep only their place in the tier: their space but the first page is free again. Unlike a
/// release for room, one of a single page goes too (it has nothing to free, but its bytes are
/// not on flash either).
async fn keep_in_tier_only(s: &Rc<Shard>, ids: &[ChunkId], per_record: usize) -> Result<()> {
    let choose = |e: &ChunkEntry| match e.location {
        Location::Both { .. } => {
            let rest = e.chunk.extent().len.saturating_sub(PAGE_SIZE as u64);
            Some((e.chunk.id(), Extent { offset: e.chunk.offset + PAGE_SIZE as u64, len: rest }))
        }
        _ => None,
    };
    for batch in ids.chunks(per_record) {
        super::release::release_chosen(s, batch, choose).await?;
    }
    Ok(())
}

/// On a kept shard: its counts less `held` (what the kept shards' metadata names here) are what
/// the lost shards had counted; those are replaced by `restored` (what the restored blobs
/// name). Returns the references taken out.
async fn replace_counts(s: &Rc<Shard>, held: RefCounts, restored: RefCounts, sources: Vec<(u32, u64)>) -> Result<u64> {
    let mut by_id: HashMap<ChunkId, (ChunkRef, u64)> = HashMap::new();
    for (c, n) in held.iter() {
        by_id.entry(c.id()).or_insert((*c, 0)).1 += *n as u64;
    }
    let mut old = RefCounts::default();
    let mut short = Vec::new();
    let mut seen: HashSet<ChunkId> = HashSet::new();
    crate::counts::each_counted(s, |page| {
        for c in page {
            seen.insert(c.chunk.id());
            let kept = by_id.get(&c.chunk.id()).map_or(0, |(_, n)| *n);
            match (c.refs as u64).checked_sub(kept) {
                Some(0) => {}
                Some(lost) => old.add(c.chunk, lost.min(u32::MAX as u64) as u32),
                None => short.push(c.chunk.offset),
            }
        }
    })
    .await?;
    short.extend(by_id.iter().filter(|(id, _)| !seen.contains(id)).map(|(_, (c, _))| c.offset));
    if !short.is_empty() {
        return Err(EngineError::Corrupt(format!(
            "shard {}: counts fewer references than the kept shards' metadata holds (chunks at {:?})",
            s.index,
            short.iter().take(8).collect::<Vec<_>>()
        )));
    }
    let out = old.total();
    // In records that fit a log half (as a delivery's); each sets the sources' LSNs again. The
    // first, even of no change, is the one that must be: it starts their LSNs over.
    let changes = RefCounts::changes(&restored, &old);
    let mut batches = changes.chunks(s.per_record(crate::counts::CHANGE_LEN));
    let first = batches.next().map(<[_]>::to_vec).unwrap_or_default();
    crate::counts::replace_refs(s, sources.clone(), first).await?;
    for batch in batches {
        crate::counts::replace_refs(s, sources.clone(), batch.to_vec()).await?;
    }
    Ok(out)
}
