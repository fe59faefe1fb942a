//! The entries the node keeps in a container's or a blob's metadata for itself (a container's
//! stored access policies, `$acl`; a blob's tier, `$tier`), under names no client can write
//! (`edgeblob_proto::headers::is_reserved_metadata_name`). Keeping them there leaves every format
//! that carries metadata unchanged; these two functions keep them out of clients' hands.

use edgeblob_meta::model::Metadata;
use edgeblob_proto::headers::is_reserved_metadata_name;

/// The metadata a client wrote, without the node's own entries.
pub fn client_metadata(md: &Metadata) -> Metadata {
    md.iter().filter(|(k, _)| !is_reserved_metadata_name(k)).cloned().collect()
}

/// A client's new metadata (Set Blob / Container Metadata) with the node's own entries of the
/// old kept: a metadata change keeps a blob's tier and a container's policies.
pub fn keep_reserved(old: &Metadata, new: Metadata) -> Metadata {
    debug_assert!(new.iter().all(|(k, _)| !is_reserved_metadata_name(k)), "a client's metadata named like the node's");
    let mut out: Metadata = new.into_iter().filter(|(k, _)| !is_reserved_metadata_name(k)).collect();
    out.extend(old.iter().filter(|(k, _)| is_reserved_metadata_name(k)).cloned());
    out
}
