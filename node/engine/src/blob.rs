//! Blob operations on the blob's owner shard. Each reads the state, checks, and commits its record
//! in one step with no await in between, so operations on one blob are serialised by the shard
//! itself. The only await is for durability; references dropped by a change are given back after
//! it, references added are taken before (format v1; v2 counts them in the index, see `finish`).

use std::collections::HashMap;
use std::rc::Rc;

use super::access_tier;
use super::reserved_metadata::keep_reserved;
use edgeblob_meta::index::shard::ForRead;
use edgeblob_meta::listing::BlobSummary;
use edgeblob_meta::model::{limits, Blob, BlobKey, BlobProps, Block, ChunkRef, ListedBlock, Metadata, StagedBlock};
use edgeblob_meta::refs::{RefCounts, RefDelta};
use edgeblob_meta::shard_store::{self, Want};
use edgeblob_meta::state::Staged;
use edgeblob_meta::store::Commit;
use edgeblob_meta::{Record, ShardMeta, ShardStore};
use edgeblob_proto::conditions::{ConditionOutcome, Conditions};

use super::error::{EngineError, Result};
use super::plan::Segments;
use super::shard::{now_ns, Shard};

/// One entry of a Put Block List body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockListItem {
    Committed(Vec<u8>),
    Uncommitted(Vec<u8>),
    Latest(Vec<u8>),
}

/// What Set Blob Properties or Set Blob Metadata changes.
#[derive(Debug, Clone)]
pub enum PropsChange {
    /// The standard properties; metadata is kept.
    Properties(Box<BlobProps>),
    /// The client's metadata; the node's own entries (the tier) are kept.
    Metadata(Metadata),
    /// Set Blob Tier: neither the ETag nor Last-Modified change (Azure's rule).
    Tier(edgeblob_proto::request::AccessTier),
    /// The node's note that this version is now the lake's version with this ETag (a linked
    /// container's upload ended): nothing a client sees changes, ETag and Last-Modified
    /// included.
    LakeSynced(String),
    /// The node's note that the lake now holds version `etag` of a blob this one replaced (an
    /// upload of an older version ended after this one was written): this one's upload must
    /// find that version there. Nothing a client sees changes.
    LakeBase(String),
    /// The node's note that this version was not uploaded because the lake's blob is not the
    /// one it replaces: why. Nothing a client sees changes.
    LakeConflict(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockList {
    /// None when the blob has no committed version.
    pub committed: Option<Vec<(Vec<u8>, u64)>>,
    pub uncommitted: Vec<(Vec<u8>, u64)>,
    pub blob_size: u64,
}

/// A resolved read.
pub struct ReadPlan {
    pub blob: BlobSummary,
    /// `[start, end)` of the blob.
    pub range: (u64, u64),
    pub segments: Segments,
}

fn check(cond: &Conditions, cur: Option<&Blob>, is_write: bool) -> Result<()> {
    match cond.check(cur.map(|b| (b.etag, b.modified_ns)), is_write) {
        ConditionOutcome::Pass => Ok(()),
        ConditionOutcome::Failed => Err(EngineError::ConditionNotMet),
        ConditionOutcome::NotModified => Err(EngineError::NotModified),
        ConditionOutcome::AlreadyExists => Err(EngineError::BlobAlreadyExists),
    }
}

/// The live incarnation of the blob's container. An operation asks before its awaits (a missing
/// container costs no read of the index) and again after them, for the id it checks against: the
/// container may have been deleted, or deleted and made anew, meanwhile.
fn container_id(s: &Shard, key: &BlobKey) -> Result<u64> {
    s.node.container(&key.account, &key.container).map(|c| c.id).ok_or(EngineError::ContainerNotFound)
}

/// Waits until the log can take a change and the entries it reads are in memory. The caller then
/// checks and commits with no await in between.
async fn ready_for(s: &Shard, wants: &[Want]) -> Result<()> {
    s.log_ready().await?;
    resident(s, wants).await
}

/// Makes `wants` resident (a read checks them with no await after this).
async fn resident(s: &Shard, wants: &[Want]) -> Result<()> {
    Ok(shard_store::resident(&s.meta, wants).await?)
}

fn blob_and_staged(key: &BlobKey) -> [Want; 2] {
    [Want::Blob(key.clone()), Want::Staged(key.clone())]
}

/// The committed blob, if it belongs to the live incarnation of its container.
fn current<'a>(s: &'a ShardMeta, key: &BlobKey, cid: u64) -> Option<&'a Blob> {
    s.blobs.get(key).filter(|b| b.container_id == cid)
}

