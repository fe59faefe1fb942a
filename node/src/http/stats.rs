//! Request counters for the metrics page: by operation and status class, a latency histogram
//! per operation, bytes in and out, requests in flight, and requests turned away busy. The
//! label values are the operations' names (a fixed set, "Unknown" for requests that never
//! reached one) and the status classes: nothing a client names (a container, a blob) becomes a
//! label, so the series do not grow with use. Each shard counts in its own slot, on cache lines
//! of its own, with relaxed atomics; a scrape sums the slots.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use edgeblob_proto::op::Operation;

/// Upper bounds of the latency buckets, in seconds (the last, +Inf, is the count).
pub const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Every operation, and one slot for requests that named none.
pub const OPS: usize = Operation::ALL.len() + 1;
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

pub fn op_name(slot: usize) -> &'static str {
    Operation::ALL.get(slot).map_or("Unknown", |o| o.name())
}

fn zeros<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

#[repr(align(128))]
pub struct ShardRequests {
    requests: [[AtomicU64; 5]; OPS],
    /// Per bucket, not cumulative (the page adds them up).
    buckets: [[AtomicU64; BUCKETS.len()]; OPS],
    micros: [AtomicU64; OPS],
    count: [AtomicU64; OPS],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    in_flight: AtomicU64,
    throttled: AtomicU64,
}

impl Default for ShardRequests {
    fn default() -> Self {
        ShardRequests {
            requests: std::array::from_fn(|_| zeros()),
            buckets: std::array::from_fn(|_| zeros()),
            micros: zeros(),
            count: zeros(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }
    }
}

impl ShardRequests {
    /// One answered request: its operation (None: it named none), status, time to its answer's
    /// head, and the bytes it brought (its body, when taken) and sent.
    pub fn answered(&self, op: Option<Operation>, status: u16, micros: u64, bytes_in: u64, bytes_out: u64) {
        let slot = op.map_or(OPS - 1, Operation::index);
        let class = (usize::from(status / 100)).clamp(1, 5) - 1;
        self.requests[slot][class].fetch_add(1, Relaxed);
        let secs = micros as f64 / 1e6;
        if let Some(b) = BUCKETS.iter().position(|&le| secs <= le) {
            self.buckets[slot][b].fetch_add(1, Relaxed);
        }
        self.micros[slot].fetch_add(micros, Relaxed);
        self.count[slot].fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes_in, Relaxed);
        self.bytes_out.fetch_add(bytes_out, Relaxed);
    }

    /// A request turned away with 503 ServerBusy (no slot, or the node draining).
    pub fn throttled(&self) {
        self.throttled.fetch_add(1, Relaxed);
    }

    /// Counts a request in flight until the guard drops.
    pub fn enter(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self)
    }
}

pub struct InFlight<'a>(&'a ShardRequests);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// Every shard's slot.
#[derive(Default)]
pub struct RequestStats {
    shards: Vec<ShardRequests>,
}

/// The sum over the shards, as a scrape reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Totals {
    pub requests: Vec<[u64; 5]>,
    /// Cumulative, per operation: what falls at or below each bound.
    pub buckets: Vec<[u64; BUCKETS.len()]>,
    pub seconds: Vec<f64>,
    pub count: Vec<u64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub in_flight: u64,
    pub throttled: u64,
}

impl RequestStats {
    pub fn new(shards: usize) -> RequestStats {
        RequestStats { shards: (0..shards).map(|_| ShardRequests::default()).collect() }
    }

    pub fn shard(&self, i: usize) -> Option<&ShardRequests> {
        self.shards.get(i)
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals {
            requests: vec![[0; 5]; OPS],
            buckets: vec![[0; BUCKETS.len()]; OPS],
            seconds: vec![0.0; OPS],
            count: vec![0; OPS],
            bytes_in: 0,
            bytes_out: 0,
            in_flight: 0,
            throttled: 0,
        };
        for s in &self.shards {
            for op in 0..OPS {
                for c in 0..5 {
                    t.requests[op][c] += s.requests[op][c].load(Relaxed);
                }
                for b in 0..BUCKETS.len() {
                    t.buckets[op][b] += s.buckets[op][b].load(Relaxed);
                }
                t.seconds[op] += s.micros[op].load(Relaxed) as f64 / 1e6;
                t.count[op] += s.count[op].load(Relaxed);
            }
            t.bytes_in += s.bytes_in.load(Relaxed);
            t.bytes_out += s.bytes_out.load(Relaxed);
            t.in_flight += s.in_flight.load(Relaxed);
            t.throttled += s.throttled.load(Relaxed);
        }
        for op in t.buckets.iter_mut() {
            for b in 1..BUCKETS.len() {
                op[b] += op[b - 1];
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_operation_class_and_bucket_and_summed_over_shards() {
        let s = RequestStats::new(2);
        s.shard(0).unwrap().answered(Some(Operation::GetBlob), 200, 300, 0, 10);
        s.shard(1).unwrap().answered(Some(Operation::GetBlob), 404, 2_000, 0, 5);
        s.shard(1).unwrap().answered(None, 400, 20_000_000, 7, 1);
        {
            let _held = s.shard(0).unwrap().enter();
            assert_eq!(s.totals().in_flight, 1);
        }
        let t = s.totals();
        let g = Operation::GetBlob.index();
        assert_eq!((t.requests[g][1], t.requests[g][3]), (1, 1));
        assert_eq!(t.buckets[g][0], 1, "300 µs is within 0.5 ms");
        assert_eq!(t.buckets[g][BUCKETS.len() - 1], 2, "cumulative");
        assert_eq!(t.buckets[OPS - 1][BUCKETS.len() - 1], 0, "20 s falls only in +Inf, the count");
        assert_eq!((t.count[OPS - 1], t.requests[OPS - 1][3]), (1, 1));
        assert_eq!((t.bytes_in, t.bytes_out, t.in_flight), (7, 16, 0));
        assert_eq!(op_name(OPS - 1), "Unknown");
    }
}
