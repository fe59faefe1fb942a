//! The admin listener against a node with a tier (a second edgeblob in this process as the
//! remote): health, metrics whose values follow what the node did, and the tier's operations
//! while the node serves, with their refusals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use edgeblob::config::{Config, DEV_ACCOUNT, DEV_KEY};
use edgeblob_engine::config::{EngineConfig, TierConfig};
use edgeblob_engine::Node;
use edgeblob_proto::conditions::Conditions;
use edgeblob_testkit::engine::{body, config, data, key, rt};
use edgeblob_testkit::node::InProcess;

/// One request on its own connection: the status and the body.
fn request(addr: SocketAddr, method: &str, target: &str, token: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split(' ').nth(1).unwrap().parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The value of a sample of `/metrics` (the whole line's name and labels).
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn health_metrics_and_the_tiers_operations_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let remote = InProcess::start(&dir.path().join("remote"), 1 << 30, 1, |_| {});
    let node_dir = dir.path().join("node");
    std::fs::create_dir_all(&node_dir).unwrap();
    let key_file = node_dir.join("customer.key");
    std::fs::write(&key_file, [0x33u8; 32]).unwrap();
    let tier = TierConfig {
        url: format!("http://{}/{DEV_ACCOUNT}/tier/site-a", remote.addr),
        account: Some(DEV_ACCOUNT.into()),
        account_key: Some(DEV_KEY.into()),
        key_file,
        pack_bytes: 1 << 20,
        ..TierConfig::default()
    };
    let engine = EngineConfig { tier: Some(tier), ..config(&node_dir) };
    let mut cfg = Config { engine, ..Config::default() };
    cfg.admin.listen = Some("127.0.0.1:0".into());
    let node = Arc::new(Node::open(cfg.engine.clone()).unwrap());
    let admin = edgeblob::admin::serve(node.clone(), &cfg, Default::default()).unwrap().unwrap();
    let a = admin.addr;

    assert_eq!(request(a, "GET", "/health/live", None).0, 200);
    assert_eq!(request(a, "GET", "/health/ready", None), (200, "ready\n".into()));
    let (cold, hot) = (data(1, 2 << 20, false), data(2, 1 << 20, false));
    let rt = rt();
    rt.block_on(async {
        for c in ["cold", "hot"] {
            node.create_container(DEV_ACCOUNT, c, vec![]).await.unwrap();
        }
        node.put_blob(0, key("cold", "a"), body(&cold), Default::default(), Default::default()).await.unwrap();
        node.put_blob(1, key("hot", "b"), body(&hot), Default::default(), Default::default()).await.unwrap();
    });

    // Refusals before anything runs.
    assert_eq!(request(a, "GET", "/tier/now?container=cold", None).0, 405);
    assert_eq!(request(a, "GET", "/nothing", None).0, 404);
    assert_eq!(request(a, "POST", "/tier/now?container=Bad_Name", None).0, 400);
    assert_eq!(request(a, "POST", "/tier/now", None).0, 400, "no container named");
    let (code, missing) = request(a, "POST", "/tier/now?container=nosuch", None);
    assert_eq!((code, json(&missing)["error"].as_str()), (404, Some("ContainerNotFound")));

    // `now`: the cold container's data goes to the tier; the hot one's stays on flash too.
    let (code, now) = request(a, "POST", "/tier/now?container=cold", None);
    assert_eq!(code, 200, "{now}");
    let now = json(&now);
    assert_eq!(now["blobs"], 1);
    assert!(now["freed_bytes"].as_u64().unwrap() >= (2 << 20) - 64 * 4096, "{now}");
    let (code, status) = request(a, "GET", "/tier/status", None);
    assert_eq!(code, 200);
    let status = json(&status);
    assert_eq!(status["pending_bytes"], 0, "now uploads everything pending: {status}");
    assert!(status["chunks"]["tiered"].as_u64().unwrap() > 0, "{status}");
    assert!(status["chunks"]["both"].as_u64().unwrap() > 0, "the hot blob keeps its copy: {status}");
    assert!(status["restore_point_age_secs"].as_f64().is_some(), "now made a restore point: {status}");
    assert_eq!((status["ready"].as_bool(), status["fenced"].is_null()), (Some(true), true));

    // Where one blob is: the cold one in the tier, the hot one on flash; refusals first.
    assert_eq!(request(a, "GET", "/tier/blob?container=cold", None).0, 400, "no blob named");
    let (code, gone) = request(a, "GET", "/tier/blob?container=cold&name=nosuch", None);
    assert_eq!((code, json(&gone)["error"].as_str()), (404, Some("BlobNotFound")));
    let (code, at) = request(a, "GET", "/tier/blob?container=cold&name=a", None);
    assert_eq!(code, 200, "{at}");
    let at = json(&at);
    assert!(at["tiered_bytes"].as_u64().unwrap() >= (2 << 20) - (64 << 10), "{at}");
    assert_eq!(at["kept_by_rule"], false);
    let at = json(&request(a, "GET", "/tier/blob?container=hot&name=b", None).1);
    assert_eq!((at["local_bytes"].as_u64(), at["tiered_bytes"].as_u64()), (Some(1 << 20), Some(0)), "{at}");

    // A read of the cold blob comes from the tier, and the metrics show it.
    let (_, _, got) = rt.block_on(node.read_blob(0, key("cold", "a"), None, Conditions::default())).unwrap();
    assert_eq!(&got[..], &cold[..]);
    let (code, page) = request(a, "GET", "/metrics", None);
    assert_eq!(code, 200);
    assert_eq!(sample(&page, "edgeblob_tier_configured"), Some(1.0));
    assert!(sample(&page, "edgeblob_tier_fetch_seconds_count").unwrap() >= 1.0, "{page}");
    assert!(sample(&page, "edgeblob_tier_remote_requests_total{call=\"Get Blob\",code=\"206\"}").unwrap() >= 1.0);
    assert!(sample(&page, "edgeblob_tier_packs_committed_total").unwrap() >= 1.0);
    assert_eq!(sample(&page, "edgeblob_tier_integrity_errors_total"), Some(0.0));
    assert_eq!(sample(&page, "edgeblob_tier_pending_bytes"), Some(0.0));
    // Every shard's background tasks are watched: their series exist, and none has panicked.
    for task in ["deliver-refs", "tier-upload", "expiry-sweep", "warm-up"] {
        assert_eq!(sample(&page, &format!("edgeblob_background_panics_total{{task=\"{task}\"}}")), Some(0.0), "{task}");
    }
    for l in page.lines().filter(|l| !l.starts_with('#')) {
        assert!(!l.contains("cold") && !l.contains("hot"), "a user's name became a series: {l}");
    }

    // `hydrate`: every chunk of the cold container is back on flash.
    let (code, h) = request(a, "POST", "/tier/hydrate?container=cold&prefix=a", None);
    assert_eq!(code, 200, "{h}");
    let h = json(&h);
    assert!(h["promoted_chunks"].as_u64().unwrap() >= 1, "{h}");
    let status = json(&request(a, "GET", "/tier/status", None).1);
    assert_eq!(status["chunks"]["tiered"], 0, "{status}");

    // `drain`: uploads what is pending and commits a restore point.
    rt.block_on(node.put_blob(
        0,
        key("hot", "c"),
        body(&data(3, 300_000, false)),
        Default::default(),
        Default::default(),
    ))
    .unwrap();
    let (code, d) = request(a, "POST", "/tier/drain", None);
    assert_eq!(code, 200, "{d}");
    assert_eq!(json(&d)["pending_bytes"], 0, "{d}");
    assert_eq!(request(a, "GET", "/health/ready", None).0, 200, "ready again once drained");

    // The admin tool speaks to the listener.
    let tool = |args: &[&str]| {
        let out = std::process::Command::new(edgeblob_testkit::node::workspace_bin("edgeblob-admin"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let addr = a.to_string();
    let (ok, out) = tool(&["tier", "now", "--container", "hot", "--prefix", "c", "--admin", &addr]);
    assert!(ok && json(out.trim())["blobs"] == 1, "{out}");
    let (ok, out) = tool(&["tier", "hydrate", "--container", "nosuch", "--admin", &addr]);
    assert!(!ok && out.contains("404") && out.contains("ContainerNotFound"), "{out}");
    let (ok, out) = tool(&["tier", "now", "--admin", &addr]);
    assert!(!ok && out.contains("400"), "now needs a container: {out}");
    // Both containers to the tier, then a hydrate naming none brings the whole account back.
    for c in ["cold", "hot"] {
        let (ok, out) = tool(&["tier", "now", "--container", c, "--admin", &addr]);
        assert!(ok, "{out}");
    }
    let status = json(&request(a, "GET", "/tier/status", None).1);
    assert!(status["chunks"]["tiered"].as_u64().unwrap() > 0, "{status}");
    let (ok, out) = tool(&["tier", "hydrate", "--admin", &addr]);
    assert!(ok, "{out}");
    let out = json(out.trim());
    assert_eq!(out["blobs"], 3, "every blob of both containers: {out}");
    assert!(out["promoted_chunks"].as_u64().unwrap() > 0, "{out}");
    let status = json(&request(a, "GET", "/tier/status", None).1);
    assert_eq!(status["chunks"]["tiered"], 0, "nothing left only in the tier: {status}");
    admin.stop();

    // With a token, operations need it.
    let mut guarded = cfg.clone();
    guarded.admin.token = Some("0123456789abcdef-token".into());
    let admin = edgeblob::admin::serve(node.clone(), &guarded, Default::default()).unwrap().unwrap();
    assert_eq!(request(admin.addr, "POST", "/tier/epoch", None).0, 401);
    assert_eq!(request(admin.addr, "POST", "/tier/epoch", Some("0123456789abcdef-wrong")).0, 401);
    let (code, e) = request(admin.addr, "POST", "/tier/epoch", Some("0123456789abcdef-token"));
    assert_eq!(code, 200, "{e}");
    assert!(json(&e)["epoch"].as_u64().unwrap() >= 2);
    assert_eq!(request(admin.addr, "GET", "/metrics", None).0, 200, "reads need no token");
    assert_eq!(request(admin.addr, "GET", "/tier/blob?container=cold&name=a", None).0, 401, "but a blob's place does");
    admin.stop();
    Arc::try_unwrap(node).ok().unwrap().stop();
}

/// The default admin port taken (a second node on the host, a node_exporter): the node serves
/// on without its admin listener. The same port asked for explicitly stops the start.
#[test]
fn a_taken_default_admin_port_is_passed_by_and_an_explicit_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // Whoever holds 9100 now (this test, or something of the host's), it is taken.
    let _held = std::net::TcpListener::bind(edgeblob::config::DEFAULT_ADMIN);
    let cfg = Config { engine: config(dir.path()), ..Config::default() };
    let node = Arc::new(Node::open(cfg.engine.clone()).unwrap());
    assert!(edgeblob::admin::serve(node.clone(), &cfg, Default::default()).unwrap().is_none(), "no listener, no error");
    let mut explicit = cfg.clone();
    explicit.admin.listen = Some(edgeblob::config::DEFAULT_ADMIN.into());
    let err =
        edgeblob::admin::serve(node.clone(), &explicit, Default::default()).err().expect("an explicit port taken");
    assert!(err.to_string().contains("admin listener 127.0.0.1:9100"), "{err}");
    Arc::try_unwrap(node).ok().unwrap().stop();
}
