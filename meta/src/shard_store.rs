//! A shard's metadata whatever its device's format: v1 keeps all of it in memory over the log
//! ([`MetaStore`]); v2 keeps a working set over the on-flash index ([`ShardIndex`]). The engine
//! goes through this one interface: [`ensure`] what a change reads, then check and
//! [`ShardStore::commit`] with no await in between; listings and scans page through what the
//! shard holds.
//!
//! v1 stays readable and writable until `edgeblob-admin upgrade` has moved a device to v2.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;

use crate::index::keys;
use crate::index::shard::{self, HoldsIndex, IndexError, Scan, ShardIndex};
use crate::listing::{ListEntry, ListQuery};
use crate::model::{Blob, BlobKey, StagedBlock};
use crate::record::Record;
use crate::state::ShardMeta;
use crate::store::{Commit, MetaStore};
use crate::wal::AppendError;

pub use crate::index::shard::{ensure, flush_all, wants_of, IndexConfig, Want};

pub enum ShardStore {
    V1(Box<MetaStore>),
    V2(Box<ShardIndex>),
}

type Wait = Pin<Box<dyn Future<Output = Result<(), AppendError>>>>;

impl HoldsIndex for ShardStore {
    fn index(&self) -> Option<&ShardIndex> {
        match self {
            ShardStore::V1(_) => None,
            ShardStore::V2(ix) => Some(ix),
        }
    }

    fn index_mut(&mut self) -> Option<&mut ShardIndex> {
        match self {
            ShardStore::V1(_) => None,
            ShardStore::V2(ix) => Some(ix),
        }
    }
}

impl ShardStore {
    /// The entries in memory: all of them in v1; in v2 those [`ensure`]d since the last await.
    pub fn state(&self) -> &ShardMeta {
        match self {
            ShardStore::V1(m) => &m.state,
            ShardStore::V2(ix) => &ix.state,
        }
    }

    /// Appends `rec` to the log and applies it; the entries it changes must be resident
    /// ([`crate::index::shard::wants_of`]). On error nothing has changed.
    pub fn commit(&mut self, rec: Record) -> Result<Commit, AppendError> {
        match self {
            ShardStore::V1(m) => m.commit(rec),
            ShardStore::V2(ix) => ix.commit(rec),
        }
    }

    /// Resolves when a commit is unlikely to be refused as busy.
    pub fn ready(&mut self) -> Wait {
        match self {
            ShardStore::V1(m) => Box::pin(m.ready()),
            ShardStore::V2(ix) => Box::pin(ix.ready()),
        }
    }

    /// Whether a typical change would still wait for the index's flushes in flight to give it
    /// room (v2; see `ShardIndex::short_of_room`).
    pub fn short_of_room(&self) -> bool {
        self.index().is_some_and(ShardIndex::short_of_room)
    }

    /// Waits until everything committed so far is durable in the log.
    pub fn sync(&self) -> Wait {
        match self {
            ShardStore::V1(m) => Box::pin(m.sync()),
            ShardStore::V2(ix) => Box::pin(ix.sync()),
        }
    }

    /// What applying `rec` needs resident (see `ShardIndex::wants_for`): nothing more in v1.
    pub fn wants_for(&self, rec: &Record) -> Vec<Want> {
        match self {
            ShardStore::V1(_) => wants_of(rec),
            ShardStore::V2(ix) => ix.wants_for(rec),
        }
    }

    /// Whether `wants` are resident now, so that [`ensure`] has nothing to do (always in v1).
    pub fn all_resident(&self, wants: &[Want]) -> bool {
        match self {
            ShardStore::V1(_) => true,
            ShardStore::V2(ix) => ix.all_resident(wants),
        }
    }
}

/// Makes `wants` resident: at once when they are (the hot path stays small: the read of the
/// index, and its future, are boxed).
pub async fn resident(meta: &RefCell<ShardStore>, wants: &[Want]) -> Result<(), IndexError> {
    if resident_now(meta, wants) {
        return Ok(());
    }
    Box::pin(ensure(meta, wants)).await
}

