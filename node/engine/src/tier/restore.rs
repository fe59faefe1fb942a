//! A node rebuilt from the tier alone (`edgeblob-admin restore`; architecture.md, "Restore and
//! fencing").
//!
//! 1. Finds the node (`nodes/` in the tier, or the uuid given), opens its node key with the
//!    customer's key, and reads the chosen manifest (the newest, or epoch `E`).
//! 2. Takes the tier over: claims a generation above every claim (the old writer is fenced).
//! 3. Formats new data files (or blank raw devices, in place) as the old devices were (uuid,
//!    chunk-hash secret, sizes, shards), each superblock flagged restoring: no node opens them
//!    until the restore ends.
//! 4. Imports, through the shards' own records: the containers; every shard's tier generation;
//!    on each counting shard its packs and the chunks in them that a restored blob names
//!    (`Record::ChunksRestored`: in the tier only); then the blobs whose every chunk is placed,
//!    whose references are counted as any blob's are. No data is downloaded: the node serves
//!    at once and reads each chunk from its pack when asked.
//! 5. Writes a manifest of the restored state under its own generation (so the packs it needs
//!    are retained whoever collects), and clears the flags.
//!
//! A crash anywhere leaves a flag (or no superblock at all): the next restore starts over (new
//! data files, a new generation). Memory: the places of the chunks the epoch holds (about 100
//! bytes each), and one part of metadata at a time.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use edgeblob_io::superblock::{Superblock, SECRET_LEN};
use edgeblob_io::DeviceFile;
use edgeblob_meta::export::{items, ExportItem, Manifest};
use edgeblob_meta::model::{
    Blob, BlobKey, Block, ChunkId, ChunkRef, Container, ListedBlock, PackInfo, Packed, RestoredChunk, StagedBlock,
};
use edgeblob_meta::Record;
use edgeblob_remote::Remote;
use edgeblob_tier::{NodeKey, ObjectKind};

use super::epoch::{manifest_name, parse_manifest_name, MAX_PART_PLAIN};
use super::objects::{self, Written};
use super::remote::node_prefix;
use crate::config::EngineConfig;
use crate::error::{EngineError, Result};
use crate::{Node, CATALOG_SHARD};

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    pub node: String,
    /// The manifest restored, and the one written for the restored node.
    pub from: String,
    pub written: String,
    pub epoch: u64,
    pub generation: u64,
    pub containers: u64,
    pub blobs: u64,
    /// Blobs of the epoch left out: a chunk they name has no place in it (changed while the
    /// epoch was taken; see `tier::epoch`).
    pub blobs_left_out: u64,
    pub chunks: u64,
    pub packs: u64,
    /// Bytes of metadata read from the tier (the only download).
    pub metadata_bytes: u64,
    pub elapsed: Duration,
}

pub(super) fn tier_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Tier(e.to_string())
}

