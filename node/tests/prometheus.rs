//! Debian's Prometheus scrapes a running node: the target is up, request counters and a latency
//! quantile are queryable after traffic, `promtool check metrics` finds nothing to fix, and 500
//! new containers add no series (no label takes a client's names). Prometheus and promtool come
//! from Debian's package (.ci/run installs it); without them the test is skipped here and fails
//! under CI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgeblob_testkit::node::spawn;
use edgeblob_testkit::peers::tool;
use edgeblob_testkit::raw::signed;

fn get(addr: &str, path_query: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_owned() };
    (head[9..12].parse().unwrap(), body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

/// The value of a Prometheus instant query's first sample, if it has one.
fn query(prom: &str, q: &str) -> Option<f64> {
    let enc = percent_encoding::utf8_percent_encode(q, percent_encoding::NON_ALPHANUMERIC);
    let (status, body) = get(prom, &format!("/api/v1/query?query={enc}"));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"][0]["value"][1].as_str().and_then(|s| s.parse().ok())
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The samples on a metrics page (lines that are not comments).
fn series(page: &str) -> usize {
    page.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn prometheus_scrapes_the_node_and_its_series_do_not_grow_with_containers() {
    if !tool("prometheus") || !tool("promtool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = spawn(dir.path(), None, &[]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let prom_addr = format!("127.0.0.1:{port}");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: edgeblob\n    static_configs:\n      - targets: ['{}']\n",
            node.admin
        ),
    )
    .unwrap();
    let _prom = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("prometheus to serve", || {
        std::net::TcpStream::connect(&prom_addr).is_ok() && get(&prom_addr, "/-/ready").0 == 200
    });
    wait_for("the node to be up", || query(&prom_addr, "up{job=\"edgeblob\"}") == Some(1.0));

    let (status, _, _) = signed(&node.http, "PUT", "/devstoreaccount1/scraped?restype=container", &[], b"").await;
    assert_eq!(status, 201);
    for i in 0..20 {
        let (status, _, _) = signed(
            &node.http,
            "PUT",
            &format!("/devstoreaccount1/scraped/b{i}"),
            &[("x-ms-blob-type", "BlockBlob")],
            b"hello",
        )
        .await;
        assert_eq!(status, 201);
    }
    wait_for("the Puts to be counted", || {
        query(&prom_addr, "sum(edgeblob_http_requests_total{operation=\"PutBlob\",status_class=\"2xx\"})")
            .is_some_and(|v| v >= 20.0)
    });
    let p90 = "histogram_quantile(0.9, sum by (le) (rate(edgeblob_http_request_duration_seconds_bucket{operation=\"PutBlob\"}[1m])))";
    wait_for("a latency quantile", || query(&prom_addr, p90).is_some_and(|v| v.is_finite() && v > 0.0));
    assert!(query(&prom_addr, "edgeblob_device_capacity_bytes").is_some_and(|v| v > 0.0));

    let (status, page) = get(&node.admin, "/metrics");
    assert_eq!(status, 200);
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let before = series(&page);
    for i in 0..500 {
        let (status, _, _) =
            signed(&node.http, "PUT", &format!("/devstoreaccount1/c{i:03}?restype=container"), &[], b"").await;
        assert_eq!(status, 201);
    }
    let (_, after) = get(&node.admin, "/metrics");
    assert_eq!(series(&after), before, "500 containers added series");
    assert!(!after.contains("c499") && !after.contains("scraped"), "no client name in a label");
}
