//! The Azure tier (issue 11; docs/architecture.md, "The tier"): every chunk a shard counts is
//! uploaded soon after it is written, sealed in packs (`edgeblob-tier`), to a remote Blob
//! container (`edgeblob-remote`), and its chunk entry then names its place in the pack beside its
//! local copy (`Location::Both`).
//!
//! Two halves:
//! - on each shard, [`upload::run`] finds the chunks it counts that are only local (a bounded
//!   queue of those newly counted, and a scan of its chunk table at start or when the queue
//!   overflowed), reads their stored streams, cuts them into packs and, once a pack is committed
//!   remotely, logs `Record::PackCommitted`;
//! - one tier thread ([`remote::Tier`]) holds the remote client and the node key: it seals each
//!   pack and uploads it (Put Block of 8 MiB with their MD5, then a create-only Put Block List),
//!   so that neither the sealing nor the network ever runs on a shard's thread.
//!
//! A chunk in the tier may then be released from flash ([`release`]: on request, or past the
//! capacity watermarks); a read of it finds where it is ([`released`], [`place`]) and fetches
//! just that chunk from its pack, once for every reader at the same time.

pub mod gc;
pub mod place;
pub mod release;
pub mod released;
pub mod remote;
pub mod upload;
pub mod verify;

pub use released::ReleasedMap;
pub use remote::Tier;
pub use upload::{flush, status, ShardTier, TierStatus};
