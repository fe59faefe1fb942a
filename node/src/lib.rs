//! The edgeblob node: configuration and the Blob API over HTTP on every shard of the storage
//! engine (`edgeblob-engine`).

pub mod admin;
pub mod auth_config;
pub mod azure_events;
pub mod config;
pub mod devices;
pub mod entra;
pub mod http;
pub mod lifecycle;
pub mod link;
pub mod link_config;
pub mod link_evict;
pub mod link_flight;
pub mod link_prefetch;
pub mod link_sync;
pub mod link_upload;
pub mod notify;
pub mod preflight;
pub mod profile;
pub mod rebuild;
