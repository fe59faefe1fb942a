//! The Azure tier's remote format (issue 11), pure: no I/O, no clock, no HTTP. What leaves the
//! node is packs of chunks, each chunk sealed on its own (AES-256-GCM under the pack's data key,
//! bound to the pack and to its place in it) so that a range read of one chunk opens and checks
//! just that chunk; the data key travels in the pack's header wrapped by the node key, and the
//! node key in one small object wrapped by the customer's key. Byte layouts: docs/format.md,
//! "Tier packs".

mod keys;
mod object;
mod pack;

pub use keys::{CustomerKey, DataKey, NodeKey, StoredNodeKey, VaultWrappedNodeKey, WrappedNodeKey};
pub use object::{open_object, seal_object, seal_object_with, ObjectKind, OBJECT_HEADER_LEN};
pub use pack::{verify, ChunkInfo, Entry, Header, PackId, PackWriter, Trailer, HEADER_LEN, TRAILER_LEN};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PackError {
    #[error("not a pack, or a damaged one: {0}")]
    Malformed(&'static str),
    /// The seal did not open: the bytes were changed, moved from another place or pack, or the
    /// key is not the one that sealed them.
    #[error("the sealed {0} does not open: damaged, misplaced, or under another key")]
    Sealed(&'static str),
    #[error("the pack's checksum does not match its bytes")]
    Checksum,
    #[error("a chunk of {got} stored bytes where its reference says {want}")]
    Length { got: usize, want: u32 },
    #[error("the system's random source failed: {0}")]
    Random(String),
}
