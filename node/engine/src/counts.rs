//! Reference counts kept in the index (format v2, docs/architecture.md "Metadata at scale", 7):
//! every record's reference changes go to the shards that count the chunks, which log them
//! (`Record::RefsApplied`) once per source LSN, so a count is exact after any crash without
//! deriving it from every reference.
//!
//! A source shard keeps a record's changes in its outbox (in its index from the flush that
//! covers the record) until every counting shard has made them durable; [`deliver`] sends them,
//! oldest first, in batches, one batch at a time. A counting shard logs the part of a batch
//! after the last LSN it logged for that source ([`log_refs`]), so what a crash makes a source
//! send again is dropped, and nothing is counted twice or lost.
//!
//! These counts decide frees and dedup; the in-memory `RefTable` holds only pins (`refs.rs`). At
//! start they are checked against the references the start-up scan found (debug builds:
//! [`verify`]).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use edgeblob_io::volume::NodeLayout;
use edgeblob_io::Extent;
use edgeblob_meta::index::shard::{scan_chunks, space_in_use, wants_of, HoldsIndex};
use edgeblob_meta::index::space::SpaceMap;
use edgeblob_meta::model::{ChunkId, ChunkRef, RefChange};
use edgeblob_meta::refs::{merge_changes, RefCounts};
use edgeblob_meta::wal::AppendError;
use edgeblob_meta::{shard_store, Record, ShardStore};

use super::error::{EngineError, Result};
use super::ops::at;
use super::refs::RefTable;
use super::shard::Shard;

/// Bytes of one archived `RefChange`.
pub(crate) const CHANGE_LEN: usize = 48;

/// Starts [`deliver`] on this shard, watched: a delivery that panics (a broken invariant)
/// marks the shard's changes stalled, so that nothing waits for them forever (a start waits for
/// every outbox to drain, [`drained`]).
pub fn start_delivery(s: &Rc<Shard>) {
    let stalled = s.clone();
    super::background::spawn(s, "deliver-refs", deliver(s.clone()), move || stalled.refs_stalled.set(true));
}

