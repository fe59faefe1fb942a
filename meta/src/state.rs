//! One shard's metadata in memory, changed only by applying records, so that live operation and
//! replay after a crash go through the same code.

use std::collections::{BTreeMap, HashMap};

use crate::model::{
    Blob, BlobKey, Block, ChunkEntry, ChunkId, ChunkRef, Container, ListedBlock, Location, PackInfo, Packed, RefChange,
    StagedBlock,
};
use crate::record::Record;
use crate::refs::RefCounts;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShardMeta {
    /// The container catalog: (account, name) -> container. Only the catalog shard has entries.
    pub containers: BTreeMap<(String, String), Container>,
    /// Committed blobs owned by this shard, in name order for listings.
    pub blobs: BTreeMap<BlobKey, Blob>,
    /// Uncommitted blocks per blob, in the order they were staged.
    pub staged: BTreeMap<BlobKey, Staged>,
    /// The chunks this shard counts (format v2), by id.
    pub chunks: BTreeMap<ChunkId, ChunkEntry>,
    /// Where to look for a duplicate: the first counted chunk with this hash that is flagged
    /// for dedup (format v2).
    pub dedup: BTreeMap<[u8; 16], ChunkId>,
    /// Per source shard, the LSN of the last record whose reference changes this shard has
    /// logged (format v2). Always resident: one entry per shard.
    pub applied: BTreeMap<u32, u64>,
    /// The shard's tier generation (`Record::TierStarted`; 0: never started). Always resident.
    pub tier_generation: u64,
    /// The packs this shard committed to the tier, by number. Always resident: a node of 100 TB
    /// in 64 MiB packs has 1.6 million of them over all its shards, about 300 bytes each.
    pub packs: BTreeMap<u64, PackInfo>,
    /// The largest stamp of any record applied here ([`Record::stamp`]): the node's clock
    /// starts past it, so ETags and container incarnations stay unique across restarts (and a
    /// clock set back).
    pub clock: u64,
}

/// A blob's uncommitted blocks, listed in the order they were staged; a block staged again
/// with an id already staged replaces it and moves to the end, as Azure's list shows the latest
/// upload last (Azurite does the same). Found by id in constant time and moved in logarithmic
/// time: a blob may hold 100,000 of them, and a linear search or shift per Put Block made staging
/// them quadratic (seconds of a shard's time).
#[derive(Debug, Clone)]
pub struct Staged {
    pub container_id: u64,
    /// By id: the block and its place in `order`.
    by_id: HashMap<Vec<u8>, (u64, StagedBlock)>,
    /// Places, in staging order, and the id staged there.
    order: BTreeMap<u64, Vec<u8>>,
    next: u64,
}

impl PartialEq for Staged {
    /// The same blocks in the same order (places are numbered afresh by a replay).
    fn eq(&self, other: &Staged) -> bool {
        self.container_id == other.container_id && self.blocks().eq(other.blocks())
    }
}

impl Eq for Staged {}

impl Staged {
    pub fn new(container_id: u64) -> Staged {
        Staged { container_id, by_id: HashMap::new(), order: BTreeMap::new(), next: 0 }
    }

    pub fn find(&self, id: &[u8]) -> Option<&StagedBlock> {
        self.by_id.get(id).map(|(_, b)| b)
    }

    /// The blocks, in the order they were staged.
    pub fn blocks(&self) -> impl ExactSizeIterator<Item = &StagedBlock> + DoubleEndedIterator {
        self.order.values().map(|id| &self.by_id[id].1)
    }

