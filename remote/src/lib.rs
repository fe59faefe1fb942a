//! A client of one remote Azure Blob container: Azure itself, Azurite, or another edgeblob.
//! The Azure tier (issue 11) and linked containers (issue 14) reach the outside through it.
//!
//! It does what a tier needs of a remote and no more, each with Azure's own requests: blocks
//! with their Content-MD5, a block list committed create-only (`If-None-Match: *`), ranged reads
//! (each range's MD5 asked for and checked where Azure gives one), properties, listings by
//! prefix, deletes. Every call is retried on what Azure documents as transient (408, 429, 500,
//! 502, 503, 504, a dropped connection, a time-out), after an exponential backoff with jitter
//! and never sooner than the answer's `Retry-After`, within a budget of attempts and time; an
//! optional cap on bytes per second spans every call of one client. Why a client of our own
//! rather than `object_store` or Microsoft's crates: docs/architecture.md, "The remote client".
//!
//! Nothing here sees a user's names: the caller names remote objects.

mod client;
mod credential;
mod endpoint;
mod error;
pub mod identity;
mod json;
pub mod jwks;
pub mod keyvault;
mod retry;
mod stats;
mod throttle;
mod xml;

pub use client::{pem_roots, ListPage, Listed, Props, Remote, RemoteConfig, Replaces, WriteProps};
pub use credential::Credential;
pub use endpoint::Endpoint;
pub use error::RemoteError;
pub use retry::{parse_retry_after, RetryPolicy};
pub use stats::{Outcome, RemoteStats, StatsSnapshot};
pub use throttle::Throttle;
