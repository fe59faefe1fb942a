//! What a run measured: per operation a latency histogram (HdrHistogram, microseconds), counts
//! and bytes; errors by operation, status and Azure error code; and a timeline of one-second
//! intervals. Each request-issuing task records into its own `Recorder` (no sharing on the hot
//! path) and hands finished seconds to the shared timeline; recorders are merged at the end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::client::Failure;

/// Latencies from 1 µs to 1 hour at 3 significant digits.
pub fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, sigfig.clamp(1, 5)).expect("bounds and precision are valid")
}

#[derive(Clone)]
pub struct OpStats {
    pub hist: Histogram<u64>,
    pub bytes: u64,
    /// Entries listed (List Blobs).
    pub items: u64,
    /// Counted into the job's throughput (read-back verification is not).
    pub counted: bool,
}

impl OpStats {
    fn new(counted: bool) -> OpStats {
        OpStats { hist: histogram(3), bytes: 0, items: 0, counted }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ErrorKey {
    pub op: &'static str,
    pub status: u16,
    pub code: String,
}

/// One second of the run, all tasks together.
#[derive(Clone)]
pub struct Interval {
    pub ops: u64,
    pub bytes: u64,
    pub errors: u64,
    pub hist: Histogram<u64>,
}

impl Interval {
    fn new() -> Interval {
        Interval { ops: 0, bytes: 0, errors: 0, hist: histogram(2) }
    }

    fn add(&mut self, o: &Interval) {
        self.ops += o.ops;
        self.bytes += o.bytes;
        self.errors += o.errors;
        let _ = self.hist.add(&o.hist);
    }
}

/// What all tasks share: the timeline and live counters for the progress line.
pub struct Shared {
    pub start: Instant,
    pub ramp: Duration,
    pub timeline: Mutex<Vec<Interval>>,
    pub ops: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
}

impl Shared {
    pub fn new(start: Instant, ramp: Duration) -> Shared {
        Shared {
            start,
            ramp,
            timeline: Mutex::new(Vec::new()),
            ops: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    fn flush(&self, second: usize, iv: &Interval) {
        let mut t = self.timeline.lock().unwrap_or_else(|p| p.into_inner());
        while t.len() <= second {
            t.push(Interval::new());
        }
        t[second].add(iv);
    }
}

pub struct Recorder {
    shared: Arc<Shared>,
    pub ops: BTreeMap<&'static str, OpStats>,
    pub errors: BTreeMap<ErrorKey, u64>,
    /// First mismatching byte seen by verification: (op, blob, offset).
    pub mismatches: Vec<(String, u64)>,
    current: (usize, Interval),
}

impl Recorder {
    pub fn new(shared: Arc<Shared>) -> Recorder {
        Recorder {
            shared,
            ops: BTreeMap::new(),
            errors: BTreeMap::new(),
            mismatches: Vec::new(),
            current: (0, Interval::new()),
        }
    }

    fn interval(&mut self, at: Instant) -> &mut Interval {
        let second = at.duration_since(self.shared.start).as_secs() as usize;
        if second != self.current.0 {
            let done = std::mem::replace(&mut self.current, (second, Interval::new()));
            self.shared.flush(done.0, &done.1);
        }
        &mut self.current.1
    }

    fn in_ramp(&self, at: Instant) -> bool {
        at.duration_since(self.shared.start) < self.shared.ramp
    }

    /// A request that succeeded, `began` to now, moving `bytes` of payload.
    pub fn ok(&mut self, op: &'static str, counted: bool, began: Instant, bytes: u64, items: u64) {
        let now = Instant::now();
        let us = now.duration_since(began).as_micros().max(1) as u64;
        if counted {
            self.shared.ops.fetch_add(1, Ordering::Relaxed);
            self.shared.bytes.fetch_add(bytes, Ordering::Relaxed);
            let iv = self.interval(now);
            iv.ops += 1;
            iv.bytes += bytes;
            let _ = iv.hist.record(us);
        }
        if self.in_ramp(now) {
            return;
        }
        let s = self.ops.entry(op).or_insert_with(|| OpStats::new(counted));
        let _ = s.hist.record(us);
        s.bytes += bytes;
        s.items += items;
    }

    pub fn failed(&mut self, op: &'static str, f: &Failure) {
        let now = Instant::now();
        self.shared.errors.fetch_add(1, Ordering::Relaxed);
        self.interval(now).errors += 1;
        if self.in_ramp(now) {
            return;
        }
        *self.errors.entry(ErrorKey { op, status: f.status, code: f.code.clone() }).or_default() += 1;
    }

    /// Verification found different bytes: counted as an error of the operation.
    pub fn mismatch(&mut self, op: &'static str, blob: &str, offset: u64) {
        self.failed(op, &Failure { status: 200, code: "DataMismatch".into() });
        if self.mismatches.len() < 10 {
            self.mismatches.push((blob.to_owned(), offset));
        }
    }

    /// Hands the last second to the timeline; returns what this task measured.
    pub fn finish(mut self) -> Measured {
        let (second, iv) = std::mem::replace(&mut self.current, (0, Interval::new()));
        self.shared.flush(second, &iv);
        Measured { ops: self.ops, errors: self.errors, mismatches: self.mismatches }
    }
}

#[derive(Default, Clone)]
pub struct Measured {
    pub ops: BTreeMap<&'static str, OpStats>,
    pub errors: BTreeMap<ErrorKey, u64>,
    pub mismatches: Vec<(String, u64)>,
}

impl Measured {
    pub fn merge(&mut self, o: Measured) {
        for (op, s) in o.ops {
            match self.ops.get_mut(op) {
                Some(m) => {
                    let _ = m.hist.add(&s.hist);
                    m.bytes += s.bytes;
                    m.items += s.items;
                }
                None => {
                    self.ops.insert(op, s);
                }
            }
        }
        for (k, n) in o.errors {
            *self.errors.entry(k).or_default() += n;
        }
        self.mismatches.extend(o.mismatches);
    }
}

/// Latency figures of a histogram, in microseconds.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Latency {
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            min: h.min(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorders_merge_and_ramp_is_left_out() {
        let start = Instant::now() - Duration::from_secs(5);
        let shared = Arc::new(Shared::new(start, Duration::from_secs(2)));
        let mut a = Recorder::new(shared.clone());
        let mut b = Recorder::new(shared.clone());
        let began = Instant::now() - Duration::from_millis(3);
        a.ok("GetBlob", true, began, 100, 0);
        b.ok("GetBlob", true, began, 50, 0);
        b.failed("GetBlob", &Failure { status: 503, code: "ServerBusy".into() });
        let mut m = a.finish();
        m.merge(b.finish());
        let s = &m.ops["GetBlob"];
        assert_eq!((s.hist.len(), s.bytes), (2, 150));
        assert!(Latency::of(&s.hist).p50 >= 3000);
        assert_eq!(m.errors.values().sum::<u64>(), 1);
        let t = shared.timeline.lock().unwrap();
        assert_eq!((t[5].ops, t[5].bytes, t[5].errors), (2, 150, 1));

        // Within the ramp: on the timeline, not in the summary.
        let shared = Arc::new(Shared::new(Instant::now(), Duration::from_secs(60)));
        let mut r = Recorder::new(shared.clone());
        r.ok("PutBlob", true, Instant::now(), 10, 0);
        let m = r.finish();
        assert!(m.ops.is_empty());
        assert_eq!(shared.timeline.lock().unwrap()[0].ops, 1);
    }
}
