//! A shard's metadata in format v2: the log is the commit point, the index holds what the log
//! made durable up to the LSN it records, and memory holds only a working set.
//!
//! The working set is a [`ShardMeta`] of *resident* entries: loaded from the index (present, or
//! known absent) or changed since. A change is applied to resident entries only, so callers
//! first [`ensure`] the entries a change reads are resident, then check and commit with no await
//! in between (which is what serialises changes to one blob on its owner shard). Changed entries
//! are *dirty* with the LSN of their last change until a flush writes them; only clean entries
//! are evicted, so a dirty entry always shadows the index.
//!
//! A flush freezes the dirty entries at the last applied LSN `F`, waits until the log has made
//! `F` durable (the index must never hold a change the log could lose), and writes them with `F`
//! in one index transaction on the index thread. The log is a ring of two halves: switching
//! into the older half needs the index to cover it, so recovery replays at most two halves.
//!
//! A container's purge record reaches only resident entries; the engine walks the index for the
//! rest (`container::purge`).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use edgeblob_io::{BlockDevice, Extent};
use tokio::sync::{watch, Notify};

use super::db::Index;
use super::db::WriteError;
use super::fences::Fences;
use super::filter::{self, KeyFilter};
use super::keys;
use super::lru::Lru;
use super::memtable::{prefix_end, Memtable};
use super::room::{Grow, Load, Room, DELETE_ROOM};
use super::space::{SpaceChanges, SpaceMap};
use super::thread::IndexThread;
use super::{Page, Table};
use crate::listing::{Flow, ListEntry, ListQuery, Lister};
use crate::model::{Blob, BlobKey, Block, ChunkEntry, ChunkId, ChunkRef, RefChange, StagedBlock};
use crate::record::Record;
use crate::refs::RefCounts;
use crate::replay::{self, RecoverError};
use crate::state::{ShardMeta, Staged};
use crate::store::Commit;
use crate::wal::{frame_len, AppendError, LogPlace, LogWriter};

/// How much a shard keeps in memory and how often it flushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexConfig {
    /// Clean resident entries are evicted past this many bytes (encoded sizes).
    pub cache_bytes: usize,
    /// A flush starts once this many bytes of records have been applied since the last one
    /// (a blob's record counting at least its encoded entry, which its mark holds until then),
    /// and in any case when a log half is half full.
    pub flush_bytes: usize,
    /// Changes that add to the metadata are refused (`AppendError::Undelivered`, a 503) while
    /// the outbox holds this many reference changes not yet counted: memory for them is
    /// bounded when a counting shard cannot log (one record more may pass the bound).
    pub max_undelivered: usize,
    /// Bytes of chunk lists past which a staged list that is not needed whole keeps them apart
    /// (in the index only) when it is evicted or read: staging into it, or listing it, then
    /// reads none of them. Below it a list is evicted or read whole, and its commit needs no
    /// second read.
    pub apart_bytes: usize,
}

/// Reference changes an outbox holds before growing changes wait (about 48 bytes each).
pub const MAX_UNDELIVERED: usize = 1 << 18;

impl Default for IndexConfig {
    fn default() -> IndexConfig {
        IndexConfig {
            cache_bytes: 64 << 20,
            flush_bytes: 8 << 20,
            max_undelivered: MAX_UNDELIVERED,
            apart_bytes: 1 << 20,
        }
    }
}

/// Entries a change or a read needs resident.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Want {
    Blob(BlobKey),
    /// Every uncommitted block of the blob, with its chunk list.
    Staged(BlobKey),
    /// The blob's uncommitted blocks by id, place and size: chunk lists may stay in the index
    /// (what staging one more block, or listing them, needs). A list of more than
    /// [`IndexConfig::apart_bytes`] of chunk lists read for this, or evicted, keeps only these
    /// in memory.
    StagedList(BlobKey),
    /// A chunk's entry in the chunk table.
    Chunk(ChunkId),
    /// The dedup candidate for a hash.
    Dedup([u8; 16]),
}

/// What the index held for some wants.
#[derive(Debug, Default)]
pub struct Fetched {
    blobs: Vec<(BlobKey, Option<Blob>)>,
    staged: Vec<(BlobKey, Option<Staged>)>,
    chunks: Vec<(ChunkId, Option<ChunkEntry>)>,
    dedup: Vec<([u8; 16], Option<ChunkId>)>,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum IndexError {
    #[error("the metadata index failed: {0}")]
    Failed(String),
}

/// Keys changed since the last flush began, with the LSN of their last change.
#[derive(Debug, Default)]
struct Dirty {
    /// Hashed, not ordered: a small Put marks its blob here, and a search of an ordered map by a
    /// key of three strings cost a third of applying the record. A listing needs order only for
    /// the blobs this holds that memory does not: those deleted, in `deleted_blobs`.
    blobs: HashMap<BlobKey, DirtyBlob, foldhash::fast::RandomState>,
    /// The blobs in `blobs` a record removed (a delete, a container's purge), in order: a
    /// listing merges them with the index's page as absent (those put again since are in the
    /// state and list as they are).
    deleted_blobs: BTreeMap<BlobKey, u64>,
    staged: BTreeMap<(BlobKey, Vec<u8>), u64>,
    containers: BTreeMap<(String, String), u64>,
    chunks: BTreeMap<ChunkId, u64>,
    /// Chunks whose entries were removed (their last count dropped), with the LSN and the space
    /// they held: the allocator's image clears it at the next flush.
    gone: BTreeMap<ChunkId, (u64, Extent)>,
    dedup: BTreeMap<[u8; 16], u64>,
    /// Sources whose last applied LSN changed.
    applied: BTreeMap<u32, u64>,
    /// Packs committed, by number.
    packs: BTreeMap<u64, u64>,
    /// The LSN of the last `TierStarted` since the last flush began (0: none).
    tier_generation: u64,
    /// Blobs changed since the last flush began whose version before had its blocks apart: the
    /// next flush deletes their `blocks` entry unless the new version keeps one.
    apart_before: BTreeSet<BlobKey>,
    /// The LSN of the last record that may have raised the clock floor (0: none since the last
    /// flush).
    clock: u64,
    /// Bytes of records applied since the last flush began (a blob's at least its encoded
    /// entry, [`DirtyBlob::held`]).
    bytes: usize,
    /// Entries marked dirty since the last flush began (one marked twice counts twice): what
    /// the next flush writes while one is in flight, whose entries stay dirty until it ends.
    marked: usize,
    /// Bytes of large values (blocks kept apart) among the changes since the last flush began
    /// ([`Load::large`]).
    large: usize,
}

/// A blob changed since the last flush began, with what the flush writes for it and the memory
/// it takes, both made when it changed: its entry is in the CPU's cache then, where a flush
/// would search the state for each again, cold (a search by a key of three strings), to encode
/// it, and a flush's end once more for its size. Those two were over half of the time a flush
/// holds its shard up.
#[derive(Debug)]
struct DirtyBlob {
    /// The LSN of its last change.
    lsn: u64,
    value: BlobValue,
    /// Its memory resident ([`blob_mem`]): the clean cache's count once the flush has written it.
    mem: usize,
}

/// A dirty blob's entry in the `blobs` table, as of its last change.
#[derive(Debug, PartialEq, Eq)]
enum BlobValue {
    /// The blob whole, encoded.
    Whole(Vec<u8>),
    /// None: the flush removes its entry.
    Absent,
    /// Its blocks apart ([`keys::blocks_apart`]): the flush writes its head and pieces from the
    /// state (large, and not encoded again at each change).
    Apart,
}

impl DirtyBlob {
    fn of(k: &BlobKey, b: Option<&Blob>, lsn: u64) -> DirtyBlob {
        let value = match b {
            None => BlobValue::Absent,
            Some(b) if keys::blocks_apart(b) => BlobValue::Apart,
            Some(b) => BlobValue::Whole(keys::encode_blob(b)),
        };
        DirtyBlob { lsn, value, mem: blob_mem(k, b) }
    }

    /// Bytes its value holds.
    fn held(&self) -> usize {
        match &self.value {
            BlobValue::Whole(v) => v.len(),
            BlobValue::Absent | BlobValue::Apart => 0,
        }
    }
}

impl Dirty {
    fn has_staged(&self, key: &BlobKey) -> bool {
        self.staged.range((key.clone(), Vec::new())..).next().is_some_and(|((k, _), _)| k == key)
    }

    /// Forgets what a flush up to `lsn` wrote; returns the wants it cleaned (a blob's staged
    /// blocks once, even if some of them are still dirty), the blobs first, each with its
    /// memory.
    fn clean(&mut self, lsn: u64) -> (Vec<(BlobKey, usize)>, Vec<Want>) {
        // Oldest change first: the cache takes them in that order, so the last changed are the
        // last evicted.
        let mut blobs: Vec<(BlobKey, DirtyBlob)> = self.blobs.extract_if(|_, d| d.lsn <= lsn).collect();
        blobs.sort_unstable_by_key(|(_, d)| d.lsn);
        let blobs = blobs.into_iter().map(|(k, d)| (k, d.mem)).collect();
        let mut out: Vec<Want> = Vec::new();
        written_by(&mut self.deleted_blobs, lsn).for_each(drop);
        debug_assert!(self.deleted_blobs.keys().all(|k| self.blobs.contains_key(k)), "a deleted blob is dirty");
        for (k, _) in written_by(&mut self.staged, lsn) {
            if !matches!(out.last(), Some(Want::Staged(last)) if *last == k) {
                out.push(Want::Staged(k));
            }
        }
        written_by(&mut self.containers, lsn).for_each(drop);
        written_by(&mut self.applied, lsn).for_each(drop);
        written_by(&mut self.packs, lsn).for_each(drop);
        if self.clock <= lsn {
            self.clock = 0;
        }
        if self.tier_generation <= lsn {
            self.tier_generation = 0;
        }
        out.extend(written_by(&mut self.chunks, lsn).map(Want::Chunk));
        self.gone.retain(|_, (l, _)| *l > lsn);
        out.extend(written_by(&mut self.dedup, lsn).map(Want::Dedup));
        (blobs, out)
    }
}

/// Takes out of `dirty` the keys last changed at or before `lsn` (a flush up to `lsn` wrote
/// them), in order. Moved, not cloned: a small Put's flush cleans a blob key of three strings.
fn written_by<K: Ord>(dirty: &mut BTreeMap<K, u64>, lsn: u64) -> impl Iterator<Item = K> {
    let (kept, written): (Vec<_>, Vec<_>) = std::mem::take(dirty).into_iter().partition(|(_, l)| *l > lsn);
    // Sorted already: the map is built again in one pass.
    *dirty = kept.into_iter().collect();
    written.into_iter().map(|(k, _)| k)
}

/// What writing the list of keys `list` ([`keys::WARM`]) adds to a flush.
fn warm_load(list: &[u8]) -> Load {
    Load::new(1, keys::WARM.len() + list.len())
}

/// A flush in flight: the LSN it covers, and its outcome once the index thread has it.
struct Flight {
    lsn: u64,
    load: Load,
    /// The index's segments when it began.
    taken_at: usize,
    /// Whether the index is compacted after this flush ([`ShardIndex::want_compaction`]).
    compact: bool,
    done: Rc<RefCell<Option<Outcome>>>,
}

/// How a flush ended.
enum Outcome {
    Done,
    /// The index ran out of the segments granted to it and stands at its last commit: what the
    /// flush would have written goes under the next one ([`Memtable::then`]).
    Short(Box<Memtable>, Load),
    /// Nothing further can be promised: the shard refuses changes (as on a log failure).
    Failed(String),
}

pub struct ShardIndex {
    /// The resident entries. Read them freely once [`ensure`]d; change them only by
    /// [`ShardIndex::commit`].
    pub state: ShardMeta,
    log: LogWriter,
    ix: Rc<IndexThread>,
    cfg: IndexConfig,
    /// The LSN the index covers.
    index_lsn: u64,
    /// The LSN of the last record applied.
    applied: u64,
    dirty: Dirty,
    /// The clean resident entries (a resident entry is clean here, or dirty).
    clean: Lru<Want>,
    flight: Option<Flight>,
    /// Flushes completed: a read of the index that overlapped one may predate what it wrote.
    epoch: Rc<watch::Sender<u64>>,
    failed: Option<String>,
    /// The spare segments the index's flushes may take ([`super::room`]), and how to ask the
    /// shard for more; none where the index grows without bound (tests of the index alone).
    room: Option<(Room, Grow)>,
    /// Bytes of entries removed since the last compaction began (as [`blob_mem`] counts them):
    /// pages freed inside the index, which only a compaction turns into segments the room check
    /// counts.
    freed: u64,
    /// A compaction goes with the next flush.
    compact_wanted: bool,
    /// What a flush short of segments did not write, and its load: the next flush writes it.
    retry: Option<(Memtable, Load)>,
    /// The keys the index may hold, once built ([`build_filters`]).
    filters: Option<Filters>,
    /// While the filters are being built: the hashes of the keys flushes wrote meanwhile (blobs,
    /// staged, chunks, dedup), which the build adds to what it read.
    building: Option<[Vec<u64>; 4]>,
    /// Where a listing's scan may be cut into parts read side by side ([`super::fences`]).
    fences: Fences,
    outbox: Outbox,
    /// Whether `state.clock` is the floor of every stamp this shard holds: an index written
    /// before the floor was kept lacks it until the start-up scan supplies it.
    clock_known: bool,
    /// Whether the index holds the clock floor: until it does, every flush writes it (a flush
    /// of records without stamps too, or a later start could not tell a new index from an old).
    clock_in_index: bool,
    /// Whether the index holds the allocator's image ([`super::space`]): until it does, every
    /// flush builds it whole from the chunk table.
    space_in_index: bool,
    /// The chunks counted since the tier began watching ([`ShardIndex::watch_fresh`]).
    tier_fresh: Option<Fresh>,
    /// Staged lists past [`IndexConfig::apart_bytes`] a flush wrote blocks of: the next trim
    /// drops the chunk lists of their clean blocks (a list staged into is seldom clean whole,
    /// and its written blocks would otherwise stay in memory until the upload ends).
    apart_due: BTreeSet<BlobKey>,
    /// The blob keys held in memory at the last clean stop, as the index kept them
    /// ([`keys::WARM`]), until the start's warm-up takes them ([`ShardIndex::take_warm`]):
    /// decoded there, in the background, not while the shard opens.
    warm: Option<Vec<u8>>,
    /// The list a clean stop asked the next flush to write ([`ShardIndex::keep_warm`]).
    warm_to_write: Option<Vec<u8>>,
    /// Whether the index holds a list: the first flush after a start deletes it.
    warm_in_index: bool,
    /// Whether counts are logged lazily ([`ShardIndex::count_lazily`]): not while a start
    /// drains the outboxes, where no client's round would carry them.
    counts_lazy: bool,
}

/// Chunks newly counted on a shard, oldest first, for the tier to upload without reading the
/// whole chunk table; bounded: past its bound it notes only that a scan is needed.
#[derive(Debug, Default)]
pub struct Fresh {
    pub chunks: Vec<ChunkRef>,
    /// Chunks were counted that `chunks` had no room for.
    pub overflowed: bool,
    bound: usize,
    /// Told when a chunk is added.
    pub signal: Rc<Notify>,
}

impl Fresh {
    fn push(&mut self, new: impl Iterator<Item = ChunkRef>) {
        let before = self.chunks.len();
        for c in new {
            if self.chunks.len() < self.bound {
                self.chunks.push(c);
            } else {
                self.overflowed = true;
            }
        }
        if self.chunks.len() > before || self.overflowed {
            self.signal.notify_one();
        }
    }
}

/// The reference changes of applied records that the shards counting them have not logged yet
/// (`Record::RefsApplied`), by the record's LSN, one change per chunk. A flush writes those of
/// the records it covers into the index, so that recovery, which replays only the records after
/// it, can still send them; a record replayed makes its entry again. Sending one twice is
/// harmless: a counting shard logs each source LSN once.
#[derive(Debug, Default)]
struct Outbox {
    entries: BTreeMap<u64, Arc<Vec<RefChange>>>,
    /// Changes in `entries`, all together.
    changes: usize,
    /// Entries the index holds.
    in_index: BTreeSet<u64>,
    /// Entries the index holds that have been delivered: deleted by the next flush.
    gone: Vec<u64>,
    /// Told when an entry is added.
    signal: Rc<Notify>,
}

/// Blob keys the index may hold a blob of, and blob keys it may hold uncommitted blocks of.
#[derive(Debug)]
struct Filters {
    blobs: KeyFilter,
    staged: KeyFilter,
    /// Chunk ids the chunk table may hold, and hashes the dedup table may: a new chunk's first
    /// reference needs no read of the index.
    chunks: KeyFilter,
    dedup: KeyFilter,
}

/// What recovery found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenReport {
    pub index_lsn: u64,
    pub replayed: usize,
    pub torn_tail: bool,
}

