//! Whether the node takes writes and reports itself ready: one state shared by the Blob API's
//! shards (which refuse writes while draining, 503 ServerBusy with Retry-After, so clients go
//! elsewhere or come back) and the admin listener (`/health/ready` answers 503 with the reason).
//! Drains are keyed by their cause, so an operator's drain and Azure's notice of a redeploy
//! neither end nor hide each other.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub struct Lifecycle {
    /// Cause -> why, for every drain in progress.
    drains: Mutex<BTreeMap<String, String>>,
    /// Whether any drain refuses writes (read on every request: no lock).
    refusing: AtomicBool,
}

impl Lifecycle {
    /// Begins (or restates) the drain `cause`: writes are refused and readiness fails, saying
    /// `why`, until [`Lifecycle::end`] of the same cause.
    pub fn begin(&self, cause: &str, why: String) {
        let mut d = self.drains.lock().unwrap_or_else(|p| p.into_inner());
        if d.insert(cause.to_owned(), why.clone()).as_ref() != Some(&why) {
            tracing::warn!(cause, "draining: {why}");
        }
        self.refusing.store(true, Ordering::SeqCst);
    }

    pub fn end(&self, cause: &str) {
        let mut d = self.drains.lock().unwrap_or_else(|p| p.into_inner());
        if d.remove(cause).is_some() {
            tracing::info!(cause, "drain ended");
        }
        self.refusing.store(!d.is_empty(), Ordering::SeqCst);
    }

    /// Why the node is not ready, if it is not.
    pub fn not_ready(&self) -> Option<String> {
        let d = self.drains.lock().unwrap_or_else(|p| p.into_inner());
        (!d.is_empty()).then(|| d.values().cloned().collect::<Vec<_>>().join("; "))
    }

    pub fn refuses_writes(&self) -> bool {
        self.refusing.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_of_different_causes_end_separately() {
        let l = Lifecycle::default();
        assert!(!l.refuses_writes() && l.not_ready().is_none());
        l.begin("tier", "draining to the tier".into());
        l.begin("azure", "Azure scheduled Redeploy".into());
        l.end("tier");
        assert!(l.refuses_writes());
        assert_eq!(l.not_ready().as_deref(), Some("Azure scheduled Redeploy"));
        l.end("azure");
        assert!(!l.refuses_writes() && l.not_ready().is_none());
    }
}
