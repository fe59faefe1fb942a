//! A shard's on-flash metadata index (format v2, issue 10): a redb database on segments of the
//! shard's own region ([`region`]). The write-ahead log stays the commit point; the index holds
//! what the log has made durable up to the LSN it records, so recovery replays only the log after
//! it. redb is synchronous: the index runs on a thread of its own beside its shard, never on the
//! shard's event loop (docs/architecture.md, "Metadata at scale").

pub mod db;
pub mod fences;
pub mod filter;
pub mod keys;
pub mod lru;
pub mod memtable;
pub mod region;
pub mod room;
pub mod shard;
pub mod space;
pub mod thread;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// The result of a device operation that completes when called. The index's devices
/// ([`region::SharedDevice`]) do their I/O inside the call (pread/pwrite, or a simulated disk),
/// so their futures are ready at the first poll; one that is not is a device this thread cannot
/// drive, which is a programming error.
pub(crate) fn blocking<T>(f: impl Future<Output = T>) -> T {
    match pin!(f).as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the index's device must complete its operations when called"),
    }
}

/// The index's tables. Keys and values are bytes; what they encode is described in
/// docs/format.md (format v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// A blob by container incarnation and name (its head alone when its blocks are apart).
    Blobs,
    /// The blocks of a blob that names too many chunks to keep them in its entry, by blob key
    /// (`keys::blocks_apart`).
    Blocks,
    /// An uncommitted block by blob and block id.
    Staged,
    /// A chunk by id: its hash, location and reference count.
    Chunks,
    /// A chunk id by content hash: where to look for a duplicate.
    Dedup,
    /// The allocator's image: the pages of chunks this shard counts, as of the index's LSN
    /// ([`space`]).
    Space,
    /// Containers, on the catalog shard.
    Catalog,
    /// The index's own facts (the LSN it covers).
    Meta,
    /// Reference changes of records the index covers that the counting shards had not logged
    /// when it was written, by LSN.
    Outbox,
    /// The packs this shard committed to the tier, by number.
    Packs,
}

impl Table {
    pub const COUNT: usize = 10;
    pub const ALL: [Table; Table::COUNT] = [
        Table::Blobs,
        Table::Blocks,
        Table::Staged,
        Table::Chunks,
        Table::Dedup,
        Table::Space,
        Table::Catalog,
        Table::Meta,
        Table::Outbox,
        Table::Packs,
    ];
}

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Entries of one key range from the index, in key order; `complete` when there are no more in
/// the range after them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub entries: Vec<Entry>,
    pub complete: bool,
}