/// A blob version's ETag and times when they are carried from elsewhere rather than stamped
/// now: an upgrade keeps each blob's identity, so that clients' cached ETags and `azcopy sync`'s
/// Last-Modified comparisons still hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamps {
    pub etag: u64,
    pub created_ns: i64,
    pub modified_ns: i64,
}

/// The next version of a blob: a new ETag, modified now, created when the first version was; or
/// the stamps it keeps (the node's clock then moves past the ETag, so later ETags stay unique).
fn next_version(
    s: &Shard,
    cid: u64,
    cur: Option<&Blob>,
    mut props: BlobProps,
    blocks: Vec<Block>,
    single_put: bool,
    keep: Option<Stamps>,
) -> Blob {
    let now = now_ns();
    // A linked container's upload must know which version of the lake this one replaces.
    crate::reserved_metadata::carry_lake_base(cur.map(|b| &b.props.metadata), &mut props.metadata);
    let stamps = match keep {
        Some(k) => {
            s.node.raise_clock(k.etag);
            k
        }
        None => Stamps { etag: s.node.stamp(), created_ns: cur.map_or(now, |b| b.created_ns), modified_ns: now },
    };
    Blob {
        container_id: cid,
        etag: stamps.etag,
        created_ns: stamps.created_ns,
        modified_ns: stamps.modified_ns,
        size: blocks.iter().map(|b| b.size).sum(),
        props,
        blocks,
        single_put,
    }
}

/// Waits until a commit is durable and settles the references it moved: `held`, those the
/// caller held for it, pass to the record; `released`, those it dropped, go back.
///
/// In format v1 the in-memory table counts every reference: the released ones are given back
/// once the record is durable. In v2 the index counts them: the record's changes travel through
/// the outbox (drops included), and what the caller held (pins) keeps the chunks until the
/// shards that count them have logged the record's additions.
async fn finish(s: &Rc<Shard>, commit: Commit, held: RefCounts, released: RefCounts) -> Result<()> {
    if s.node.counts_kept() {
        s.unpin_after_delivery(commit.lsn, held);
        commit.durable.await?;
    } else {
        commit.durable.await?;
        s.give_back_refs(released);
    }
    Ok(())
}

/// Stages a block whose chunks the caller holds references to; the references pass to the staged
/// block, or are given back on error.
pub async fn stage_block(s: &Rc<Shard>, key: BlobKey, block: Block) -> Result<()> {
    let chunks = RefCounts::of_block(&block);
    let res = stage_checked(s, key, block).await;
    match res {
        Ok(commit) => {
            let released = commit.released.clone();
            finish(s, commit, chunks, released).await
        }
        Err(e) => {
            s.give_back_refs(chunks);
            Err(e)
        }
    }
}

