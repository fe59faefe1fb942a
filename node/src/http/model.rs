//! The protocol's typed parameters as the metadata model's values, and back: the one place the
//! HTTP layer translates between `proto` and `meta` (neither knows the other).

use edgeblob_engine::access_tier;
use edgeblob_meta::model::{BlobKey, BlobProps, PublicAccess};
use edgeblob_proto::request::{self as rq, BlobRef, BlobSettings};

pub fn blob_key(b: &BlobRef) -> BlobKey {
    BlobKey::new(&b.account, &b.container, &b.blob)
}

/// The properties a write sets (the tier it names kept with the metadata). The MD5 is the
/// client's `x-ms-blob-content-md5`.
pub fn props(s: BlobSettings) -> BlobProps {
    let h = s.headers;
    let mut metadata = s.metadata;
    if let Some(tier) = s.access_tier {
        access_tier::set(&mut metadata, access_tier::Tier { tier, changed_ns: None });
    }
    BlobProps {
        content_type: h.content_type,
        content_encoding: h.content_encoding,
        content_language: h.content_language,
        content_disposition: h.content_disposition,
        cache_control: h.cache_control,
        content_md5: h.content_md5,
        metadata,
        copy: None,
    }
}

pub fn access(a: rq::PublicAccess) -> PublicAccess {
    match a {
        rq::PublicAccess::None => PublicAccess::None,
        rq::PublicAccess::Blob => PublicAccess::Blob,
        rq::PublicAccess::Container => PublicAccess::Container,
    }
}

pub fn access_header(a: PublicAccess) -> Option<&'static str> {
    match a {
        PublicAccess::None => rq::PublicAccess::None,
        PublicAccess::Blob => rq::PublicAccess::Blob,
        PublicAccess::Container => rq::PublicAccess::Container,
    }
    .header_value()
}