/// The node whose tier this is: the uuid given, else the only one `nodes/` lists.
async fn find_node(remote: &Remote, given: Option<&str>) -> Result<[u8; 16]> {
    let parse = |s: &str| -> Option<[u8; 16]> {
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        let mut out = [0u8; 16];
        if hex.len() != 32 {
            return None;
        }
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(out)
    };
    if let Some(g) = given {
        return parse(g).ok_or_else(|| tier_err(format!("{g:?} is not a node uuid")));
    }
    let page = remote.list("nodes/", None, 1000).await.map_err(tier_err)?;
    let nodes: Vec<[u8; 16]> = page.blobs.iter().filter_map(|b| parse(b.name.strip_prefix("nodes/")?)).collect();
    match nodes.as_slice() {
        [one] => Ok(*one),
        [] => Err(tier_err("the tier holds no node (nothing under nodes/)")),
        many => Err(tier_err(format!(
            "the tier holds {} nodes; name one with --node ({})",
            many.len(),
            many.iter().map(node_prefix).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The node key, opened with the customer's key (never made: a restore finds one or fails).
pub(super) async fn node_key(remote: &Remote, cfg: &crate::config::TierConfig, prefix: &str) -> Result<NodeKey> {
    let guard = super::guard::Guard::of(cfg).map_err(tier_err)?;
    let (_, name) = super::remote::latest_key(remote, prefix)
        .await
        .map_err(tier_err)?
        .ok_or_else(|| tier_err("the tier holds no node key of this node"))?;
    super::remote::read_key(remote, &name, &guard).await.map_err(|e| tier_err(e.message))
}

/// Every manifest of the node, oldest first: (generation, epoch, name). A failed listing is an
/// error, never "none".
pub(crate) async fn list_manifests(remote: &Remote, prefix: &str) -> Result<Vec<(u64, u64, String)>> {
    let listed = super::remote::list_all(remote, &format!("{prefix}/manifest/")).await.map_err(tier_err)?;
    let mut names: Vec<(u64, u64, String)> = listed
        .iter()
        .filter_map(|full| {
            let name = full.strip_prefix(prefix)?.strip_prefix('/')?;
            let (g, e) = parse_manifest_name(name)?;
            Some((g, e, name.to_owned()))
        })
        .collect();
    names.sort();
    Ok(names)
}

/// The manifest to restore: epoch `epoch`, else the newest.
pub(super) async fn choose(remote: &Remote, prefix: &str, epoch: Option<u64>) -> Result<(String, Vec<String>)> {
    let names = list_manifests(remote, prefix).await?;
    let all: Vec<String> = names.iter().map(|(_, _, n)| n.clone()).collect();
    let chosen = match epoch {
        Some(want) => names.iter().rev().find(|(_, e, _)| *e == want),
        None => names.last(),
    };
    match chosen {
        Some((_, _, n)) => Ok((n.clone(), all)),
        None if epoch.is_some() => Err(tier_err(format!("the tier holds no manifest of epoch {}", epoch.unwrap_or(0)))),
        None => Err(tier_err("the tier holds no manifest: no epoch was ever written")),
    }
}

/// A restore point as `restore status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePoint {
    pub name: String,
    pub epoch: u64,
    pub generation: u64,
    pub cut_ns: i64,
    pub written_ns: i64,
    pub counts: edgeblob_meta::export::ManifestCounts,
}

/// The node's restore points in the tier, oldest first (each manifest opened), and its uuid.
pub async fn restore_points(
    cfg: &crate::config::TierConfig,
    node: Option<&str>,
) -> Result<(String, Vec<RestorePoint>)> {
    let remote = super::remote::client(cfg).map_err(tier_err)?;
    let uuid = find_node(&remote, node).await?;
    let prefix = node_prefix(&uuid);
    let key = node_key(&remote, cfg, &prefix).await?;
    let all = list_manifests(&remote, &prefix).await?;
    let mut out = Vec::with_capacity(all.len());
    for (_, _, name) in all {
        let bytes = objects::get(&remote, &key, &uuid, ObjectKind::Manifest, &name, None, MAX_PART_PLAIN)
            .await
            .map_err(tier_err)?;
        let m = Manifest::decode(&bytes).map_err(|e| tier_err(format!("{name}: {e}")))?;
        out.push(RestorePoint {
            name,
            epoch: m.epoch,
            generation: m.generation,
            cut_ns: m.cut_ns,
            written_ns: m.written_ns,
            counts: m.counts,
        });
    }
    Ok((prefix, out))
}

/// Restores the node whose tier `config.tier` names into a new data file at `config.data_path`
/// (which must not exist, unless a restore into it did not finish).
pub async fn restore(config: &EngineConfig, node: Option<&str>, epoch: Option<u64>) -> Result<RestoreReport> {
    let started = Instant::now();
    let cfg = config.tier.clone().ok_or_else(|| tier_err("restore needs a [engine.tier] section"))?;
    let paths = config.device_paths();
    let targets = targets(&paths)?;
    let remote = super::remote::client(&cfg).map_err(tier_err)?;
    let uuid = find_node(&remote, node).await?;
    let prefix = node_prefix(&uuid);
    let key = node_key(&remote, &cfg, &prefix).await?;
    let (from, all) = choose(&remote, &prefix, epoch).await?;
    let mut report = RestoreReport { node: prefix.clone(), from: from.clone(), ..RestoreReport::default() };
    let manifest_bytes = objects::get(&remote, &key, &uuid, ObjectKind::Manifest, &from, None, MAX_PART_PLAIN)
        .await
        .map_err(tier_err)?;
    report.metadata_bytes += manifest_bytes.len() as u64;
    let manifest = Manifest::decode(&manifest_bytes).map_err(|e| tier_err(format!("{from}: {e}")))?;
    report.epoch = manifest.epoch;
    // Chunk ids name a device and a place on it: the node is laid out again as it was.
    let lens = manifest.device_lens();
    if lens.len() != paths.len() {
        return Err(tier_err(format!(
            "{from} is of a node on {} devices; this configuration names {} (engine.devices)",
            lens.len(),
            paths.len()
        )));
    }
    // The old writer is fenced from here on.
    let generation = super::fence::take_over(&remote, &prefix, manifest.generation.max(manifest.tier_generation))
        .await
        .map_err(tier_err)?;
    report.generation = generation;
    tracing::info!(node = %prefix, manifest = %from, generation, "restoring from the tier");

    // New devices, formatted as the old ones were, flagged restoring until the end.
    let g = &manifest.geometry;
    let geometry = |e: edgeblob_io::superblock::SuperblockError| tier_err(format!("the manifest's geometry: {e}"));
    let mut sb =
        Superblock::new_version(g.device_len, g.shards / lens.len() as u32, g.format_version).map_err(geometry)?;
    sb.uuid = uuid;
    sb.restoring = true;
    sb.secret = <[u8; SECRET_LEN]>::try_from(manifest.secret.as_slice())
        .map_err(|_| tier_err("the manifest's chunk-hash secret is not of its length"))?;
    let sbs = match lens.len() {
        1 => vec![sb],
        n => (0..n)
            .map(|i| sb.sibling(i as u16, n as u16, lens[i]))
            .collect::<std::result::Result<_, _>>()
            .map_err(geometry)?,
    };
    match targets {
        Targets::Files => {
            for p in &paths {
                let _ = std::fs::remove_file(p);
            }
            crate::startup::format_files_as(&paths, sbs)?;
        }
        Targets::Raw(files) => {
            if let Some((f, len)) = files.iter().zip(&lens).find(|(f, len)| f.len() < **len) {
                return Err(tier_err(format!(
                    "{} has {} bytes; the node's device had {len}",
                    f.path().display(),
                    f.len()
                )));
            }
            crate::startup::format_devices_as(&files, sbs)?;
        }
    }

    let node = open_restoring(config, g.shards as usize).await?;
    let imported = import(&node, &remote, &key, &uuid, &manifest, generation, &mut report).await;
    let stopped = tokio::task::spawn_blocking(move || node.stop()).await;
    imported?;
    stopped.map_err(|e| tier_err(format!("stopping the restored node: {e}")))?;

    // The restored state, as a manifest of the new generation: its packs are retained by any
    // collector from now on, and a later restore starts from it.
    let next = all.iter().filter_map(|n| parse_manifest_name(n)).map(|(_, e)| e).max().unwrap_or(0) + 1;
    let written = manifest_name(generation, next);
    let mine = Manifest {
        epoch: next,
        generation,
        written_ns: crate::shard::now_ns(),
        previous: Some(from.clone()),
        tier_generation: generation,
        ..manifest
    };
    objects::put(&remote, &key, &uuid, ObjectKind::Manifest, &written, &mine.encode()).await.map_err(tier_err)?;
    report.written = written;
    crate::startup::finish_restore(&paths)?;
    report.elapsed = started.elapsed();
    tracing::info!(?report, "restored from the tier");
    Ok(report)
}

/// What a restore writes onto: new data files, or raw devices in place.
enum Targets {
    Files,
    Raw(Vec<std::sync::Arc<DeviceFile>>),
}

/// A path a restore was given, the superblock on it (if one reads), and the device if it opens.
type Held<'p> = (&'p PathBuf, Option<Superblock>, Option<std::sync::Arc<DeviceFile>>);

/// The devices a restore may write: each absent (a data file to create), blank (no superblock:
/// a new or wiped raw device), or holding a node a restore into has not finished (it starts
/// over; a member whose flag a crash had already cleared goes with the others). Anything else
/// holds a node, and is refused before anything is written.
fn targets(paths: &[PathBuf]) -> Result<Targets> {
    use std::os::unix::fs::FileTypeExt;
    let raw: Vec<bool> =
        paths.iter().map(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device())).collect();
    if raw.iter().any(|&r| r) != raw.iter().all(|&r| r) {
        return Err(tier_err("a restore writes either raw devices or data files, not both"));
    }
    // One that is there but does not open (a running node holds its lock) is no target.
    let held: Vec<Held<'_>> = paths
        .iter()
        .map(|p| match DeviceFile::open(p) {
            Ok(f) => Ok((p, crate::media::read_superblock(&f).ok(), Some(std::sync::Arc::new(f)))),
            Err(_) if !p.exists() => Ok((p, None, None)),
            Err(e) => Err(tier_err(format!("{}: {e}", p.display()))),
        })
        .collect::<Result<_>>()?;
    let restoring: Vec<[u8; 16]> =
        held.iter().filter_map(|(_, sb, _)| sb.as_ref()).filter(|sb| sb.restoring).map(|sb| sb.uuid).collect();
    for (p, sb, file) in &held {
        let writable = match sb {
            Some(sb) => restoring.contains(&sb.uuid),
            // A data file that is not a device's holds something else: not ours to replace.
            None => file.is_none() || raw[0],
        };
        if !writable {
            return Err(tier_err(format!(
                "{} holds data: a restore writes new data files, or raw devices that are blank (move the file away, or wipe the device)",
                p.display()
            )));
        }
    }
    Ok(match raw[0] {
        true => Targets::Raw(held.into_iter().filter_map(|(_, _, f)| f).collect()),
        false => Targets::Files,
    })
}

/// Whether a restore may write `paths` (see [`targets`]); why not, when it may not.
pub fn writable(paths: &[PathBuf]) -> Result<()> {
    targets(paths).map(|_| ())
}

/// Opens the node being restored (its devices flagged restoring).
async fn open_restoring(config: &EngineConfig, shards: usize) -> Result<Node> {
    let mut cfg = config.clone();
    cfg.tier = None;
    cfg.shards = Some(shards);
    let opened =
        tokio::task::spawn_blocking(move || crate::startup::open_restoring(cfg, crate::startup::Opening::Restoring))
            .await;
    opened.map_err(|e| tier_err(format!("opening the new data files: {e}")))?
}

/// A chunk the epoch places: as its references name it, and where.
struct Placed {
    chunk: ChunkRef,
    packed: Packed,
    shard: u32,
    /// Whether a restored blob names it.
    named: bool,
}

/// The items of one part of the manifest, checked by length and digest, then opened.
pub(super) async fn read_part(
    remote: &Remote,
    key: &NodeKey,
    node: &[u8; 16],
    part: &edgeblob_meta::export::PartRef,
    bytes: &mut u64,
) -> Result<Vec<ExportItem>> {
    let expect = Some(Written { len: part.len, digest: part.digest });
    let plain = objects::get(remote, key, node, ObjectKind::MetaPart, &part.name, expect, MAX_PART_PLAIN)
        .await
        .map_err(tier_err)?;
    *bytes += part.len;
    items(&plain).map(|i| i.map_err(|e| tier_err(format!("{}: {e}", part.name)))).collect()
}

/// Blobs as the parts stream them: a head, then its blocks (which may run into the next part).
#[derive(Default)]
pub(super) struct Blobs {
    pending: Option<(BlobKey, Blob, u32)>,
}

impl Blobs {
    /// Takes one item; a blob it completes goes to `out`, a container to `containers`.
    pub(super) fn feed(
        &mut self,
        item: ExportItem,
        out: &mut Vec<(BlobKey, Blob)>,
        containers: &mut Vec<(String, String, Container)>,
    ) -> Result<()> {
        match item {
            ExportItem::Container { account, name, container } => containers.push((account, name, container)),
            ExportItem::Blob { key, blob, blocks } => {
                if self.pending.is_some() {
                    return Err(tier_err("a blob of the export ends before its blocks"));
                }
                match blocks {
                    0 => out.push((key, *blob)),
                    n => self.pending = Some((key, *blob, n)),
                }
            }
            ExportItem::Block(b) => {
                let Some((_, blob, left)) = self.pending.as_mut() else {
                    return Err(tier_err("a block of the export belongs to no blob"));
                };
                blob.blocks.push(b);
                *left -= 1;
                if *left == 0 {
                    if let Some((k, blob, _)) = self.pending.take() {
                        out.push((k, blob));
                    }
                }
            }
            ExportItem::Pack(_) | ExportItem::Chunk { .. } => return Err(tier_err("chunks in a part of blobs")),
        }
        Ok(())
    }

    pub(super) fn end(self) -> Result<()> {
        match self.pending {
            Some(_) => Err(tier_err("the export ends inside a blob")),
            None => Ok(()),
        }
    }
}

async fn import(
    node: &Node,
    remote: &Remote,
    key: &NodeKey,
    uuid: &[u8; 16],
    manifest: &Manifest,
    generation: u64,
    report: &mut RestoreReport,
) -> Result<()> {
    let (chunk_parts, blob_parts): (Vec<_>, Vec<_>) = manifest.parts.iter().partition(|p| p.chunks);
    // The places of the epoch's chunks, and its packs.
    let mut placed: HashMap<ChunkId, Placed> = HashMap::new();
    let mut packs: BTreeMap<(u32, u64), PackInfo> = BTreeMap::new();
    for part in &chunk_parts {
        for item in read_part(remote, key, uuid, part, &mut report.metadata_bytes).await? {
            match item {
                ExportItem::Chunk { chunk, packed } => {
                    let shard = node.shared().ref_owner(&chunk) as u32;
                    placed.entry(chunk.id()).or_insert(Placed { chunk, packed, shard, named: false });
                }
                ExportItem::Pack(p) => {
                    packs.insert((p.shard, p.number), p);
                }
                _ => return Err(tier_err("blobs in a part of chunks")),
            }
        }
    }
    let whole = |placed: &HashMap<ChunkId, Placed>, blob: &Blob| {
        blob.chunks().all(|c| placed.get(&c.id()).is_some_and(|p| p.chunk == *c))
    };
    // Which chunks the blobs that come back name (a blob comes back when all of its are placed).
    let mut containers = Vec::new();
    let mut stream = Blobs::default();
    for part in &blob_parts {
        let mut blobs = Vec::new();
        for item in read_part(remote, key, uuid, part, &mut report.metadata_bytes).await? {
            stream.feed(item, &mut blobs, &mut containers)?;
        }
        for (_, blob) in &blobs {
            if !whole(&placed, blob) {
                continue;
            }
            for c in blob.chunks() {
                if let Some(p) = placed.get_mut(&c.id()) {
                    p.named = true;
                }
            }
        }
    }
    stream.end()?;
    // The first page of each chunk's first place stays in use while it lives (its id), as on the
    // old node: set aside before the index grows into the data area, which it may then not take.
    let mut anchors: Vec<Vec<u64>> = vec![Vec::new(); node.shards()];
    for p in placed.values().filter(|p| p.named) {
        let region = node.shared().layout.shard_of(p.chunk.offset).filter(|r| (*r as usize) < anchors.len());
        let region = region.ok_or_else(|| tier_err(format!("a chunk at {} lies in no region", p.chunk.offset)))?;
        anchors[region as usize].push(p.chunk.offset);
    }
    for (i, offsets) in anchors.into_iter().enumerate() {
        node.on(i, move |s| async move { hold_anchors(&s, &offsets) }).await??;
    }
    report.containers = containers.len() as u64;
    let puts: Vec<Record> = containers
        .into_iter()
        .map(|(account, name, container)| Record::ContainerPut { account, name, container })
        .collect();
    node.on(CATALOG_SHARD, move |s| async move { super::log_all(&s, puts).await }).await??;
    // Published as a start publishes them: the blobs' containers are live.
    let catalog = node.on(CATALOG_SHARD, |s| async move { s.meta.borrow().state().containers.clone() }).await?;
    *node.shared().catalog.write().unwrap_or_else(|p| p.into_inner()) = catalog;
    log_on_each(node, vec![vec![Record::TierStarted { generation }]; node.shards()]).await?;
    // Each counting shard: its packs, then the chunks in them, in records of a bounded size.
    let mut by_pack: BTreeMap<(u32, u64), Vec<RestoredChunk>> = BTreeMap::new();
    for p in placed.values().filter(|p| p.named) {
        let r = RestoredChunk { chunk: p.chunk, entry: p.packed.entry, at: p.packed.at };
        by_pack.entry((p.shard, p.packed.pack)).or_default().push(r);
    }
    // About 64 bytes a chunk.
    let per_record = node.on(0, |s| async move { s.per_record(64) }).await?;
    let mut by_shard: Vec<Vec<Record>> = vec![Vec::new(); node.shards()];
    for ((shard, number), mut chunks) in by_pack {
        let pack = packs.get(&(shard, number)).cloned().ok_or_else(|| {
            tier_err(format!("the epoch places chunks in pack {number} of shard {shard}, and does not name it"))
        })?;
        let recs = by_shard.get_mut(shard as usize).ok_or_else(|| tier_err(format!("a pack of shard {shard}")))?;
        report.packs += 1;
        report.chunks += chunks.len() as u64;
        recs.push(Record::PackCommitted { pack: Box::new(pack), chunks: Vec::new(), replaces: Vec::new() });
        chunks.sort_by_key(|c| c.at);
        for batch in chunks.chunks(per_record) {
            recs.push(Record::ChunksRestored { pack: number, chunks: batch.to_vec() });
        }
    }
    log_on_each(node, by_shard).await?;
    // The blobs, a part at a time, their references counted as any blob's; each shard's
    // records of a part logged together (they share group commits), the shards at once.
    let mut stream = Blobs::default();
    for part in &blob_parts {
        let mut blobs = Vec::new();
        for item in read_part(remote, key, uuid, part, &mut report.metadata_bytes).await? {
            stream.feed(item, &mut blobs, &mut Vec::new())?;
        }
        let mut by_owner: Vec<Vec<Record>> = vec![Vec::new(); node.shards()];
        for (k, blob) in blobs {
            if whole(&placed, &blob) {
                by_owner[node.shared().owner_of(&k)].extend(blob_records(k, blob));
                report.blobs += 1;
            } else {
                report.blobs_left_out += 1;
            }
        }
        log_on_each(node, by_owner).await?;
    }
    if report.blobs_left_out > 0 {
        tracing::warn!(
            left_out = report.blobs_left_out,
            "blobs of the epoch name chunks with no place in it (changed while the epoch was taken) and were left out"
        );
    }
    node.sync().await
}

/// Marks the anchor pages at `offsets` in use in shard `s`'s allocator: its index's spare
/// segments go back first (the old node may have written chunks where they lie), and are taken
/// again around the anchors.
pub(super) fn hold_anchors(s: &crate::shard::Shard, offsets: &[u64]) -> Result<()> {
    let Some(ix) = &s.index_space else { return Ok(()) };
    let spares = {
        let mut space = s.space.borrow_mut();
        let given = ix.give_back(&mut space.alloc, 0);
        for &offset in offsets {
            let page = edgeblob_io::Extent { offset, len: edgeblob_io::PAGE_SIZE as u64 };
            space.alloc.reserve(page).map_err(|e| {
                EngineError::Corrupt(format!(
                    "a restored chunk's first page at {offset} is not free on the new device: {e}"
                ))
            })?;
        }
        given
    };
    s.top_up_index(spares);
    Ok(())
}

/// Logs each shard's records on it, the shards at once, each waiting once for its last.
pub(super) async fn log_on_each(node: &Node, by_shard: Vec<Vec<Record>>) -> Result<()> {
    let logged = by_shard
        .into_iter()
        .enumerate()
        .map(|(i, recs)| node.on(i, move |s| async move { super::log_all(&s, recs).await }));
    for r in futures::future::join_all(logged).await {
        r??;
    }
    Ok(())
}

/// The records of a restored blob on its owner shard: Put Blob's one block as it was; a block
/// list as staged blocks and the list that commits them (records stay small however many
/// blocks it has).
pub(super) fn blob_records(key: BlobKey, blob: Blob) -> Vec<Record> {
    if blob.single_put || (blob.blocks.len() <= 1 && blob.chunks().count() <= 1024) {
        return vec![Record::BlobPut { key, blob }];
    }
    let mut index: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut list = Vec::with_capacity(blob.blocks.len());
    let mut out = Vec::new();
    let head = Box::new(blob.head());
    for b in blob.blocks {
        let next = index.len() as u32;
        let at = *index.entry(b.id.clone()).or_insert(next);
        if at == next {
            let block =
                StagedBlock { block: Block { id: b.id, size: b.size, chunks: b.chunks }, staged_ns: head.modified_ns };
            out.push(Record::BlockStaged { key: key.clone(), container_id: head.container_id, block });
        }
        list.push(ListedBlock::Uncommitted(at));
    }
    out.push(Record::BlockListPut { key, blob: head, list });
    out
}