/// Checks a block against the blob's staged ones and commits it. Staging needs the list's ids
/// only (a list may outgrow the metadata cache: its chunk lists then stay in the index), unless
/// the block replaces one, whose chunk list it drops.
async fn stage_checked(s: &Rc<Shard>, key: BlobKey, block: Block) -> Result<Commit> {
    let mut wants = vec![Want::StagedList(key.clone())];
    loop {
        ready_for(s, &wants).await?;
        let cid = container_id(s, &key)?;
        super::ops::check_block_id(&block.id)?;
        let mut meta = s.meta.borrow_mut();
        if let Some(st) = meta.state().staged.get(&key).filter(|st| st.container_id == cid) {
            if st.id_len().is_some_and(|n| n != block.id.len()) {
                return Err(EngineError::InvalidBlobOrBlock(
                    "all block ids of a blob must have the same length".into(),
                ));
            }
            if st.len() >= limits::MAX_UNCOMMITTED_BLOCKS && !st.contains(&block.id) {
                return Err(EngineError::BlockCountExceedsLimit);
            }
        }
        let block = StagedBlock { block: block.clone(), staged_ns: now_ns() };
        let rec = Record::BlockStaged { key: key.clone(), container_id: cid, block };
        let needed = meta.wants_for(&rec);
        if !meta.all_resident(&needed) {
            wants = needed;
            continue;
        }
        return Ok(meta.commit(rec)?);
    }
}

/// Put Blob: commits a blob of one anonymous block whose chunk references the caller holds.
pub async fn put_single(
    s: &Rc<Shard>,
    key: BlobKey,
    chunks: Vec<ChunkRef>,
    size: u64,
    props: BlobProps,
    cond: Conditions,
    keep: Option<Stamps>,
) -> Result<BlobSummary> {
    let ready = ready_for(s, &blob_and_staged(&key)).await;
    let res = ready.and_then(|()| {
        let cid = container_id(s, &key)?;
        let mut meta = s.meta.borrow_mut();
        let cur = current(meta.state(), &key, cid);
        check(&cond, cur, true)?;
        let block = Block { id: Vec::new(), size, chunks: chunks.as_slice().into() };
        s.node.policy.on_commit(&key, &chunks);
        let blob = next_version(s, cid, cur, props, vec![block], true, keep);
        let summary = BlobSummary::of(&key.name, &blob);
        Ok((meta.commit(Record::BlobPut { key, blob })?, summary))
    });
    match res {
        Ok((commit, summary)) => {
            let released = commit.released.clone();
            finish(s, commit, RefCounts::one_each(chunks), released).await?;
            Ok(summary)
        }
        Err(e) => {
            s.give_back_refs(RefCounts::one_each(chunks));
            Err(e)
        }
    }
}

/// The blocks a Put Block List names, by place among the blob's committed blocks and its
/// staged ones (see `Record::BlockListPut`). Ids are looked up in hash maps: a list of 50,000
/// over 100,000 staged blocks is linear work, not 5 billion comparisons on the owner shard.
fn resolve_blocks(
    list: &[BlockListItem],
    committed: Option<&Blob>,
    staged: Option<&Staged>,
) -> Result<Vec<ListedBlock>> {
    let mut by_committed: HashMap<&[u8], u32> = HashMap::new();
    for (i, b) in committed.into_iter().flat_map(|b| b.blocks.iter()).enumerate() {
        // A committed list may hold an id more than once: the first, as a search would find.
        by_committed.entry(b.id.as_slice()).or_insert(i as u32);
    }
    let by_staged: HashMap<&[u8], u32> = staged
        .into_iter()
        .flat_map(|st| st.blocks())
        .enumerate()
        .map(|(i, sb)| (sb.block.id.as_slice(), i as u32))
        .collect();
    list.iter()
        .map(|item| {
            let found = match item {
                BlockListItem::Committed(id) => by_committed.get(id.as_slice()).map(|&i| ListedBlock::Committed(i)),
                BlockListItem::Uncommitted(id) => by_staged.get(id.as_slice()).map(|&i| ListedBlock::Uncommitted(i)),
                BlockListItem::Latest(id) => by_staged
                    .get(id.as_slice())
                    .map(|&i| ListedBlock::Uncommitted(i))
                    .or_else(|| by_committed.get(id.as_slice()).map(|&i| ListedBlock::Committed(i))),
            };
            found.ok_or_else(|| EngineError::InvalidBlockList(format!("block {item:?} does not exist")))
        })
        .collect()
}

