//! A shard's side of the tier: which of the chunks it counts go up, in which pack, and the record
//! that says they are there.
//!
//! The loop ([`run`]) starts a new tier generation (`Record::TierStarted`, durable before any
//! upload: a pack uploaded before a crash but never recorded keeps a name no later pack takes),
//! then takes chunks from two places: the chunks newly counted (the index keeps them for it, up
//! to [`FRESH_BOUND`]) and, at start and whenever that queue overflowed, a scan of the whole chunk
//! table. A chunk goes into the pack being filled only if, read under a read guard, it is still
//! counted here and only local; the pack is shipped when it reaches `pack_bytes`, or when its
//! oldest chunk has waited `upload_after`, or when asked ([`flush`]). Once the remote commit is
//! answered, `Record::PackCommitted` names the chunks' places; the record moves only chunks that
//! are still counted and local, so one freed meanwhile stays garbage in the pack.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

use edgeblob_meta::index::shard::{scan_chunks, HoldsIndex, Want};
use edgeblob_meta::model::{ChunkId, ChunkRef, Location, PackInfo, PackedChunk};
use edgeblob_meta::{shard_store, Record};
use edgeblob_tier::{ChunkInfo, PackId};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use crate::error::{EngineError, Result};
use crate::shard::{now_ns, Shard};

/// Chunks newly counted that a shard keeps for the tier before it falls back to a scan.
pub const FRESH_BOUND: usize = 1 << 16;

/// A shard's tier state beside its loop: callers of [`flush`] and [`super::gc::collect_now`]
/// waiting for it, and what the garbage collection remembers between runs.
#[derive(Default)]
pub struct ShardTier {
    waiters: RefCell<Vec<oneshot::Sender<std::result::Result<(), String>>>>,
    pub(super) gc_waiters: RefCell<Vec<oneshot::Sender<std::result::Result<super::gc::GcReport, String>>>>,
    pub(super) wake: Notify,
    pub(super) gc: RefCell<super::gc::GcState>,
    /// One epoch at a time (the catalog shard runs them).
    pub(super) epoch: tokio::sync::Mutex<()>,
    /// Promotions of chunks to flash running (see [`super::hydrate`]).
    pub(super) promoting: std::cell::Cell<usize>,
    /// When the upload loop started, and when the last pass that left nothing to upload began:
    /// every chunk counted before then is in the tier.
    began: std::cell::Cell<Option<Instant>>,
    caught_up: std::cell::Cell<Option<Instant>>,
    /// Packs numbered below this are named by a manifest this process committed: only their
    /// chunks' local copies may be released (a restore finds them). Zero at start, until the
    /// first epoch.
    pub(super) covered_below: std::cell::Cell<u64>,
}

/// What a shard's chunk table says of the tier (a scan: for operators and tests).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TierStatus {
    pub generation: u64,
    /// Chunks on flash only, and their stored bytes: what a disaster would lose now.
    pub local_chunks: u64,
    pub local_bytes: u64,
    /// Chunks on flash and in the tier, and their stored bytes.
    pub both_chunks: u64,
    pub both_bytes: u64,
    /// Chunks in the tier only, and their stored bytes.
    pub tiered_chunks: u64,
    pub tiered_bytes: u64,
    pub packs: u64,
    pub pack_bytes: u64,
    /// How long the oldest chunk still only local may have waited (the recovery point's age):
    /// the time since the upload loop last ended a pass with nothing left to upload, or since
    /// it started when it has not yet; zero when nothing is only local.
    pub pending_secs: f64,
}

/// Waits until every chunk this shard counted before the call is in a committed pack (a scan of
/// the chunk table, and the pack it fills shipped as it is).
pub async fn flush(s: &Rc<Shard>) -> Result<()> {
    let Some(tier) = &s.node.tier else { return Err(EngineError::Tier("no tier is configured".into())) };
    if let Some(why) = tier.fenced() {
        return Err(EngineError::Tier(why));
    }
    if tier.passive {
        return Err(EngineError::Tier("this node only reads its tier".into()));
    }
    let (tx, rx) = oneshot::channel();
    s.tier.waiters.borrow_mut().push(tx);
    s.tier.wake.notify_one();
    rx.await.map_err(|_| EngineError::Stopped)?.map_err(EngineError::Tier)
}

