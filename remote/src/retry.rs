//! When to try a remote call again, and how long to wait first.

use std::time::{Duration, SystemTime};

/// What Azure's REST reference and its retry guidance call transient: a time-out, throttling
/// (429, and 503 `ServerBusy`), and server errors that may pass (500 `InternalError` or
/// `OperationTimedOut`, 502, 504).
pub fn transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The first backoff's upper bound; each later one doubles it.
    pub base: Duration,
    /// The most one backoff may be (a longer `Retry-After` still wins, within `budget`).
    pub max_backoff: Duration,
    /// The time a call may take in all, waits included: a wait that would end past it is not
    /// begun.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    /// Azure's SDKs' defaults, near enough: a few attempts over a couple of minutes.
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 8,
            base: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            budget: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (`attempt` counts from 1): a random share of the
    /// exponential bound ("full jitter", so clients that failed together do not return together),
    /// and never less than `retry_after`.
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
        let exp = self.base.saturating_mul(1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX));
        let bound = exp.min(self.max_backoff);
        let jittered = bound.mul_f64(unit.clamp(0.0, 1.0));
        jittered.max(retry_after.unwrap_or_default())
    }
}

/// `Retry-After`: seconds, or an HTTP date (then the time until it, as of `now`).
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_never_undercuts_retry_after() {
        let p = RetryPolicy {
            attempts: 10,
            base: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            budget: Duration::from_secs(60),
        };
        assert_eq!(p.backoff(1, None, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(3, None, 1.0), Duration::from_millis(400));
        assert_eq!(p.backoff(9, None, 1.0), Duration::from_secs(2), "capped");
        assert_eq!(p.backoff(40, None, 1.0), Duration::from_secs(2), "no overflow");
        assert_eq!(p.backoff(3, None, 0.5), Duration::from_millis(200), "jittered");
        assert_eq!(p.backoff(1, Some(Duration::from_secs(5)), 0.0), Duration::from_secs(5));
        assert_eq!(p.backoff(9, Some(Duration::from_millis(10)), 1.0), Duration::from_secs(2));
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after(" 17 ", now), Some(Duration::from_secs(17)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(30)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert!(transient_status(503) && transient_status(500) && !transient_status(404) && !transient_status(412));
    }
}