/// Records whose changes need these entries resident.
pub fn wants_of(rec: &Record) -> Vec<Want> {
    match rec {
        // One more block needs the list's ids; a block staged again, or into a new incarnation
        // of its container, needs the chunk lists it replaces too ([`ShardIndex::wants_for`]).
        Record::BlockStaged { key, .. } => vec![Want::StagedList(key.clone())],
        Record::StagedDropped { key } => vec![Want::Staged(key.clone())],
        Record::BlobPut { key, .. } | Record::BlockListPut { key, .. } | Record::BlobDelete { key } => {
            vec![Want::Blob(key.clone()), Want::Staged(key.clone())]
        }
        Record::BlobPropsSet { key, .. } => vec![Want::Blob(key.clone())],
        Record::RefsApplied { changes, .. } | Record::RefsReplaced { changes, .. } => {
            let mut w: Vec<Want> = changes.iter().map(|c| Want::Chunk(c.chunk.id())).collect();
            w.extend(changes.iter().filter(|c| c.chunk.is_dedup()).map(|c| Want::Dedup(c.chunk.hash)));
            w
        }
        Record::PackCommitted { chunks, .. } => chunks.iter().map(|c| Want::Chunk(c.id())).collect(),
        Record::ChunksReleased { chunks } => chunks.iter().map(|id| Want::Chunk(*id)).collect(),
        Record::ChunksRestored { chunks, .. } => chunks.iter().map(|c| Want::Chunk(c.chunk.id())).collect(),
        Record::ChunkHydrated { chunk } => vec![Want::Chunk(*chunk)],
        Record::CheckpointEnd
        | Record::ContainerPut { .. }
        | Record::ContainerDelete { .. }
        | Record::ContainerPurge { .. }
        | Record::TierStarted { .. }
        | Record::PackDeleted { .. } => Vec::new(),
    }
}

/// A change as large as most (a blob with Azure's 8 KiB of metadata and a few chunks): before
/// one, [`ShardIndex::ready`] waits for the flushes due when the index's spares do not cover it
/// beside them. A larger one may still be refused as busy until they end.
const TYPICAL_CHANGE: Load = Load::new(8 + (16 << 10) / 64, 16 << 10);

/// Writes a flush, then compacts the index if asked. A compaction that fails leaves the index
/// as its last commit left it (each of its steps is a commit; one short of segments, which
/// moves pages into storage never written, reopens it there): the flush stands, and growth
/// stays refused until a later one succeeds.
fn write_and_compact(ix: &super::db::Index, m: Memtable, load: Load, compact: bool) -> Outcome {
    match ix.write(&m) {
        Ok(()) => {}
        Err(WriteError::Short) => return Outcome::Short(Box::new(m), load),
        Err(e) => return Outcome::Failed(e.to_string()),
    }
    if compact {
        match ix.compact() {
            Ok(moved) => tracing::info!(moved, "metadata index compacted to give its freed pages back as segments"),
            Err(e) => tracing::warn!(%e, "metadata index compaction failed; growth stays refused until a later one"),
        }
    }
    Outcome::Done
}

/// Whether a change may add to the metadata. Deletes never do, so they are admitted when the
/// index has no room to grow: they are how a full shard makes room. Reference changes are
/// always admitted: they follow a record already durable on its shard (the room for the chunk
/// entries they add is the counting shard's to check when it places a new chunk); so are the
/// tier's records, which follow a remote commit already made and add a few bytes a pack.
pub fn grows(rec: &Record) -> bool {
    !matches!(
        rec,
        Record::RefsApplied { .. }
            | Record::RefsReplaced { .. }
            | Record::TierStarted { .. }
            | Record::PackCommitted { .. }
            | Record::ChunksReleased { .. }
            | Record::PackDeleted { .. }
            | Record::ChunkHydrated { .. }
            | Record::BlobDelete { .. }
            | Record::StagedDropped { .. }
            | Record::ContainerDelete { .. }
            | Record::ContainerPurge { .. }
            | Record::CheckpointEnd
    )
}

impl ShardIndex {
    /// Opens a shard's metadata: the index (already open on its thread), then the log records
    /// after the LSN it covers, replayed into the working set. Must run inside the shard's
    /// `LocalSet`.
    pub async fn open(
        place: LogPlace,
        dev: Rc<dyn BlockDevice>,
        ix: IndexThread,
        cfg: IndexConfig,
    ) -> Result<(ShardIndex, OpenReport), RecoverError> {
        let shard = place.shard;
        let failed = |e: String| RecoverError::Io { shard, source: std::io::Error::other(e) };
        let ix = Rc::new(ix);
        let index_lsn = run(&ix, |ix| ix.lsn()).await.map_err(failed)?;
        let containers = run(&ix, |ix| ix.range(Table::Catalog, b"", None, usize::MAX)).await.map_err(failed)?;
        let applied =
            run(&ix, |ix| ix.range(Table::Meta, keys::APPLIED, prefix_end(keys::APPLIED).as_deref(), usize::MAX))
                .await
                .map_err(failed)?;
        let outbox = run(&ix, |ix| ix.range(Table::Outbox, b"", None, usize::MAX)).await.map_err(failed)?;
        let clock = run(&ix, |ix| ix.get(Table::Meta, keys::CLOCK)).await.map_err(failed)?;
        let packs = run(&ix, |ix| ix.range(Table::Packs, b"", None, usize::MAX)).await.map_err(failed)?;
        let tier_generation = run(&ix, |ix| ix.get(Table::Meta, keys::TIER_GENERATION)).await.map_err(failed)?;
        let space = run(&ix, |ix| ix.get(Table::Meta, keys::SPACE)).await.map_err(failed)?;
        let warm = run(&ix, |ix| ix.get(Table::Meta, keys::WARM)).await.map_err(failed)?;
        let rec = replay::recover_after(&place, dev.as_ref(), index_lsn).await?;
        if let Some(torn) = rec.torn {
            replay::clear_torn(dev.as_ref(), torn, &rec.resume.partial_page)
                .await
                .map_err(|source| RecoverError::Io { shard, source })?;
        }
        let torn_tail = rec.torn.is_some();
        let mut state = ShardMeta::default();
        for (k, v) in containers.entries {
            let key = keys::parse_container(&k).ok_or_else(|| failed("a catalog key is not a container's".into()))?;
            state.containers.insert(key, keys::decode_container(&v).map_err(failed)?);
        }
        for (k, v) in applied.entries {
            let (source, lsn) = keys::parse_applied(&k, &v).ok_or_else(|| failed("a damaged applied LSN".into()))?;
            state.applied.insert(source, lsn);
        }
        if let Some(v) = &clock {
            state.clock = keys::decode_clock(v).ok_or_else(|| failed("a damaged clock floor".into()))?;
        }
        for (k, v) in packs.entries {
            let pack = keys::decode_pack(&v).map_err(failed)?;
            if k != keys::pack(pack.number) {
                return Err(failed(format!("pack {} is kept under another number's key", pack.number)));
            }
            state.packs.insert(pack.number, pack);
        }
        if let Some(v) = tier_generation {
            let v: [u8; 8] = v.try_into().map_err(|_| failed("a damaged tier generation".into()))?;
            state.tier_generation = u64::from_le_bytes(v);
        }
        let log = LogWriter::start(place, rec.resume, dev);
        let (epoch, _) = watch::channel(0);
        let mut me = ShardIndex {
            state,
            log,
            ix,
            cfg,
            index_lsn,
            applied: index_lsn,
            dirty: Dirty::default(),
            clean: Lru::default(),
            flight: None,
            epoch: Rc::new(epoch),
            failed: None,
            room: None,
            // Not known after a start: what removals before it freed is worth one compaction.
            freed: u64::MAX,
            compact_wanted: false,
            retry: None,
            filters: None,
            building: None,
            fences: Fences::default(),
            outbox: Outbox::default(),
            // A new index replays every record it has.
            clock_known: clock.is_some() || index_lsn == 0,
            clock_in_index: clock.is_some(),
            space_in_index: space.is_some(),
            tier_fresh: None,
            apart_due: BTreeSet::new(),
            warm_in_index: warm.is_some(),
            counts_lazy: false,
            warm,
            warm_to_write: None,
        };
        for (k, v) in outbox.entries {
            let lsn = k.try_into().map(u64::from_be_bytes).map_err(|_| failed("a damaged outbox key".into()))?;
            let changes = keys::decode_changes(&v).map_err(failed)?;
            me.outbox.changes += changes.len();
            me.outbox.entries.insert(lsn, Arc::new(changes));
            me.outbox.in_index.insert(lsn);
        }
        let replayed = rec.records.len();
        for (lsn, r) in rec.records {
            // Twice at most: a staged list's ids may show that it is needed whole.
            for tries in 0.. {
                let wants = me.wants_for(&r);
                let missing = me.missing(&wants);
                if missing.is_empty() {
                    break;
                }
                if tries == 2 {
                    return Err(failed(format!("the index does not hold what record {lsn} changes: {missing:?}")));
                }
                let got = me.fetch(missing).await.map_err(|e| failed(e.to_string()))?;
                me.install(got, &wants);
            }
            let bytes = r.encode().len();
            let large = me.large_of(&r);
            me.apply(lsn, &r, bytes, large);
        }
        Ok((me, OpenReport { index_lsn, replayed, torn_tail }))
    }

    /// The oldest reference changes not delivered yet, at most `max` records' worth.
    pub fn outbox(&self, max: usize) -> Vec<(u64, Arc<Vec<RefChange>>)> {
        self.outbox.entries.iter().take(max).map(|(l, c)| (*l, c.clone())).collect()
    }

    /// Told when reference changes are added to the outbox.
    pub fn outbox_signal(&self) -> Rc<Notify> {
        self.outbox.signal.clone()
    }

    /// The counting shards have logged the reference changes of every record up to `lsn`.
    pub fn delivered(&mut self, lsn: u64) {
        let later = self.outbox.entries.split_off(&(lsn + 1));
        for (l, changes) in std::mem::replace(&mut self.outbox.entries, later) {
            self.outbox.changes -= changes.len();
            if self.outbox.in_index.remove(&l) {
                self.outbox.gone.push(l);
            }
        }
        debug_assert_eq!(self.outbox.changes, self.outbox.entries.values().map(|c| c.len()).sum::<usize>());
    }

    /// Whether record `lsn`'s reference changes wait in the outbox.
    pub fn in_outbox(&self, lsn: u64) -> bool {
        self.outbox.entries.contains_key(&lsn)
    }

    /// Bytes of a log half: no record is larger.
    pub fn half_len(&self) -> usize {
        self.log.half_len()
    }