    pub fn len(&self) -> usize {
        debug_assert_eq!(self.by_id.len(), self.order.len());
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// A block and its place in the staging order.
    pub fn entry(&self, id: &[u8]) -> Option<(u64, &StagedBlock)> {
        self.by_id.get(id).map(|(place, b)| (*place, b))
    }

    /// The ids of every block, in no particular order.
    pub fn ids(&self) -> impl Iterator<Item = &[u8]> {
        self.by_id.keys().map(Vec::as_slice)
    }

    /// The blocks read back from where they were stored with their places.
    pub fn from_places(container_id: u64, blocks: impl IntoIterator<Item = (u64, StagedBlock)>) -> Staged {
        let mut st = Staged::new(container_id);
        for (place, b) in blocks {
            st.order.insert(place, b.block.id.clone());
            st.next = st.next.max(place + 1);
            let dup = st.by_id.insert(b.block.id.clone(), (place, b));
            debug_assert!(dup.is_none(), "one place per block id");
        }
        st
    }

    /// Stages `b` last; returns the block of the same id it replaces.
    pub fn stage(&mut self, b: StagedBlock) -> Option<StagedBlock> {
        let place = self.next;
        self.next += 1;
        self.order.insert(place, b.block.id.clone());
        let old = self.by_id.insert(b.block.id.clone(), (place, b))?;
        self.order.remove(&old.0);
        Some(old.1)
    }

    /// The chunk references every block holds (each staged block has a list of its own: there is
    /// nothing to group).
    pub fn refs(&self) -> RefCounts {
        RefCounts::one_each(self.by_id.values().flat_map(|(_, b)| b.block.chunks.iter().copied()))
    }

    /// Takes every block out, leaving none.
    pub fn take_all(&mut self) -> Vec<StagedBlock> {
        self.order.clear();
        std::mem::take(&mut self.by_id).into_values().map(|(_, b)| b).collect()
    }

    /// When the last block was staged.
    pub fn last_staged_ns(&self) -> i64 {
        self.by_id.values().map(|(_, b)| b.staged_ns).max().unwrap_or(i64::MIN)
    }
}

impl ShardMeta {
    /// The blocks of a block list (see `Record::BlockListPut`), from the blob's committed blocks
    /// (unless it was made by Put Blob) and its staged ones in container incarnation
    /// `container_id`; None if the list names a block that is not there.
    pub fn resolve_list(&self, key: &BlobKey, container_id: u64, list: &[ListedBlock]) -> Option<Vec<Block>> {
        let committed: &[Block] =
            self.blobs.get(key).filter(|b| b.container_id == container_id && !b.single_put).map_or(&[], |b| &b.blocks);
        let staged: Vec<&Block> = self
            .staged
            .get(key)
            .filter(|st| st.container_id == container_id)
            .map(|st| st.blocks().map(|b| &b.block).collect())
            .unwrap_or_default();
        list.iter()
            .map(|l| match *l {
                ListedBlock::Committed(i) => committed.get(i as usize).cloned(),
                ListedBlock::Uncommitted(i) => staged.get(i as usize).map(|b| (*b).clone()),
            })
            .collect()
    }

