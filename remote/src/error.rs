//! What a remote call can end with. A remote's error code is passed on only when it looks like
//! one of Azure's (letters and digits): the remote's text is not ours to put in a log.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{op}: the remote answered {status} {code}")]
    Status { op: &'static str, status: u16, code: String, retry_after: Option<Duration> },
    #[error("{op}: {why}")]
    Transport { op: &'static str, why: String },
    #[error("{op}: no answer within {0:?}", .after)]
    TimedOut { op: &'static str, after: Duration },
    #[error("{op}: {why}")]
    Integrity { op: &'static str, why: String },
    #[error("{op}: the object exists already")]
    AlreadyExists { op: &'static str },
    #[error("{op}: gave up after {attempts} attempts in {elapsed:?}; the last: {last}")]
    Exhausted { op: &'static str, attempts: u32, elapsed: Duration, last: Box<RemoteError> },
}

impl RemoteError {
    /// The HTTP status the remote answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            RemoteError::Status { status, .. } => Some(*status),
            RemoteError::Exhausted { last, .. } => last.status(),
            _ => None,
        }
    }

    /// Whether trying again may succeed: what Azure documents as transient, and any failure of
    /// the exchange itself. A damaged answer is retried too (the next read may be whole).
    pub fn transient(&self) -> bool {
        match self {
            RemoteError::Status { status, .. } => crate::retry::transient_status(*status),
            RemoteError::Transport { .. } | RemoteError::TimedOut { .. } | RemoteError::Integrity { .. } => true,
            RemoteError::AlreadyExists { .. } | RemoteError::Exhausted { .. } => false,
        }
    }

    /// Whether the remote may have done what was asked (its answer was lost): what a
    /// create-only commit must check before it calls a later conflict someone else's.
    pub(crate) fn ambiguous(&self) -> bool {
        match self {
            RemoteError::Status { status, .. } => *status >= 500,
            RemoteError::Transport { .. } | RemoteError::TimedOut { .. } => true,
            _ => false,
        }
    }
}

/// An Azure error code from a header, or nothing when it does not look like one.
pub(crate) fn code_of(v: Option<&http::HeaderValue>) -> String {
    v.and_then(|v| v.to_str().ok())
        .filter(|c| c.len() <= 64 && c.chars().all(|ch| ch.is_ascii_alphanumeric()))
        .unwrap_or("")
        .to_owned()
}