    /// Waits until the log has made record `lsn` durable.
    pub fn durable(&self, lsn: u64) -> impl Future<Output = Result<(), AppendError>> + 'static {
        self.log.wait(lsn)
    }

    /// Bounds the index's flushes by the spare segments of `room` from now on: a change is
    /// admitted only when the worst case of the flushes it leaves fits them, after `grow` has
    /// set aside what the shard can ([`ShardIndex::commit`]).
    pub fn set_room(&mut self, room: Room, grow: Grow) {
        self.room = Some((room, grow));
    }

    /// What the flush in flight writes, and what the next one would.
    pub fn load(&self) -> (Load, Load) {
        match &self.flight {
            Some(f) => (f.load, Load { entries: self.dirty.marked, bytes: self.dirty.bytes, large: self.dirty.large }),
            None => (
                Load::default(),
                Load { entries: self.dirty_entries(), bytes: self.dirty.bytes, large: self.dirty.large },
            ),
        }
    }

    /// Spare segments the flush in flight has taken so far: they count towards its need (it
    /// takes them as it writes, beside the shard's checks).
    fn taken_by_flight(&self) -> usize {
        match (&self.flight, &self.room) {
            (Some(f), Some((room, _))) => room.segments.taken().saturating_sub(f.taken_at),
            _ => 0,
        }
    }

    /// Whether a flush is in flight (it may take any spare segment meanwhile); not once its
    /// outcome is in, though not reaped yet.
    pub fn flushing(&self) -> bool {
        self.flight.as_ref().is_some_and(|f| f.done.borrow().is_none())
    }

    /// Whether the spares cover the flushes in flight and next with `extra` more to write, and
    /// `margin` besides; always, without a bound.
    fn fits(&self, extra: Load, margin: usize) -> bool {
        let Some((room, grow)) = &self.room else { return true };
        let (flight, next) = self.load();
        let next = next.plus(extra);
        room.fits(flight, next, margin, self.taken_by_flight()) || {
            grow((room.need(flight, next) + margin).saturating_sub(self.taken_by_flight()));
            room.fits(flight, next, margin, self.taken_by_flight())
        }
    }

    /// About how many bytes of index entries `rec` removes (before it is applied).
    fn freed_by(&self, rec: &Record) -> u64 {
        let bytes = match rec {
            Record::BlobDelete { key } => self.state.blobs.get(key).map_or(0, |b| blob_mem(key, Some(b))),
            Record::StagedDropped { key } => staged_mem(key, self.state.staged.get(key)),
            // Its blobs go with it, as many as there are: worth a compaction.
            Record::ContainerDelete { .. } | Record::ContainerPurge { .. } => {
                self.room.as_ref().map_or(0, |(r, _)| r.segment_len as usize)
            }
            _ => 0,
        };
        bytes as u64
    }

    /// Whether a change of `extra` would not fit the spares even with nothing else to flush.
    fn full_for(&self, extra: Load) -> bool {
        self.room.as_ref().is_some_and(|(room, _)| !room.fits(Load::default(), extra, DELETE_ROOM, 0))
    }

    /// Asks for a compaction with the next flush where removals since the last one may have
    /// freed pages inside the index: redb reuses them, but the room check counts only spare
    /// segments, and in a region with no contiguous room left (the index took it all, or data
    /// left only holes) only a compaction, which trims the index and so gives back the segments
    /// above its new length, turns them into spares. True while one is wanted or runs: growth is
    /// then busy, not full.
    fn want_compaction(&mut self) -> bool {
        if self.flight.as_ref().is_some_and(|f| f.compact) || self.compact_wanted {
            return true;
        }
        if self.freed == 0 {
            return false;
        }
        self.compact_wanted = true;
        self.maybe_flush();
        true
    }

    /// Whether removals since the last compaction may have freed a segment's worth of pages.
    fn worth_compacting(&self) -> bool {
        self.room.as_ref().is_some_and(|(r, _)| self.freed >= r.segment_len)
    }

    /// When the shard's data finds no room: resolves once the flush in flight ends (the spares
    /// it may take are data's after it, above what the index needs), or once a compaction has
    /// given back as spares the pages removals freed inside the index. None when neither can
    /// make room.
    pub fn room_for_data(&mut self) -> Option<impl Future<Output = ()> + 'static> {
        self.reap();
        let compacting = self.worth_compacting() && self.want_compaction();
        (compacting || self.flight.is_some()).then(|| self.flushed())
    }

    /// Index entries the next flush writes.
    fn dirty_entries(&self) -> usize {
        self.dirty.blobs.len()
            + self.dirty.staged.len()
            + self.dirty.containers.len()
            + self.dirty.chunks.len()
            + self.dirty.dedup.len()
            + self.dirty.applied.len()
            + self.dirty.packs.len()
    }

    /// From now on, keeps the chunks that changes make counted, up to `bound` of them, for the
    /// tier ([`ShardIndex::take_fresh`]). Chunks counted before (replayed ones too) are found by
    /// a scan of the chunk table.
    pub fn watch_fresh(&mut self, bound: usize) -> Rc<Notify> {
        let f = self.tier_fresh.get_or_insert_with(|| Fresh { bound, ..Fresh::default() });
        f.signal.clone()
    }

    /// The chunks counted since the last call, and whether some were not kept (then the chunk
    /// table is the only list of them).
    pub fn take_fresh(&mut self) -> (Vec<ChunkRef>, bool) {
        match &mut self.tier_fresh {
            Some(f) => (std::mem::take(&mut f.chunks), std::mem::take(&mut f.overflowed)),
            None => (Vec::new(), false),
        }
    }

    /// The LSN the index covers.
    pub fn lsn(&self) -> u64 {
        self.index_lsn
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The floor of every stamp this shard holds (see `ShardMeta::clock`), when the index
    /// knows it.
    pub fn clock(&self) -> Option<u64> {
        self.clock_known.then_some(self.state.clock)
    }

    /// Supplies the clock floor an index written before it was kept lacks (from a scan of
    /// every entry); the next flush keeps it.
    pub fn raise_clock(&mut self, floor: u64) {
        self.state.clock = self.state.clock.max(floor);
        self.clock_known = true;
        self.dirty.clock = self.applied.max(1);
    }

    /// The thread that owns the index.
    pub fn index_thread(&self) -> Rc<IndexThread> {
        self.ix.clone()
    }

    /// The log's generation (each switch of halves raises it).
    pub fn generation(&self) -> u64 {
        self.log.generation()
    }

    /// Flushes completed so far.
    pub fn epoch(&self) -> u64 {
        *self.epoch.borrow()
    }

    /// Memory the clean resident entries take (estimated); dirty ones are bounded by the
    /// flush threshold instead.
    pub fn resident_bytes(&self) -> usize {
        self.clean.bytes()
    }

    fn is_dirty(&self, w: &Want) -> bool {
        match w {
            Want::Blob(k) => self.dirty.blobs.contains_key(k),
            Want::Staged(k) | Want::StagedList(k) => self.dirty.has_staged(k),
            Want::Chunk(id) => self.dirty.chunks.contains_key(id),
            Want::Dedup(h) => self.dirty.dedup.contains_key(h),
        }
    }

    fn is_resident(&self, w: &Want) -> bool {
        // A blob in memory is resident (clean or dirty): the hot path of reads, one lookup in
        // the map the read then uses, rather than a hash of the key and a search of the dirty
        // map. A blob not in memory may still be resident, known absent.
        if let Want::Blob(k) = w {
            if self.state.blobs.contains_key(k) {
                debug_assert!(self.clean.contains(w) || self.is_dirty(w), "a blob in memory is resident");
                return true;
            }
        }
        // A key the index never held is known absent by its filter, with nothing in the cache:
        // a new blob's Put installs no entry (two per Put, blob and staged list, were a fifth
        // of the shard's time in a small-object ingest and crowded the cache's real entries
        // out). The filter only grows and an entry comes to the index only through a flush of
        // it as dirty, so a key this answers for stays resident until it is changed. Asked
        // first: one probe, where the cache and the dirty entries are searches by whole key.
        match w {
            // A staged list is one entry of the cache, whole or with its chunk lists apart.
            Want::StagedList(k) => {
                let list = Want::Staged(k.clone());
                self.surely_absent(w) || self.clean.contains(&list) || self.is_dirty(w)
            }
            Want::Staged(k) => {
                (self.surely_absent(w) || self.clean.contains(w) || self.is_dirty(w))
                    && self.state.staged.get(k).is_none_or(Staged::is_whole)
            }
            _ => self.surely_absent(w) || self.clean.contains(w) || self.is_dirty(w),
        }
    }

    /// What applying `rec` needs resident: [`wants_of`], and for a block staged again (or into a
    /// new incarnation of its container) into a list whose chunk lists are apart, the whole list,
    /// whose chunk references it drops. Known only once the list's ids are resident.
    pub fn wants_for(&self, rec: &Record) -> Vec<Want> {
        let mut wants = wants_of(rec);
        if let Record::BlockStaged { key, container_id, block } = rec {
            let whole = self
                .state
                .staged
                .get(key)
                .filter(|st| !st.is_whole())
                .is_none_or(|st| st.container_id == *container_id && !st.is_apart(&block.block.id));
            if !whole {
                wants.push(Want::Staged(key.clone()));
            }
        }
        wants
    }

    /// Whether every want is resident (the common case, checked without allocating).
    pub fn all_resident(&self, wants: &[Want]) -> bool {
        wants.iter().all(|w| self.is_resident(w))
    }

    /// The wants that are not resident.
    pub fn missing(&self, wants: &[Want]) -> Vec<Want> {
        // A list wanted whole is read once, whole.
        let whole = |k: &BlobKey| wants.iter().any(|w| matches!(w, Want::Staged(x) if x == k));
        wants
            .iter()
            .filter(|w| !self.is_resident(w))
            .filter(|w| !matches!(w, Want::StagedList(k) if whole(k)))
            .cloned()
            .collect()
    }

    /// Whether the index surely holds nothing for `w` (it never held its key).
    fn surely_absent(&self, w: &Want) -> bool {
        let Some(f) = &self.filters else { return false };
        match w {
            Want::Blob(k) => !f.blobs.may_hold(&keys::blob(k)),
            Want::Staged(k) | Want::StagedList(k) => !f.staged.may_hold(&keys::blob(k)),
            Want::Chunk(id) => !f.chunks.may_hold(&keys::chunk(id)),
            Want::Dedup(h) => !f.dedup.may_hold(h),
        }
    }

    /// Whether nothing is known for `w`, in memory or in the index (by its key filter): an
    /// answer without a read, and without making an absent entry resident.
    pub fn surely_none(&self, w: &Want) -> bool {
        self.is_resident(w)
            && match w {
                Want::Blob(k) => !self.state.blobs.contains_key(k),
                Want::Staged(k) | Want::StagedList(k) => !self.state.staged.contains_key(k),
                Want::Chunk(id) => !self.state.chunks.contains_key(id),
                Want::Dedup(h) => !self.state.dedup.contains_key(h),
            }
    }

    /// Memory the key filters and the fences take.
    pub fn filter_bytes(&self) -> usize {
        let filters = self
            .filters
            .as_ref()
            .map_or(0, |f| f.blobs.bytes() + f.staged.bytes() + f.chunks.bytes() + f.dedup.bytes());
        filters + self.fences.bytes()
    }

    /// Reads `wants` from the index (on its thread). Install the result with
    /// [`ShardIndex::install`] only if no flush completed meanwhile ([`ensure`] does this).
    pub fn fetch(&self, wants: Vec<Want>) -> impl Future<Output = Result<Fetched, IndexError>> + 'static {
        let (ix, apart) = (self.ix.clone(), self.cfg.apart_bytes);
        async move { run(&ix, move |ix| fetch_on(ix, &wants, apart)).await.map_err(IndexError::Failed) }
    }

    /// Makes fetched entries resident, except those that became resident meanwhile (memory has
    /// them as new or newer). This is the one place entries are evicted, before the new ones go
    /// in: what a caller made resident stays until its next await, so a check and the commit it
    /// guards always see the same entries. `keep` are all the entries the caller needs: none of
    /// them is evicted for the others.
    pub fn install(&mut self, got: Fetched, keep: &[Want]) {
        let incoming = got.blobs.iter().map(|(k, b)| blob_mem(k, b.as_ref())).sum::<usize>()
            + got.staged.iter().map(|(k, s)| staged_mem(k, s.as_ref())).sum::<usize>()
            + (got.chunks.len() + got.dedup.len()) * CHUNK_MEM;
        self.evict(incoming, keep);
        for (key, blob) in got.blobs {
            let size = blob_mem(&key, blob.as_ref());
            self.settle(Want::Blob(key.clone()), size, |st| st.blobs.insert(key, blob?));
        }
        for (key, staged) in got.staged {
            let list = Want::StagedList(key.clone());
            if self.is_resident(&list) {
                // Resident with chunk lists apart, read whole: they come back.
                let (Some(got), Some(st)) = (staged, self.state.staged.get_mut(&key)) else { continue };
                if !st.is_whole() && got.is_whole() {
                    st.take_back(got);
                    let size = staged_mem(&key, Some(st));
                    let want = Want::Staged(key);
                    if self.clean.contains(&want) {
                        self.clean.insert(want, size);
                    }
                }
                continue;
            }
            let size = staged_mem(&key, staged.as_ref());
            self.settle(Want::Staged(key.clone()), size, |st| st.staged.insert(key, staged?));
        }
        for (id, entry) in got.chunks {
            self.settle(Want::Chunk(id), CHUNK_MEM, |st| st.chunks.insert(id, entry?));
        }
        for (hash, id) in got.dedup {
            self.settle(Want::Dedup(hash), CHUNK_MEM, |st| st.dedup.insert(hash, id?));
        }
    }

    /// Makes one fetched entry resident and clean (`put` puts it in the state when the index
    /// held it), unless it became resident meanwhile: memory then has it as new or newer.
    fn settle<T>(&mut self, want: Want, size: usize, put: impl FnOnce(&mut ShardMeta) -> Option<T>) {
        if self.is_resident(&want) {
            return;
        }
        put(&mut self.state);
        self.clean.insert(want, size);
    }

    /// Appends `rec` to the log and applies it to the resident entries, which must include every
    /// entry it changes ([`wants_of`]). On error nothing has changed.
    pub fn commit(&mut self, rec: Record) -> Result<Commit, AppendError> {
        self.reap();
        if self.failed.is_some() {
            return Err(AppendError::Failed);
        }
        debug_assert!(self.missing(&self.wants_for(&rec)).is_empty(), "a change to entries not resident: {rec:?}");
        if self.outbox.changes >= self.cfg.max_undelivered && grows(&rec) {
            return Err(AppendError::Undelivered);
        }
        let payload = rec.encode();
        // Room for the flush of what this change dirties, beside what is dirty already: a few
        // entries (a blob, its staged blocks, a container, a source's LSN), and one for each 64
        // bytes of the record at most (each block of a list, each chunk counted, takes more).
        let extra = Load { large: self.large_of(&rec), ..Load::new(4 + payload.len() / 64, payload.len()) };
        if grows(&rec) && !self.fits(extra, DELETE_ROOM) {
            self.maybe_flush();
            // Full only when it would not fit with nothing left to flush, and no compaction
            // can give back what removals freed; until then the flushes due go first.
            let full = self.full_for(extra) && !self.want_compaction();
            return Err(if full { AppendError::MetadataFull } else { AppendError::Busy });
        }
        if matches!(rec, Record::BlobDelete { .. } | Record::ContainerDelete { .. }) && !self.fits(extra, 0) {
            // Not even a delete's flush fits beside the ones due: they go first (a client
            // retries after Retry-After). Deletes the node makes itself (expiry, purges) and
            // reference counts are admitted always: they follow what is already durable.
            self.maybe_flush();
            return Err(AppendError::Busy);
        }
        let half_len = self.log.half_len();
        if frame_len(payload.len()) + edgeblob_io::PAGE_SIZE > half_len {
            return Err(AppendError::TooLarge(payload.len()));
        }
        if self.log.room() < frame_len(payload.len()) {
            // The other half is reused only once the index covers it.
            if self.index_lsn + 1 < self.log.first_lsn() {
                self.maybe_flush();
                return Err(AppendError::Busy);
            }
            self.log.checkpoint(&[Record::CheckpointEnd.encode().to_vec()])?;
            if self.log.room() < frame_len(payload.len()) {
                return Err(AppendError::Full);
            }
        }
        // A count no client waits for rides the next round a client's change wants (a small
        // Put's own count, logged once the Put is durable, would otherwise take a round of its
        // own, which the next Put waits behind).
        let lsn = match rec {
            Record::RefsApplied { .. } if self.counts_lazy => self.log.append_lazy(&payload)?,
            _ => self.log.append(&payload)?,
        };
        let released = self.apply(lsn, &rec, payload.len(), extra.large);
        self.maybe_flush();
        Ok(Commit { lsn, released, durable: Box::pin(self.log.wait(lsn)) })
    }

    /// The large values (blocks kept apart) a change about to be committed makes: a Put Block
    /// List names its blocks by place, so its record says nothing of their size.
    fn large_of(&self, rec: &Record) -> usize {
        match rec {
            Record::BlockListPut { key, blob, list } => {
                self.state.resolve_list(key, blob.container_id, list).map_or(0, |blocks| large_value(&blocks))
            }
            Record::BlobPut { blob, .. } => large_value(&blob.blocks),
            Record::BlockStaged { block, .. } => large_value(std::slice::from_ref(&block.block)),
            _ => 0,
        }
    }

    /// Applies a record (live or replayed) of `bytes` whose large values are `large`
    /// ([`ShardIndex::large_of`], sized against the state before it) and marks what it changed
    /// dirty.
    fn apply(&mut self, lsn: u64, rec: &Record, bytes: usize, large: usize) -> RefCounts {
        self.freed = self.freed.saturating_add(self.freed_by(rec));
        // Staged blocks a change drops: all of a blob's, for a commit, a delete, an expiry, or a
        // block staged into a new incarnation of its container.
        let staged_ids = |st: &ShardMeta, key: &BlobKey| -> Vec<Vec<u8>> {
            st.staged.get(key).map(|s| s.ids().map(<[u8]>::to_vec).collect()).unwrap_or_default()
        };
        let mut dropped: Vec<(BlobKey, Vec<u8>)> = Vec::new();
        let mut blobs: Vec<BlobKey> = Vec::new();
        match rec {
            Record::BlobPut { key, .. }
            | Record::BlockListPut { key, .. }
            | Record::BlobDelete { key }
            | Record::StagedDropped { key } => {
                dropped.extend(staged_ids(&self.state, key).into_iter().map(|id| (key.clone(), id)));
            }
            Record::BlockStaged { key, container_id, .. }
                if self.state.staged.get(key).is_some_and(|s| s.container_id != *container_id) =>
            {
                dropped.extend(staged_ids(&self.state, key).into_iter().map(|id| (key.clone(), id)));
            }
            Record::ContainerPurge { account, name, id } => {
                let lo = BlobKey::new(account, name, "");
                let of_it = |k: &BlobKey| k.account == *account && k.container == *name;
                blobs.extend(
                    self.state
                        .blobs
                        .range(lo.clone()..)
                        .take_while(|(k, _)| of_it(k))
                        .filter(|(_, b)| b.container_id == *id)
                        .map(|(k, _)| k.clone()),
                );
                // As the state purges them: a list held apart waits for the purge's step that
                // reads it whole.
                for (k, st) in self.state.staged.range(lo..).take_while(|(k, _)| of_it(k)) {
                    if st.container_id == *id && st.is_whole() {
                        dropped.extend(st.ids().map(|i| (k.clone(), i.to_vec())));
                    }
                }
            }
            _ => {}
        }
        let counted_before: Vec<(ChunkId, Extent)> = match rec {
            Record::RefsApplied { changes, .. } | Record::RefsReplaced { changes, .. } => changes
                .iter()
                .filter_map(|c| self.state.chunks.get(&c.chunk.id()))
                .filter_map(|e| Some((e.chunk.id(), e.local_extent()?)))
                .collect(),
            // Released: its local space leaves the allocator's image with the next flush.
            Record::ChunksReleased { chunks } => chunks
                .iter()
                .filter_map(|id| self.state.chunks.get(id))
                .filter(|e| matches!(e.location, crate::model::Location::Both { .. }))
                .filter_map(|e| Some((e.chunk.id(), e.local_extent()?)))
                .collect(),
            _ => Vec::new(),
        };
        // A blob whose version before this record kept its blocks apart: the flush that writes
        // the new version deletes them unless it keeps some itself (read before the change).
        let changed_blob = match rec {
            Record::BlobPut { key, .. }
            | Record::BlockListPut { key, .. }
            | Record::BlobPropsSet { key, .. }
            | Record::BlobDelete { key } => Some(key),
            _ => None,
        };
        for k in changed_blob.into_iter().chain(&blobs) {
            if self.state.blobs.get(k).is_some_and(keys::blocks_apart) {
                self.dirty.apart_before.insert(k.clone());
            }
        }
        // The chunks this record makes counted (their first reference): the tier's queue of
        // chunks to upload, when it keeps one.
        let fresh: Vec<ChunkRef> = match (rec, &self.tier_fresh) {
            (Record::RefsApplied { changes, .. }, Some(_)) => {
                changes.iter().filter(|c| !self.state.chunks.contains_key(&c.chunk.id())).map(|c| c.chunk).collect()
            }
            _ => Vec::new(),
        };
        let released = self.state.apply(rec);
        self.dirty.large += large;
        if let Some(q) = &mut self.tier_fresh {
            q.push(fresh.into_iter().filter(|c| self.state.chunks.contains_key(&c.id())));
        }
        for (id, extent) in counted_before {
            // Gone, or released (its space cleared here, its first page set again by the flush).
            if self.state.chunks.get(&id).and_then(|e| e.local_extent()) != Some(extent) {
                // Released, then gone, before one flush: the space to clear is the larger.
                let (at, space) = self.dirty.gone.entry(id).or_insert((lsn, extent));
                debug_assert_eq!(space.offset, extent.offset, "a chunk's space starts where it was written");
                *at = lsn;
                space.len = space.len.max(extent.len);
            }
        }
        let added = self.state.added_by(rec);
        if !added.is_empty() || !released.is_empty() {
            let changes = RefCounts::changes(&added, &released);
            self.outbox.changes += changes.len();
            let before = self.outbox.entries.insert(lsn, Arc::new(changes));
            debug_assert!(before.is_none(), "record {lsn} applied twice");
            self.outbox.signal.notify_one();
        }
        // A block list's record names its blocks; the entry it makes holds their chunk lists,
        // and the flush that writes it is sized by what it writes (its memory estimate, which
        // counts each chunk list once, as rkyv stores it: encoding it here would be done twice).
        let bytes = match rec {
            Record::BlockListPut { key, .. } => bytes.max(blob_mem(key, self.state.blobs.get(key))),
            _ => bytes,
        };
        if rec.stamp() > 0 {
            self.dirty.clock = lsn;
        }
        match rec {
            Record::ContainerPut { account, name, .. } | Record::ContainerDelete { account, name, .. } => {
                self.dirty.containers.insert((account.clone(), name.clone()), lsn);
                self.dirty.marked += 1;
            }
            Record::BlockStaged { key, block, .. } => dropped.push((key.clone(), block.block.id.clone())),
            Record::RefsApplied { changes, .. } | Record::RefsReplaced { changes, .. } => {
                for c in changes {
                    let id = c.chunk.id();
                    self.clean.remove(&Want::Chunk(id));
                    self.dirty.chunks.insert(id, lsn);
                    self.dirty.marked += 1;
                    if c.chunk.is_dedup() {
                        self.clean.remove(&Want::Dedup(id.hash));
                        self.dirty.dedup.insert(id.hash, lsn);
                        self.dirty.marked += 1;
                    }
                }
                // The flush writes each source's LSN as the state holds it.
                let sources: Vec<u32> = match rec {
                    Record::RefsApplied { source, .. } => vec![*source],
                    Record::RefsReplaced { sources, .. } => sources.iter().map(|(s, _)| *s).collect(),
                    _ => Vec::new(),
                };
                for source in sources {
                    self.dirty.applied.insert(source, lsn);
                    self.dirty.marked += 1;
                }
            }
            Record::TierStarted { .. } => {
                self.dirty.tier_generation = lsn;
                self.dirty.marked += 1;
            }
            Record::PackDeleted { number } => {
                self.dirty.packs.insert(*number, lsn);
                self.dirty.marked += 1;
            }
            Record::PackCommitted { pack, chunks, .. } => {
                for c in chunks.iter().filter(|c| self.state.chunks.contains_key(&c.id())) {
                    self.clean.remove(&Want::Chunk(c.id()));
                    self.dirty.chunks.insert(c.id(), lsn);
                    self.dirty.marked += 1;
                }
                self.dirty.packs.insert(pack.number, lsn);
                self.dirty.marked += 1;
            }
            Record::ChunkHydrated { chunk } if self.state.chunks.contains_key(chunk) => {
                self.clean.remove(&Want::Chunk(*chunk));
                self.dirty.chunks.insert(*chunk, lsn);
                self.dirty.marked += 1;
            }
            Record::ChunksRestored { chunks, .. } => {
                for id in chunks.iter().map(|c| c.chunk.id()) {
                    self.clean.remove(&Want::Chunk(id));
                    self.dirty.chunks.insert(id, lsn);
                    self.dirty.marked += 1;
                }
            }
            Record::ChunksReleased { chunks } => {
                for id in chunks.iter().filter(|id| self.state.chunks.contains_key(id)) {
                    self.clean.remove(&Want::Chunk(*id));
                    self.dirty.chunks.insert(*id, lsn);
                    self.dirty.marked += 1;
                }
            }
            Record::BlobPut { key, .. }
            | Record::BlockListPut { key, .. }
            | Record::BlobPropsSet { key, .. }
            | Record::BlobDelete { key } => {
                blobs.push(key.clone());
            }
            _ => {}
        }
        // What is dirty is not evictable: out of the clean list until a flush writes it.
        let deleted = matches!(rec, Record::BlobDelete { .. } | Record::ContainerPurge { .. });
        let mut held = 0;
        for k in blobs {
            if deleted {
                self.dirty.deleted_blobs.insert(k.clone(), lsn);
            }
            let dirty = DirtyBlob::of(&k, self.state.blobs.get(&k), lsn);
            held += dirty.held();
            // One key, moved through the want and into the dirty map: not cloned again.
            let want = Want::Blob(k);
            self.clean.remove(&want);
            if let Want::Blob(k) = want {
                self.dirty.blobs.insert(k, dirty);
            }
            self.dirty.marked += 1;
        }
        let mut last: Option<BlobKey> = None;
        for (k, id) in dropped {
            if last.as_ref() != Some(&k) {
                self.clean.remove(&Want::Staged(k.clone()));
                last = Some(k.clone());
            }
            self.dirty.staged.insert((k, id), lsn);
            self.dirty.marked += 1;
        }
        // The values the marks hold count toward the next flush as records do: a small record
        // (a property set) of a large entry must not keep far more than the threshold in memory.
        self.dirty.bytes += bytes.max(held);
        debug_assert!(lsn > self.applied, "records apply in LSN order");
        self.applied = lsn;
        released
    }

    /// Starts a flush when enough has changed, or when the older log half is not covered yet.
    fn maybe_flush(&mut self) {
        if self.flight.is_some() || self.failed.is_some() || (self.index_lsn == self.applied && !self.compact_wanted) {
            return;
        }
        // Enough to write, or the older half is not covered yet (the next switch needs it:
        // starting now gives the flush the whole current half to finish in).
        // Under pressure for room too: a small flush reuses the pages deletes freed in the index,
        // and the spares it leaves admit the next changes.
        let due = self.compact_wanted
            || self.dirty.bytes >= self.cfg.flush_bytes
            || self.index_lsn + 1 < self.log.first_lsn()
            || !self.fits(Load::default(), 2 * DELETE_ROOM);
        if due {
            self.start_flush();
        }
    }

    /// From now on, a count (`RefsApplied`) rides the next round a client's change starts, or
    /// waits [`crate::wal::LAZY_WAIT`] for one ([`ShardIndex::commit`]). Called once the node
    /// serves: a start drains every outbox before that with nothing else written, where each
    /// batch would wait the whole `LAZY_WAIT` (a full outbox, 256 batches, half a second).
    pub fn count_lazily(&mut self) {
        self.counts_lazy = true;
    }

    /// Flushes now whatever is dirty (tests, and a clean stop).
    pub fn flush_now(&mut self) {
        self.reap();
        if self.flight.is_none() && (self.index_lsn < self.applied || self.warm_to_write.is_some()) {
            self.start_flush();
        }
    }

    /// Asks the next flush to write the keys of the blobs held in memory (those with their blocks
    /// in their entry), the most recently used first up to [`keys::WARM_BYTES`], for the next
    /// start to read back (a clean stop). Not where the index's spares could not take it beside
    /// what is due: a stop must not wait for room.
    pub fn keep_warm(&mut self) {
        let used = self.clean.newest_first().filter_map(|w| match w {
            Want::Blob(k) => Some(k),
            _ => None,
        });
        // Changed since the last flush first: the most recent of all.
        let mut bytes = 0;
        let mut held: Vec<&BlobKey> = self
            .dirty
            .blobs
            .keys()
            .chain(used)
            // Not one whose blocks are apart: read back, it would be read whole, all its pieces,
            // where a read of it takes only the piece it needs and keeps none.
            .filter(|k| self.state.blobs.get(*k).is_some_and(|b| !keys::blocks_apart(b)))
            .take_while(|k| {
                bytes += keys::warm_len(k);
                bytes <= keys::WARM_BYTES
            })
            .collect();
        // In key order, as the index holds them: read back in order, neighbours share pages.
        held.sort_unstable();
        let list = keys::encode_warm(held.into_iter());
        if !list.is_empty() && self.fits(warm_load(&list), DELETE_ROOM) {
            self.warm_to_write = Some(list);
        }
    }

    /// The blob keys the last clean stop held in memory (empty after the first call).
    pub fn take_warm(&mut self) -> Vec<BlobKey> {
        // A damaged list is only a hint lost.
        self.warm.take().and_then(|list| keys::decode_warm(&list)).unwrap_or_default()
    }

    /// Whether the cache has room for more clean entries.
    pub fn cache_has_room(&self) -> bool {
        self.clean.bytes() < self.cfg.cache_bytes
    }

    fn start_flush(&mut self) {
        let lsn = self.applied;
        let compact = std::mem::take(&mut self.compact_wanted);
        if compact {
            self.freed = 0;
        }
        let mut load = Load { entries: self.dirty_entries(), bytes: self.dirty.bytes, large: self.dirty.large };
        let mut m = Memtable::default();
        // In key order: the memtable's table is then built in one pass rather than an insert a
        // blob. Sorted by the encoded keys (one comparison of bytes, where the three strings of
        // a blob key take three), which the table needs anyway. Each blob's value was encoded
        // when it changed ([`DirtyBlob`]).
        let mut dirty: Vec<(Vec<u8>, &BlobKey, &DirtyBlob)> =
            self.dirty.blobs.iter().map(|(k, d)| (keys::blob(k), k, d)).collect();
        dirty.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut blobs = Vec::with_capacity(dirty.len());
        for (key, k, d) in dirty {
            debug_assert_eq!(
                (&d.value, d.mem),
                (&DirtyBlob::of(k, self.state.blobs.get(k), 0).value, blob_mem(k, self.state.blobs.get(k))),
                "a dirty blob's value is its state's"
            );
            let hash = filter::hash(&key);
            let present = d.value != BlobValue::Absent;
            self.fences.note(&key, hash, present);
            if present {
                if let Some(f) = &mut self.filters {
                    f.blobs.insert_hash(hash);
                }
                if let Some(b) = &mut self.building {
                    b[0].push(hash);
                }
            }
            match &d.value {
                BlobValue::Whole(v) => blobs.push((key, Some(v.clone()))),
                BlobValue::Absent => blobs.push((key, None)),
                // Only a blob whose blocks are apart is looked up in the state, by a search.
                BlobValue::Apart => match self.state.blobs.get(k) {
                    Some(b) => {
                        m.put_blocks(key.clone(), b.blocks.clone());
                        blobs.push((key, Some(keys::encode_blob(&b.head()))));
                    }
                    None => blobs.push((key, None)),
                },
            }
        }
        m.put_sorted(Table::Blobs, blobs);
        // The blocks table holds a key exactly while its blob's blocks are apart: those of a
        // version replaced since the last flush go, unless the new version put its own above.
        for k in std::mem::take(&mut self.dirty.apart_before) {
            if !self.state.blobs.get(&k).is_some_and(keys::blocks_apart) {
                m.delete(Table::Blocks, keys::blob(&k));
            }
        }
        for (k, id) in self.dirty.staged.keys() {
            let entry =
                self.state.staged.get(k).and_then(|st| st.entry(id).map(|(place, b)| (st.container_id, place, b)));
            if let (Some(f), Some(_)) = (&mut self.filters, &entry) {
                f.staged.insert(&keys::blob(k));
            }
            if let (Some(b), Some(_)) = (&mut self.building, &entry) {
                b[1].push(filter::hash(&keys::blob(k)));
            }
            match entry {
                Some((container_id, place, block)) => m.put(
                    Table::Staged,
                    keys::staged(k, id),
                    keys::encode_staged(&keys::StagedEntry { container_id, place, block: block.clone() }),
                ),
                None => m.delete(Table::Staged, keys::staged(k, id)),
            }
        }
        // In order (a chunk id's key is its order), each found once: the allocator's image
        // takes the extents of those that remain from the same pass.
        let mut chunks = Vec::with_capacity(self.dirty.chunks.len());
        let mut set = Vec::new();
        for id in self.dirty.chunks.keys() {
            let key = keys::chunk(id);
            match self.state.chunks.get(id) {
                Some(e) => {
                    if let Some(f) = &mut self.filters {
                        f.chunks.insert(&key);
                    }
                    if let Some(b) = &mut self.building {
                        b[2].push(filter::hash(&key));
                    }
                    set.extend(e.local_extent());
                    chunks.push((key, Some(keys::encode_chunk(e))));
                }
                None => chunks.push((key, None)),
            }
        }
        m.put_sorted(Table::Chunks, chunks);
        for h in self.dirty.dedup.keys() {
            match self.state.dedup.get(h) {
                Some(id) => {
                    if let Some(f) = &mut self.filters {
                        f.dedup.insert(h);
                    }
                    if let Some(b) = &mut self.building {
                        b[3].push(filter::hash(h));
                    }
                    m.put(Table::Dedup, h.to_vec(), keys::chunk(id))
                }
                None => m.delete(Table::Dedup, h.to_vec()),
            }
        }
        for (l, changes) in self.outbox.entries.range(..=lsn) {
            if self.outbox.in_index.insert(*l) {
                m.put(Table::Outbox, l.to_be_bytes().to_vec(), keys::encode_changes(changes));
            }
        }
        for l in self.outbox.gone.drain(..) {
            m.delete(Table::Outbox, l.to_be_bytes().to_vec());
        }
        for source in self.dirty.applied.keys() {
            let lsn = self.state.applied.get(source).copied().unwrap_or(0);
            m.put(Table::Meta, keys::applied(*source), lsn.to_le_bytes().to_vec());
        }
        for n in self.dirty.packs.keys() {
            match self.state.packs.get(n) {
                Some(p) => m.put(Table::Packs, keys::pack(*n), keys::encode_pack(p)),
                None => m.delete(Table::Packs, keys::pack(*n)),
            }
        }
        if self.dirty.tier_generation > 0 {
            m.put(Table::Meta, keys::TIER_GENERATION.to_vec(), self.state.tier_generation.to_le_bytes().to_vec());
        }
        if self.clock_known && (self.dirty.clock > 0 || !self.clock_in_index) {
            self.clock_in_index = true;
            m.put(Table::Meta, keys::CLOCK.to_vec(), keys::encode_clock(self.state.clock));
        }
        for (account, name) in self.dirty.containers.keys() {
            let key = keys::container(account, name);
            match self.state.containers.get(&(account.clone(), name.clone())) {
                Some(c) => m.put(Table::Catalog, key, keys::encode_container(c)),
                None => m.delete(Table::Catalog, key),
            }
        }
        match self.warm_to_write.take() {
            Some(list) => {
                load = load.plus(warm_load(&list));
                m.put(Table::Meta, keys::WARM.to_vec(), list);
                self.warm_in_index = true;
            }
            None if self.warm_in_index => {
                m.delete(Table::Meta, keys::WARM.to_vec());
                self.warm_in_index = false;
            }
            None => {}
        }
        m.space = self.space_changes_setting(set);
        debug_assert_eq!(m.space, self.space_changes(), "the image's changes as the state has them");
        if !self.space_in_index {
            self.space_in_index = true;
            m.space.rebuild = true;
            m.put(Table::Meta, keys::SPACE.to_vec(), keys::SPACE_VERSION.to_vec());
        }
        m.applied(lsn);
        if let Some((older, older_load)) = self.retry.take() {
            m = older.then(m);
            load = load.plus(older_load);
        }
        (self.dirty.bytes, self.dirty.marked, self.dirty.large) = (0, 0, 0);
        if let (true, Some((room, grow))) = (compact, &self.room) {
            // A compaction moves pages down into any storage free below them, holes never
            // written too, each a spare segment: asked for, as far as the region has room, so
            // that it rarely runs short (when it does, the index reopens as it stood).
            grow(room.need(Load::default(), load) + room.segments.holes() + DELETE_ROOM);
        }
        let durable = self.log.wait(lsn);
        let ix = self.ix.clone();
        let done = Rc::new(RefCell::new(None));
        let epoch = self.epoch.clone();
        let out = done.clone();
        tokio::task::spawn_local(async move {
            let res = match durable.await {
                // The index must never hold a change the log could still lose.
                Ok(()) => match ix.write(move |ix| write_and_compact(ix, m, load, compact)).await {
                    Ok(r) => r,
                    Err(stopped) => Outcome::Failed(stopped.to_string()),
                },
                Err(e) => Outcome::Failed(e.to_string()),
            };
            match &res {
                Outcome::Failed(e) => tracing::error!(lsn, %e, "metadata index flush failed"),
                Outcome::Short(..) => {
                    tracing::warn!(lsn, "metadata index flush ran out of segments; the next one writes it")
                }
                Outcome::Done => {}
            }
            *out.borrow_mut() = Some(res);
            epoch.send_modify(|e| *e += 1);
        });
        let taken_at = self.room.as_ref().map_or(0, |(room, _)| room.segments.taken());
        self.flight = Some(Flight { lsn, load, taken_at, compact, done });
    }

    /// How the allocator's image changes from the index's to the state applied now: the space
    /// of chunks freed since the last flush, then that of every chunk counted since.
    pub fn space_changes(&self) -> SpaceChanges {
        self.space_changes_setting(
            self.dirty.chunks.keys().filter_map(|id| self.state.chunks.get(id)?.local_extent()).collect(),
        )
    }

    /// [`ShardIndex::space_changes`] with the extents of the chunks counted now, `set`, found
    /// already (a flush finds them as it encodes the chunks).
    fn space_changes_setting(&self, set: Vec<Extent>) -> SpaceChanges {
        SpaceChanges { clear: self.dirty.gone.values().map(|(_, e)| *e).collect(), set, rebuild: false }
    }

    /// Whether the index holds the allocator's image (or is new, and so holds no chunk).
    pub fn space_known(&self) -> bool {
        self.space_in_index || self.index_lsn == 0
    }

    /// Takes in a completed flush: what it wrote is clean (evictable) from now on.
    pub fn reap(&mut self) {
        let Some(f) = &self.flight else { return };
        let Some(res) = f.done.borrow_mut().take() else { return };
        let lsn = f.lsn;
        self.flight = None;
        match res {
            Outcome::Done => {
                self.index_lsn = lsn;
                let (blobs, others) = self.dirty.clean(lsn);
                for (k, mem) in blobs {
                    debug_assert_eq!(mem, blob_mem(&k, self.state.blobs.get(&k)), "unchanged since it was dirtied");
                    self.clean.insert(Want::Blob(k), mem);
                }
                for w in others {
                    if let Want::Staged(k) = &w {
                        if self.state.staged.get(k).is_some_and(|st| st.chunk_bytes() > self.cfg.apart_bytes) {
                            self.apart_due.insert(k.clone());
                        }
                    }
                    let size = match &w {
                        Want::Blob(k) => blob_mem(k, self.state.blobs.get(k)),
                        Want::Staged(k) | Want::StagedList(k) if self.dirty.has_staged(k) => continue,
                        Want::Staged(k) | Want::StagedList(k) => staged_mem(k, self.state.staged.get(k)),
                        Want::Chunk(_) | Want::Dedup(_) => CHUNK_MEM,
                    };
                    self.clean.insert(w, size);
                }
                self.maybe_flush();
            }
            // Not started again here, where a flush due only for room would fail again at
            // once: the next change starts it when one is due, as a stop does.
            Outcome::Short(m, load) => self.retry = Some((*m, load)),
            Outcome::Failed(e) => self.failed = Some(e),
        }
    }

    /// Evicts clean entries over the cache's size, except `keep`. Entries also become clean
    /// when a flush ends (not only when they are read), so the cache is held to its size here,
    /// where a caller asks for what it needs, and not only when entries are read in.
    pub fn trim(&mut self, keep: &[Want]) {
        if !self.apart_due.is_empty() {
            self.hold_apart_due(keep);
        }
        if self.clean.bytes() > self.cfg.cache_bytes {
            self.evict(0, keep);
        }
    }

    /// Drops the chunk lists of the clean blocks of large staged lists a flush wrote, but not of
    /// those a caller needs whole.
    fn hold_apart_due(&mut self, keep: &[Want]) {
        for k in std::mem::take(&mut self.apart_due) {
            if keep.iter().any(|w| matches!(w, Want::Staged(x) if *x == k)) {
                self.apart_due.insert(k);
                continue;
            }
            let Some(st) = self.state.staged.get_mut(&k) else { continue };
            let changed: HashSet<&[u8]> = self
                .dirty
                .staged
                .range((k.clone(), Vec::new())..)
                .take_while(|((key, _), _)| *key == k)
                .map(|((_, id), _)| id.as_slice())
                .collect();
            if st.hold_apart(|id| changed.contains(id)) {
                let size = staged_mem(&k, Some(st));
                let want = Want::Staged(k);
                if self.clean.contains(&want) {
                    self.clean.insert(want, size);
                }
            }
        }
    }

    /// Evicts clean entries, oldest first, until `incoming` more bytes fit in the cache, but
    /// never those in `keep` (the other entries the caller is making resident: with a cache
    /// smaller than one change's entries, it runs over rather than evict them).
    fn evict(&mut self, incoming: usize, keep: &[Want]) {
        let mut kept = Vec::new();
        while self.clean.bytes() + incoming > self.cfg.cache_bytes {
            match self.clean.pop_oldest() {
                Some((w, size)) if keep.contains(&w) => kept.push((w, size)),
                Some((Want::Blob(k), _)) => {
                    self.state.blobs.remove(&k);
                }
                Some((Want::Staged(k), size)) => {
                    // A large list keeps its ids while its chunk lists go (they are in the
                    // index): staging into it then reads none of them again.
                    // Put back as the newest: evicted whole only after all else.
                    let st = self.state.staged.get_mut(&k);
                    if let Some(st) = st.filter(|st| st.chunk_bytes() > self.cfg.apart_bytes) {
                        st.hold_apart(|_| false);
                        let size = staged_mem(&k, Some(st));
                        self.clean.insert(Want::Staged(k), size);
                    } else if keep.contains(&Want::StagedList(k.clone())) {
                        kept.push((Want::Staged(k), size));
                    } else {
                        self.state.staged.remove(&k);
                    }
                }
                Some((Want::Chunk(id), _)) => {
                    self.state.chunks.remove(&id);
                }
                Some((Want::Dedup(h), _)) => {
                    self.state.dedup.remove(&h);
                }
                Some((Want::StagedList(k), _)) => {
                    debug_assert!(false, "the cache holds staged lists as Want::Staged: {k:?}");
                }
                None => break,
            }
        }
        for (w, size) in kept {
            self.clean.insert(w, size);
        }
    }

    /// Resolves when a commit is unlikely to be refused as [`AppendError::Busy`]: at once
    /// unless the current half is running out of room while the index does not cover the other
    /// half yet, or its start is not durable.
    pub fn ready(&mut self) -> impl Future<Output = Result<(), AppendError>> + 'static {
        self.reap();
        let tight = self.log.room() < self.log.half_len() / 4;
        let behind = tight && self.index_lsn + 1 < self.log.first_lsn();
        // Or the spares do not cover a small change beside the flushes due: those go first
        // (small ones, under this pressure), and once one is done what it wrote no longer
        // counts twice (in flight, and dirty until then).
        let short = !self.fits(TYPICAL_CHANGE, DELETE_ROOM);
        // Before a change would be refused as full, when removals since the last compaction
        // may have freed a segment's worth: the change then waits for it rather than be refused.
        // Not after every removal (a run of deletes would compact after each).
        if short && self.full_for(TYPICAL_CHANGE) && self.worth_compacting() {
            self.want_compaction();
        }
        if behind || short {
            self.maybe_flush();
        }
        let need_flush = behind || (short && self.flight.is_some());
        let mut epoch = self.epoch.subscribe();
        let seen = *epoch.borrow();
        let switch = tight.then(|| self.log.switch_ready());
        async move {
            if need_flush {
                epoch.wait_for(|e| *e > seen).await.map_err(|_| AppendError::Failed)?;
            }
            match switch {
                Some(w) => w.await,
                None => Ok(()),
            }
        }
    }

    /// Whether a typical change does not fit the spares beside the flushes due while one is in
    /// flight: [`ShardIndex::ready`] then waits for it, and a caller may wait again after it.
    pub fn short_of_room(&self) -> bool {
        self.flight.is_some() && !self.fits(TYPICAL_CHANGE, DELETE_ROOM)
    }

    /// Waits until everything committed so far is durable in the log.
    pub fn sync(&self) -> impl Future<Output = Result<(), AppendError>> + 'static {
        self.log.wait(self.log.next_lsn() - 1)
    }

    /// Waits until a flush in flight, if any, has completed.
    pub fn flushed(&self) -> impl Future<Output = ()> + 'static {
        // A flight whose outcome is in, not reaped yet, has ended and raised the epoch already:
        // waiting for a raise past it would wait for the next flush, which may never come. (Its
        // task sets the outcome and raises the epoch in one step on this thread.)
        let pending = self.flight.as_ref().is_some_and(|f| f.done.borrow().is_none());
        let mut epoch = self.epoch.subscribe();
        let seen = *epoch.borrow();
        async move {
            if pending {
                let _ = epoch.wait_for(|e| *e > seen).await;
            }
        }
    }

    /// One page of index entries of `table` in `[from, to)`. The read is sent to a reader now,
    /// not when the future is first polled, so that several run side by side.
    fn index_page(
        &self,
        table: Table,
        from: Vec<u8>,
        to: Option<Vec<u8>>,
        limit: usize,
    ) -> impl Future<Output = Result<Page, IndexError>> + 'static {
        page_of(self.ix.run(move |ix| ix.scan(table, &from, to.as_deref(), limit)))
    }

    /// One page of a walk over all of `table` from `from`, on the index's walk thread.
    fn walk_page(
        &self,
        table: Table,
        from: Vec<u8>,
        limit: usize,
    ) -> impl Future<Output = Result<Page, IndexError>> + 'static {
        page_of(self.ix.walk(move |ix| ix.scan(table, &from, None, limit)))
    }

    /// One page of the blob table in `[from, to)`, read in parts side by side where the fences
    /// cut it: a part that ends short of its cut has read all of its span.
    fn blob_page(
        &self,
        from: Vec<u8>,
        to: Option<Vec<u8>>,
        limit: usize,
    ) -> impl Future<Output = Result<Page, IndexError>> + 'static {
        let mut bounds = vec![from.clone()];
        bounds.extend(self.fences.cuts(&from, to.as_deref(), limit, super::thread::READERS));
        let reads: Vec<_> = (0..bounds.len())
            .map(|i| {
                let end = bounds.get(i + 1).cloned().or_else(|| to.clone());
                self.index_page(Table::Blobs, bounds[i].clone(), end, limit)
            })
            .collect();
        async move {
            let mut parts = Vec::with_capacity(reads.len());
            for read in reads {
                parts.push(read.await?);
            }
            Ok(stitch(parts, limit))
        }
    }
}

