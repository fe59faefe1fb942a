//! A cap on bytes per second, shared by every call of a client (uploads and downloads alike):
//! the tier must not take the link its node serves clients on. Each transfer reserves its
//! bytes' time on one clock and waits until that time starts, with up to a second of unused
//! rate saved up for a burst.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Throttle {
    bytes_per_sec: f64,
    /// When the bytes reserved so far have all been sent at the rate.
    free_at: Mutex<Instant>,
}

const BURST: Duration = Duration::from_secs(1);

impl Throttle {
    pub fn new(bytes_per_sec: u64) -> Throttle {
        Throttle { bytes_per_sec: bytes_per_sec.max(1) as f64, free_at: Mutex::new(Instant::now()) }
    }

    /// When `bytes` may start, as of `now`, reserving their share of the rate.
    fn reserve(&self, bytes: u64, now: Instant) -> Instant {
        let mut free_at = self.free_at.lock().unwrap_or_else(|p| p.into_inner());
        let start = (*free_at).max(now.checked_sub(BURST).unwrap_or(now));
        *free_at = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec);
        start
    }

    /// Waits until `bytes` may go.
    pub async fn take(&self, bytes: u64) {
        let now = Instant::now();
        let start = self.reserve(bytes, now);
        if start > now {
            tokio::time::sleep_until(start.into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_past_the_burst_wait_for_the_rate() {
        let t = Throttle::new(1000);
        let now = Instant::now() + Duration::from_secs(10);
        // A second's worth goes at once (saved up), the next second's waits a second.
        assert!(t.reserve(1000, now) <= now);
        let second = t.reserve(1000, now);
        assert!(second >= now && second <= now + Duration::from_millis(1), "{:?}", second - now);
        let third = t.reserve(1000, now);
        assert!(third >= now + Duration::from_millis(999), "{:?}", third.saturating_duration_since(now));
    }
}
