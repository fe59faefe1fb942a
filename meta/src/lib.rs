//! The metadata of edgeblob: what containers, blobs and blocks exist, and where their chunks lie.
//!
//! Each shard keeps its part of the metadata in memory ([`ShardMeta`]) and makes every change
//! durable through its own write-ahead log ([`wal`]) of rkyv records, checkpointed into the other
//! half of the log area when one half fills. Nothing here knows about HTTP.

pub mod export;
pub mod footprint;
pub mod index;
pub mod listing;
pub mod model;
pub mod record;
pub mod refs;
pub mod replay;
pub mod shard_store;
pub mod state;
pub mod store;
pub mod wal;

pub use model::*;
pub use record::Record;
pub use shard_store::ShardStore;
pub use state::ShardMeta;
pub use store::{Limits, MetaError, MetaStore};
