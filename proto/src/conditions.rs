//! Conditional operations (If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since),
//! evaluated on the blob's owner shard in the same step as the change they guard. Times compare
//! at whole seconds, the granularity of Last-Modified.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ETagMatch {
    /// `*`: any existing blob.
    Any,
    /// A list of ETags as the client sent them, quotes removed.
    Tags(Vec<String>),
}

impl ETagMatch {
    fn matches(&self, etag: Option<u64>) -> bool {
        match (self, etag) {
            (_, None) => false,
            (ETagMatch::Any, Some(_)) => true,
            (ETagMatch::Tags(tags), Some(e)) => {
                let have = crate::etag_string(e);
                tags.iter().any(|t| t.eq_ignore_ascii_case(&have))
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    pub if_match: Option<ETagMatch>,
    pub if_none_match: Option<ETagMatch>,
    /// Seconds since the Unix epoch.
    pub if_modified_since: Option<i64>,
    pub if_unmodified_since: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionOutcome {
    Pass,
    /// 412 ConditionNotMet.
    Failed,
    /// A read whose If-None-Match or If-Modified-Since failed: 304 Not Modified.
    NotModified,
    /// A write with `If-None-Match: *` on an existing blob: 409 BlobAlreadyExists.
    AlreadyExists,
}

impl Conditions {
    pub fn is_empty(&self) -> bool {
        *self == Conditions::default()
    }

    /// Evaluates against the current blob (None when it does not exist), for a read or a write.
    pub fn check(&self, current: Option<(u64, i64)>, is_write: bool) -> ConditionOutcome {
        let etag = current.map(|(e, _)| e);
        let modified = current.map(|(_, ns)| ns.div_euclid(1_000_000_000));
        if let Some(m) = &self.if_match {
            if !m.matches(etag) {
                return ConditionOutcome::Failed;
            }
        }
        if let Some(t) = self.if_unmodified_since {
            if modified.is_some_and(|m| m > t) {
                return ConditionOutcome::Failed;
            }
        }
        if let Some(m) = &self.if_none_match {
            if m.matches(etag) {
                return match (is_write, m) {
                    (true, ETagMatch::Any) => ConditionOutcome::AlreadyExists,
                    (true, _) => ConditionOutcome::Failed,
                    (false, _) => ConditionOutcome::NotModified,
                };
            }
        }
        if let Some(t) = self.if_modified_since {
            match modified {
                Some(m) if m > t => {}
                Some(_) => return if is_write { ConditionOutcome::Failed } else { ConditionOutcome::NotModified },
                None => {}
            }
        }
        ConditionOutcome::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConditionOutcome::*;

    const NS: i64 = 1_000_000_000;

    #[test]
    fn if_match() {
        let c = Conditions { if_match: Some(ETagMatch::Tags(vec!["0xAB".into()])), ..Default::default() };
        assert_eq!(c.check(Some((0xAB, 0)), false), Pass);
        assert_eq!(c.check(Some((0xAC, 0)), false), Failed);
        assert_eq!(c.check(None, true), Failed);
    }

    #[test]
    fn if_none_match_star_on_write_is_already_exists() {
        let c = Conditions { if_none_match: Some(ETagMatch::Any), ..Default::default() };
        assert_eq!(c.check(None, true), Pass);
        assert_eq!(c.check(Some((1, 0)), true), AlreadyExists);
        assert_eq!(c.check(Some((1, 0)), false), NotModified);
    }

    #[test]
    fn times_compare_at_seconds() {
        // Modified at 100.9 s: "unmodified since 100" holds, since Last-Modified shows 100.
        let cur = Some((1, 100 * NS + 900_000_000));
        let c = Conditions { if_unmodified_since: Some(100), ..Default::default() };
        assert_eq!(c.check(cur, false), Pass);
        let c = Conditions { if_unmodified_since: Some(99), ..Default::default() };
        assert_eq!(c.check(cur, false), Failed);
        let c = Conditions { if_modified_since: Some(100), ..Default::default() };
        assert_eq!(c.check(cur, false), NotModified);
        let c = Conditions { if_modified_since: Some(99), ..Default::default() };
        assert_eq!(c.check(cur, true), Pass);
    }
}