    /// Applies a record and returns the chunk references it released (references the state no
    /// longer holds). The caller gives them back only once the record is durable.
    pub fn apply(&mut self, rec: &Record) -> RefCounts {
        let mut released = RefCounts::default();
        self.clock = self.clock.max(rec.stamp());
        match rec {
            Record::CheckpointEnd => {}
            Record::ContainerPut { account, name, container } => {
                self.containers.insert((account.clone(), name.clone()), container.clone());
            }
            Record::ContainerDelete { account, name, id } => {
                let key = (account.clone(), name.clone());
                if self.containers.get(&key).is_some_and(|c| c.id == *id) {
                    self.containers.remove(&key);
                }
            }
            Record::ContainerPurge { account, name, id } => {
                self.purge_container(account, name, *id, &mut released);
            }
            Record::BlockStaged { key, container_id, block } => {
                let staged = self.staged.entry(key.clone()).or_insert_with(|| Staged::new(*container_id));
                if staged.container_id != *container_id {
                    // Left over from a deleted container of the same name.
                    released.add_blocks(staged.take_all().iter().map(|b| &b.block));
                    staged.container_id = *container_id;
                }
                if let Some(old) = staged.stage(block.clone()) {
                    released.append(RefCounts::of_block(&old.block));
                }
            }
            Record::BlobPut { key, blob } => self.put_blob(key, blob.clone(), &mut released),
            Record::BlockListPut { key, blob, list } => match self.resolve_list(key, blob.container_id, list) {
                Some(blocks) => {
                    debug_assert_eq!(blob.size, blocks.iter().map(|b| b.size).sum::<u64>(), "the size of its blocks");
                    self.put_blob(key, Blob { blocks, ..(**blob).clone() }, &mut released);
                }
                // The list was resolved against this same state before it was logged.
                None => debug_assert!(false, "a block list names a block its blob does not have"),
            },
            Record::BlobPropsSet { key, etag, modified_ns, props } => {
                if let Some(b) = self.blobs.get_mut(key) {
                    b.etag = *etag;
                    b.modified_ns = *modified_ns;
                    b.props = props.clone();
                }
            }
            Record::BlobDelete { key } => {
                if let Some(old) = self.blobs.remove(key) {
                    released.append(old.refs());
                }
                if let Some(st) = self.staged.remove(key) {
                    released.append(st.refs());
                }
            }
            Record::StagedDropped { key } => {
                if let Some(st) = self.staged.remove(key) {
                    released.append(st.refs());
                }
            }
            Record::TierStarted { generation } => {
                debug_assert!(*generation > self.tier_generation, "tier generations only grow");
                self.tier_generation = self.tier_generation.max(*generation);
            }
            Record::PackCommitted { pack, chunks, replaces } => {
                for c in chunks {
                    // A chunk freed while its pack was uploaded is garbage in the pack; one in
                    // another pack than those replaced keeps its place.
                    let Some(e) = self.chunks.get_mut(&c.id()) else { continue };
                    let packed = Packed { pack: pack.number, entry: c.entry, at: c.at };
                    let moves = |p: &Packed| replaces.contains(&p.pack);
                    e.location = match e.location {
                        Location::Local { offset } => Location::Both { offset, packed },
                        Location::Both { offset, packed: old } if moves(&old) => Location::Both { offset, packed },
                        Location::Tiered { packed: old } if moves(&old) => Location::Tiered { packed },
                        other => {
                            debug_assert!(false, "chunk {:?} in {other:?} packed again", c.id());
                            other
                        }
                    };
                }
                self.packs.insert(pack.number, (**pack).clone());
            }
            Record::PackDeleted { number } => {
                self.packs.remove(number);
            }
            Record::ChunkHydrated { chunk } => {
                if let Some(e) = self.chunks.get_mut(chunk) {
                    match e.location {
                        Location::Tiered { packed } => e.location = Location::Both { offset: chunk.offset, packed },
                        _ => debug_assert!(false, "chunk {chunk:?} hydrated from {:?}", e.location),
                    }
                }
            }
            Record::ChunksRestored { pack, chunks } => {
                debug_assert!(self.packs.contains_key(pack), "chunks restored into pack {pack}, not known");
                for c in chunks {
                    let packed = Packed { pack: *pack, entry: c.entry, at: c.at };
                    // A chunk in two packs (a repack's race with the export) keeps the first.
                    self.chunks.entry(c.chunk.id()).or_insert(ChunkEntry {
                        chunk: c.chunk,
                        location: Location::Tiered { packed },
                        refs: 0,
                    });
                }
            }
            Record::ChunksReleased { chunks } => {
                for id in chunks {
                    let Some(e) = self.chunks.get_mut(id) else { continue };
                    match e.location {
                        Location::Both { packed, .. } => e.location = Location::Tiered { packed },
                        _ => debug_assert!(false, "chunk {id:?} released from {:?}", e.location),
                    }
                }
            }
            Record::RefsApplied { source, lsn, changes } => {
                debug_assert!(self.refs_pending(*source, *lsn), "shard {source}'s record {lsn} logged twice");
                let last = self.applied.entry(*source).or_insert(*lsn);
                *last = (*last).max(*lsn);
                for c in changes {
                    self.change_refs(c);
                }
            }
            Record::RefsReplaced { sources, changes } => {
                for (source, lsn) in sources {
                    self.applied.insert(*source, *lsn);
                }
                for c in changes {
                    self.change_refs(c);
                }
            }
        }
        released
    }

    /// The references a record, once applied, added: those of the blob or block it put.
    pub fn added_by(&self, rec: &Record) -> RefCounts {
        match rec {
            Record::BlobPut { blob, .. } => blob.refs(),
            Record::BlockListPut { key, .. } => self.blobs.get(key).map(Blob::refs).unwrap_or_default(),
            Record::BlockStaged { block, .. } => RefCounts::of_block(&block.block),
            _ => RefCounts::default(),
        }
    }

    /// Whether record `lsn` of shard `source` still has reference changes to log here.
    pub fn refs_pending(&self, source: u32, lsn: u64) -> bool {
        self.applied.get(&source).is_none_or(|last| lsn > *last)
    }

