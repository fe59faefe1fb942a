//! The edgeblob node: configuration, the storage engine that composes the device and metadata
//! layers into blob operations, and (with the Blob API) the HTTP server on every shard.

pub mod config;
pub mod crashload;
pub mod engine;
pub mod http;
