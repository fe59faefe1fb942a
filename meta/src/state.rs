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
///
/// A block's chunk list may be held apart, in the index only ([`Staged::hold_apart`]): a list
/// being staged into may outgrow the metadata cache (100,000 blocks of 4,000 MiB name billions
/// of chunks), and staging one more block needs only the ids, places and sizes. Only a block
/// the index holds as it is here may be held apart; whatever drops or replaces one (a commit, a
/// delete, a block staged again) needs the list whole ([`Staged::is_whole`]).
#[derive(Debug, Clone)]
pub struct Staged {
    pub container_id: u64,
    /// By id: the block and its place in `order`.
    by_id: HashMap<Vec<u8>, Slot>,
    /// Places, in staging order, and the id staged there.
    order: BTreeMap<u64, Vec<u8>>,
    next: u64,
    /// Blocks whose chunk lists are held apart.
    apart: usize,
    /// Chunk references held here (of the blocks not held apart).
    held_refs: usize,
}

#[derive(Debug, Clone)]
struct Slot {
    place: u64,
    /// With an empty chunk list while held apart.
    block: StagedBlock,
    apart: bool,
}

impl PartialEq for Staged {
    /// The same blocks in the same order, held the same way (places are numbered afresh by a
    /// replay).
    fn eq(&self, other: &Staged) -> bool {
        self.container_id == other.container_id && self.held().eq(other.held())
    }
}

impl Eq for Staged {}

impl Staged {
    pub fn new(container_id: u64) -> Staged {
        Staged { container_id, by_id: HashMap::new(), order: BTreeMap::new(), next: 0, apart: 0, held_refs: 0 }
    }

    /// Whether every block's chunk list is here.
    pub fn is_whole(&self) -> bool {
        self.apart == 0
    }

    /// Bytes of the chunk lists held here.
    pub fn chunk_bytes(&self) -> usize {
        self.held_refs * std::mem::size_of::<crate::model::ChunkRef>()
    }

    /// A block, with its chunk list (which must be here).
    pub fn find(&self, id: &[u8]) -> Option<&StagedBlock> {
        self.entry(id).map(|(_, b)| b)
    }

    pub fn contains(&self, id: &[u8]) -> bool {
        self.by_id.contains_key(id)
    }

    /// Whether a block is staged under `id` with its chunk list held apart.
    pub fn is_apart(&self, id: &[u8]) -> bool {
        self.by_id.get(id).is_some_and(|s| s.apart)
    }

    /// The blocks, in the order they were staged, with their chunk lists (the list must be
    /// whole).
    pub fn blocks(&self) -> impl ExactSizeIterator<Item = &StagedBlock> + DoubleEndedIterator {
        debug_assert!(self.is_whole(), "the chunk lists of {} staged blocks are held apart", self.apart);
        self.order.values().map(|id| &self.by_id[id].block)
    }

    /// Every block in the order it was staged, and whether its chunk list is held apart (then
    /// empty here): what a listing of ids and sizes, or a memory estimate, may read.
    pub fn held(&self) -> impl ExactSizeIterator<Item = (&StagedBlock, bool)> + DoubleEndedIterator {
        self.order.values().map(|id| &self.by_id[id]).map(|s| (&s.block, s.apart))
    }

    pub fn len(&self) -> usize {
        debug_assert_eq!(self.by_id.len(), self.order.len());
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The length of the blocks' ids (Azure requires one length for all of a blob's).
    pub fn id_len(&self) -> Option<usize> {
        self.by_id.keys().next().map(Vec::len)
    }

    /// A block, with its chunk list (which must be here), and its place in the staging order.
    pub fn entry(&self, id: &[u8]) -> Option<(u64, &StagedBlock)> {
        let s = self.by_id.get(id)?;
        debug_assert!(!s.apart, "the chunk list of staged block {id:02x?} is held apart");
        Some((s.place, &s.block))
    }

    /// The ids of every block, in no particular order.
    pub fn ids(&self) -> impl Iterator<Item = &[u8]> {
        self.by_id.keys().map(Vec::as_slice)
    }

    /// The blocks read back from where they were stored with their places; `apart`: without
    /// their chunk lists (which the caller dropped).
    pub fn from_places(container_id: u64, blocks: impl IntoIterator<Item = (u64, StagedBlock)>, apart: bool) -> Staged {
        let mut st = Staged::new(container_id);
        for (place, block) in blocks {
            debug_assert!(!apart || block.block.chunks.is_empty(), "a block held apart keeps no chunk list here");
            st.order.insert(place, block.block.id.clone());
            st.next = st.next.max(place + 1);
            st.apart += apart as usize;
            st.held_refs += block.block.chunks.len();
            let dup = st.by_id.insert(block.block.id.clone(), Slot { place, block, apart });
            debug_assert!(dup.is_none(), "one place per block id");
        }
        st
    }

    /// Stages `b` last; returns the block of the same id it replaces (whose chunk list must be
    /// here).
    pub fn stage(&mut self, b: StagedBlock) -> Option<StagedBlock> {
        let place = self.next;
        self.next += 1;
        self.order.insert(place, b.block.id.clone());
        self.held_refs += b.block.chunks.len();
        let old = self.by_id.insert(b.block.id.clone(), Slot { place, block: b, apart: false })?;
        debug_assert!(!old.apart, "a block whose chunk list is held apart was staged again");
        self.apart -= old.apart as usize;
        self.held_refs -= old.block.block.chunks.len();
        self.order.remove(&old.place);
        Some(old.block)
    }

