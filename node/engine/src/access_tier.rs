//! A blob's access tier (Set Blob Tier, `x-ms-access-tier` on a write), kept as a metadata entry
//! under a name no client can write: metadata names are C# identifiers, which never begin with
//! `$`, and no answer shows such an entry. Keeping it there leaves every format that carries a
//! blob (log records, the index, the tier's packs) unchanged. Its value: the tier's name, then,
//! when Set Blob Tier set it, a tab and the time of the change in nanoseconds (format.md,
//! "Blob records").

use edgeblob_meta::model::{BlobProps, Metadata};
use edgeblob_proto::request::AccessTier;

pub const TIER_KEY: &str = "$tier";

/// The tier set on a blob, and when Set Blob Tier set it (None: the write that made the blob
/// named it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    pub tier: AccessTier,
    pub changed_ns: Option<i64>,
}

/// The blob's tier, if one was set (else Azure's answer is the account's default, inferred).
pub fn of(props: &BlobProps) -> Option<Tier> {
    let (_, v) = props.metadata.iter().find(|(k, _)| k == TIER_KEY)?;
    let (name, changed) = v.split_once('\t').map_or((v.as_str(), None), |(n, c)| (n, Some(c)));
    Some(Tier { tier: AccessTier::parse(name).ok()?, changed_ns: changed.and_then(|c| c.parse().ok()) })
}

/// Sets the tier in a blob's metadata, replacing any before.
pub fn set(md: &mut Metadata, t: Tier) {
    md.retain(|(k, _)| k != TIER_KEY);
    let value = match t.changed_ns {
        Some(ns) => format!("{}\t{ns}", t.tier.as_str()),
        None => t.tier.as_str().to_owned(),
    };
    md.push((TIER_KEY.to_owned(), value));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reserved_metadata::{client_metadata, keep_reserved};

    #[test]
    fn a_tier_round_trips_and_stays_out_of_the_clients_metadata() {
        let mut props = BlobProps { metadata: vec![("Owner".into(), "me".into())], ..BlobProps::default() };
        assert_eq!(of(&props), None);
        set(&mut props.metadata, Tier { tier: AccessTier::Cool, changed_ns: None });
        assert_eq!(of(&props), Some(Tier { tier: AccessTier::Cool, changed_ns: None }));
        let t = Tier { tier: AccessTier::Cold, changed_ns: Some(1_700_000_000_123_456_789) };
        set(&mut props.metadata, t);
        assert_eq!(of(&props), Some(t), "a second tier replaces the first");
        assert_eq!(props.metadata.len(), 2);
        assert_eq!(client_metadata(&props.metadata), vec![("Owner".to_owned(), "me".to_owned())]);
        // Set Blob Metadata replaces the client's entries and keeps the tier.
        let kept = keep_reserved(&props.metadata, vec![("New".into(), "1".into())]);
        assert_eq!(client_metadata(&kept), vec![("New".to_owned(), "1".to_owned())]);
        assert_eq!(of(&BlobProps { metadata: kept, ..BlobProps::default() }), Some(t));
    }
}
