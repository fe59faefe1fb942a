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

/// A blob of a linked container that is the lake's version with this ETag (fetched from the
/// lake, or uploaded to it): a blob without it was written here since.
pub const LAKE_ETAG: &str = "$lake";

/// A blob written here over one that was the lake's: the lake's ETag of that version, which
/// the upload of this one must find there (the lake's blob is not overwritten if someone else
/// changed it meanwhile). Carried over later writes until one is uploaded.
pub const LAKE_BASE: &str = "$lake-base";

/// An entry of a lake's listing kept here by `edgeblob-admin link sync` (a blob of no bytes in
/// the link's listing container): the size of the lake's blob.
pub const LAKE_SIZE: &str = "$lake-size";

/// The lake's size of a listing entry kept by a sync.
pub fn lake_size(md: &Metadata) -> Option<u64> {
    entry(md, LAKE_SIZE)?.parse().ok()
}

fn entry<'a>(md: &'a Metadata, name: &str) -> Option<&'a str> {
    md.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The lake's ETag of the version a blob is, if it is one.
pub fn lake_etag(md: &Metadata) -> Option<&str> {
    entry(md, LAKE_ETAG)
}

/// The lake's ETag a blob written here over the lake's version replaces.
pub fn lake_base(md: &Metadata) -> Option<&str> {
    entry(md, LAKE_BASE)
}

/// The metadata of a new version written here over `old`: what the lake held of the blob, if
/// anything, passes to it as its base (a version that is the lake's itself, a fetch, carries
/// its own `$lake` and takes no base).
pub fn carry_lake_base(old: Option<&Metadata>, new: &mut Metadata) {
    if lake_etag(new).is_some() {
        return;
    }
    new.retain(|(k, _)| k != LAKE_BASE);
    if let Some(base) = old.and_then(|md| lake_etag(md).or_else(|| lake_base(md))) {
        new.push((LAKE_BASE.to_owned(), base.to_owned()));
    }
}

/// A change here to the lake's version (its metadata or properties set): it is no longer the
/// lake's, and the lake's ETag becomes its base.
pub fn changed_here(md: &mut Metadata) {
    if let Some(etag) = lake_etag(md).map(str::to_owned) {
        md.retain(|(k, _)| k != LAKE_ETAG && k != LAKE_BASE);
        md.push((LAKE_BASE.to_owned(), etag));
    }
}

/// Sets the lake's version a version written here replaces (not on the lake's own version).
pub fn set_lake_base(md: &mut Metadata, etag: &str) {
    if lake_etag(md).is_none() {
        md.retain(|(k, _)| k != LAKE_BASE);
        md.push((LAKE_BASE.to_owned(), etag.to_owned()));
    }
}

/// Marks a version as the lake's version `etag` (its upload ended).
pub fn set_lake_synced(md: &mut Metadata, etag: &str) {
    md.retain(|(k, _)| k != LAKE_ETAG && k != LAKE_BASE && k != LAKE_CONFLICT);
    md.push((LAKE_ETAG.to_owned(), etag.to_owned()));
}

/// A version a write-back link did not upload because the lake's blob is not the one it
/// replaces (someone else changed it): why, in words. Kept (through restarts, and Set Blob
/// Metadata or Properties) until a new version is written here; never carried to one.
pub const LAKE_CONFLICT: &str = "$lake-conflict";

/// Why this version is in conflict with the lake, if it is.
pub fn lake_conflict(md: &Metadata) -> Option<&str> {
    entry(md, LAKE_CONFLICT)
}

/// Marks a version as in conflict with the lake.
pub fn set_lake_conflict(md: &mut Metadata, why: &str) {
    md.retain(|(k, _)| k != LAKE_CONFLICT);
    md.push((LAKE_CONFLICT.to_owned(), why.to_owned()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(pairs: &[(&str, &str)]) -> Metadata {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn a_write_over_the_lakes_version_carries_its_etag_as_the_base() {
        let mut new = md(&[("a", "1")]);
        carry_lake_base(Some(&md(&[(LAKE_ETAG, "0x1")])), &mut new);
        assert_eq!(lake_base(&new), Some("0x1"));
        // A second write before the upload keeps the same base.
        let mut newer = md(&[]);
        carry_lake_base(Some(&new), &mut newer);
        assert_eq!((lake_base(&newer), lake_etag(&newer)), (Some("0x1"), None));
        // Nothing of the lake before: no base. A fetch carries its own ETag and no base.
        let mut first = md(&[]);
        carry_lake_base(Some(&md(&[("x", "y")])), &mut first);
        carry_lake_base(None, &mut first);
        assert_eq!(lake_base(&first), None);
        let mut fetched = md(&[(LAKE_ETAG, "0x2")]);
        carry_lake_base(Some(&newer), &mut fetched);
        assert_eq!((lake_etag(&fetched), lake_base(&fetched)), (Some("0x2"), None));
        // Its metadata set here: no longer the lake's; the lake's ETag is the base.
        let mut set = md(&[(LAKE_ETAG, "0x2"), ("a", "1")]);
        changed_here(&mut set);
        assert_eq!((lake_etag(&set), lake_base(&set)), (None, Some("0x2")));
        set_lake_base(&mut set, "0x4");
        assert_eq!(lake_base(&set), Some("0x4"), "a newer lake version to replace");
        // Found in conflict: marked, and the mark is never carried to a new version.
        set_lake_conflict(&mut newer, "changed in the lake");
        assert_eq!(lake_conflict(&newer), Some("changed in the lake"));
        let mut rewritten = md(&[]);
        carry_lake_base(Some(&newer), &mut rewritten);
        assert_eq!((lake_conflict(&rewritten), lake_base(&rewritten)), (None, Some("0x1")));
        // Uploaded: the lake's ETag, no base, no conflict.
        set_lake_synced(&mut newer, "0x3");
        assert_eq!((lake_etag(&newer), lake_base(&newer), lake_conflict(&newer)), (Some("0x3"), None, None));
    }
}