    /// Drops the chunk lists of every block but those `changed` names from memory: the index
    /// holds each of them as it is here (they are clean). Returns whether any was dropped.
    pub fn hold_apart(&mut self, changed: impl Fn(&[u8]) -> bool) -> bool {
        debug_assert_eq!(self.held_refs, self.held().map(|(b, _)| b.block.chunks.len()).sum::<usize>());
        let before = self.apart;
        for (id, s) in self.by_id.iter_mut().filter(|(id, s)| !s.apart && !changed(id)) {
            debug_assert_eq!(id, &s.block.block.id);
            self.held_refs -= s.block.block.chunks.len();
            s.block.block.chunks = Vec::new().into();
            s.apart = true;
            self.apart += 1;
        }
        self.apart > before
    }

    /// Takes back the chunk lists held apart from `whole`, the same blocks read from the index.
    /// Returns whether the list is whole now (false: `whole` lacks a block held apart here, or
    /// has it at another place, which a list held apart as the index holds it never does).
    pub fn take_back(&mut self, whole: Staged) -> bool {
        let mut from = whole.by_id;
        for (id, s) in self.by_id.iter_mut().filter(|(_, s)| s.apart) {
            if let Some(w) = from.remove(id).filter(|w| w.place == s.place && !w.apart) {
                self.held_refs += w.block.block.chunks.len();
                s.block = w.block;
                s.apart = false;
                self.apart -= 1;
            }
        }
        self.is_whole()
    }

    /// The chunk references every block holds (each staged block has a list of its own: there is
    /// nothing to group); the list must be whole.
    pub fn refs(&self) -> RefCounts {
        debug_assert!(self.is_whole(), "the references of a staged list held apart");
        RefCounts::one_each(self.by_id.values().flat_map(|s| s.block.block.chunks.iter().copied()))
    }

    /// Takes every block out, leaving none; the list must be whole.
    pub fn take_all(&mut self) -> Vec<StagedBlock> {
        debug_assert!(self.is_whole(), "the blocks of a staged list held apart taken");
        self.order.clear();
        self.apart = 0;
        self.held_refs = 0;
        std::mem::take(&mut self.by_id).into_values().map(|s| s.block).collect()
    }

    /// When the last block was staged.
    pub fn last_staged_ns(&self) -> i64 {
        self.by_id.values().map(|s| s.block.staged_ns).max().unwrap_or(i64::MIN)
    }

    /// When the block first in id order was staged (what a listing shows of a blob with
    /// uncommitted blocks only, `listing::uncommitted_summary`); None without blocks.
    pub fn first_id_staged_ns(&self) -> Option<i64> {
        self.by_id.iter().min_by(|a, b| a.0.cmp(b.0)).map(|(_, s)| s.block.staged_ns)
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
        // A list held apart is left to the purge's step that reads it whole (the references
        // it drops are in the index).
        let staged_keys: Vec<BlobKey> = self
            .staged
            .range(lo..)
            .take_while(|(k, _)| k.account == account && k.container == name)
            .filter(|(_, s)| s.container_id == id && s.is_whole())
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
    /// incarnation it was staged into) whose chunk list is here: one held apart is the index's.
    pub fn visit(&self, mut blob: impl FnMut(&BlobKey, &Blob), mut staged: impl FnMut(&BlobKey, u64, &StagedBlock)) {
        for (k, b) in &self.blobs {
            blob(k, b);
        }
        for (k, st) in &self.staged {
            for (b, _) in st.held().filter(|(_, apart)| !apart) {
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
    fn a_staged_list_holds_its_chunk_lists_apart_and_takes_them_back_from_the_same_blocks() {
        let mut st = Staged::new(1);
        for (id, off) in [("x", 4096), ("y", 8192), ("z", 12288)] {
            st.stage(staged(id, off));
        }
        st.stage(staged("x", 16384));
        let whole = st.clone();
        assert_eq!(st.chunk_bytes(), 3 * std::mem::size_of::<ChunkRef>());
        // Changed blocks keep theirs.
        let mut part = st.clone();
        assert!(part.hold_apart(|id| id == b"y") && !part.is_whole());
        assert!(!part.is_apart(b"y") && part.is_apart(b"x") && part.is_apart(b"z"));
        assert_eq!(part.chunk_bytes(), std::mem::size_of::<ChunkRef>());
        assert!(st.hold_apart(|_| false) && !st.is_whole());
        assert!(!st.hold_apart(|_| false), "nothing more to hold apart");
        assert_eq!(st.chunk_bytes(), 0);
        // Ids, order, sizes and times stay; the chunk lists go.
        let listed: Vec<(&[u8], u64, bool)> =
            st.held().map(|(b, apart)| (b.block.id.as_slice(), b.block.size, apart)).collect();
        assert_eq!(listed, [(&b"y"[..], 10, true), (b"z", 10, true), (b"x", 10, true)]);
        assert!(st.held().all(|(b, _)| b.block.chunks.is_empty()));
        assert!(st.contains(b"z") && st.is_apart(b"z") && !st.contains(b"w"));
        assert_eq!((st.len(), st.id_len(), st.last_staged_ns()), (3, Some(1), 0));
        assert_ne!(st, whole, "held apart is not whole");
        // A new block stays whole beside them.
        let mut more = st.clone();
        more.stage(staged("w", 20480));
        assert!(!more.is_apart(b"w") && more.is_apart(b"y"));
        // The same blocks read whole give the lists back; a block at another place does not.
        let mut moved = whole.clone();
        moved.stage(staged("y", 8192));
        let mut back = st.clone();
        assert!(!back.take_back(moved), "y is at another place in what was read");
        assert!(back.is_apart(b"y") && !back.is_apart(b"z"));
        assert!(st.take_back(whole.clone()));
        assert_eq!(st, whole);
        assert_eq!(st.chunk_bytes(), whole.chunk_bytes());
        assert_eq!(st.refs(), whole.refs());
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
