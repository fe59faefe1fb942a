//! The Azure Blob REST protocol, pure: no sockets, no disk, no executor. Everything here is
//! testable with byte strings: addressing and operation routing, headers, conditions, ranges,
//! XML bodies, error codes, and SharedKey verification.

pub mod addr;
pub mod batch;
pub mod bearer;
pub mod conditions;
pub mod crc64;
pub mod error_code;
pub mod headers;
pub mod op;
pub mod permission;
pub mod range;
pub mod rbac;
pub mod request;
pub mod sas;
pub mod service_props;
pub mod shared_key;
pub mod xml;

pub use conditions::{ConditionOutcome, Conditions, ETagMatch};
pub use error_code::ErrorCode;

/// The Azure form of an ETag, without quotes: `0x` and upper-case hex. Headers quote it;
/// listings of blobs do not.
pub fn etag_string(etag: u64) -> String {
    format!("0x{etag:X}")
}
