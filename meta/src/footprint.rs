//! What a shard's metadata costs in its log: the bytes a checkpoint of the state takes, kept
//! exact as records are applied, so that the store can refuse growth before a checkpoint could
//! stop fitting in a log half (which would leave the shard unable to record even a delete).
//!
//! Every entry of the state is written in a checkpoint as one record (see
//! [`ShardMeta::snapshot`]); an entry's cost is that record's frame. Committed entries
//! (containers, blobs) and staged blocks are counted apart, so that uncommitted blocks, which
//! any writer can leave behind, have a share of their own and cannot crowd out commits.

use crate::model::{Blob, BlobKey, Container};
use crate::record::Record;
use crate::state::{ShardMeta, Staged};
use crate::wal::frame_len;

/// Checkpoint bytes, by kind of entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Containers and committed blobs.
    pub committed: usize,
    /// Uncommitted blocks.
    pub staged: usize,
}

impl Footprint {
    pub fn total(&self) -> usize {
        self.committed + self.staged
    }

    fn add(&mut self, o: Footprint) {
        self.committed += o.committed;
        self.staged += o.staged;
    }

    /// `self - removed + added`; what the state costs after a change.
    pub fn after(&self, change: &Change) -> Footprint {
        let sub = |a: usize, b: usize| {
            debug_assert!(a >= b, "a change removes more than the state holds ({a} < {b})");
            a.saturating_sub(b)
        };
        Footprint {
            committed: sub(self.committed, change.removed.committed) + change.added.committed,
            staged: sub(self.staged, change.removed.staged) + change.added.staged,
        }
    }
}

/// The entries a record removes or replaces, and those it adds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Change {
    pub removed: Footprint,
    pub added: Footprint,
}

fn frame_of(rec: &Record) -> usize {
    frame_len(rec.encode().len())
}

fn container_cost(account: &str, name: &str, c: &Container) -> usize {
    frame_of(&Record::ContainerPut { account: account.to_owned(), name: name.to_owned(), container: c.clone() })
}

fn blob_cost(key: &BlobKey, blob: &Blob) -> usize {
    frame_of(&Record::BlobPut { key: key.clone(), blob: blob.clone() })
}

fn staged_cost(key: &BlobKey, st: &Staged) -> usize {
    st.blocks()
        .map(|b| frame_of(&Record::BlockStaged { key: key.clone(), container_id: st.container_id, block: b.clone() }))
        .sum()
}

impl ShardMeta {
    /// The checkpoint bytes of the whole state, entry by entry (the header page and the closing
    /// record are the store's). Linear in the state: for start-up and for checking the running
    /// count.
    pub fn footprint(&self) -> Footprint {
        let mut f = Footprint::default();
        for ((account, name), c) in &self.containers {
            f.committed += container_cost(account, name, c);
        }
        for (key, blob) in &self.blobs {
            f.committed += blob_cost(key, blob);
        }
        for (key, st) in &self.staged {
            f.staged += staged_cost(key, st);
        }
        f
    }

    /// What applying `rec` (whose encoding is `payload_len` bytes) would change, computed before
    /// it is applied. The work is proportional to the entries the record touches, which were
    /// paid for when they were written: a staged block costs one block, not its blob's list.
    pub fn change_of(&self, rec: &Record, payload_len: usize) -> Change {
        let own = frame_len(payload_len);
        let mut c = Change::default();
        match rec {
            // v2 logs only: a v1 checkpoint holds no chunk table.
            Record::CheckpointEnd
            | Record::RefsApplied { .. }
            | Record::RefsReplaced { .. }
            | Record::TierStarted { .. }
            | Record::PackCommitted { .. }
            | Record::ChunksReleased { .. }
            | Record::PackDeleted { .. }
            | Record::ChunksRestored { .. }
            | Record::ChunkHydrated { .. } => {}
            Record::ContainerPut { account, name, .. } => {
                if let Some(old) = self.containers.get(&(account.clone(), name.clone())) {
                    c.removed.committed = container_cost(account, name, old);
                }
                c.added.committed = own;
            }
            Record::ContainerDelete { account, name, id } => {
                if let Some(old) = self.containers.get(&(account.clone(), name.clone())).filter(|o| o.id == *id) {
                    c.removed.committed = container_cost(account, name, old);
                }
            }
            Record::ContainerPurge { account, name, id } => {
                let lo = BlobKey::new(account, name, "");
                let within = |k: &BlobKey| k.account == *account && k.container == *name;
                for (k, b) in self.blobs.range(lo.clone()..).take_while(|(k, _)| within(k)) {
                    if b.container_id == *id {
                        c.removed.committed += blob_cost(k, b);
                    }
                }
                for (k, st) in self.staged.range(lo..).take_while(|(k, _)| within(k)) {
                    if st.container_id == *id {
                        c.removed.staged += staged_cost(k, st);
                    }
                }
            }
            Record::BlockStaged { key, container_id, block } => {
                if let Some(st) = self.staged.get(key) {
                    if st.container_id != *container_id {
                        c.removed.staged = staged_cost(key, st);
                    } else if let Some(old) = st.find(&block.block.id) {
                        c.removed.staged = frame_of(&Record::BlockStaged {
                            key: key.clone(),
                            container_id: *container_id,
                            block: old.clone(),
                        });
                    }
                }
                c.added.staged = own;
            }
            Record::BlobPut { key, .. } => {
                c.removed = self.entry_cost(key);
                c.added.committed = own;
            }
            Record::BlockListPut { key, blob, list } => {
                c.removed = self.entry_cost(key);
                // What a checkpoint writes: the blob with its blocks. A list that does not
                // resolve changes nothing (and is refused before it is logged).
                if let Some(blocks) = self.resolve_list(key, blob.container_id, list) {
                    c.added.committed = blob_cost(key, &Blob { blocks, ..(**blob).clone() });
                } else {
                    c.removed = Footprint::default();
                }
            }
            Record::BlobPropsSet { key, etag, modified_ns, props } => {
                if let Some(old) = self.blobs.get(key) {
                    c.removed.committed = blob_cost(key, old);
                    let after = Blob { etag: *etag, modified_ns: *modified_ns, props: props.clone(), ..old.clone() };
                    c.added.committed = blob_cost(key, &after);
                }
            }
            Record::BlobDelete { key } => c.removed = self.entry_cost(key),
            Record::StagedDropped { key } => {
                c.removed.staged = self.staged.get(key).map_or(0, |st| staged_cost(key, st));
            }
        }
        c
    }

    /// A blob's committed version and its staged blocks.
    fn entry_cost(&self, key: &BlobKey) -> Footprint {
        let mut f = Footprint::default();
        if let Some(b) = self.blobs.get(key) {
            f.committed = blob_cost(key, b);
        }
        if let Some(st) = self.staged.get(key) {
            f.add(Footprint { committed: 0, staged: staged_cost(key, st) });
        }
        f
    }
}