/// Put Block List.
pub async fn commit_block_list(
    s: &Rc<Shard>,
    key: BlobKey,
    list: Vec<BlockListItem>,
    props: BlobProps,
    cond: Conditions,
    keep: Option<Stamps>,
) -> Result<BlobSummary> {
    container_id(s, &key)?;
    if list.len() > limits::MAX_COMMITTED_BLOCKS {
        return Err(EngineError::BlockListTooLong);
    }
    ready_for(s, &blob_and_staged(&key)).await?;
    let cid = container_id(s, &key)?;
    let (commit, delta, summary) = {
        let mut meta = s.meta.borrow_mut();
        let state = meta.state();
        let cur = current(state, &key, cid);
        check(&cond, cur, true)?;
        let staged = state.staged.get(&key).filter(|st| st.container_id == cid);
        let listed = resolve_blocks(&list, cur.filter(|b| !b.single_put), staged)?;
        let blocks = state.resolve_list(&key, cid, &listed).ok_or_else(|| {
            EngineError::InvalidBlockList("the blob's blocks changed while the list was resolved".into())
        })?;
        // v1 counts the references in memory: the list's are taken before the commit, the
        // dropped ones given back after it. v2 counts the record's changes in the index.
        let delta = (!s.node.counts_kept()).then(|| {
            let mut dropped = cur.map(Blob::refs).unwrap_or_default();
            dropped.append(staged.map(Staged::refs).unwrap_or_default());
            RefDelta::between(RefCounts::of_blocks(&blocks), dropped)
        });
        s.node.policy.on_commit(&key, blocks.iter().flat_map(|b| b.chunks.iter()));
        let mut blob = next_version(s, cid, cur, props, blocks, false, keep);
        let summary = BlobSummary::of(&key.name, &blob);
        let rec = match &*meta {
            // v1 logs keep the records the binaries that wrote them can read.
            ShardStore::V1(_) => Record::BlobPut { key, blob },
            // The record names the blocks; applying it resolves them again, to the same ones.
            ShardStore::V2(_) => {
                blob.blocks = Vec::new();
                Record::BlockListPut { key, blob: Box::new(blob), list: listed }
            }
        };
        let commit = meta.commit(rec)?;
        (commit, delta, summary)
    };
    let released = match delta {
        Some(delta) => {
            s.take_refs(delta.take);
            delta.give_back
        }
        None => RefCounts::default(),
    };
    finish(s, commit, RefCounts::default(), released).await?;
    Ok(summary)
}

pub async fn delete_blob(s: &Rc<Shard>, key: BlobKey, cond: Conditions) -> Result<()> {
    container_id(s, &key)?;
    ready_for(s, &blob_and_staged(&key)).await?;
    let cid = container_id(s, &key)?;
    let commit = {
        let mut meta = s.meta.borrow_mut();
        let cur = current(meta.state(), &key, cid).ok_or(EngineError::BlobNotFound)?;
        check(&cond, Some(cur), true)?;
        meta.commit(Record::BlobDelete { key })?
    };
    let released = commit.released.clone();
    finish(s, commit, RefCounts::default(), released).await
}