/// Sends this shard's undelivered reference changes to the shards that count them, forever.
/// Runs on every v2 shard from start.
async fn deliver(s: Rc<Shard>) {
    let Some(signal) = s.meta.borrow().index().map(|m| m.outbox_signal()) else { return };
    // After a failure: doubles up to 10 s, so a shard that cannot log is not asked 10 times a
    // second (nor the log filled with the same warning).
    let mut backoff = Duration::from_millis(100);
    loop {
        let (batch, durable) = {
            let meta = s.meta.borrow();
            let Some(m) = meta.index() else { return };
            // A batch is logged as one record by each counting shard: it must fit a log half
            // with room to spare (one record of more changes is sent alone).
            let budget = s.per_record(CHANGE_LEN);
            let mut batch = m.outbox(1024);
            let mut changes = 0;
            let keep = batch
                .iter()
                .position(|(_, c)| {
                    changes += c.len();
                    changes > budget
                })
                .map_or(batch.len(), |i| i.max(1));
            batch.truncate(keep);
            let durable = batch.last().map(|(l, _)| m.durable(*l));
            (batch, durable)
        };
        let Some(durable) = durable else {
            signal.notified().await;
            continue;
        };
        // Only what the log has made durable: a change it could still lose must not be counted.
        if let Err(e) = durable.await {
            s.refs_stalled.set(true);
            tracing::error!(shard = s.index, %e, retry_in = ?backoff, "reference changes wait for a failed log");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
            continue;
        }
        let last = batch.last().map_or(0, |(l, _)| *l);
        let mut by_counter: BTreeMap<usize, Vec<(u64, Vec<RefChange>)>> = BTreeMap::new();
        for (lsn, changes) in &batch {
            for c in changes.iter() {
                let to = by_counter.entry(s.node.ref_owner(&c.chunk)).or_default();
                match to.last_mut() {
                    Some((l, list)) if l == lsn => list.push(*c),
                    _ => to.push((*lsn, vec![*c])),
                }
            }
        }
        // The pins these records hold go with their changes, in the same message: each counting
        // shard gives its part back once it has logged the changes (one hop, not two).
        let mut pins = s.pins_through(last).split_by(|c| s.node.ref_owner(c));
        for counter in pins.keys() {
            by_counter.entry(*counter).or_default();
        }
        let source = s.index as u32;
        let sends = by_counter.into_iter().map(|(counter, entries)| {
            let pins = pins.remove(&counter).unwrap_or_default();
            let sent = at(&s, counter, move |c| async move { log_refs(&c, source, entries, pins).await });
            async move { (counter, sent.await.and_then(|r| r)) }
        });
        let mut failed: Vec<String> = Vec::new();
        let mut done: Vec<usize> = Vec::new();
        for (counter, res) in futures::future::join_all(sends).await {
            match res {
                Ok(()) => done.push(counter),
                Err(e) => failed.push(e.to_string()),
            }
        }
        s.refs_stalled.set(!failed.is_empty());
        // The counting shards that answered have given their pins back: never twice.
        s.unpinned_through(last, |c| done.contains(&c));
        if failed.is_empty() {
            backoff = Duration::from_millis(100);
            if let Some(m) = s.meta.borrow_mut().index_mut() {
                m.delivered(last);
            }
        } else {
            // Sent again whole: the counting shards that logged their part drop it then.
            tracing::warn!(shard = s.index, errors = ?failed, retry_in = ?backoff, "reference changes not delivered");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

/// On a counting shard: logs the changes of `source`'s records `entries` (in LSN order) that it
/// has not logged yet, as one record, and waits until it is durable; then gives back `pins`, the
/// pins those records held on chunks counted here (their references are counted from now on).
pub async fn log_refs(c: &Rc<Shard>, source: u32, entries: Vec<(u64, Vec<RefChange>)>, pins: RefCounts) -> Result<()> {
    log_changes(c, source, entries).await?;
    if !pins.is_empty() {
        c.give_back_local(&pins);
    }
    Ok(())
}

async fn log_changes(c: &Rc<Shard>, source: u32, entries: Vec<(u64, Vec<RefChange>)>) -> Result<()> {
    let pending: Vec<(u64, Vec<RefChange>)> = {
        let meta = c.meta.borrow();
        entries.into_iter().filter(|(l, _)| meta.state().refs_pending(source, *l)).collect()
    };
    let Some(&(lsn, _)) = pending.last() else { return Ok(()) };
    debug_assert!(pending.windows(2).all(|w| w[0].0 < w[1].0), "a source's changes come in LSN order");
    let rec = Record::RefsApplied { source, lsn, changes: merge_changes(pending.into_iter().flat_map(|(_, c)| c)) };
    commit_counts(c, rec, |meta| meta.state().refs_pending(source, lsn)).await
}

/// On a counting shard that outlived a device: replaces the references the lost shards'
/// metadata had counted here by those of what was restored in their place, and starts their
/// LSNs over (`Record::RefsReplaced`; `tier::replace`). Frees what is left uncounted.
pub async fn replace_refs(c: &Rc<Shard>, sources: Vec<(u32, u64)>, changes: Vec<RefChange>) -> Result<()> {
    commit_counts(c, Record::RefsReplaced { sources, changes }, |_| true).await
}

/// Commits a record of reference changes (while `still` holds) and waits until it is durable,
/// then frees the chunks it left with neither a count nor a pin.
async fn commit_counts(c: &Rc<Shard>, rec: Record, still: impl Fn(&ShardStore) -> bool) -> Result<()> {
    let wants = wants_of(&rec);
    loop {
        c.log_ready().await?;
        shard_store::resident(&c.meta, &wants).await?;
        let (commit, freed) = {
            let mut meta = c.meta.borrow_mut();
            if !still(&meta) {
                return Ok(());
            }
            // Where the chunks are before the change: one already released has no space to free.
            let before: BTreeMap<ChunkId, Option<Extent>> =
                changes_of(&rec).filter_map(|id| Some((id, meta.state().chunks.get(&id)?.local_extent()))).collect();
            match meta.commit(rec.clone()) {
                // Decided with the commit: a chunk this record left uncounted and unpinned.
                Ok(commit) => {
                    let pins = c.refs.borrow();
                    let freed: Vec<Extent> = meta
                        .state()
                        .freed_by(&rec)
                        .into_iter()
                        .filter(|f| pins.count(f.offset).is_none())
                        .filter_map(|f| match before.get(&f.id()) {
                            Some(on_flash) => *on_flash,
                            // Counted by this record alone: on flash where it was written.
                            None => Some(f.extent()),
                        })
                        .collect();
                    (commit, freed)
                }
                // The log is switching halves: wait for it, as any writer does.
                Err(AppendError::Busy) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        commit.durable.await?;
        c.free_extents(freed);
        return Ok(());
    }
}

/// The chunks a `RefsApplied` record changes.
fn changes_of(rec: &Record) -> impl Iterator<Item = ChunkId> + '_ {
    let changes: &[RefChange] = match rec {
        Record::RefsApplied { changes, .. } | Record::RefsReplaced { changes, .. } => changes,
        _ => &[],
    };
    changes.iter().map(|c| c.chunk.id())
}

/// At start, on a counting shard that has never logged `source`'s changes (a data file written
/// before counts were kept, or a new one): logs the references `source`'s metadata holds to its
/// chunks, as found by the start-up scan, as of `source`'s last record `lsn`.
pub async fn adopt(c: &Rc<Shard>, source: u32, lsn: u64, refs: RefCounts) -> Result<()> {
    if !c.meta.borrow().state().refs_pending(source, 0) {
        return Ok(());
    }
    let changes = RefCounts::changes(&refs, &RefCounts::default());
    log_changes(c, source, vec![(lsn, changes)]).await
}

/// Waits until the reference changes of every record this shard has applied so far are
/// counted, or their delivery has failed (a failed log: the shard refuses changes then).
pub async fn drained(s: &Rc<Shard>) {
    let Some(upto) = s.meta.borrow().index().map(|m| m.applied()) else { return };
    loop {
        let left = s.meta.borrow().index().and_then(|m| m.outbox(1).first().map(|(l, _)| *l));
        if left.is_none_or(|l| l > upto) || s.refs_stalled.get() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Checks that the counts this shard's index holds are those derived from every reference at
/// start (debug builds, at start, before anything is served).
pub async fn verify(s: &Rc<Shard>, derived: &RefTable) -> Result<()> {
    if !matches!(&*s.meta.borrow(), ShardStore::V2(_)) {
        return Ok(());
    }
    let mut kept: BTreeMap<ChunkId, (ChunkRef, u32)> = BTreeMap::new();
    let mut local = SpaceMap::default();
    each_counted(s, |page| {
        for c in page {
            kept.insert(c.chunk.id(), (c.chunk, c.refs));
            if let Some(e) = c.local {
                local.set(e);
            }
        }
    })
    .await?;
    // Nothing counted lies in free space, nor in space freed and waiting for reads to drain (a
    // chunk freed while another shard's addition to it was on its way, `repin`).
    #[cfg(debug_assertions)]
    {
        let mut by_region: BTreeMap<usize, Vec<Extent>> = BTreeMap::new();
        for e in local.runs() {
            by_region.entry(s.node.region_of(e.offset)).or_default().push(e);
        }
        for (region, runs) in by_region {
            let free: Vec<Extent> = at(s, region, move |r| async move {
                let space = r.space.borrow();
                runs.into_iter().filter(|e| space.any_free(*e)).take(8).collect()
            })
            .await?;
            if !free.is_empty() {
                return Err(EngineError::Corrupt(format!(
                    "shard {}: chunks it counts lie in space region {region} holds free: {free:?}",
                    s.index
                )));
            }
        }
    }
    // The allocator's image marks exactly the space of the chunks counted (those on flash).
    if let Some(image) = space_in_use(&s.meta).await? {
        let want = local;
        if image.runs() != want.runs() {
            return Err(EngineError::Corrupt(format!(
                "shard {}: the allocator's image marks {:?}, the chunk table holds {:?}",
                s.index,
                image.runs().iter().take(8).collect::<Vec<_>>(),
                want.runs().iter().take(8).collect::<Vec<_>>()
            )));
        }
    }
    let derived: BTreeMap<ChunkId, (ChunkRef, u32)> = derived.chunks().map(|(c, n)| (c.id(), (*c, n))).collect();
    if kept != derived {
        let differ: Vec<_> = derived
            .iter()
            .filter(|(id, v)| kept.get(id) != Some(v))
            .map(|(id, v)| (id.offset, v.1, kept.get(id).map(|k| k.1)))
            .chain(kept.iter().filter(|(id, _)| !derived.contains_key(id)).map(|(id, v)| (id.offset, 0, Some(v.1))))
            .take(8)
            .collect();
        return Err(EngineError::Corrupt(format!(
            "shard {}: the index counts {} chunks, the references {}; (offset, derived, kept): {differ:?}",
            s.index,
            kept.len(),
            derived.len()
        )));
    }
    Ok(())
}

/// A chunk a shard counts: the chunk, its count, and the space it holds on flash (none once
/// released to the tier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub chunk: ChunkRef,
    pub refs: u32,
    /// The space it holds on flash (a released chunk: the first page of its place).
    pub local: Option<Extent>,
    /// Whether its bytes are on flash (not released).
    pub on_flash: bool,
}

/// A page of the chunks this shard counts, with their counts, from key `from` on (start with an
/// empty key), and where the next page starts. v1: the whole in-memory table at once. v2: the
/// chunk table, the resident entries with the last page; exact on a quiet shard (at start), and
/// on a busy one a view that may miss or repeat an entry read or evicted meanwhile.
pub async fn counted(s: &Rc<Shard>, from: Vec<u8>) -> Result<(Vec<Counted>, Option<Vec<u8>>)> {
    if !s.node.counts_kept() {
        let all = s
            .refs
            .borrow()
            .chunks()
            .map(|(c, n)| Counted { chunk: *c, refs: n, local: Some(c.extent()), on_flash: true })
            .collect();
        return Ok((all, None));
    }
    let of = |e: &edgeblob_meta::model::ChunkEntry| Counted {
        chunk: e.chunk,
        refs: e.refs,
        local: e.local_extent(),
        on_flash: e.location.local().is_some(),
    };
    let (entries, next) = scan_chunks(&s.meta, from, 4096).await?;
    let mut page: Vec<Counted> = entries.iter().map(of).collect();
    if next.is_none() {
        page.extend(s.meta.borrow().state().chunks.values().map(of));
    }
    Ok((page, next))
}

/// Every chunk this shard counts, with its count, a page at a time (see [`counted`]).
pub async fn each_counted(s: &Rc<Shard>, mut f: impl FnMut(&[Counted])) -> Result<()> {
    let mut page = Some(Vec::new());
    while let Some(from) = page {
        let (chunks, next) = counted(s, from).await?;
        f(&chunks);
        page = next;
    }
    Ok(())
}

/// At start (v2), the space this shard's durable metadata holds, in two parts:
/// - `counted`: that of the chunks it counts, from the allocator's image (`index::space`) and
///   what the records replayed changed since; from the chunk table when the index was written
///   before the image was kept. These extents are disjoint from every other shard's.
/// - `pending`: what its outbox will add to counts their shards have not logged yet, by record
///   (`logged[c]`: the last LSN of each source shard `c` has logged); their chunks' space may
///   also be counted. [`repin`] pins them again, from this one pass over the outbox.
///
/// Together with what adoptions add, that is every chunk some durable record references; a chunk
/// written but never committed is in neither, and its space is free.
pub struct LiveSpace {
    pub counted: Vec<Extent>,
    pub pending: Vec<(u64, RefCounts)>,
}

impl LiveSpace {
    /// The space of the chunks `pending` adds to.
    pub fn pending_space(&self) -> impl Iterator<Item = Extent> + '_ {
        self.pending.iter().flat_map(|(_, adds)| adds.iter().map(|(c, _)| c.extent()))
    }
}

/// The runs of `map` (shard `shard`'s image), each within one region's data area: a page marked
/// anywhere else is a damaged image, refused here rather than placed in no region.
fn data_runs(layout: &NodeLayout, shard: usize, map: &SpaceMap) -> Result<Vec<Extent>> {
    let runs: Vec<Extent> = (0..layout.shards())
        .flat_map(|r| {
            let (offset, len) = layout.data_area(r);
            map.within(Extent { offset, len })
        })
        .collect();
    let bytes = |runs: &[Extent]| runs.iter().map(|e| e.len).sum::<u64>();
    let all = bytes(&map.runs());
    if bytes(&runs) != all {
        return Err(EngineError::Corrupt(format!(
            "shard {shard}: the allocator's image marks {} bytes outside every data area",
            all - bytes(&runs)
        )));
    }
    Ok(runs)
}

pub async fn live_space(s: &Rc<Shard>, logged: &[BTreeMap<u32, u64>]) -> Result<LiveSpace> {
    let counted = match space_in_use(&s.meta).await? {
        Some(map) => data_runs(&s.node.layout, s.index, &map)?,
        None => {
            let mut out = Vec::new();
            each_counted(s, |page| out.extend(page.iter().filter_map(|c| c.local))).await?;
            out
        }
    };
    Ok(LiveSpace { counted, pending: unlogged_additions(s, logged) })
}

/// At start (v2), the references this shard's undelivered records add that the shards counting
/// them have not logged (`logged[c]`: the last LSN of each source shard `c` has logged), by
/// record. An addition logged already (the source's record of its delivery was lost with a
/// crash) is counted, or was freed since and its space perhaps reused: it is not one of them.
fn unlogged_additions(s: &Shard, logged: &[BTreeMap<u32, u64>]) -> Vec<(u64, RefCounts)> {
    let source = s.index as u32;
    let meta = s.meta.borrow();
    let Some(m) = meta.index() else { return Vec::new() };
    let mut out = Vec::new();
    for (lsn, changes) in m.outbox(usize::MAX) {
        let mut adds = RefCounts::default();
        for c in changes.iter().filter(|c| c.add > 0) {
            if logged[s.node.ref_owner(&c.chunk)].get(&source).is_none_or(|last| lsn > *last) {
                adds.add(c.chunk, c.add);
            }
        }
        if !adds.is_empty() {
            out.push((lsn, adds));
        }
    }
    out
}

/// At start (v2), before any delivery: pins again what this shard's undelivered records add
/// (`pending`, [`LiveSpace::pending`]), on the shards that count it, as the records held those
/// pins before the restart (until their changes are delivered: [`Shard::unpin_after_delivery`]).
/// Without them a chunk's count could reach zero while another source's addition to it is
/// still on its way: one shard's drop, delivered first, would free a chunk that a blob of
/// another shard still names (a Put Blob that deduplicated against a blob deleted next, both
/// undelivered at a crash).
pub async fn repin(s: &Rc<Shard>, pending: Vec<(u64, RefCounts)>) -> Result<()> {
    let mut all = RefCounts::default();
    for (lsn, adds) in pending {
        all.append(adds.clone());
        s.unpin_after_delivery(lsn, adds);
    }
    let takes = all.split_by(|c| s.node.ref_owner(c)).into_iter().map(|(counter, pins)| {
        at(s, counter, move |c| async move {
            let mut table = c.refs.borrow_mut();
            for (chunk, n) in pins.iter() {
                table.pin(*chunk, *n);
            }
        })
    });
    for taken in futures::future::join_all(takes).await {
        taken?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_marking_pages_outside_every_data_area_is_refused() {
        let sbs = edgeblob_io::Superblock::new_node(&[1 << 30, 1 << 30], 1, 2).expect("superblocks");
        let layout = NodeLayout::of(&sbs).expect("a layout");
        let (area, len) = layout.data_area(1);
        let mut map = SpaceMap::default();
        map.set(Extent { offset: area, len: 8192 });
        map.set(Extent { offset: area + len - 4096, len: 4096 });
        let runs = data_runs(&layout, 1, &map).expect("pages in a data area");
        assert_eq!(runs.iter().map(|e| e.len).sum::<u64>(), 12288);
        // The first page of region 1's log (on device 1): no chunk lies there.
        map.set(Extent { offset: layout.region_start(1), len: 4096 });
        let err = data_runs(&layout, 1, &map).expect_err("a page in the log");
        assert!(err.to_string().contains("4096 bytes outside every data area"), "{err}");
    }
}
