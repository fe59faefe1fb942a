//! What a client did: attempts by call and outcome, and bytes each way. Counted per attempt (a
//! retried call counts each try), so an operator sees the 503s a remote answered even when the
//! retries rode them out.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// How an attempt ended. The set is small and fixed (the calls are the client's own, the
/// statuses HTTP's), so a metric labelled by it cannot grow with anything a user names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// The remote answered with this status.
    Status(u16),
    /// The connection failed or dropped before an answer.
    Transport,
    /// No answer within the client's time-out.
    TimedOut,
}

impl Outcome {
    /// The label an operator reads: the status code, `transport` or `timeout`.
    pub fn label(&self) -> String {
        match self {
            Outcome::Status(s) => s.to_string(),
            Outcome::Transport => "transport".into(),
            Outcome::TimedOut => "timeout".into(),
        }
    }
}

#[derive(Debug, Default)]
pub struct RemoteStats {
    attempts: Mutex<BTreeMap<(&'static str, Outcome), u64>>,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Attempts by call (`PutBlock`, `GetBlob`, ...) and outcome.
    pub attempts: Vec<(&'static str, Outcome, u64)>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl RemoteStats {
    pub(crate) fn attempt(&self, op: &'static str, outcome: Outcome) {
        let mut a = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        *a.entry((op, outcome)).or_default() += 1;
    }

    pub(crate) fn sent(&self, bytes: u64) {
        self.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn received(&self, bytes: u64) {
        self.bytes_received.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let a = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        StatsSnapshot {
            attempts: a.iter().map(|((op, o), n)| (*op, *o, *n)).collect(),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
        }
    }
}