/// A page read sent to an index thread, as its asker awaits it.
async fn page_of(
    read: impl Future<Output = Result<Result<Page, redb::Error>, super::thread::Stopped>>,
) -> Result<Page, IndexError> {
    match read.await {
        Ok(page) => page.map_err(|e| IndexError::Failed(e.to_string())),
        Err(stopped) => Err(IndexError::Failed(stopped.to_string())),
    }
}

/// One page of at most `limit` entries from the pages of consecutive spans, in order: up to the
/// first part that did not read all of its span (what lies after it is not known to follow it
/// directly).
fn stitch(parts: Vec<Page>, limit: usize) -> Page {
    let mut page = Page { entries: Vec::new(), complete: true };
    for part in parts {
        page.entries.extend(part.entries);
        if !part.complete {
            page.complete = false;
            break;
        }
    }
    if page.entries.len() > limit {
        page.entries.truncate(limit);
        page.complete = false;
    }
    debug_assert!(page.entries.windows(2).all(|w| w[0].0 < w[1].0), "the parts are in key order");
    page
}

/// What holds a shard's metadata: a [`ShardIndex`], or (format v1) memory alone, where every
/// entry is always resident.
pub trait HoldsIndex {
    fn index(&self) -> Option<&ShardIndex>;
    fn index_mut(&mut self) -> Option<&mut ShardIndex>;
}

