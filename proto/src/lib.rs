//! The Azure Blob REST protocol, pure: no sockets, no disk, no executor.
//!
//! Filled by the Blob API work (routing, operations, XML, SharedKey and SAS). It starts with the
//! error codes, which the engine's errors map onto.

pub mod error_code;