/// Whether `wants` are resident now (the cache then held to its size, sparing them): the hot
/// path of [`resident`] and [`for_read`].
fn resident_now(meta: &RefCell<ShardStore>, wants: &[Want]) -> bool {
    if !meta.borrow().all_resident(wants) {
        return false;
    }
    if let Some(m) = meta.borrow_mut().index_mut() {
        m.trim(wants);
    }
    true
}

/// Finds a blob for a read of the bytes `span` gives for its size (see [`shard::for_read`]),
/// keeping `with` resident meanwhile if it is: v1 holds every blob resident.
pub async fn for_read(
    meta: &RefCell<ShardStore>,
    key: &BlobKey,
    span: impl Fn(u64) -> Option<(u64, u64)> + Clone + Send + 'static,
    with: &[Want],
) -> Result<shard::ForRead, IndexError> {
    // A read's hot path (nothing else kept) allocates nothing.
    let blob = [Want::Blob(key.clone())];
    let resident = if with.is_empty() {
        resident_now(meta, &blob)
    } else {
        resident_now(meta, &blob.iter().chain(with).cloned().collect::<Vec<_>>())
    };
    if resident {
        return Ok(shard::ForRead::Resident);
    }
    Box::pin(shard::for_read(meta, key, span, with)).await
}

/// One shard's part of a listing page.
pub async fn list_blobs(
    meta: &RefCell<ShardStore>,
    account: &str,
    container: &str,
    container_id: u64,
    q: &ListQuery,
) -> Result<(Vec<ListEntry>, bool), IndexError> {
    if let ShardStore::V1(m) = &*meta.borrow() {
        return Ok(m.state.list_blobs(account, container, container_id, q));
    }
    shard::list_blobs(meta, account, container, container_id, q).await
}

/// Every committed blob and uncommitted block of the shard, each once (see
/// [`shard::scan_all`]).
pub async fn scan_all(
    meta: &RefCell<ShardStore>,
    blob: impl FnMut(&BlobKey, &Blob),
    staged: impl FnMut(&BlobKey, u64, &StagedBlock),
) -> Result<(), IndexError> {
    if let ShardStore::V1(m) = &*meta.borrow() {
        m.state.visit(blob, staged);
        return Ok(());
    }
    shard::scan_all(meta, blob, staged).await
}

/// A page of committed blobs from index key `from` on (see [`shard::scan_blobs`]); v1 gives all
/// of them at once.
pub async fn scan_blobs(
    meta: &RefCell<ShardStore>,
    from: Vec<u8>,
    limit: usize,
) -> Result<Scan<(BlobKey, Blob)>, IndexError> {
    if let ShardStore::V1(m) = &*meta.borrow() {
        let lo = keys::parse_blob(&from).unwrap_or_else(|| BlobKey::new("", "", ""));
        let items = m.state.blobs.range(lo..).map(|(k, b)| (k.clone(), b.clone())).collect();
        return Ok(Scan { items, next: None });
    }
    shard::scan_blobs(meta, from, limit).await
}

/// A page of uncommitted blocks from index key `from` on (see [`shard::scan_staged`]); v1 gives
/// all of them at once.
pub async fn scan_staged(
    meta: &RefCell<ShardStore>,
    from: Vec<u8>,
    limit: usize,
) -> Result<Scan<(BlobKey, u64, StagedBlock)>, IndexError> {
    if let ShardStore::V1(m) = &*meta.borrow() {
        debug_assert!(from.is_empty(), "a v1 scan is one page");
        let items = m
            .state
            .staged
            .iter()
            .flat_map(|(k, st)| st.blocks().map(move |b| (k.clone(), st.container_id, b.clone())))
            .collect();
        return Ok(Scan { items, next: None });
    }
    shard::scan_staged(meta, from, limit).await
}