impl HoldsIndex for ShardIndex {
    fn index(&self) -> Option<&ShardIndex> {
        Some(self)
    }

    fn index_mut(&mut self) -> Option<&mut ShardIndex> {
        Some(self)
    }
}

/// Makes `wants` resident in the shard's metadata. Reads that overlapped a flush are read again:
/// what they read may predate it, and the entries it wrote may have been evicted since.
pub async fn ensure<M: HoldsIndex>(meta: &RefCell<M>, wants: &[Want]) -> Result<(), IndexError> {
    let mut installed = 0;
    loop {
        let (fetch, epoch) = {
            let mut m = meta.borrow_mut();
            let Some(m) = m.index_mut() else { return Ok(()) };
            m.trim(wants);
            // Keys the index never held are resident already (a new blob's, above all).
            let missing = m.missing(wants);
            if missing.is_empty() {
                return Ok(());
            }
            (m.fetch(missing), m.epoch())
        };
        let got = fetch.await?;
        let mut m = meta.borrow_mut();
        let Some(m) = m.index_mut() else { return Ok(()) };
        m.reap();
        if m.epoch() == epoch {
            m.install(got, wants);
            if m.missing(wants).is_empty() {
                return Ok(());
            }
            // A read installed whole leaves nothing missing, unless the index disagrees with
            // memory (a staged block held apart that the index lacks): not worth reading again.
            installed += 1;
            if installed == 3 {
                return Err(IndexError::Failed(format!("the index does not hold {:?}", m.missing(wants))));
            }
        }
    }
}

