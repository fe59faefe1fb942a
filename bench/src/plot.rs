//! An SVG of each job: throughput and latency (p50, p99) second by second, and the latency
//! distribution (percentiles on a log scale of the tail, as HdrHistogram plots them). Written by
//! hand: three line charts need no plotting library, and SVG opens in any browser.

use std::fmt::Write;

use crate::report::JobReport;

const W: f64 = 900.0;
const PANEL_H: f64 = 220.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 70.0;

struct Series<'a> {
    label: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|m| *m >= v).unwrap_or(10.0 * mag)
}

fn fmt_tick(v: f64) -> String {
    if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// One chart at vertical offset `y0`. `xticks`: (position, label).
fn panel(
    out: &mut String,
    y0: f64,
    title: &str,
    ylabel: &str,
    xticks: &[(f64, String)],
    x_max: f64,
    series: &[Series],
) {
    let (x0, w, h) = (LEFT, W - LEFT - RIGHT, PANEL_H);
    let y_max = nice_max(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max));
    let x_max = if x_max > 0.0 { x_max } else { 1.0 };
    let px = |x: f64| x0 + x / x_max * w;
    let py = |y: f64| y0 + h - y / y_max * h;
    let _ = writeln!(out, r#"<text x="{x0}" y="{}" font-size="14" font-weight="bold">{title}</text>"#, y0 - 10.0);
    let _ = writeln!(out, r##"<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#888"/>"##);
    for i in 0..=4 {
        let v = y_max * f64::from(i) / 4.0;
        let y = py(v);
        let _ = writeln!(out, r##"<line x1="{x0}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/>"##, x0 + w);
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" font-size="11" text-anchor="end">{}</text>"#,
            x0 - 6.0,
            y + 4.0,
            fmt_tick(v)
        );
    }
    for (x, label) in xticks {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">{label}</text>"#,
            px(*x),
            y0 + h + 16.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="18" y="{}" font-size="11" transform="rotate(-90 18 {})" text-anchor="middle">{ylabel}</text>"#,
        y0 + h / 2.0,
        y0 + h / 2.0
    );
    for (i, s) in series.iter().enumerate() {
        let pts: Vec<String> = s.points.iter().map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y))).collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            s.color,
            pts.join(" ")
        );
        let lx = x0 + w - 150.0;
        let ly = y0 + 16.0 + 16.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="3"/>"#,
            ly - 4.0,
            lx + 20.0,
            ly - 4.0,
            s.color
        );
        let _ = writeln!(out, r#"<text x="{}" y="{ly}" font-size="11">{}</text>"#, lx + 26.0, s.label);
    }
}

/// The SVG document for one job.
pub fn svg(r: &JobReport) -> String {
    let height = TOP + 3.0 * (PANEL_H + GAP);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" font-family="sans-serif">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let secs = r.timeline.len() as f64;
    let step = (secs / 10.0).ceil().max(1.0);
    let time_ticks: Vec<(f64, String)> =
        (0..=((secs / step) as usize)).map(|i| (i as f64 * step, format!("{}s", i as f64 * step))).collect();
    // Each second's point sits at its middle.
    let at = |t: u64| t as f64 + 0.5;
    let by_bytes = r.bytes > 0;
    let tput = Series {
        label: if by_bytes { "MiB/s" } else { "ops/s" },
        color: "#1f77b4",
        points: r.timeline.iter().map(|s| (at(s.t), if by_bytes { s.mib_per_s } else { s.ops as f64 })).collect(),
    };
    let title = format!("{} ({}): throughput per second", r.name, r.workload);
    panel(&mut out, TOP, &esc(&title), tput.label, &time_ticks, secs, &[tput]);
    let ms = |us: u64| us as f64 / 1000.0;
    let lat = [
        Series { label: "p50", color: "#2ca02c", points: r.timeline.iter().map(|s| (at(s.t), ms(s.p50_us))).collect() },
        Series { label: "p99", color: "#d62728", points: r.timeline.iter().map(|s| (at(s.t), ms(s.p99_us))).collect() },
    ];
    panel(&mut out, TOP + PANEL_H + GAP, "latency per second", "ms", &time_ticks, secs, &lat);
    // Distribution: x = -log10(1 - q), so 90, 99, 99.9 … are evenly spaced.
    let x_of = |pct: f64| -(1.0 - pct / 100.0).max(1e-6).log10();
    let dist = Series {
        label: "latency",
        color: "#9467bd",
        points: r.distribution.iter().map(|(p, us)| (x_of(*p), ms(*us))).collect(),
    };
    let pct_ticks: Vec<(f64, String)> = ["0", "90", "99", "99.9", "99.99", "99.999"]
        .iter()
        .enumerate()
        .map(|(i, l)| (i as f64, format!("p{l}")))
        .collect();
    panel(&mut out, TOP + 2.0 * (PANEL_H + GAP), "latency distribution", "ms", &pct_ticks, 5.0, &[dist]);
    out.push_str("</svg>\n");
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_round_up_to_readable_bounds() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.3), 10.0);
        assert_eq!(nice_max(180.0), 200.0);
        assert_eq!(nice_max(2100.0), 2500.0);
    }
}