pub async fn set_props(s: &Rc<Shard>, key: BlobKey, change: PropsChange, cond: Conditions) -> Result<BlobSummary> {
    container_id(s, &key)?;
    ready_for(s, &[Want::Blob(key.clone())]).await?;
    let cid = container_id(s, &key)?;
    let (commit, summary) = {
        let mut meta = s.meta.borrow_mut();
        let cur = current(meta.state(), &key, cid).ok_or(EngineError::BlobNotFound)?;
        check(&cond, Some(cur), true)?;
        let mut props = cur.props.clone();
        let (mut etag, mut modified_ns) = (s.node.stamp(), now_ns());
        match change {
            PropsChange::Properties(p) => {
                props = BlobProps { metadata: props.metadata, copy: props.copy, ..*p };
                crate::reserved_metadata::changed_here(&mut props.metadata);
            }
            PropsChange::Metadata(md) => {
                props.metadata = keep_reserved(&props.metadata, md);
                crate::reserved_metadata::changed_here(&mut props.metadata);
            }
            PropsChange::Tier(tier) => {
                access_tier::set(&mut props.metadata, access_tier::Tier { tier, changed_ns: Some(modified_ns) });
                (etag, modified_ns) = (cur.etag, cur.modified_ns);
            }
            PropsChange::LakeSynced(lake) => {
                crate::reserved_metadata::set_lake_synced(&mut props.metadata, &lake);
                (etag, modified_ns) = (cur.etag, cur.modified_ns);
            }
            PropsChange::LakeBase(lake) => {
                crate::reserved_metadata::set_lake_base(&mut props.metadata, &lake);
                (etag, modified_ns) = (cur.etag, cur.modified_ns);
            }
            PropsChange::LakeConflict(why) => {
                crate::reserved_metadata::set_lake_conflict(&mut props.metadata, &why);
                (etag, modified_ns) = (cur.etag, cur.modified_ns);
            }
        }
        let mut after = cur.clone();
        after.etag = etag;
        after.modified_ns = modified_ns;
        after.props = props.clone();
        let summary = BlobSummary::of(&key.name, &after);
        (meta.commit(Record::BlobPropsSet { key, etag, modified_ns, props })?, summary)
    };
    finish(s, commit, RefCounts::default(), RefCounts::default()).await?;
    Ok(summary)
}

/// Get Blob Properties.
pub async fn head(s: &Shard, key: &BlobKey, cond: &Conditions) -> Result<BlobSummary> {
    container_id(s, key)?;
    // No bytes wanted: a blob whose blocks are apart is read as its head alone.
    let found = shard_store::for_read(&s.meta, key, |_| None, &[]).await?;
    let cid = container_id(s, key)?;
    let meta = s.meta.borrow();
    let (cur, _, _) = found_blob(meta.state(), &found, key, cid)?;
    check(cond, Some(cur), false)?;
    Ok(BlobSummary::of(&key.name, cur))
}

/// The bytes `[start, end)` that a read of `range` (an inclusive end, as in a Range header; None:
/// to the end) serves of a blob of `size` bytes.
fn span(range: Option<(u64, Option<u64>)>, size: u64) -> Result<(u64, u64)> {
    let (start, end) = match range {
        None => (0, size),
        Some((a, _)) if a >= size => return Err(EngineError::InvalidRange { size }),
        Some((a, b)) => (a, b.map_or(size, |b| b.saturating_add(1).min(size))),
    };
    if end < start {
        return Err(EngineError::InvalidRange { size });
    }
    Ok((start, end))
}

/// The committed blob a read found (if it belongs to the live incarnation of its container),
/// its blocks that the read covers, and the blob offset of the first of them.
fn found_blob<'a>(
    state: &'a ShardMeta,
    found: &'a ForRead,
    key: &BlobKey,
    cid: u64,
) -> Result<(&'a Blob, &'a [Block], u64)> {
    match found {
        ForRead::Resident => current(state, key, cid).map(|b| (b, &b.blocks[..], 0)),
        ForRead::Part { head, blocks, first } => (head.container_id == cid).then_some((&**head, &blocks[..], *first)),
    }
    .ok_or(EngineError::BlobNotFound)
}

/// Resolves a read of `[start, end]` (inclusive end, as in a Range header; None: to the end).
pub async fn resolve(
    s: &Shard,
    key: &BlobKey,
    range: Option<(u64, Option<u64>)>,
    cond: &Conditions,
) -> Result<ReadPlan> {
    container_id(s, key)?;
    let found = shard_store::for_read(&s.meta, key, move |size| span(range, size).ok(), &[]).await?;
    let cid = container_id(s, key)?;
    let meta = s.meta.borrow();
    let (cur, blocks, first) = found_blob(meta.state(), &found, key, cid)?;
    check(cond, Some(cur), false)?;
    let (start, end) = span(range, cur.size)?;
    // The index gave the blocks that cover the range (and checked that they do).
    debug_assert!(start == end || first <= start, "the blocks read begin at {first}, after {start}");
    Ok(ReadPlan {
        blob: BlobSummary::of(&key.name, cur),
        range: (start, end),
        segments: Segments::new(blocks, start.saturating_sub(first), end.saturating_sub(first)),
    })
}