/// Index entries per read of a listing: a page and one more, within bounds (each read is a
/// round trip to the index thread).
fn list_page(max: usize) -> usize {
    max.saturating_add(1).clamp(64, 4096)
}

/// One shard's part of a listing page, from the index and the resident entries over it.
pub async fn list_blobs<M: HoldsIndex>(
    meta: &RefCell<M>,
    account: &str,
    container: &str,
    container_id: u64,
    q: &ListQuery,
) -> Result<(Vec<ListEntry>, bool), IndexError> {
    let mut lister = Lister::new(q, container_id);
    if q.uncommitted {
        let (blobs, to) = uncommitted_blobs(meta, account, container, container_id, q, lister.start()).await?;
        lister = lister.with_uncommitted(blobs, to);
    }
    let mut from = keys::blob(&BlobKey::new(account, container, lister.start()));
    let end = prefix_end(&keys::blob(&BlobKey::new(account, container, &q.prefix)));
    // Every key of the range starts with `account 0 container 0`; the name follows.
    let name_at = account.len() + container.len() + 2;
    let bad_key = || IndexError::Failed("a listing key is not a blob's".into());
    // A flat listing that this page cannot fill reads the next page while it works through this
    // one (a page is as long as the listing, so only entries that are not listed, of an old
    // container incarnation or deleted since the index was written, make a second one needed).
    let mut ahead = None;
    loop {
        let (page, epoch) = match ahead.take() {
            Some((at, epoch, read)) if at == from => (read, epoch),
            _ => {
                let m = meta.borrow();
                let m = m.index().ok_or_else(no_index)?;
                (m.blob_page(from.clone(), end.clone(), list_page(q.max)), m.epoch())
            }
        };
        let page = page.await?;
        let g = &mut *meta.borrow_mut();
        let m = g.index_mut().ok_or_else(no_index)?;
        m.reap();
        if m.epoch() != epoch {
            continue;
        }
        // The span this page covers: to its last entry unless it is the range's last page.
        let span_end =
            if page.complete { end.clone() } else { page.entries.last().map(|(k, _)| super::memtable::successor(k)) };
        let next = span_end.clone().filter(|_| !page.complete);
        let short = lister.listed() + page.entries.len() <= q.max;
        if let (Some(n), None, true) = (&next, lister.delimiter(), short) {
            ahead = Some((n.clone(), m.epoch(), m.blob_page(n.clone(), end.clone(), list_page(q.max))));
        }
        // Resident entries shadow the index: dirty ones are newer, clean ones the same.
        let lo = keys::parse_blob(&from).ok_or_else(bad_key)?;
        let in_span = |k: &BlobKey| span_end.as_deref().is_none_or(|e| keys::blob(k).as_slice() < e);
        let shadowed = m.state.blobs.range(lo.clone()..).next().is_some_and(|(k, _)| in_span(k))
            || m.dirty.deleted_blobs.range(lo.clone()..).next().is_some_and(|(k, _)| in_span(k));
        let flow = if shadowed {
            let mut merged: BTreeMap<Vec<u8>, Option<Blob>> = BTreeMap::new();
            for (k, v) in page.entries {
                merged.insert(k, Some(keys::decode_blob_head(&v).map_err(IndexError::Failed)?));
            }
            for (k, b) in m.state.blobs.range(lo.clone()..).take_while(|(k, _)| in_span(k)) {
                merged.insert(keys::blob(k), Some(b.head()));
            }
            for k in m.dirty.deleted_blobs.range(lo..).map(|(k, _)| k).take_while(|k| in_span(k)) {
                if !m.state.blobs.contains_key(k) {
                    merged.insert(keys::blob(k), None);
                }
            }
            offer_all(&mut lister, merged.into_iter().filter_map(|(k, b)| b.map(|b| (k, Ok(b)))), name_at)?
        } else {
            let decoded = page.entries.into_iter().map(|(k, v)| {
                let b = keys::decode_blob_head(&v).map_err(IndexError::Failed);
                (k, b)
            });
            offer_all(&mut lister, decoded, name_at)?
        };
        match flow {
            Flow::More => {}
            Flow::Done => return Ok(lister.finish(false)),
            Flow::Full => return Ok(lister.finish(true)),
        }
        let Some(next) = next else {
            return Ok(lister.finish(false));
        };
        // Names under a prefix just collapsed need not be read.
        from = match lister.last_prefix().and_then(|p| prefix_end(&keys::blob(&BlobKey::new(account, container, p)))) {
            Some(skip) if skip > next => skip,
            _ => next,
        };
    }
}

/// Staged entries per read of the uncommitted blobs of a listing: a blob's first (its smallest
/// id) is all a listing needs of it, and the read after one resumes past the rest of its blocks.
const UNCOMMITTED_PAGE: usize = 64;

/// The uncommitted blobs of container incarnation `container_id` a listing page can show, from
/// `start` (see [`crate::listing::pick_uncommitted`]): those resident, and those of the index's
/// staged table that are not. A read of the table takes the first entries of a few blobs and
/// the next resumes past the last one's blocks (or the prefix it collapsed into), so a listing
/// reads a page of the table a blob listed, however many blocks each holds.
async fn uncommitted_blobs<M: HoldsIndex>(
    meta: &RefCell<M>,
    account: &str,
    container: &str,
    container_id: u64,
    q: &ListQuery,
    start: &str,
) -> Result<(Vec<crate::listing::BlobSummary>, Option<String>), IndexError> {
    use crate::listing::{entry_name, pick_uncommitted, uncommitted_summary};
    let ctr_key = |name: &str| keys::blob(&BlobKey::new(account, container, name));
    let end = prefix_end(&ctr_key(&q.prefix));
    let mut from = ctr_key(start);
    let mut found: Vec<crate::listing::BlobSummary> = Vec::new();
    let mut found_to = None;
    'read: loop {
        let (page, mut g) = current_page(meta, Table::Staged, &from, end.clone(), UNCOMMITTED_PAGE).await?;
        let m = g.index_mut().ok_or_else(no_index)?;
        let mut skip_to: Option<Vec<u8>> = None;
        for (k, v) in &page.entries {
            if skip_to.as_ref().is_some_and(|s| k < s) {
                continue;
            }
            let key =
                keys::parse_staged(k).ok_or_else(|| IndexError::Failed("a staged key is not a block's".into()))?;
            // Past this blob's blocks; past the prefix it collapses into once that is listed.
            let entry = entry_name(q, &key.name).to_owned();
            let past_blob = prefix_end(&keys::staged_prefix(&key));
            let past_entry =
                if entry.len() < key.name.len() { prefix_end(&ctr_key(&entry)) } else { past_blob.clone() };
            // Memory decides for a resident list (below).
            if m.is_resident(&Want::StagedList(key.clone())) {
                skip_to = past_blob;
                continue;
            }
            let e = keys::decode_staged(v).map_err(IndexError::Failed)?;
            if e.container_id != container_id {
                skip_to = past_blob;
                continue;
            }
            // Covered by the marker, or by the entry listed last (a resident list hid its first).
            let listed = found.last().is_some_and(|l| entry_name(q, &l.name) == entry);
            if listed || q.marker.as_deref().is_some_and(|mk| entry.as_str() <= mk) {
                skip_to = past_entry;
                continue;
            }
            if found.len() == q.max.max(1) {
                found_to = found.last().map(|b| b.name.clone());
                break 'read;
            }
            found.push(uncommitted_summary(&key.name, e.block.staged_ns));
            skip_to = past_entry;
        }
        match (page.complete, skip_to) {
            (false, Some(next)) => from = next,
            _ => break,
        }
    }
    // The resident lists, up to where the index's are known.
    let g = meta.borrow();
    let m = g.index().ok_or_else(no_index)?;
    let (resident, resident_to) =
        pick_uncommitted(q, m.state.uncommitted_from(account, container, container_id, start), found_to.clone());
    let to = match (found_to, resident_to) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    found.extend(resident);
    found.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(pick_uncommitted(q, found, to))
}

/// A page of a scan: entries in key order, and where the next page starts (None at the end).
#[derive(Debug)]
pub struct Scan<T> {
    pub items: Vec<T>,
    pub next: Option<Vec<u8>>,
}

/// Reads one page of `table` from `from` and maps its entries with `f` (which sees the shard's
/// metadata, so that resident entries can stand in for the index's), retrying when a flush
/// completed meanwhile (the page may predate it, and what it wrote may be evicted since).
async fn scan_page<M: HoldsIndex, T>(
    meta: &RefCell<M>,
    table: Table,
    from: Vec<u8>,
    limit: usize,
    mut f: impl FnMut(&ShardIndex, Vec<u8>, Vec<u8>) -> Result<Option<T>, IndexError>,
) -> Result<Scan<T>, IndexError> {
    let (page, g) = current_page(meta, table, &from, None, limit.max(1)).await?;
    let m = g.index().ok_or_else(no_index)?;
    let next = if page.complete { None } else { page.entries.last().map(|(k, _)| super::memtable::successor(k)) };
    let mut items = Vec::with_capacity(page.entries.len());
    for (k, v) in page.entries {
        items.extend(f(m, k, v)?);
    }
    Ok(Scan { items, next })
}

