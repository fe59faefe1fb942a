//! The tier's counters for operators (the admin listener's `/metrics` and `tier status`): what
//! went up, how long reads from the tier took, and what came back damaged. Plain atomics, bumped
//! where the work is done; the remote client keeps its own (attempts by call and outcome).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the buckets of a chunk's download time: a chunk of the tier is one
/// range read of at most a few MiB, from a millisecond on a near remote to seconds over a WAN.
pub const FETCH_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// A fixed-bucket histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations in each bucket of [`FETCH_BUCKETS`] (not cumulative), and past the last.
    buckets: [AtomicU64; FETCH_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

/// A histogram at one moment, as Prometheus shows one: cumulative counts per upper bound.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    pub cumulative: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_secs: f64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = FETCH_BUCKETS.iter().position(|b| secs <= *b).unwrap_or(FETCH_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let mut cumulative = Vec::with_capacity(FETCH_BUCKETS.len());
        for (i, b) in FETCH_BUCKETS.iter().enumerate() {
            total += self.buckets[i].load(Ordering::Relaxed);
            cumulative.push((*b, total));
        }
        total += self.buckets[FETCH_BUCKETS.len()].load(Ordering::Relaxed);
        HistogramSnapshot { cumulative, count: total, sum_secs: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9 }
    }
}

#[derive(Debug, Default)]
pub struct TierStats {
    /// Time to download and open one chunk (every reader of a shared download waited it once).
    pub fetch: Histogram,
    /// Downloads that failed (after the client's retries), for any reason.
    pub fetch_errors: AtomicU64,
    /// Chunks or packs that came back damaged: a seal that did not open twice running, a chunk
    /// whose length or keyed hash is not the one recorded, a pack `tier verify` found damaged.
    pub integrity_errors: AtomicU64,
    /// Packs committed remotely by this process, and their bytes.
    pub packs_committed: AtomicU64,
    pub pack_bytes_committed: AtomicU64,
    /// Chunks written back to flash after a random read (see `super::hydrate`).
    pub promotions: AtomicU64,
    /// When the newest epoch this process committed was cut (ns since the Unix epoch; 0: none).
    pub last_epoch_cut_ns: AtomicU64,
}

impl TierStats {
    pub fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The tier as an operator sees it: the shards' chunk tables summed, the counters, and whether
/// the tier can be used.
#[derive(Debug, Clone, Default)]
pub struct TierReport {
    pub status: super::TierStatus,
    /// The node key is open (until it is, nothing goes up or comes down).
    pub ready: bool,
    /// Why not, while it is not.
    pub trouble: Option<String>,
    /// Why this node writes nothing more to the tier, once another took it over.
    pub fenced: Option<String>,
    pub fetch: HistogramSnapshot,
    pub fetch_errors: u64,
    pub integrity_errors: u64,
    pub packs_committed: u64,
    pub pack_bytes_committed: u64,
    pub promotions: u64,
    /// Seconds since the cut of the newest epoch this process committed (None: none yet).
    pub restore_point_age_secs: Option<f64>,
    pub remote: edgeblob_remote::StatsSnapshot,
}

impl TierReport {
    pub fn of(tier: &super::Tier, status: super::TierStatus) -> TierReport {
        let st = &tier.stats;
        let cut = TierStats::get(&st.last_epoch_cut_ns);
        let now = crate::shard::now_ns().max(0) as u64;
        TierReport {
            status,
            ready: tier.is_ready(),
            trouble: (!tier.is_ready()).then(|| tier.trouble()),
            fenced: tier.fenced(),
            fetch: st.fetch.snapshot(),
            fetch_errors: TierStats::get(&st.fetch_errors),
            integrity_errors: TierStats::get(&st.integrity_errors),
            packs_committed: TierStats::get(&st.packs_committed),
            pack_bytes_committed: TierStats::get(&st.pack_bytes_committed),
            promotions: TierStats::get(&st.promotions),
            restore_point_age_secs: (cut > 0).then(|| now.saturating_sub(cut) as f64 / 1e9),
            remote: tier.remote_stats(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_observation_once_in_its_bucket_and_cumulates() {
        let h = Histogram::default();
        for ms in [0.5, 3.0, 3.0, 40.0, 60_000.0] {
            h.observe(Duration::from_secs_f64(ms / 1000.0));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 5);
        let at = |b: f64| s.cumulative.iter().find(|(x, _)| *x == b).map(|(_, n)| *n);
        assert_eq!(at(0.001), Some(1));
        assert_eq!(at(0.0025), Some(1));
        assert_eq!(at(0.005), Some(3));
        assert_eq!(at(0.05), Some(4));
        assert_eq!(at(10.0), Some(4), "a minute is past the last bound, counted only in the total");
        assert!((s.sum_secs - 60.0465).abs() < 1e-6, "{}", s.sum_secs);
        assert!(s.cumulative.windows(2).all(|w| w[0].1 <= w[1].1));
    }
}