    /// Applies one chunk's reference change to the chunk table: the chunk gains its entry with
    /// its first reference (the change describes it), loses it with its last, and is the dedup
    /// candidate for its hash while it is counted.
    fn change_refs(&mut self, c: &RefChange) {
        let id = c.chunk.id();
        let entry = self.chunks.entry(id).or_insert_with(|| ChunkEntry {
            chunk: c.chunk,
            location: Location::Local { offset: c.chunk.offset },
            refs: 0,
        });
        debug_assert_eq!(entry.chunk, c.chunk, "one chunk per id");
        let refs = (entry.refs as u64 + c.add as u64).checked_sub(c.drop as u64);
        debug_assert!(refs.is_some(), "more references dropped than held: {c:?} on {entry:?}");
        entry.refs = refs.unwrap_or(0).min(u32::MAX as u64) as u32;
        if entry.refs == 0 {
            self.chunks.remove(&id);
            if self.dedup.get(&id.hash) == Some(&id) {
                self.dedup.remove(&id.hash);
            }
        } else if c.chunk.is_dedup() {
            self.dedup.entry(id.hash).or_insert(id);
        }
    }

    /// The chunks a record freed, once applied: for `RefsApplied`, the chunks it changed that no
    /// longer have an entry (their space can be reused once the record is durable).
    pub fn freed_by(&self, rec: &Record) -> Vec<ChunkRef> {
        match rec {
            Record::RefsApplied { changes, .. } | Record::RefsReplaced { changes, .. } => {
                changes.iter().filter(|c| !self.chunks.contains_key(&c.chunk.id())).map(|c| c.chunk).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Replaces a blob whole and drops its staged blocks.
    fn put_blob(&mut self, key: &BlobKey, blob: Blob, released: &mut RefCounts) {
        if let Some(old) = self.blobs.insert(key.clone(), blob) {
            released.append(old.refs());
        }
        if let Some(st) = self.staged.remove(key) {
            released.append(st.refs());
        }
    }

    fn purge_container(&mut self, account: &str, name: &str, id: u64, released: &mut RefCounts) {
        let lo = BlobKey::new(account, name, "");
        let blob_keys: Vec<BlobKey> = self
            .blobs
            .range(lo.clone()..)
            .take_while(|(k, _)| k.account == account && k.container == name)
            .filter(|(_, b)| b.container_id == id)
            .map(|(k, _)| k.clone())
            .collect();
        for k in blob_keys {
            if let Some(b) = self.blobs.remove(&k) {
                released.append(b.refs());
            }
        }
        let staged_keys: Vec<BlobKey> = self
            .staged
            .range(lo..)
            .take_while(|(k, _)| k.account == account && k.container == name)
            .filter(|(_, s)| s.container_id == id)
            .map(|(k, _)| k.clone())
            .collect();
        for k in staged_keys {
            if let Some(s) = self.staged.remove(&k) {
                released.append(s.refs());
            }
        }
    }

    /// Drops blobs and staged blocks whose container incarnation is not live (the catalog says
    /// which are). Used after recovery, when a crash came between a container's deletion and the
    /// purge on this shard.
    pub fn drop_orphans(&mut self, live: &dyn Fn(&BlobKey, u64) -> bool) -> usize {
        let before = self.blobs.len() + self.staged.len();
        self.blobs.retain(|k, b| live(k, b.container_id));
        self.staged.retain(|k, s| live(k, s.container_id));
        before - self.blobs.len() - self.staged.len()
    }

    /// Calls `blob` with every blob and `staged` with every uncommitted block (and the container
    /// incarnation it was staged into).
    pub fn visit(&self, mut blob: impl FnMut(&BlobKey, &Blob), mut staged: impl FnMut(&BlobKey, u64, &StagedBlock)) {
        for (k, b) in &self.blobs {
            blob(k, b);
        }
        for (k, st) in &self.staged {
            for b in st.blocks() {
                staged(k, st.container_id, b);
            }
        }
    }

    /// The records that rebuild this state from nothing: the body of a checkpoint.
    pub fn snapshot(&self) -> Vec<Record> {
        let mut out = Vec::with_capacity(self.containers.len() + self.blobs.len() + self.staged.len() + 1);
        for ((account, name), c) in &self.containers {
            out.push(Record::ContainerPut { account: account.clone(), name: name.clone(), container: c.clone() });
        }
        for (key, blob) in &self.blobs {
            out.push(Record::BlobPut { key: key.clone(), blob: blob.clone() });
        }
        // Staged after blobs: a BlobPut drops the staged blocks of its key.
        for (key, st) in &self.staged {
            for b in st.blocks() {
                out.push(Record::BlockStaged { key: key.clone(), container_id: st.container_id, block: b.clone() });
            }
        }
        out.push(Record::CheckpointEnd);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BlobProps, Block, ChunkRef};

    fn chunk(offset: u64) -> ChunkRef {
        ChunkRef { hash: [offset as u8; 16], offset, stored_len: 10, len: 10, flags: 0 }
    }

    fn staged(id: &str, off: u64) -> StagedBlock {
        StagedBlock {
            block: Block { id: id.as_bytes().to_vec(), size: 10, chunks: vec![chunk(off)].into() },
            staged_ns: 0,
        }
    }

    fn blob(offs: &[u64]) -> Blob {
        Blob {
            container_id: 1,
            etag: 1,
            created_ns: 0,
            modified_ns: 0,
            size: 10 * offs.len() as u64,
            props: BlobProps::default(),
            blocks: offs.iter().map(|&o| Block { id: vec![], size: 10, chunks: vec![chunk(o)].into() }).collect(),
            single_put: false,
        }
    }

    #[test]
    fn restaging_a_block_releases_the_old_one() {
        let mut m = ShardMeta::default();
        let key = BlobKey::new("a", "c", "b");
        assert!(m
            .apply(&Record::BlockStaged { key: key.clone(), container_id: 1, block: staged("x", 4096) })
            .is_empty());
        m.apply(&Record::BlockStaged { key: key.clone(), container_id: 1, block: staged("y", 12288) });
        let rel = m.apply(&Record::BlockStaged { key: key.clone(), container_id: 1, block: staged("x", 8192) });
        assert_eq!(rel, RefCounts::one_each([chunk(4096)]));
        let ids: Vec<&[u8]> = m.staged[&key].blocks().map(|b| b.block.id.as_slice()).collect();
        assert_eq!(ids, vec![&b"y"[..], b"x"], "a block staged again is listed last");
        assert_eq!(m.staged[&key].find(b"x").unwrap().block.chunks[..], [chunk(8192)]);
    }

    #[test]
    fn commit_releases_old_version_and_staged_blocks() {
        let mut m = ShardMeta::default();
        let key = BlobKey::new("a", "c", "b");
        m.apply(&Record::BlobPut { key: key.clone(), blob: blob(&[4096]) });
        m.apply(&Record::BlockStaged { key: key.clone(), container_id: 1, block: staged("y", 8192) });
        let rel = m.apply(&Record::BlobPut { key: key.clone(), blob: blob(&[12288]) });
        assert_eq!(rel, RefCounts::one_each([chunk(4096), chunk(8192)]));
        assert!(m.staged.is_empty());
    }

    #[test]
    fn purge_drops_only_that_incarnation() {
        let mut m = ShardMeta::default();
        m.apply(&Record::BlobPut { key: BlobKey::new("a", "c", "1"), blob: blob(&[4096]) });
        let mut other = blob(&[8192]);
        other.container_id = 2;
        m.apply(&Record::BlobPut { key: BlobKey::new("a", "c", "2"), blob: other });
        m.apply(&Record::BlobPut { key: BlobKey::new("a", "d", "1"), blob: blob(&[12288]) });
        let rel = m.apply(&Record::ContainerPurge { account: "a".into(), name: "c".into(), id: 1 });
        assert_eq!(rel, RefCounts::one_each([chunk(4096)]));
        assert_eq!(m.blobs.len(), 2);
    }

    #[test]
    fn snapshot_rebuilds_the_same_state() {
        let mut m = ShardMeta::default();
        let key = BlobKey::new("a", "c", "b");
        m.apply(&Record::BlobPut { key: key.clone(), blob: blob(&[4096, 8192]) });
        m.apply(&Record::BlockStaged { key: key.clone(), container_id: 1, block: staged("z", 16384) });
        m.apply(&Record::BlockStaged {
            key: BlobKey::new("a", "c", "other"),
            container_id: 1,
            block: staged("q", 20480),
        });
        let mut back = ShardMeta::default();
        for r in m.snapshot() {
            back.apply(&r);
        }
        assert_eq!(back, m);
    }

    #[test]
    fn a_block_list_names_blocks_by_place_and_shares_their_chunks() {
        use crate::model::ListedBlock::{Committed, Uncommitted};
        let mut m = ShardMeta::default();
        let key = BlobKey::new("a", "c", "b");
        m.apply(&Record::BlobPut { key: key.clone(), blob: Blob { single_put: false, ..blob(&[4096, 8192]) } });
        m.apply(&Record::BlockStaged { key: key.clone(), container_id: 1, block: staged("x", 12288) });
        m.apply(&Record::BlockStaged { key: key.clone(), container_id: 1, block: staged("y", 16384) });
        let list = vec![Uncommitted(1), Committed(0), Uncommitted(1), Uncommitted(1)];
        let head = Blob { size: 40, blocks: Vec::new(), ..blob(&[]) };
        let rec = Record::BlockListPut { key: key.clone(), blob: Box::new(head), list };
        let rel = m.apply(&rec);
        let b = &m.blobs[&key];
        let offsets: Vec<u64> = b.chunks().map(|c| c.offset).collect();
        assert_eq!(offsets, [16384, 4096, 16384, 16384]);
        assert!(std::sync::Arc::ptr_eq(&b.blocks[0].chunks, &b.blocks[3].chunks), "one list, shared");
        let mut want = RefCounts::default();
        want.add(chunk(16384), 3);
        want.add(chunk(4096), 1);
        assert_eq!(b.refs(), want);
        // The old version's two chunks, then the staged blocks' (in no set order).
        let mut released: Vec<u64> = rel.iter().map(|(c, n)| c.offset * 10 + *n as u64).collect();
        released.sort();
        assert_eq!(released, [40961, 81921, 122881, 163841]);
        assert!(m.staged.is_empty());
        // Places past the end do not resolve.
        assert_eq!(m.resolve_list(&key, 1, &[Committed(4)]), None);
        assert_eq!(m.resolve_list(&key, 1, &[Uncommitted(0)]), None);
        assert_eq!(m.resolve_list(&key, 2, &[Committed(0)]), None, "another incarnation's blob");
    }

    #[test]
    fn reference_changes_count_chunks_once_per_source_lsn_and_free_at_zero() {
        let mut m = ShardMeta::default();
        let dedup = |off| ChunkRef { flags: crate::model::CHUNK_DEDUP, ..chunk(off) };
        let (a, twin) = (dedup(4096), ChunkRef { offset: 8192, ..dedup(4096) });
        let refs = |source, lsn, changes: Vec<(ChunkRef, u32, u32)>| Record::RefsApplied {
            source,
            lsn,
            changes: changes.into_iter().map(|(chunk, add, drop)| RefChange { chunk, add, drop }).collect(),
        };
        assert!(m.refs_pending(1, 1));
        let r = refs(1, 5, vec![(a, 2, 0), (twin, 1, 0)]);
        m.apply(&r);
        assert!(m.freed_by(&r).is_empty());
        assert_eq!(m.chunks[&a.id()].refs, 2);
        assert_eq!(m.dedup[&a.hash], a.id(), "the first chunk counted with a hash is its candidate");
        assert!(!m.refs_pending(1, 5) && m.refs_pending(1, 6) && m.refs_pending(2, 1), "per source");
        // Added and dropped by one record: the count moves by the difference.
        m.apply(&refs(2, 1, vec![(a, 1, 2)]));
        assert_eq!(m.chunks[&a.id()].refs, 1);
        let r = refs(1, 6, vec![(a, 0, 1)]);
        m.apply(&r);
        assert_eq!(m.freed_by(&r), vec![a], "its last reference frees it");
        assert!(!m.chunks.contains_key(&a.id()) && !m.dedup.contains_key(&a.hash), "and its candidacy");
        // A twin counted before is not promoted: a later chunk with the hash becomes it.
        m.apply(&refs(1, 7, vec![(twin, 1, 0)]));
        assert_eq!((m.chunks[&twin.id()].refs, m.dedup.get(&a.hash)), (2, Some(&twin.id())));
        assert_eq!(m.applied, BTreeMap::from([(1, 7), (2, 1)]));
    }

    #[test]
    fn replaced_sources_start_their_lsns_over_and_their_references_are_swapped_at_once() {
        let mut m = ShardMeta::default();
        let (a, b) = (chunk(4096), chunk(8192));
        let change = |chunk, add, drop| RefChange { chunk, add, drop };
        m.apply(&Record::RefsApplied { source: 1, lsn: 900, changes: vec![change(a, 3, 0), change(b, 1, 0)] });
        m.apply(&Record::RefsApplied { source: 0, lsn: 4, changes: vec![change(a, 1, 0)] });
        // Source 1's device was replaced: its log starts over at 12; what it counted here (3 of
        // a, 1 of b) is swapped for what was restored (1 of a).
        let r = Record::RefsReplaced { sources: vec![(1, 12)], changes: vec![change(a, 1, 3), change(b, 0, 1)] };
        m.apply(&r);
        assert_eq!(m.applied, BTreeMap::from([(0, 4), (1, 12)]), "set, not raised");
        assert!(m.refs_pending(1, 13) && !m.refs_pending(1, 12));
        assert_eq!(m.chunks[&a.id()].refs, 2, "source 0's reference and the restored one");
        assert_eq!(m.freed_by(&r), vec![b], "named only by what was lost");
    }

    #[test]
    fn a_committed_pack_places_the_chunks_still_counted_and_local() {
        use crate::model::{PackInfo, PackedChunk};
        let mut m = ShardMeta::default();
        let (a, b, gone) = (chunk(4096), chunk(8192), chunk(12288));
        let change = |chunk, add, drop| RefChange { chunk, add, drop };
        m.apply(&Record::RefsApplied { source: 0, lsn: 1, changes: vec![change(a, 1, 0), change(b, 2, 0)] });
        m.apply(&Record::TierStarted { generation: 4 });
        assert_eq!(m.tier_generation, 4);
        let pack = PackInfo {
            number: 9,
            generation: 4,
            shard: 0,
            len: 1000,
            entries: 3,
            committed_ns: 5,
            header: vec![1; 256],
        };
        let packed = |c: ChunkRef, entry, at| PackedChunk { offset: c.offset, hash: c.hash, entry, at };
        let rec = Record::PackCommitted {
            pack: Box::new(pack.clone()),
            chunks: vec![packed(a, 0, 256), packed(gone, 1, 282), packed(b, 2, 308)],
            replaces: vec![],
        };
        m.apply(&rec);
        assert_eq!(
            m.chunks[&a.id()].location,
            Location::Both { offset: 4096, packed: Packed { pack: 9, entry: 0, at: 256 } }
        );
        assert_eq!(m.chunks[&b.id()].location.packed(), Some(Packed { pack: 9, entry: 2, at: 308 }));
        assert_eq!((m.chunks[&b.id()].location.local(), m.chunks[&b.id()].refs), (Some(8192), 2));
        assert!(!m.chunks.contains_key(&gone.id()), "a chunk freed meanwhile gains no entry");
        assert_eq!(m.packs[&9], pack);
        // A repack moves the live chunks of the packs it replaces, whether released or not.
        m.apply(&Record::ChunksReleased { chunks: vec![b.id()] });
        let again = PackInfo { number: 10, ..pack.clone() };
        m.apply(&Record::PackCommitted {
            pack: Box::new(again),
            chunks: vec![packed(b, 0, 256), packed(a, 1, 282)],
            replaces: vec![9],
        });
        assert_eq!(m.chunks[&b.id()].location, Location::Tiered { packed: Packed { pack: 10, entry: 0, at: 256 } });
        assert_eq!(m.chunks[&a.id()].location.packed(), Some(Packed { pack: 10, entry: 1, at: 282 }));
        m.apply(&Record::PackDeleted { number: 9 });
        assert_eq!(m.packs.keys().collect::<Vec<_>>(), [&10]);
        // Its last reference dropped, a packed chunk goes and frees its local space as any.
        let r = Record::RefsApplied { source: 0, lsn: 2, changes: vec![change(a, 0, 1)] };
        m.apply(&r);
        assert_eq!(m.freed_by(&r), vec![a]);
    }
}