/// A page of `table` in `[from, to)`, with the shard's metadata as it stands now: read again
/// when a flush completed meanwhile (the page may predate it, and what it wrote may be evicted
/// since), so that the page and the resident entries over it are of one moment.
async fn current_page<'a, M: HoldsIndex>(
    meta: &'a RefCell<M>,
    table: Table,
    from: &[u8],
    to: Option<Vec<u8>>,
    limit: usize,
) -> Result<(Page, std::cell::RefMut<'a, M>), IndexError> {
    loop {
        let (read, epoch) = {
            let m = meta.borrow();
            let m = m.index().ok_or_else(no_index)?;
            (m.index_page(table, from.to_vec(), to.clone(), limit), m.epoch())
        };
        let page = read.await?;
        let mut g = meta.borrow_mut();
        let m = g.index_mut().ok_or_else(no_index)?;
        m.reap();
        if m.epoch() == epoch {
            return Ok((page, g));
        }
    }
}

/// The allocator's image as of the state applied now: the index's image, changed by what the
/// chunk table has changed since (what the next flush will write). None when the index holds no
/// image yet (written before it was kept; its next flush builds it), and the caller must read
/// the chunk table instead.
pub async fn space_in_use<M: HoldsIndex>(meta: &RefCell<M>) -> Result<Option<SpaceMap>, IndexError> {
    let ix = {
        let m = meta.borrow();
        let m = m.index().ok_or_else(no_index)?;
        if !m.space_known() {
            return Ok(None);
        }
        m.index_thread()
    };
    let mut map = run(&ix, |ix| ix.space()).await.map_err(IndexError::Failed)?;
    // Taken after the read: a flush that completed meanwhile cleaned from the dirty entries only
    // what the image read holds, and the changes are idempotent whichever image they meet.
    map.apply(&meta.borrow().index().ok_or_else(no_index)?.space_changes());
    Ok(Some(map))
}

/// A page of the chunk table from key `from` on, and where the next page starts: the entries the
/// index holds of chunks that are not resident. Resident entries (changed since the last flush,
/// or read back) are in `state.chunks`, which a caller adds once it has read the last page; on a
/// quiet shard (at start) the two together are the whole table, each entry once.
pub async fn scan_chunks<M: HoldsIndex>(
    meta: &RefCell<M>,
    from: Vec<u8>,
    limit: usize,
) -> Result<(Vec<ChunkEntry>, Option<Vec<u8>>), IndexError> {
    let page = scan_page(meta, Table::Chunks, from, limit, |m, k, v| {
        let e = keys::decode_chunk(&v).map_err(IndexError::Failed)?;
        if keys::parse_chunk(&k) != Some(e.chunk.id()) {
            return Err(IndexError::Failed(format!("a chunk entry under another chunk's key: {e:?}")));
        }
        Ok((!m.is_resident(&Want::Chunk(e.chunk.id()))).then_some(e))
    })
    .await?;
    Ok((page.items, page.next))
}

/// A page of the chunk table from key `from` on as the shard sees it now (as [`scan_blobs`]
/// sees blobs): a resident entry stands in for the index's, and hides it when gone. Entries
/// new since the last flush are not seen: flush first where they matter.
pub async fn scan_chunks_seen<M: HoldsIndex>(
    meta: &RefCell<M>,
    from: Vec<u8>,
    limit: usize,
) -> Result<Scan<ChunkEntry>, IndexError> {
    scan_page(meta, Table::Chunks, from, limit, |m, k, v| {
        let e = keys::decode_chunk(&v).map_err(IndexError::Failed)?;
        if keys::parse_chunk(&k) != Some(e.chunk.id()) {
            return Err(IndexError::Failed(format!("a chunk entry under another chunk's key: {e:?}")));
        }
        if m.is_resident(&Want::Chunk(e.chunk.id())) {
            return Ok(m.state.chunks.get(&e.chunk.id()).copied());
        }
        Ok(Some(e))
    })
    .await
}

/// A page of committed blobs from index key `from` on, as the shard sees them: a resident entry
/// stands in for the index's (and hides it when absent). Blobs that only memory holds (new since
/// the last flush) are not seen: flush first where they matter.
pub async fn scan_blobs<M: HoldsIndex>(
    meta: &RefCell<M>,
    from: Vec<u8>,
    limit: usize,
) -> Result<Scan<(BlobKey, Blob)>, IndexError> {
    let mut scan = scan_page(meta, Table::Blobs, from, limit, |m, k, v| {
        let key = keys::parse_blob(&k).ok_or_else(|| IndexError::Failed("a blob key is damaged".into()))?;
        if m.is_resident(&Want::Blob(key.clone())) {
            return Ok(m.state.blobs.get(&key).cloned().map(|b| (key, b)));
        }
        Ok(Some((key, keys::decode_blob(&v).map_err(IndexError::Failed)?)))
    })
    .await?;
    with_blocks_apart(meta, &mut scan.items).await?;
    Ok(scan)
}

/// A page of uncommitted blocks from index key `from` on (a blob's blocks may straddle pages),
/// as [`scan_blobs`] sees blobs: its key, the container incarnation it was staged into, and the
/// block.
pub async fn scan_staged<M: HoldsIndex>(
    meta: &RefCell<M>,
    from: Vec<u8>,
    limit: usize,
) -> Result<Scan<(BlobKey, u64, StagedBlock)>, IndexError> {
    scan_page(meta, Table::Staged, from, limit, |m, k, v| {
        let key = keys::parse_staged(&k).ok_or_else(|| IndexError::Failed("a staged key is damaged".into()))?;
        let e = keys::decode_staged(&v).map_err(IndexError::Failed)?;
        if m.is_resident(&Want::StagedList(key.clone())) {
            // The index's entry of a block held apart is the block as memory has it.
            let Some(st) = m.state.staged.get(&key).filter(|st| st.contains(&e.block.block.id)) else {
                return Ok(None);
            };
            if st.is_apart(&e.block.block.id) {
                return Ok(Some((key, e.container_id, e.block)));
            }
            return Ok(st.find(&e.block.block.id).map(|b| (key, st.container_id, b.clone())));
        }
        Ok(Some((key, e.container_id, e.block)))
    })
    .await
}

/// Calls `blob` with every committed blob and `staged` with every uncommitted block the shard
/// holds, in memory or in its index, each once (start-up: adoption of counts, and the check of
/// debug builds). Index entries a resident one stands for are skipped; the resident ones
/// follow. Nothing may change the shard while it runs.
pub async fn scan_all<M: HoldsIndex>(
    meta: &RefCell<M>,
    mut blob: impl FnMut(&BlobKey, &Blob),
    mut staged: impl FnMut(&BlobKey, u64, &StagedBlock),
) -> Result<(), IndexError> {
    for table in [Table::Blobs, Table::Staged] {
        let mut from = Vec::new();
        loop {
            let read = {
                let m = meta.borrow();
                let m = m.index().ok_or_else(no_index)?;
                debug_assert!(m.flight.is_none(), "a full scan while a flush is in flight");
                m.index_page(table, from.clone(), None, SCAN_PAGE)
            };
            let page = read.await?;
            let damaged = || IndexError::Failed(format!("a damaged key in the index's {table:?}"));
            if table == Table::Blobs {
                let mut blobs = Vec::with_capacity(page.entries.len());
                {
                    let m = meta.borrow();
                    let m = m.index().ok_or_else(no_index)?;
                    for (k, v) in &page.entries {
                        let key = keys::parse_blob(k).ok_or_else(damaged)?;
                        if !m.is_resident(&Want::Blob(key.clone())) {
                            blobs.push((key, keys::decode_blob(v).map_err(IndexError::Failed)?));
                        }
                    }
                }
                with_blocks_apart(meta, &mut blobs).await?;
                for (key, b) in &blobs {
                    blob(key, b);
                }
            }
            let m = meta.borrow();
            let m = m.index().ok_or_else(no_index)?;
            for (k, v) in &page.entries {
                if table == Table::Blobs {
                    continue;
                } else {
                    let key = keys::parse_staged(k).ok_or_else(damaged)?;
                    // The index's entry stands for a list not resident, and for a block held
                    // apart (as memory has it); the resident blocks follow.
                    let held = m.is_resident(&Want::StagedList(key.clone())).then(|| m.state.staged.get(&key));
                    if held.is_none_or(|st| st.is_some_and(|st| !st.is_whole())) {
                        let e = keys::decode_staged(v).map_err(IndexError::Failed)?;
                        if held.flatten().is_none_or(|st| st.is_apart(&e.block.block.id)) {
                            staged(&key, e.container_id, &e.block);
                        }
                    }
                }
            }
            match page.entries.last() {
                Some((k, _)) if !page.complete => from = super::memtable::successor(k),
                _ => break,
            }
        }
    }
    meta.borrow().index().ok_or_else(no_index)?.state.visit(blob, staged);
    Ok(())
}

const SCAN_PAGE: usize = 4096;

/// Keys per read of the filter build, which runs while the shard serves. It has a thread of its
/// own now (`IndexThread::walk`); while it shared the readers, a point read queued behind one of
/// its pages waited for it (a cold page of 4,096 keys took tens of milliseconds).
const BUILD_PAGE: usize = 256;

/// Builds the key filters while the shard serves: every key of the blob, staged, chunk and
/// dedup tables is read, a page at a time, and hashed; a flush that runs meanwhile adds the keys
/// it writes to what the build collects, so the filters miss no key however the two interleave.
/// Until they are built, a key that is not resident is looked up in the index. `incarnation` is
/// told the container incarnation of every blob and uncommitted block the index holds (how what
/// a deleted container left behind is found).
pub async fn build_filters<M: HoldsIndex>(
    meta: &RefCell<M>,
    incarnation: impl FnMut(&BlobKey, u64),
) -> Result<(), IndexError> {
    // Begin with no flush in flight: one begun before would write keys that neither the scan
    // (were its pages read before they land) nor the collection would see.
    loop {
        let wait = {
            let mut g = meta.borrow_mut();
            let m = g.index_mut().ok_or_else(no_index)?;
            m.reap();
            if m.flight.is_none() {
                m.building = Some(Default::default());
                None
            } else {
                Some(m.flushed())
            }
        };
        match wait {
            None => break,
            Some(flushed) => flushed.await,
        }
    }
    let read = read_keys(meta, incarnation).await;
    let mut g = meta.borrow_mut();
    let m = g.index_mut().ok_or_else(no_index)?;
    let flushed = m.building.take().unwrap_or_default();
    let mut held = read?;
    for (h, more) in held.iter_mut().zip(flushed) {
        h.extend(more);
    }
    let [blobs, staged, chunks, dedup] = held;
    m.filters = Some(Filters {
        blobs: KeyFilter::with_hashes(blobs.len(), 1 << 21, blobs),
        staged: KeyFilter::with_hashes(staged.len(), 1 << 17, staged),
        chunks: KeyFilter::with_hashes(chunks.len(), 1 << 20, chunks),
        dedup: KeyFilter::with_hashes(dedup.len(), 1 << 18, dedup),
    });
    Ok(())
}

/// The hashes of every key of the four filtered tables, as [`build_filters`] reads them; the
/// blob keys that are fences are noted as each page is read, so that listings are cut from the
/// first pages on. Pages are not read again when a flush completes meanwhile (as [`scan_page`]
/// does): keys it wrote are collected apart, and under steady flushes a page would be read again
/// and again.
async fn read_keys<M: HoldsIndex>(
    meta: &RefCell<M>,
    mut incarnation: impl FnMut(&BlobKey, u64),
) -> Result<[Vec<u64>; 4], IndexError> {
    let mut held: [Vec<u64>; 4] = Default::default();
    for (i, table) in [Table::Blobs, Table::Staged, Table::Chunks, Table::Dedup].into_iter().enumerate() {
        let mut from = Vec::new();
        loop {
            let read = meta.borrow().index().ok_or_else(no_index)?.walk_page(table, from.clone(), BUILD_PAGE);
            let page = read.await?;
            let mut fences = Vec::new();
            let damaged = || IndexError::Failed(format!("a damaged key in the index's {table:?}"));
            for (k, v) in &page.entries {
                match table {
                    Table::Blobs => {
                        let key = keys::parse_blob(k).ok_or_else(damaged)?;
                        incarnation(&key, keys::decode_blob_head(v).map_err(IndexError::Failed)?.container_id);
                        let hash = filter::hash(k);
                        if super::fences::is_fence(hash) {
                            fences.push((k, hash));
                        }
                        held[i].push(hash);
                    }
                    Table::Staged => {
                        let key = keys::parse_staged(k).ok_or_else(damaged)?;
                        incarnation(&key, keys::decode_staged(v).map_err(IndexError::Failed)?.container_id);
                        held[i].push(filter::hash(&keys::blob(&key)));
                    }
                    _ => held[i].push(filter::hash(k)),
                }
            }
            if let Some(m) = meta.borrow_mut().index_mut() {
                for (k, hash) in fences {
                    m.fences.note(k, hash, true);
                }
            }
            match page.entries.last() {
                Some((k, _)) if !page.complete => from = super::memtable::successor(k),
                _ => break,
            }
        }
    }
    Ok(held)
}

/// Waits until the index holds every change applied so far (start-up, before full scans).
pub async fn flush_all<M: HoldsIndex>(meta: &RefCell<M>) -> Result<(), IndexError> {
    loop {
        let wait = {
            let mut g = meta.borrow_mut();
            let Some(m) = g.index_mut() else { return Ok(()) };
            m.flush_now();
            if let Some(e) = &m.failed {
                return Err(IndexError::Failed(e.clone()));
            }
            if m.index_lsn == m.applied && m.warm_to_write.is_none() && m.flight.is_none() {
                return Ok(());
            }
            m.flushed()
        };
        wait.await;
    }
}

fn no_index() -> IndexError {
    IndexError::Failed("this shard's metadata has no index".into())
}

/// Offers blobs (keys as the index spells them) to a listing until it stops; `More` when all
/// were taken.
fn offer_all(
    lister: &mut Lister<'_>,
    blobs: impl Iterator<Item = (Vec<u8>, Result<Blob, IndexError>)>,
    name_at: usize,
) -> Result<Flow, IndexError> {
    for (k, b) in blobs {
        let name = k.get(name_at..).and_then(|n| std::str::from_utf8(n).ok());
        let name = name.ok_or_else(|| IndexError::Failed("a listing key is not a blob's".into()))?;
        match lister.offer(name, &b?) {
            Flow::More => {}
            stop => return Ok(stop),
        }
    }
    Ok(Flow::More)
}

/// Runs `f` on the index thread; its errors and the thread's as text.
async fn run<T: Send + 'static>(
    ix: &IndexThread,
    f: impl FnOnce(&Index) -> Result<T, redb::Error> + Send + 'static,
) -> Result<T, String> {
    match ix.run(move |ix| f(ix).map_err(|e| e.to_string())).await {
        Ok(r) => r,
        Err(stopped) => Err(stopped.to_string()),
    }
}

