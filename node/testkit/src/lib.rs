//! Test support, one place for every test file: an engine on a small data file ([`engine`]),
//! what a crash test expects of the blobs it wrote ([`crash`]),
//! the `edgeblob` binary as a process and the node in this process ([`node`]), and the real
//! clients' kit and Azurite ([`peers`]), SharedKey signing ([`sign`]), and a misbehaving remote
//! in front of a real one ([`faulty`]), requests on a plain socket ([`raw`]), a stand-in for Key Vault and the managed identity
//! endpoint ([`keyvault`]), a test tenant of Entra ID with its tokens ([`entra`]). Panics are its error handling: it serves tests only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod crash;
pub mod engine;
pub mod entra;
pub mod faulty;
pub mod keyvault;
pub mod node;
pub mod peers;
pub mod raw;
pub mod serve;
pub mod sign;