/// The tier's view of this shard's chunk table.
pub async fn status(s: &Rc<Shard>) -> Result<TierStatus> {
    let mut st = {
        let meta = s.meta.borrow();
        let state = meta.state();
        TierStatus {
            generation: state.tier_generation,
            packs: state.packs.len() as u64,
            pack_bytes: state.packs.values().map(|p| p.len).sum(),
            ..TierStatus::default()
        }
    };
    super::each_chunk(s, |e| {
        let (chunks, bytes) = match e.location {
            Location::Local { .. } => (&mut st.local_chunks, &mut st.local_bytes),
            Location::Both { .. } => (&mut st.both_chunks, &mut st.both_bytes),
            Location::Tiered { .. } => (&mut st.tiered_chunks, &mut st.tiered_bytes),
        };
        *chunks += 1;
        *bytes += e.chunk.stored_len as u64;
    })
    .await?;
    if st.local_chunks > 0 {
        let since = s.tier.caught_up.get().or(s.tier.began.get());
        st.pending_secs = since.map_or(0.0, |t| t.elapsed().as_secs_f64());
    }
    Ok(st)
}

/// The pack being filled.
pub(super) struct Packer {
    pub(super) chunks: Vec<(ChunkInfo, Vec<u8>)>,
    ids: HashSet<ChunkId>,
    pub(super) bytes: usize,
    /// When its first chunk went in.
    since: Option<Instant>,
    pub(super) max_bytes: usize,
    pub(super) max_entries: usize,
}

impl Packer {
    pub(super) fn new(max_bytes: usize, max_entries: usize) -> Packer {
        Packer { chunks: Vec::new(), ids: HashSet::new(), bytes: 0, since: None, max_bytes, max_entries }
    }

    /// Adds a chunk's stored stream as it is (a repack: the chunk is in another pack).
    pub(super) fn add_stored(&mut self, c: &ChunkRef, stored: Vec<u8>) {
        if self.ids.insert(c.id()) {
            self.bytes += stored.len();
            self.chunks.push((super::place::info(c), stored));
        }
    }

    pub(super) fn full(&self) -> bool {
        self.bytes >= self.max_bytes || self.chunks.len() >= self.max_entries
    }

    fn clear(&mut self) {
        self.chunks.clear();
        self.ids.clear();
        self.bytes = 0;
        self.since = None;
    }