/// The blocks kept apart for the blob of index key `key` and `size` bytes (on the index's
/// thread), checked to be all of its bytes.
fn blocks_of(ix: &Index, key: &[u8], size: u64) -> Result<Vec<Block>, redb::Error> {
    let (first, blocks) = join_pieces(&ix.pieces(key)?)?;
    let end = first + blocks.iter().map(|b| b.size).sum::<u64>();
    if (first, end) != (0, size) {
        return Err(redb::Error::Corrupted(format!("a blob's blocks kept apart hold bytes {first}..{end} of {size}")));
    }
    Ok(blocks)
}

/// The blocks of consecutive pieces, and the byte offset of the first: checked to follow each
/// other (each piece begins where the one before ends), so a piece lost or left over from
/// another cut is found, not read as the blob's bytes.
fn join_pieces(pieces: &[super::db::Piece]) -> Result<(u64, Vec<Block>), redb::Error> {
    let first = pieces.first().map_or(0, |p| p.0);
    let mut at = first;
    let mut out = Vec::new();
    for (offset, v) in pieces {
        if *offset != at {
            return Err(redb::Error::Corrupted(format!("a piece of a blob's blocks begins at {offset}, not {at}")));
        }
        let blocks = keys::decode_blocks(v).map_err(redb::Error::Corrupted)?;
        at += blocks.iter().map(|b| b.size).sum::<u64>();
        out.extend(blocks);
    }
    Ok((first, out))
}

/// What a read finds of a blob that is not resident ([`for_read`]).
enum Found {
    /// The entry whole (or no entry): made resident, as [`ensure`] would.
    Whole(Option<Blob>),
    /// The head of a blob whose blocks are apart, the blocks that cover the bytes wanted, and
    /// the blob offset of the first of them.
    Part(Blob, Vec<Block>, u64),
}

/// A blob about to be read, as [`for_read`] finds it.
#[derive(Debug)]
pub enum ForRead {
    /// Resident: read it from the shard's state (where it may be absent).
    Resident,
    /// A blob whose blocks are apart, not resident: its head (no blocks), and the blocks that
    /// cover the bytes wanted, the first of them at this blob offset. Nothing was made resident.
    Part { head: Box<Blob>, blocks: Vec<Block>, first: u64 },
}

/// Finds blob `key` for a read of the bytes `span` gives for its size (none for a read of its
/// head). A resident blob, or one whose entry holds its blocks, is made resident and read as
/// any; but a blob whose blocks are apart is read from the index in part, only the pieces that
/// cover the bytes wanted: a ranged read of a blob of 4 TiB decodes 160 KB of its chunk
/// references, not 160 MB, and leaves the cache as it was.
pub async fn for_read<M: HoldsIndex>(
    meta: &RefCell<M>,
    key: &BlobKey,
    span: impl Fn(u64) -> Option<(u64, u64)> + Clone + Send + 'static,
    with: &[Want],
) -> Result<ForRead, IndexError> {
    let blob = [Want::Blob(key.clone())];
    // What the caller made resident stays (nothing here evicts it), to be read with the blob.
    let keep: Vec<Want> = blob.iter().chain(with).cloned().collect();
    let wants = &keep[..1];
    loop {
        let (read, epoch) = {
            let mut m = meta.borrow_mut();
            let Some(m) = m.index_mut() else { return Ok(ForRead::Resident) };
            m.trim(&keep);
            if m.all_resident(wants) {
                return Ok(ForRead::Resident);
            }
            let ix = m.ix.clone();
            let (k, span) = (keys::blob(key), span.clone());
            (async move { run(&ix, move |ix| part_on(ix, &k, span)).await.map_err(IndexError::Failed) }, m.epoch())
        };
        let found = read.await?;
        let mut m = meta.borrow_mut();
        let Some(m) = m.index_mut() else { return Ok(ForRead::Resident) };
        m.reap();
        // Read again when a flush ended meanwhile (what was read may predate it), and read
        // from memory when the blob became resident meanwhile (memory has it as new or newer).
        if m.epoch() != epoch {
            continue;
        }
        match found {
            Found::Part(head, blocks, first) if !m.all_resident(wants) => {
                return Ok(ForRead::Part { head: Box::new(head), blocks, first })
            }
            Found::Part(..) => return Ok(ForRead::Resident),
            Found::Whole(blob) => {
                m.install(Fetched { blobs: vec![(key.clone(), blob)], ..Fetched::default() }, &keep);
                if m.all_resident(wants) {
                    return Ok(ForRead::Resident);
                }
            }
        }
    }
}

/// [`for_read`]'s read of the index (on its thread).
fn part_on(ix: &Index, key: &[u8], span: impl Fn(u64) -> Option<(u64, u64)>) -> Result<Found, redb::Error> {
    let mut entry = None;
    let pieces = ix.blob_and_pieces(key, |v| {
        let blob = keys::decode_blob(v)?;
        // Only a head has its blocks apart.
        let wanted = keys::is_head_only(&blob).then(|| span(blob.size).unwrap_or((0, 0)));
        entry = Some(blob);
        Ok(wanted)
    })?;
    let (Some(mut head), Some(pieces)) = (entry, pieces) else { return Ok(Found::Whole(None)) };
    if !keys::is_head_only(&head) {
        return Ok(Found::Whole(Some(head)));
    }
    let (first, blocks) = join_pieces(&pieces)?;
    let end = first + blocks.iter().map(|b| b.size).sum::<u64>();
    // Read whole because it is small (`Index::blob_and_pieces`): held as any blob. A large one
    // read whole (a whole GET, Get Block List) is not: it would empty the cache.
    if first == 0 && end == head.size && pieces.len() <= keys::WHOLE_PIECES {
        head.blocks = blocks;
        return Ok(Found::Whole(Some(head)));
    }
    if let Some((a, z)) = span(head.size).filter(|(a, z)| a < z && (*a < first || *z > end)) {
        let e = format!("a blob's blocks kept apart cover bytes {first}..{end}, not {a}..{z}");
        return Err(redb::Error::Corrupted(e));
    }
    Ok(Found::Part(head, blocks, first))
}

/// Gives the blobs of a walk whose entries are heads alone their blocks, read in one trip to the
/// index's thread.
async fn with_blocks_apart<M: HoldsIndex>(meta: &RefCell<M>, blobs: &mut [(BlobKey, Blob)]) -> Result<(), IndexError> {
    let apart: Vec<usize> = (0..blobs.len()).filter(|&i| keys::is_head_only(&blobs[i].1)).collect();
    if apart.is_empty() {
        return Ok(());
    }
    let keys_apart: Vec<(Vec<u8>, u64)> = apart.iter().map(|&i| (keys::blob(&blobs[i].0), blobs[i].1.size)).collect();
    let read = {
        let m = meta.borrow();
        let ix = m.index().ok_or_else(no_index)?.ix.clone();
        async move {
            run(&ix, move |ix| {
                keys_apart.iter().map(|(k, size)| blocks_of(ix, k, *size)).collect::<Result<Vec<_>, _>>()
            })
            .await
        }
    };
    for (i, blocks) in apart.into_iter().zip(read.await.map_err(IndexError::Failed)?) {
        blobs[i].1.blocks = blocks;
    }
    Ok(())
}

/// Reads the entries of `wants` from the index (on its thread).
fn fetch_on(ix: &Index, wants: &[Want], apart_bytes: usize) -> Result<Fetched, redb::Error> {
    let mut out = Fetched::default();
    let bad = |e: String| redb::Error::Corrupted(e);
    for w in wants {
        match w {
            Want::Blob(k) => {
                let key = keys::blob(k);
                let v = ix.get(Table::Blobs, &key)?;
                let mut blob = v.map(|v| keys::decode_blob(&v)).transpose().map_err(bad)?;
                if let Some(b) = blob.as_mut().filter(|b| keys::is_head_only(b)) {
                    b.blocks = blocks_of(ix, &key, b.size)?;
                }
                out.blobs.push((k.clone(), blob));
            }
            Want::Staged(k) => out.staged.push((k.clone(), staged_on(ix, k, None)?)),
            Want::StagedList(k) => out.staged.push((k.clone(), staged_on(ix, k, Some(apart_bytes))?)),
            Want::Chunk(id) => {
                let v = ix.get(Table::Chunks, &keys::chunk(id))?;
                let entry = v.map(|v| keys::decode_chunk(&v)).transpose().map_err(bad)?;
                if entry.is_some_and(|e| e.chunk.id() != *id) {
                    return Err(bad(format!("the chunk entry of {id:?} names another chunk")));
                }
                out.chunks.push((*id, entry));
            }
            Want::Dedup(h) => {
                let v = ix.get(Table::Dedup, h)?;
                let id =
                    v.map(|v| keys::parse_chunk(&v).ok_or_else(|| bad(format!("a damaged dedup entry for {h:02x?}"))));
                out.dedup.push((*h, id.transpose()?));
            }
        }
    }
    Ok(out)
}

/// A blob's staged blocks as the index holds them; with `apart` set, their chunk lists held apart
/// once they pass that many bytes ([`IndexConfig::apart_bytes`]). Read a page at a time, so that
/// a list held apart never lies whole in memory.
fn staged_on(ix: &Index, k: &BlobKey, apart: Option<usize>) -> Result<Option<Staged>, redb::Error> {
    let bad = |e: String| redb::Error::Corrupted(e);
    let prefix = keys::staged_prefix(k);
    let end = prefix_end(&prefix);
    let mut from = prefix.clone();
    let mut blocks: Vec<(u64, StagedBlock)> = Vec::new();
    let mut container_id = None;
    let mut chunk_bytes = 0usize;
    // Blocks before this have their chunk lists dropped.
    let mut held = 0;
    loop {
        let page = ix.range(Table::Staged, &from, end.as_deref(), STAGED_PAGE)?;
        for (_, v) in &page.entries {
            let e = keys::decode_staged(v).map_err(bad)?;
            if *container_id.get_or_insert(e.container_id) != e.container_id {
                return Err(bad(format!("staged blocks of {k:?} name two container incarnations")));
            }
            chunk_bytes += e.block.block.chunks.len() * std::mem::size_of::<ChunkRef>();
            blocks.push((e.place, e.block));
        }
        if apart.is_some_and(|most| chunk_bytes > most) {
            for (_, b) in &mut blocks[held..] {
                b.block.chunks = Vec::new().into();
            }
            held = blocks.len();
        }
        match page.entries.last() {
            Some((last, _)) if !page.complete => from = super::memtable::successor(last),
            _ => break,
        }
    }
    let apart = apart.is_some_and(|most| chunk_bytes > most);
    Ok(container_id.map(|cid| Staged::from_places(cid, blocks, apart)))
}

/// Staged blocks per read of a staged list (each of up to some megabytes, for a block of
/// 4,000 MiB in small chunks).
const STAGED_PAGE: usize = 64;

/// Memory a resident chunk or dedup entry takes, roughly: the entry in the state's map and the
/// clean list's two.
const CHUNK_MEM: usize = 3 * (24 + 16) + std::mem::size_of::<ChunkEntry>();

/// Memory a resident blob entry takes, roughly: the key three times (the state's map and the
/// clean list's two), the record and its blocks.
fn blob_mem(k: &BlobKey, b: Option<&Blob>) -> usize {
    let key = 3 * (k.account.len() + k.container.len() + k.name.len() + 3 * 24 + 16);
    key + 64
        + b.map_or(0, |b| {
            let props = &b.props;
            let text = [
                &props.content_type,
                &props.content_encoding,
                &props.content_language,
                &props.content_disposition,
                &props.cache_control,
            ]
            .iter()
            .map(|s| s.as_ref().map_or(0, |s| s.len() + 24))
            .sum::<usize>();
            let md = props.metadata.iter().map(|(n, v)| n.len() + v.len() + 48).sum::<usize>();
            std::mem::size_of::<Blob>() + text + md + blocks_mem(&b.blocks)
        })
}

fn block_mem(b: &crate::model::Block) -> usize {
    std::mem::size_of::<crate::model::Block>()
        + b.id.len()
        + b.chunks.len() * std::mem::size_of::<crate::model::ChunkRef>()
}

/// Storage bytes of blocks stored as values too large for a leaf (a blob's blocks kept apart, a
/// staged block of many chunks), at most: redb gives a leaf that holds one a page of the next
/// power of two, up to twice its bytes; none for blocks that fit a page.
fn large_value(blocks: &[crate::model::Block]) -> usize {
    // Every Put asks: the bound with shared lists counted each time settles a small blob
    // without the set of lists `blocks_mem` builds.
    let named: usize = blocks.iter().map(|b| b.id.len() + b.chunks.len() * std::mem::size_of::<ChunkRef>()).sum();
    if named + std::mem::size_of_val(blocks) <= 4096 {
        return 0;
    }
    match blocks_mem(blocks) {
        small if small <= 4096 => 0,
        bytes => 2 * bytes,
    }
}

/// Memory of a blob's blocks; a chunk list that blocks share counts once.
fn blocks_mem(blocks: &[crate::model::Block]) -> usize {
    let mut lists = std::collections::HashSet::new();
    blocks
        .iter()
        .map(|b| {
            let list = if lists.insert(b.chunks.as_ptr()) {
                b.chunks.len() * std::mem::size_of::<crate::model::ChunkRef>()
            } else {
                0
            };
            std::mem::size_of::<crate::model::Block>() + b.id.len() + list
        })
        .sum()
}

/// Memory a blob's resident staged blocks take, roughly (each block's id is kept twice).
fn staged_mem(k: &BlobKey, s: Option<&Staged>) -> usize {
    blob_mem(k, None) + s.map_or(0, |s| s.held().map(|(b, _)| block_mem(&b.block) + b.block.id.len() + 96).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(keys: &[&str], complete: bool) -> Page {
        Page { entries: keys.iter().map(|k| (k.as_bytes().to_vec(), Vec::new())).collect(), complete }
    }

    fn names(p: &Page) -> Vec<&str> {
        p.entries.iter().map(|(k, _)| std::str::from_utf8(k).unwrap_or("?")).collect()
    }

    #[test]
    fn a_stitched_page_stops_at_the_first_part_cut_short_and_at_its_limit() {
        let whole = stitch(vec![part(&["a", "b"], true), part(&[], true), part(&["d"], true)], 10);
        assert_eq!((names(&whole), whole.complete), (vec!["a", "b", "d"], true));
        let short = stitch(vec![part(&["a"], true), part(&["c", "d"], false), part(&["x"], true)], 10);
        assert_eq!((names(&short), short.complete), (vec!["a", "c", "d"], false), "x may not follow d");
        let long = stitch(vec![part(&["a", "b"], true), part(&["c", "d"], true)], 3);
        assert_eq!((names(&long), long.complete), (vec!["a", "b", "c"], false));
        let exact = stitch(vec![part(&["a", "b"], true), part(&["c"], true)], 3);
        assert_eq!((names(&exact), exact.complete), (vec!["a", "b", "c"], true));
    }
}