/// The chunks a blob's committed blocks name, each once (for the tier's operator actions).
pub async fn chunks(s: &Shard, key: &BlobKey) -> Result<Vec<ChunkRef>> {
    resident(s, &[Want::Blob(key.clone())]).await?;
    let cid = container_id(s, key)?;
    let meta = s.meta.borrow();
    let cur = current(meta.state(), key, cid).ok_or(EngineError::BlobNotFound)?;
    let mut seen = std::collections::HashSet::new();
    Ok(cur.blocks.iter().flat_map(|b| b.chunks.iter()).filter(|c| seen.insert(c.id())).copied().collect())
}

pub async fn get_block_list(s: &Shard, key: &BlobKey) -> Result<BlockList> {
    container_id(s, key)?;
    // Ids and sizes: a staged list's chunk lists may stay in the index, and a committed blob of
    // many pieces is read whole without being made resident (`for_read`), which keeps the
    // staged list resident meanwhile: both are read with no await between, one moment's lists.
    let staged = [Want::StagedList(key.clone())];
    let found = loop {
        resident(s, &staged).await?;
        let found = shard_store::for_read(&s.meta, key, |size| Some((0, size)), &staged).await?;
        if s.meta.borrow().all_resident(&staged) {
            break found;
        }
        debug_assert!(false, "for_read keeps what it is asked to");
    };
    let cid = container_id(s, key)?;
    let meta = s.meta.borrow();
    let (cur, blocks) =
        found_blob(meta.state(), &found, key, cid).map_or((None, &[][..]), |(b, blocks, _)| (Some(b), blocks));
    debug_assert!(cur.is_none_or(|b| b.size == blocks.iter().map(|x| x.size).sum::<u64>()), "every block read");
    let staged = meta.state().staged.get(key).filter(|st| st.container_id == cid);
    if cur.is_none() && staged.is_none() {
        return Err(EngineError::BlobNotFound);
    }
    Ok(BlockList {
        committed: cur.map(|b| {
            if b.single_put {
                Vec::new()
            } else {
                blocks.iter().map(|x| (x.id.clone(), x.size)).collect()
            }
        }),
        uncommitted: staged
            .map(|st| st.held().map(|(b, _)| (b.block.id.clone(), b.block.size)).collect())
            .unwrap_or_default(),
        blob_size: cur.map_or(0, |b| b.size),
    })
}

