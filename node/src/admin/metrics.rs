//! The Prometheus text exposition format (version 0.0.4), for the few families the node
//! exports. Every label value comes from a fixed set (a call's name, a status code, a place):
//! nothing a client names becomes a series.

use std::fmt::Write;

use edgeblob_engine::tier::stats::{HistogramSnapshot, TierReport};

/// A page of metric families, each written whole (HELP, TYPE, samples) once.
#[derive(Default)]
pub struct Page {
    out: String,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn labels(l: &[(&str, &str)]) -> String {
    if l.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    format!("{{{}}}", inner.join(","))
}

/// A sample value as Prometheus reads it (integers without a fraction).
fn value(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl Page {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// A family of one kind (`counter` or `gauge`) with its samples.
    pub fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[(Vec<(&str, &str)>, f64)]) {
        self.head(name, kind, help);
        for (l, v) in samples {
            let _ = writeln!(self.out, "{name}{} {}", labels(l), value(*v));
        }
    }

    pub fn one(&mut self, name: &str, kind: &str, help: &str, v: f64) {
        self.family(name, kind, help, &[(Vec::new(), v)]);
    }

    pub fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot) {
        self.head(name, "histogram", help);
        for (le, n) in &h.cumulative {
            let _ = writeln!(self.out, "{name}_bucket{{le=\"{le}\"}} {n}");
        }
        let _ = writeln!(self.out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(self.out, "{name}_sum {}", h.sum_secs);
        let _ = writeln!(self.out, "{name}_count {}", h.count);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// The Blob API's requests: by operation and status class, latency per operation, bytes, in
/// flight, turned away busy. Every operation's series are written, counted or not, so the set of
/// series is fixed.
pub fn requests(p: &mut Page, t: &crate::http::stats::Totals) {
    use crate::http::stats::{op_name, BUCKETS, CLASSES, OPS};
    let mut samples = Vec::with_capacity(OPS * CLASSES.len());
    for op in 0..OPS {
        for (c, class) in CLASSES.iter().enumerate() {
            samples.push((vec![("operation", op_name(op)), ("status_class", *class)], t.requests[op][c] as f64));
        }
    }
    p.family(
        "edgeblob_http_requests_total",
        "counter",
        "Blob API requests answered, by operation and status class.",
        &samples,
    );
    let name = "edgeblob_http_request_duration_seconds";
    p.head(
        name,
        "histogram",
        "Time from a request's arrival to its answer's head (a download's body streams on after it).",
    );
    for op in 0..OPS {
        let o = escape(op_name(op));
        for (b, le) in BUCKETS.iter().enumerate() {
            let _ = writeln!(p.out, "{name}_bucket{{operation=\"{o}\",le=\"{le}\"}} {}", t.buckets[op][b]);
        }
        let _ = writeln!(p.out, "{name}_bucket{{operation=\"{o}\",le=\"+Inf\"}} {}", t.count[op]);
        let _ = writeln!(p.out, "{name}_sum{{operation=\"{o}\"}} {}", t.seconds[op]);
        let _ = writeln!(p.out, "{name}_count{{operation=\"{o}\"}} {}", t.count[op]);
    }
    p.one(
        "edgeblob_http_received_bytes_total",
        "counter",
        "Request body bytes taken by requests that succeeded.",
        t.bytes_in as f64,
    );
    p.one(
        "edgeblob_http_sent_bytes_total",
        "counter",
        "Answer body bytes sent (as their lengths declare).",
        t.bytes_out as f64,
    );
    p.one("edgeblob_http_requests_in_flight", "gauge", "Blob API requests being served now.", t.in_flight as f64);
    p.one(
        "edgeblob_http_throttled_total",
        "counter",
        "Requests answered 503 ServerBusy: no request slot free, or the node draining.",
        t.throttled as f64,
    );
}

/// Reads one of a shard's device counters.
type Counter = fn(&edgeblob_io::counted::DeviceStats) -> u64;

/// One data device as the metrics show it.
pub struct DeviceView {
    pub path: String,
    pub capacity: u64,
    /// Its shards' regions and their free bytes.
    pub region_bytes: u64,
    pub free_bytes: u64,
}

/// The data devices: capacity and use, and the I/O every shard did on each (`io[shard][device]`);
/// then each shard's queue, summed over the devices.
pub fn device(
    p: &mut Page,
    devices: &[DeviceView],
    io: &[Vec<std::sync::Arc<edgeblob_io::counted::DeviceStats>>],
    queue_depth: usize,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let each = |f: &dyn Fn(usize, &DeviceView) -> f64| -> Vec<(Vec<(&str, &str)>, f64)> {
        devices.iter().enumerate().map(|(i, d)| (vec![("device", d.path.as_str())], f(i, d))).collect()
    };
    p.family("edgeblob_device_capacity_bytes", "gauge", "Bytes of the data device.", &each(&|_, d| d.capacity as f64));
    p.family(
        "edgeblob_device_used_bytes",
        "gauge",
        "Bytes of the shards' regions holding data or metadata (the rest of the device is logs and headers).",
        &each(&|_, d| d.region_bytes.saturating_sub(d.free_bytes) as f64),
    );
    p.family(
        "edgeblob_device_free_bytes",
        "gauge",
        "Bytes of the shards' regions free for data.",
        &each(&|_, d| d.free_bytes as f64),
    );
    let on_device = |f: Counter, dev: usize| io.iter().filter_map(|per| per.get(dev)).map(|s| f(s)).sum::<u64>() as f64;
    let families: [(&str, &str, Counter); 6] = [
        ("edgeblob_device_reads_total", "Reads completed.", |s| s.reads.load(Relaxed)),
        ("edgeblob_device_writes_total", "Writes completed.", |s| s.writes.load(Relaxed)),
        ("edgeblob_device_flushes_total", "Flushes (barriers) completed.", |s| s.flushes.load(Relaxed)),
        ("edgeblob_device_read_bytes_total", "Bytes read.", |s| s.read_bytes.load(Relaxed)),
        ("edgeblob_device_written_bytes_total", "Bytes written.", |s| s.written_bytes.load(Relaxed)),
        ("edgeblob_device_errors_total", "Reads, writes and flushes that failed.", |s| s.errors.load(Relaxed)),
    ];
    for (name, help, f) in families {
        p.family(name, "counter", help, &each(&|i, _| on_device(f, i)));
    }
    let names: Vec<String> = (0..io.len()).map(|i| i.to_string()).collect();
    let per_shard =
        |f: &dyn Fn(&[std::sync::Arc<edgeblob_io::counted::DeviceStats>]) -> f64| -> Vec<(Vec<(&str, &str)>, f64)> {
            io.iter().zip(&names).map(|(s, n)| (vec![("shard", n.as_str())], f(s))).collect()
        };
    p.family(
        "edgeblob_shard_io_in_flight",
        "gauge",
        "Device operations a shard has in its io_uring queue now.",
        &per_shard(&|s| s.iter().map(|d| d.in_flight.load(Relaxed)).sum::<u64>() as f64),
    );
    p.one(
        "edgeblob_shard_queue_depth",
        "gauge",
        "Device operations a shard keeps in the kernel at most.",
        queue_depth as f64,
    );
    let any = |s: &[std::sync::Arc<edgeblob_io::counted::DeviceStats>],
               f: fn(&edgeblob_io::counted::DeviceStats) -> bool| {
        f64::from(u8::from(s.iter().any(|d| f(d))))
    };
    p.family(
        "edgeblob_shard_io_uring",
        "gauge",
        "Whether a shard's I/O goes through io_uring (0: pread/pwrite).",
        &per_shard(&|s| any(s, |d| d.io_uring.load(Relaxed))),
    );
    p.family(
        "edgeblob_shard_registered_buffers",
        "gauge",
        "Whether a shard's io_uring uses registered buffers.",
        &per_shard(&|s| any(s, |d| d.registered.load(Relaxed))),
    );
}

/// Each linked container's read-through counters, labelled by account and container.
pub fn links(p: &mut Page, links: &crate::link::Links) {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    type Pick = fn(&crate::link::LinkStats) -> &AtomicU64;
    let families: [(&str, &str, Pick); 7] = [
        (
            "edgeblob_link_fetched_blobs_total",
            "Blobs fetched from the lake and stored (first reads and changed blobs).",
            |s| &s.fetched,
        ),
        ("edgeblob_link_fetched_bytes_total", "Bytes of blobs fetched from the lake and stored.", |s| &s.fetched_bytes),
        ("edgeblob_link_joined_total", "Reads that waited on another read's fetch of the same blob.", |s| &s.joined),
        ("edgeblob_link_revalidated_total", "Checks of a cached blob against the lake's ETag.", |s| &s.revalidated),
        ("edgeblob_link_stale_total", "Checks that found the lake's blob changed or deleted.", |s| &s.stale),
        ("edgeblob_link_served_unchecked_total", "Cached blobs served unchecked: the lake did not answer.", |s| {
            &s.served_unchecked
        }),
        ("edgeblob_link_passed_through_total", "Ranges of blobs not here yet read straight from the lake.", |s| {
            &s.passed_through
        }),
    ];
    for (name, help, pick) in families {
        let samples: Vec<(Vec<(&str, &str)>, f64)> = links
            .iter()
            .map(|l| {
                let labels = vec![("account", l.cfg.account.as_str()), ("container", l.cfg.container.as_str())];
                (labels, pick(&l.stats).load(Relaxed) as f64)
            })
            .collect();
        p.family(name, "counter", help, &samples);
    }
}

/// The tier's families.
pub fn tier(p: &mut Page, r: &TierReport) {
    let st = &r.status;
    p.one(
        "edgeblob_tier_ready",
        "gauge",
        "Whether the tier's node key is open (1) or the tier cannot be used yet (0).",
        f64::from(u8::from(r.ready)),
    );
    p.one(
        "edgeblob_tier_fenced",
        "gauge",
        "Whether another node took this node's tier over (1): nothing more is written there.",
        f64::from(u8::from(r.fenced.is_some())),
    );
    p.one("edgeblob_tier_generation", "gauge", "The tier generation this node holds.", st.generation as f64);
    p.one(
        "edgeblob_tier_pending_bytes",
        "gauge",
        "Stored bytes of chunks only on flash: what a disaster would lose now.",
        st.local_bytes as f64,
    );
    p.one(
        "edgeblob_tier_pending_oldest_seconds",
        "gauge",
        "How long the oldest chunk only on flash may have waited for upload (the recovery point's age).",
        st.pending_secs,
    );
    let places = |local: u64, both: u64, tiered: u64| {
        vec![
            (vec![("place", "local")], local as f64),
            (vec![("place", "both")], both as f64),
            (vec![("place", "tiered")], tiered as f64),
        ]
    };
    p.family(
        "edgeblob_tier_chunks",
        "gauge",
        "Chunks by where they are: flash only, flash and tier, tier only.",
        &places(st.local_chunks, st.both_chunks, st.tiered_chunks),
    );
    p.family(
        "edgeblob_tier_stored_bytes",
        "gauge",
        "Stored bytes of chunks by where they are.",
        &places(st.local_bytes, st.both_bytes, st.tiered_bytes),
    );
    p.one("edgeblob_tier_packs", "gauge", "Packs the tier holds for this node.", st.packs as f64);
    p.one(
        "edgeblob_tier_pack_bytes",
        "gauge",
        "Bytes of the packs the tier holds for this node.",
        st.pack_bytes as f64,
    );
    p.one(
        "edgeblob_tier_packs_committed_total",
        "counter",
        "Packs this process committed to the tier.",
        r.packs_committed as f64,
    );
    p.one(
        "edgeblob_tier_pack_bytes_committed_total",
        "counter",
        "Bytes of the packs this process committed to the tier.",
        r.pack_bytes_committed as f64,
    );
    p.one(
        "edgeblob_tier_promotions_total",
        "counter",
        "Chunks written back to flash after reads of them.",
        r.promotions as f64,
    );
    p.histogram("edgeblob_tier_fetch_seconds", "Time to download and open one chunk from the tier.", &r.fetch);
    p.one(
        "edgeblob_tier_fetch_errors_total",
        "counter",
        "Downloads of chunks from the tier that failed after their retries.",
        r.fetch_errors as f64,
    );
    p.one(
        "edgeblob_tier_integrity_errors_total",
        "counter",
        "Chunks or packs from the tier that came back damaged.",
        r.integrity_errors as f64,
    );
    if let Some(age) = r.restore_point_age_secs {
        p.one(
            "edgeblob_tier_restore_point_age_seconds",
            "gauge",
            "Seconds since the cut of the newest restore point this process committed.",
            age,
        );
    }
    let attempts: Vec<(String, String, u64)> =
        r.remote.attempts.iter().map(|(op, o, n)| (op.to_string(), o.label(), *n)).collect();
    let samples: Vec<(Vec<(&str, &str)>, f64)> = attempts
        .iter()
        .map(|(op, code, n)| (vec![("call", op.as_str()), ("code", code.as_str())], *n as f64))
        .collect();
    p.family(
        "edgeblob_tier_remote_requests_total",
        "counter",
        "Requests to the tier's remote by call and outcome (status code, transport or timeout), each attempt counted.",
        &samples,
    );
    p.family(
        "edgeblob_tier_remote_bytes_total",
        "counter",
        "Bytes sent to and received from the tier's remote.",
        &[
            (vec![("direction", "sent")], r.remote.bytes_sent as f64),
            (vec![("direction", "received")], r.remote.bytes_received as f64),
        ],
    );
}

/// Entra ID's families: the signing keys held and their age (a set that stopped refreshing is
/// one the tenant's next key roll will break), fetches, and reloads of the bindings.
pub fn entra(p: &mut Page, e: &crate::entra::Entra) {
    use std::sync::atomic::Ordering::Relaxed;
    let (age, held) = e.keys_age();
    p.one(
        "edgeblob_entra_signing_keys",
        "gauge",
        "Signing keys of the tenants held for token validation.",
        held as f64,
    );
    if let Some(age) = age {
        p.one(
            "edgeblob_entra_signing_keys_age_seconds",
            "gauge",
            "Seconds since the signing keys held were read or fetched.",
            age as f64,
        );
    }
    p.one("edgeblob_entra_key_fetches_total", "counter", "Fetches of the key set.", e.fetches.load(Relaxed) as f64);
    p.one(
        "edgeblob_entra_key_fetch_errors_total",
        "counter",
        "Fetches of the key set that failed (the keys held were kept).",
        e.fetch_errors.load(Relaxed) as f64,
    );
    p.one(
        "edgeblob_entra_config_reloads_total",
        "counter",
        "Reloads of [auth] from the configuration file.",
        e.reloads.load(Relaxed) as f64,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_written_once_with_escaped_labels_and_cumulative_buckets() {
        let mut p = Page::default();
        p.family("x_total", "counter", "X.", &[(vec![("call", "Put \"Block\"\n")], 3.0), (vec![], 0.5)]);
        let h = HistogramSnapshot { cumulative: vec![(0.1, 1), (1.0, 2)], count: 3, sum_secs: 12.5 };
        p.histogram("y_seconds", "Y.", &h);
        let text = p.finish();
        assert!(text.contains("# TYPE x_total counter\n"));
        assert!(text.contains("x_total{call=\"Put \\\"Block\\\"\\n\"} 3\n"), "{text}");
        assert!(text.contains("x_total 0.5\n"));
        assert!(
            text.contains(
                "y_seconds_bucket{le=\"0.1\"} 1\ny_seconds_bucket{le=\"1\"} 2\ny_seconds_bucket{le=\"+Inf\"} 3\n"
            ),
            "{text}"
        );
        assert!(text.contains("y_seconds_count 3\n") && text.contains("y_seconds_sum 12.5\n"));
    }
}
