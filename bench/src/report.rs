//! A job's figures: built once from what was measured, printed for people (fio's layout) or as
//! JSON for machines.

use std::fmt::Write;

use serde::Serialize;

use crate::job::{human, Job};
use crate::run::Outcome;
use crate::stats::{histogram, Latency};

#[derive(Serialize, Clone)]
pub struct OpReport {
    pub op: String,
    pub ops: u64,
    pub bytes: u64,
    pub items: u64,
    pub ops_per_s: f64,
    pub mib_per_s: f64,
    /// Microseconds.
    pub latency_us: Latency,
    /// Counted into the job's totals (read-back verification is not).
    pub counted: bool,
}

#[derive(Serialize, Clone)]
pub struct ErrorReport {
    pub op: String,
    pub status: u16,
    pub code: String,
    pub count: u64,
    /// 503 ServerBusy or 429: the server asked the client to slow down.
    pub throttled: bool,
}

#[derive(Serialize, Clone)]
pub struct Second {
    pub t: u64,
    pub ops: u64,
    pub mib_per_s: f64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

#[derive(Serialize, Clone)]
pub struct JobReport {
    pub name: String,
    pub workload: String,
    pub endpoint: String,
    pub settings: serde_json::Value,
    pub connections: usize,
    pub elapsed_s: f64,
    pub ops: u64,
    pub bytes: u64,
    pub ops_per_s: f64,
    pub mib_per_s: f64,
    pub latency_us: Latency,
    pub by_op: Vec<OpReport>,
    pub errors: Vec<ErrorReport>,
    pub throttled: u64,
    pub mismatches: Vec<(String, u64)>,
    pub timeline: Vec<Second>,
    /// The latency distribution of counted operations: (percentile, microseconds), from p0 up
    /// to p99.999 on a log scale of the tail.
    pub distribution: Vec<(f64, u64)>,
}

fn settings(j: &Job) -> serde_json::Value {
    serde_json::json!({
        "bs": j.bs.fmt(), "block_size": human(j.block_size), "size": j.size.fmt(), "nrfiles": j.nrfiles,
        "numjobs": j.numjobs, "iodepth": j.iodepth, "runtime": j.runtime, "ramp_time": j.ramp_time,
        "io_size": j.io_size, "number_ios": j.number_ios, "time_based": j.time_based, "rwmixread": j.rwmixread,
        "mix": j.mix.iter().map(|(o, w)| format!("{o}:{w}")).collect::<Vec<_>>().join(","),
        "compress_ratio": j.compress_ratio, "dedupe_percentage": j.dedupe_percentage,
        "verify": j.verify, "randseed": j.randseed, "container": j.container,
    })
}

impl JobReport {
    pub fn new(o: &Outcome) -> JobReport {
        let secs = o.elapsed.as_secs_f64().max(1e-9);
        let mut all = histogram(3);
        let mut by_op = Vec::new();
        for (op, s) in &o.measured.ops {
            if s.counted {
                let _ = all.add(&s.hist);
            }
            let n = s.hist.len();
            by_op.push(OpReport {
                op: (*op).to_owned(),
                ops: n,
                bytes: s.bytes,
                items: s.items,
                ops_per_s: n as f64 / secs,
                mib_per_s: s.bytes as f64 / secs / 1048576.0,
                latency_us: Latency::of(&s.hist),
                counted: s.counted,
            });
        }
        let counted = by_op.iter().filter(|r| r.counted);
        let (ops, bytes) = counted.fold((0, 0), |(o, b), r| (o + r.ops, b + r.bytes));
        let errors: Vec<ErrorReport> = o
            .measured
            .errors
            .iter()
            .map(|(k, n)| ErrorReport {
                op: k.op.to_owned(),
                status: k.status,
                code: k.code.clone(),
                count: *n,
                throttled: k.status == 503 || k.status == 429,
            })
            .collect();
        let timeline = o
            .timeline
            .iter()
            .enumerate()
            .map(|(t, iv)| Second {
                t: t as u64,
                ops: iv.ops,
                mib_per_s: iv.bytes as f64 / 1048576.0,
                errors: iv.errors,
                p50_us: if iv.hist.is_empty() { 0 } else { iv.hist.value_at_quantile(0.5) },
                p99_us: if iv.hist.is_empty() { 0 } else { iv.hist.value_at_quantile(0.99) },
            })
            .collect();
        let ep = &o.job.endpoint;
        JobReport {
            name: o.job.name.clone(),
            workload: o.job.workload.name().to_owned(),
            endpoint: format!("{}{} ({:?})", ep.url(""), ep.base_path, ep.credential),
            settings: settings(&o.job),
            connections: o.connections,
            elapsed_s: secs,
            ops,
            bytes,
            ops_per_s: ops as f64 / secs,
            mib_per_s: bytes as f64 / secs / 1048576.0,
            latency_us: Latency::of(&all),
            distribution: if all.is_empty() {
                Vec::new()
            } else {
                (0..=50)
                    .map(|k| {
                        let q = 1.0 - 10f64.powf(-f64::from(k) / 10.0);
                        (q * 100.0, all.value_at_quantile(q))
                    })
                    .collect()
            },
            throttled: errors.iter().filter(|e| e.throttled).map(|e| e.count).sum(),
            by_op,
            errors,
            mismatches: o.measured.mismatches.clone(),
            timeline,
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.iter().map(|e| e.count).sum()
    }

    /// fio's layout: a header line, then per operation its rate and latency percentiles.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let st = &self.settings;
        let _ = writeln!(
            s,
            "{}: workload={}, bs={}, size={}, nrfiles={}, numjobs={}, iodepth={} ({} connections), endpoint={}",
            self.name,
            self.workload,
            st["bs"].as_str().unwrap_or(""),
            st["size"].as_str().unwrap_or(""),
            st["nrfiles"],
            st["numjobs"],
            st["iodepth"],
            self.connections,
            self.endpoint
        );
        for r in &self.by_op {
            let items =
                if r.items > 0 { format!(", {:.0} entries/s", r.items as f64 / self.elapsed_s) } else { String::new() };
            let _ = writeln!(
                s,
                "  {:<22}: ops={}, {:.1} ops/s, {:.1} MiB/s{items}{}",
                r.op,
                r.ops,
                r.ops_per_s,
                r.mib_per_s,
                if r.counted { "" } else { " (not counted: verification)" }
            );
            let l = &r.latency_us;
            let _ = writeln!(
                s,
                "    lat (usec): min={}, mean={:.1}, p50={}, p90={}, p99={}, p99.9={}, max={}",
                l.min, l.mean, l.p50, l.p90, l.p99, l.p999, l.max
            );
        }
        let _ = writeln!(
            s,
            "  total: {} ops in {:.2}s, {:.1} ops/s, {:.1} MiB/s, p50={} us, p99={} us",
            self.ops, self.elapsed_s, self.ops_per_s, self.mib_per_s, self.latency_us.p50, self.latency_us.p99
        );
        if self.errors.is_empty() {
            let _ = writeln!(s, "  errors: none");
        } else {
            let _ = writeln!(s, "  errors: {} ({} throttled)", self.error_count(), self.throttled);
            for e in &self.errors {
                let tag = if e.throttled { " (throttled)" } else { "" };
                let _ = writeln!(s, "    {:<22} {} {}{tag}: {}", e.op, e.status, e.code, e.count);
            }
        }
        for (blob, at) in &self.mismatches {
            let _ = writeln!(s, "  data mismatch: {blob} at byte {at}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Failure;
    use crate::job::{parse_file, resolve};
    use crate::stats::{Recorder, Shared};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn summary_names_operations_errors_and_throttling_apart() {
        let (_, mut jobs) = resolve(parse_file("[j]\nworkload=small-objects\n").unwrap()).unwrap();
        let shared = Arc::new(Shared::new(Instant::now(), Duration::ZERO));
        let mut r = Recorder::new(shared.clone());
        for ms in [1u64, 2, 3, 4] {
            r.ok("GetBlob", true, Instant::now() - Duration::from_millis(ms), 1 << 20, 0);
        }
        r.ok("GetBlob(verify)", false, Instant::now(), 1 << 20, 0);
        r.failed("PutBlob", &Failure { status: 503, code: "ServerBusy".into() });
        r.failed("PutBlob", &Failure { status: 403, code: "AuthenticationFailed".into() });
        let measured = r.finish();
        let o = Outcome {
            job: jobs.remove(0),
            elapsed: Duration::from_secs(2),
            measured,
            timeline: shared.timeline.lock().unwrap().clone(),
            connections: 32,
        };
        let rep = JobReport::new(&o);
        assert_eq!((rep.ops, rep.bytes, rep.ops_per_s, rep.mib_per_s), (4, 4 << 20, 2.0, 2.0));
        assert!(rep.latency_us.p50 >= 2000 && rep.latency_us.max >= 4000);
        assert_eq!((rep.error_count(), rep.throttled), (2, 1));
        let text = rep.human();
        assert!(text.contains("503 ServerBusy (throttled): 1"), "{text}");
        assert!(text.contains("403 AuthenticationFailed: 1"), "{text}");
        assert!(text.contains("not counted"), "{text}");
        let json = serde_json::to_value(&rep).unwrap();
        assert_eq!(json["by_op"][0]["op"], "GetBlob");
        assert_eq!(json["errors"][0]["code"], "AuthenticationFailed");
    }
}