/// Drops staged blocks not touched for 7 days (Azure's garbage collection of uncommitted blocks).
pub async fn expire_staged(s: &Rc<Shard>, now: i64) -> Result<usize> {
    let expired = |last: i64| now - last > limits::UNCOMMITTED_TTL_NS;
    // Blobs whose last block was staged long enough ago, a page of the index at a time (a blob's
    // blocks may straddle two pages: its latest is carried over).
    let mut old: Vec<BlobKey> = Vec::new();
    let mut open: Option<(BlobKey, i64)> = None;
    let mut from = Vec::new();
    loop {
        let page = shard_store::scan_staged(&s.meta, from, 4096).await?;
        for (k, _, b) in page.items {
            match &mut open {
                Some((cur, last)) if *cur == k => *last = (*last).max(b.staged_ns),
                _ => {
                    if let Some((done, last)) = open.replace((k, b.staged_ns)) {
                        if expired(last) {
                            old.push(done);
                        }
                    }
                }
            }
        }
        match page.next {
            Some(next) => from = next,
            None => break,
        }
    }
    if let Some((done, last)) = open {
        if expired(last) {
            old.push(done);
        }
    }
    // The scan reads the index; blocks staged since its last flush are in memory only.
    old.extend(
        s.meta.borrow().state().staged.iter().filter(|(_, st)| expired(st.last_staged_ns())).map(|(k, _)| k.clone()),
    );
    old.sort();
    old.dedup();
    let mut n = 0;
    for key in old {
        ready_for(s, &[Want::Staged(key.clone())]).await?;
        let commit = {
            let mut meta = s.meta.borrow_mut();
            // A block may have been staged since the scan.
            if !meta.state().staged.get(&key).is_some_and(|st| expired(st.last_staged_ns())) {
                continue;
            }
            meta.commit(Record::StagedDropped { key })?
        };
        n += 1;
        let released = commit.released.clone();
        finish(s, commit, RefCounts::default(), released).await?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(id: &[u8], size: u64) -> Block {
        Block { id: id.to_vec(), size, chunks: Vec::new().into() }
    }

    fn staged(blocks: Vec<Block>) -> Staged {
        let mut st = Staged::new(1);
        for block in blocks {
            st.stage(StagedBlock { block, staged_ns: 0 });
        }
        st
    }

    #[test]
    fn lists_resolve_committed_uncommitted_and_latest() {
        let blob = Blob {
            container_id: 1,
            etag: 1,
            created_ns: 0,
            modified_ns: 0,
            size: 3,
            props: Default::default(),
            blocks: vec![block(b"a", 1), block(b"b", 2), block(b"a", 3)],
            single_put: false,
        };
        let st = staged(vec![block(b"b", 20), block(b"c", 30)]);
        let list = [
            BlockListItem::Committed(b"a".to_vec()),
            BlockListItem::Latest(b"b".to_vec()),
            BlockListItem::Committed(b"b".to_vec()),
            BlockListItem::Uncommitted(b"c".to_vec()),
        ];
        let places = resolve_blocks(&list, Some(&blob), Some(&st)).unwrap();
        use ListedBlock::{Committed, Uncommitted};
        assert_eq!(
            places,
            [Committed(0), Uncommitted(0), Committed(1), Uncommitted(1)],
            "Latest prefers the staged block; a repeated id is its first"
        );
        for bad in [BlockListItem::Uncommitted(b"a".to_vec()), BlockListItem::Committed(b"c".to_vec())] {
            assert!(matches!(resolve_blocks(&[bad], Some(&blob), Some(&st)), Err(EngineError::InvalidBlockList(_))));
        }
    }

    #[test]
    fn the_largest_lists_resolve_over_the_most_staged_blocks() {
        let ids: Vec<Vec<u8>> = (0..100_000u32).map(|i| format!("{i:064}").into_bytes()).collect();
        let st = staged(ids.iter().map(|id| block(id, 1)).collect());
        let list: Vec<BlockListItem> =
            ids.iter().rev().take(limits::MAX_COMMITTED_BLOCKS).map(|id| BlockListItem::Latest(id.clone())).collect();
        let places = resolve_blocks(&list, None, Some(&st)).unwrap();
        assert_eq!(places.len(), limits::MAX_COMMITTED_BLOCKS);
        assert_eq!(places[0], ListedBlock::Uncommitted(99_999));
        // The record of the longest list, of the longest ids, fits the smallest log half (2 MiB).
        let blob = Blob {
            container_id: 1,
            etag: 1,
            created_ns: 0,
            modified_ns: 0,
            size: 0,
            props: Default::default(),
            blocks: Vec::new(),
            single_put: false,
        };
        let rec = Record::BlockListPut { key: BlobKey::new("a", "c", "b"), blob: Box::new(blob), list: places };
        assert!(rec.encode().len() <= 8 * limits::MAX_COMMITTED_BLOCKS + 1024, "{} bytes", rec.encode().len());
        let mut unknown = list;
        unknown.push(BlockListItem::Latest(b"nope".to_vec()));
        assert!(resolve_blocks(&unknown, None, Some(&st)).is_err(), "a list ending in an unknown id is refused whole");
    }
}
