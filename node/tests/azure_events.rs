//! Azure's scheduled events against a stand-in of the instance metadata service: a Redeploy
//! notice for this VM makes /health/ready answer 503 within one poll and writes 503 ServerBusy
//! while reads go on; the notice withdrawn, the node is ready and takes writes again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgeblob_testkit::node::spawn_configured;
use edgeblob_testkit::raw::signed;

/// The metadata service's part the node reads: this VM's name and the scheduled events.
struct Imds {
    addr: String,
    events: Arc<Mutex<String>>,
    polls: Arc<AtomicUsize>,
    approvals: Arc<Mutex<Vec<String>>>,
}

fn imds() -> Imds {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let events = Arc::new(Mutex::new(r#"{"DocumentIncarnation":1,"Events":[]}"#.to_owned()));
    let polls = Arc::new(AtomicUsize::new(0));
    let approvals = Arc::new(Mutex::new(Vec::new()));
    let (e, p, a) = (events.clone(), polls.clone(), approvals.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut length = 0;
            let mut metadata = false;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                metadata |= lower.trim() == "metadata: true";
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let (status, answer) = if !metadata {
                (400, "missing Metadata: true".to_owned())
            } else if line.starts_with("GET /metadata/instance/compute/name?") {
                (200, "vm1".to_owned())
            } else if line.starts_with("GET /metadata/scheduledevents?api-version=") {
                p.fetch_add(1, Ordering::SeqCst);
                (200, e.lock().unwrap().clone())
            } else if line.starts_with("POST /metadata/scheduledevents?") {
                a.lock().unwrap().push(String::from_utf8(body).unwrap());
                (200, String::new())
            } else {
                (404, String::new())
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    Imds { addr, events, polls, approvals }
}

fn ready(admin: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(admin).unwrap();
    write!(s, "GET /health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    (out[9..12].parse().unwrap(), out.split_once("\r\n\r\n").unwrap().1.to_owned())
}

fn wait_polls(imds: &Imds, beyond: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while imds.polls.load(Ordering::SeqCst) <= beyond {
        assert!(Instant::now() < deadline, "the node stopped polling");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_redeploy_notice_drains_the_node_within_one_poll_and_its_withdrawal_ends_it() {
    let imds = imds();
    let dir = tempfile::tempdir().unwrap();
    let config =
        format!("[azure]\nscheduled_events = \"on\"\nmetadata_endpoint = \"http://{}\"\npoll_secs = 1\n", imds.addr);
    let node = spawn_configured(dir.path(), "1G", &config);
    wait_polls(&imds, 0);
    assert_eq!(ready(&node.admin).0, 200);
    let (status, _, _) = signed(&node.http, "PUT", "/devstoreaccount1/before?restype=container", &[], b"").await;
    assert_eq!(status, 201);

    *imds.events.lock().unwrap() = r#"{"DocumentIncarnation":2,"Events":[{"EventId":"602d9444-d2cd-49c7-8624-8643e7171297","EventType":"Redeploy","ResourceType":"VirtualMachine","Resources":["vm1"],"EventStatus":"Scheduled","NotBefore":"Mon, 19 Sep 2016 18:29:47 GMT","Description":"","EventSource":"Platform","DurationInSeconds":-1}]}"#.to_owned();
    // The next poll that reads the notice: readiness fails by the time it has been answered.
    let seen = imds.polls.load(Ordering::SeqCst);
    wait_polls(&imds, seen);
    let deadline = Instant::now() + Duration::from_millis(500);
    let (status, why) = loop {
        let r = ready(&node.admin);
        if r.0 == 503 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status, 503, "{why}");
    assert!(why.contains("Redeploy") && why.contains("602d9444-d2cd-49c7-8624-8643e7171297"), "{why}");
    let (status, head, body) = signed(&node.http, "PUT", "/devstoreaccount1/during?restype=container", &[], b"").await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert!(
        head.contains("retry-after:") && String::from_utf8_lossy(&body).contains("<Code>ServerBusy</Code>"),
        "{head}"
    );
    let (status, _, body) = signed(&node.http, "GET", "/devstoreaccount1?comp=list", &[], b"").await;
    assert_eq!(status, 200, "reads go on");
    assert!(String::from_utf8_lossy(&body).contains("<Name>before</Name>"));
    assert!(imds.approvals.lock().unwrap().is_empty(), "no tier: nothing drained, so Azure is not told to go ahead");

    *imds.events.lock().unwrap() = r#"{"DocumentIncarnation":3,"Events":[]}"#.to_owned();
    let seen = imds.polls.load(Ordering::SeqCst);
    wait_polls(&imds, seen + 1);
    assert_eq!(ready(&node.admin).0, 200);
    let (status, _, _) = signed(&node.http, "PUT", "/devstoreaccount1/after?restype=container", &[], b"").await;
    assert_eq!(status, 201);
}

#[tokio::test(flavor = "current_thread")]
async fn a_node_whose_disks_were_erased_comes_up_rebuilding_not_empty() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.toml");
    std::fs::write(&ledger, "node = \"0123\"\nrebuilding = true\n").unwrap();
    let config = format!("ledger = \"{}\"\n[azure]\nscheduled_events = \"off\"\n", ledger.display());
    let node = spawn_configured(dir.path(), "1G", &config);
    let (status, why) = ready(&node.admin);
    assert_eq!(status, 503);
    assert!(why.contains("rebuilding") && why.contains("0123"), "{why}");
    let (status, _, _) = signed(&node.http, "PUT", "/devstoreaccount1/fresh?restype=container", &[], b"").await;
    assert_eq!(status, 503, "no writes to a node that is not what it was");
}

/// After a redeploy the ledger says rebuilding and the devices are blank: a node with a tier
/// restores itself from its newest restore point before it serves (the same node, by the
/// ledger's id), serves its blobs, is ready, and clears the mark. Started again, it restores
/// nothing: its devices hold the node.
#[test]
fn a_rebuilding_node_with_a_tier_restores_itself_before_it_serves() {
    use edgeblob::config::{DEV_ACCOUNT, DEV_KEY};
    use edgeblob_testkit::engine::{body, config, key};
    let dir = tempfile::tempdir().unwrap();
    let remote = edgeblob_testkit::node::InProcess::start(&dir.path().join("remote"), 1 << 30, 1, |_| {});
    let key_file = dir.path().join("customer.key");
    std::fs::write(&key_file, [0x5au8; 32]).unwrap();
    let url = format!("http://{}/{DEV_ACCOUNT}/tier/site-a", remote.addr);
    let tier = edgeblob_engine::config::TierConfig {
        url: url.clone(),
        account: Some(DEV_ACCOUNT.into()),
        account_key: Some(DEV_KEY.into()),
        key_file: key_file.clone(),
        ..Default::default()
    };
    // The node before the redeploy: a restore point of two blobs.
    let before = dir.path().join("before");
    std::fs::create_dir_all(&before).unwrap();
    let old = edgeblob_engine::config::EngineConfig { tier: Some(tier), ..config(&before) };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let node = edgeblob_engine::Node::open(old).unwrap();
    rt.block_on(async {
        node.create_container(DEV_ACCOUNT, "kept", vec![]).await.unwrap();
        for (n, b) in [("a.txt", &b"first"[..]), ("b.txt", &b"second"[..])] {
            node.put_blob(0, key("kept", n), body(b), Default::default(), Default::default()).await.unwrap();
        }
        node.tier_epoch().await.unwrap();
    });
    let uuid = node.shared().sb.uuid;
    node.stop();
    let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();

    let after = dir.path().join("after");
    std::fs::create_dir_all(&after).unwrap();
    let ledger = after.join("ledger.toml");
    std::fs::write(&ledger, format!("node = \"{hex}\"\nrebuilding = true\n")).unwrap();
    let toml = format!(
        "ledger = \"{}\"\n[azure]\nscheduled_events = \"off\"\n[engine.tier]\nurl = \"{url}\"\naccount = \"{DEV_ACCOUNT}\"\naccount_key = \"{DEV_KEY}\"\nkey_file = \"{}\"\n",
        ledger.display(),
        key_file.display()
    );
    // Under systemd the restore keeps the start timeout ahead of it, then the node says ready.
    let sock_path = after.join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let node = edgeblob_testkit::node::spawn_configured_env(&after, "256M", &toml, &[("NOTIFY_SOCKET", sock_path)]);
    let mut buf = [0u8; 4096];
    let mut said = Vec::new();
    while !said.last().is_some_and(|m: &String| m.starts_with("READY=1")) {
        let n = sock.recv(&mut buf).expect("the node tells systemd");
        said.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        said[0].starts_with("EXTEND_TIMEOUT_USEC=300000000\nSTATUS=restoring node ") && said[0].contains(&hex),
        "{said:?}"
    );
    assert_eq!(ready(&node.admin).0, 200, "restored, it serves");
    for (n, want) in [("a.txt", "first"), ("b.txt", "second")] {
        let (status, _, got) = rt.block_on(signed(&node.http, "GET", &format!("/devstoreaccount1/kept/{n}"), &[], b""));
        assert_eq!((status, String::from_utf8_lossy(&got).into_owned()), (200, want.to_owned()), "{n}");
    }
    let l = edgeblob_hw::ledger::Ledger::load(&ledger).unwrap().unwrap();
    assert_eq!((l.node, l.rebuilding), (hex, false));
    drop(node);
    let node = spawn_configured(&after, "256M", &toml);
    let (status, _, got) = rt.block_on(signed(&node.http, "GET", "/devstoreaccount1/kept/a.txt", &[], b""));
    assert_eq!((status, &got[..]), (200, &b"first"[..]), "the restored node, started again");
}