    /// Adds chunk `c` if it is still counted here and only local, read and checked from flash.
    async fn add(&mut self, s: &Rc<Shard>, c: ChunkRef) -> Result<()> {
        if self.ids.contains(&c.id()) {
            return Ok(());
        }
        // Entered before the check: a chunk freed after it keeps its space until the read ends.
        let _guard = s.node.epochs.enter();
        shard_store::resident(&s.meta, &[Want::Chunk(c.id())]).await?;
        let offset = match s.meta.borrow().state().chunks.get(&c.id()).map(|e| e.location) {
            Some(Location::Local { offset }) => offset,
            _ => return Ok(()),
        };
        let stored = match crate::read::read_stored(s, &c, offset).await {
            Ok(stored) => stored,
            // A damaged chunk is not uploaded (its reads fail too); the next scan tries again.
            Err(EngineError::Corrupt(e)) => {
                tracing::error!(shard = s.index, %e, "a chunk fails its checksum and is not tiered");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let info = ChunkInfo { offset: c.offset, hash: c.hash, len: c.len, stored_len: c.stored_len, flags: c.flags };
        self.bytes += stored.len();
        self.chunks.push((info, stored));
        self.ids.insert(c.id());
        self.since.get_or_insert_with(Instant::now);
        Ok(())
    }
}

/// The loop: runs on every shard of a node with a tier, from start.
pub async fn run(s: Rc<Shard>) {
    let Some(tier) = s.node.tier.clone().filter(|t| !t.passive) else { return };
    let mut backoff = Duration::from_secs(1);
    let generation = loop {
        match start_generation(&s).await {
            Ok(g) => break g,
            Err(e) => {
                tracing::error!(shard = s.index, %e, retry_in = ?backoff, "the tier cannot start its generation");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    };
    let fresh = s.meta.borrow_mut().index_mut().map(|m| m.watch_fresh(FRESH_BOUND));
    let Some(fresh) = fresh else { return };
    // A pack's record holds about 48 bytes a chunk.
    let mut packer = Packer::new(tier.pack_bytes, s.per_record(48));
    let mut next_number = s.meta.borrow().state().packs.keys().next_back().map_or(1, |n| n + 1);
    let mut scan = true;
    backoff = Duration::from_secs(1);
    s.tier.began.set(Some(Instant::now()));
    loop {
        let pass_began = Instant::now();
        let waiters = std::mem::take(&mut *s.tier.waiters.borrow_mut());
        let gc_waiters = std::mem::take(&mut *s.tier.gc_waiters.borrow_mut());
        let res = async {
            if !tier.ready_soon().await {
                return Err(EngineError::Tier(format!("the tier cannot be used yet: {}", tier.trouble())));
            }
            // Claimed in the tier before anything is written there (see `super::fence`).
            if tier.generation().is_none_or(|g| g < generation) {
                tier.claim(generation).await.map_err(EngineError::Tier)?;
            }
            let (new, overflowed) = s.meta.borrow_mut().index_mut().map(|m| m.take_fresh()).unwrap_or_default();
            if scan || overflowed || !waiters.is_empty() {
                let mut from = Some(Vec::new());
                while let Some(at) = from {
                    let (entries, next) = scan_chunks(&s.meta, at, 4096).await?;
                    let mut page: Vec<ChunkRef> = entries
                        .iter()
                        .filter(|e| matches!(e.location, Location::Local { .. }))
                        .map(|e| e.chunk)
                        .collect();
                    if next.is_none() {
                        let meta = s.meta.borrow();
                        let local =
                            meta.state().chunks.values().filter(|e| matches!(e.location, Location::Local { .. }));
                        page.extend(local.map(|e| e.chunk));
                    }
                    fill(&s, &tier, &mut packer, generation, &mut next_number, page).await?;
                    from = next;
                }
            }
            fill(&s, &tier, &mut packer, generation, &mut next_number, new).await?;
            let due = packer.since.is_some_and(|t| t.elapsed() >= tier.upload_after);
            if !packer.chunks.is_empty() && (due || !waiters.is_empty()) {
                ship(&s, &tier, &mut packer, generation, &mut next_number, Vec::new()).await?;
            }
            // Past the high watermark: local copies of what is in the tier go, down to the low.
            let over = super::release::over_watermark(&s, tier.release_above, tier.release_below);
            if over > 0 {
                let freed = super::release::release(&s, Some(over)).await?;
                if freed < over && super::release::uncovered(&s) {
                    tier.epoch_wanted.notify_one();
                }
                tracing::info!(
                    shard = s.index,
                    freed,
                    "released local copies of tiered chunks past the high watermark"
                );
            }
            let gc_due = s.tier.gc.borrow().last.is_none_or(|t| t.elapsed() >= tier.gc_interval);
            let report = if gc_due || !gc_waiters.is_empty() {
                Some(super::gc::collect(&s, &tier, generation, &mut next_number, packer.max_entries).await)
            } else {
                None
            };
            Ok(report)
        }
        .await;
        let res = match res {
            Ok(Some(Err(e))) => {
                // The garbage waits for the next run; uploads go on.
                tracing::warn!(shard = s.index, %e, "tier garbage collection failed; nothing more was deleted");
                for w in gc_waiters {
                    let _ = w.send(Err(e.to_string()));
                }
                Ok(())
            }
            Ok(Some(Ok(report))) => {
                for w in gc_waiters {
                    let _ = w.send(Ok(report.clone()));
                }
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                for w in gc_waiters {
                    let _ = w.send(Err(e.to_string()));
                }
                Err(e)
            }
        };
        match res {
            Ok(()) => {
                scan = false;
                backoff = Duration::from_secs(1);
                if packer.chunks.is_empty() {
                    s.tier.caught_up.set(Some(pass_began));
                }
                for w in waiters {
                    let _ = w.send(Ok(()));
                }
            }
            Err(e) => {
                for w in waiters {
                    let _ = w.send(Err(e.to_string()));
                }
                if tier.fenced().is_some() {
                    // Taken over: nothing of this node's goes up, is released or collected again.
                    return;
                }
                tracing::warn!(shard = s.index, %e, retry_in = ?backoff, "tier upload failed; the chunks stay local and are tried again");
                // What the failed pack held is found again by the next scan.
                packer.clear();
                scan = true;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
                continue;
            }
        }
        let deadline = packer.since.map(|t| t + tier.upload_after);
        tokio::select! {
            _ = fresh.notified() => {
                // A moment for more to come: one pass for a burst of small records.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ = s.tier.wake.notified() => {}
            _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)).await }, if deadline.is_some() => {}
            // The watermarks are looked at this often when nothing else happens.
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Logs the node's next tier generation on this shard (one above the highest any shard had at
/// start, so every shard starts the same one) and waits until it is durable. The loop then
/// claims it in the tier (see [`super::fence`]) before its first write there: durable before
/// the claim, so a claim found after a crash is never this node's own next one.
async fn start_generation(s: &Rc<Shard>) -> Result<u64> {
    let own = s.meta.borrow().state().tier_generation;
    let floor = s.node.tier_floor.load(std::sync::atomic::Ordering::SeqCst);
    // A retry after a failed log logs the same one.
    let generation = own.max(floor + 1);
    if own < generation {
        super::log(s, Record::TierStarted { generation }).await?;
    }
    Ok(generation)
}

/// Adds `chunks` to the pack, shipping it each time it is full.
async fn fill(
    s: &Rc<Shard>,
    tier: &super::Tier,
    packer: &mut Packer,
    generation: u64,
    next_number: &mut u64,
    chunks: Vec<ChunkRef>,
) -> Result<()> {
    for c in chunks {
        packer.add(s, c).await?;
        if packer.full() {
            ship(s, tier, packer, generation, next_number, Vec::new()).await?;
        }
    }
    Ok(())
}

/// Uploads the pack and logs what it holds (with the packs it replaces, for a repack).
pub(super) async fn ship(
    s: &Rc<Shard>,
    tier: &super::Tier,
    packer: &mut Packer,
    generation: u64,
    next_number: &mut u64,
    replaces: Vec<u64>,
) -> Result<()> {
    // A number is never tried twice in one generation: a failed commit may still have taken
    // its name remotely.
    let number = *next_number;
    *next_number += 1;
    let id = PackId { node: tier.node, generation, shard: s.index as u32, seq: number };
    let chunks = std::mem::take(&mut packer.chunks);
    packer.clear();
    let shipped = tier.ship(id, chunks).await.map_err(EngineError::Tier)?;
    let pack = PackInfo {
        number,
        generation,
        shard: s.index as u32,
        len: shipped.len,
        entries: shipped.entries.len() as u32,
        committed_ns: now_ns(),
        header: shipped.header,
    };
    let chunks: Vec<PackedChunk> = shipped
        .entries
        .iter()
        .map(|e| PackedChunk { offset: e.chunk.offset, hash: e.chunk.hash, entry: e.index, at: e.at })
        .collect();
    super::log(s, Record::PackCommitted { pack: Box::new(pack), chunks, replaces }).await?;
    tracing::debug!(shard = s.index, pack = number, generation, "pack committed to the tier");
    Ok(())
}
