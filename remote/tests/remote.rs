//! The remote client against real remotes (Azurite from the peers kit, and an edgeblob node in
//! this process) and against a faulty one in front of them: answers that are refused, lost or
//! throttled, as a remote over a WAN gives them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgeblob::config::{DEV_ACCOUNT, DEV_KEY};
use edgeblob_remote::{Credential, Remote, RemoteConfig, RemoteError, RetryPolicy};
use edgeblob_testkit::{node::InProcess, peers};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn remote(origin: &str, container: &str, tune: impl FnOnce(&mut RemoteConfig)) -> Remote {
    let cred = Credential::shared_key(DEV_ACCOUNT, DEV_KEY).unwrap();
    let mut cfg = RemoteConfig::new(&format!("{origin}/{DEV_ACCOUNT}/{container}/node-a"), cred);
    cfg.retry = RetryPolicy {
        attempts: 5,
        base: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        budget: Duration::from_secs(30),
    };
    cfg.timeout = Duration::from_secs(10);
    tune(&mut cfg);
    Remote::new(cfg).unwrap()
}

fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(seed as u32) as u8 ^ seed).collect()
}

/// What the tier asks of any remote, checked call by call.
async fn every_call_does_what_azure_documents(r: &Remote) {
    assert!(r.create_container().await.unwrap(), "a new container");
    assert!(!r.create_container().await.unwrap(), "one that is there already");

    // A pack of three blocks, committed create-only.
    let blocks: Vec<Vec<u8>> = (1..=3).map(|i| data(i, 100_000 + i as usize)).collect();
    let ids: Vec<Vec<u8>> = (0u32..3).map(|i| i.to_be_bytes().to_vec()).collect();
    for (id, b) in ids.iter().zip(&blocks) {
        r.put_block("packs/1", id, Bytes::from(b.clone())).await.unwrap();
    }
    let etag = r.put_block_list("packs/1", &ids, true, None).await.unwrap();
    assert!(!etag.is_empty());
    match r.put_block_list("packs/1", &ids, true, None).await {
        Err(RemoteError::AlreadyExists { .. }) => {}
        other => panic!("a second create-only commit of one name: {other:?}"),
    }
    let sizes: Vec<u64> = blocks.iter().map(|b| b.len() as u64).collect();
    assert_eq!(r.committed_blocks("packs/1").await.unwrap(), ids.iter().cloned().zip(sizes).collect::<Vec<_>>());

    // Ranges anywhere, across blocks too, and the whole.
    let whole: Vec<u8> = blocks.concat();
    for (at, len) in [(0u64, 1u64), (99_990, 30), (100_001, 100_002), (whole.len() as u64 - 7, 7), (5, 250_000)] {
        let got = r.get_range("packs/1", at, len).await.unwrap();
        assert_eq!(&got[..], &whole[at as usize..(at + len) as usize], "range {at}+{len}");
    }
    assert_eq!(&r.get("packs/1").await.unwrap()[..], &whole[..]);
    let p = r.properties("packs/1").await.unwrap().expect("it exists");
    assert_eq!(p.len, whole.len() as u64);
    assert_eq!(r.properties("packs/none").await.unwrap(), None);

    // Small objects, create-only.
    r.put_blob("manifest/1", Bytes::from_static(b"epoch 1"), true).await.unwrap();
    assert!(matches!(
        r.put_blob("manifest/1", Bytes::from_static(b"epoch 1'"), true).await,
        Err(RemoteError::AlreadyExists { .. })
    ));
    r.put_blob("manifest/2", Bytes::new(), true).await.unwrap();
    r.put_blob("manifest/3", Bytes::from_static(b"3"), true).await.unwrap();
    assert_eq!(&r.get("manifest/1").await.unwrap()[..], b"epoch 1");
    assert_eq!(r.get("manifest/2").await.unwrap().len(), 0);

    // Listings by prefix, a page at a time; names come back without the endpoint's prefix.
    let page = r.list("packs/", None, 100).await.unwrap();
    assert_eq!(
        page.blobs.iter().map(|b| (b.name.as_str(), b.len)).collect::<Vec<_>>(),
        [("packs/1", whole.len() as u64)]
    );
    let mut names = Vec::new();
    let mut marker = None;
    loop {
        let page = r.list("manifest/", marker.as_deref(), 2).await.unwrap();
        assert!(page.blobs.len() <= 2);
        names.extend(page.blobs.into_iter().map(|b| b.name));
        marker = page.next;
        if marker.is_none() {
            break;
        }
    }
    assert_eq!(names, ["manifest/1", "manifest/2", "manifest/3"]);

    assert!(r.delete("packs/1").await.unwrap());
    assert!(!r.delete("packs/1").await.unwrap(), "deleting what is not there");
    match r.get_range("packs/1", 0, 1).await {
        Err(e) => assert_eq!(e.status(), Some(404), "{e}"),
        Ok(_) => panic!("a deleted object was read"),
    }
}

#[test]
fn every_call_against_an_edgeblob_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = InProcess::start(dir.path(), 1 << 30, 2, |_| {});
    rt().block_on(every_call_does_what_azure_documents(&remote(&format!("http://{}", node.addr), "tier", |_| {})));
}

#[test]
fn every_call_against_azurite() {
    if peers::kit("the remote client against Azurite").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let azurite = peers::Azurite::start(dir.path());
    rt().block_on(every_call_does_what_azure_documents(&remote(&azurite.endpoint(), "tier", |_| {})));
}

/// How the faulty remote answers the requests it does not pass on untouched.
#[derive(Clone, Copy)]
enum Fault {
    /// 503 ServerBusy with `Retry-After` of this many seconds.
    Busy(u64),
    /// Forwards the request, then closes the connection instead of answering: the remote did
    /// the work and the client cannot know.
    LoseAnswer,
}

/// A remote in front of a real one that answers the first `faults` requests as `fault` says
/// and forwards the rest; it counts every request.
struct Faulty {
    addr: SocketAddr,
    seen: Arc<AtomicUsize>,
}

async fn faulty(target: SocketAddr, fault: Fault, faults: usize) -> Faulty {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (client, counter) = (client.clone(), counter.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (client, n) = (client.clone(), counter.fetch_add(1, Ordering::SeqCst));
                    async move {
                        if n < faults {
                            if let Fault::Busy(secs) = fault {
                                let resp = hyper::Response::builder()
                                    .status(503)
                                    .header("retry-after", secs.to_string())
                                    .header("x-ms-error-code", "ServerBusy")
                                    .body(Full::new(Bytes::new()))
                                    .unwrap();
                                return Ok::<_, std::io::Error>(resp);
                            }
                        }
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
                        let uri = format!("http://{target}{}", parts.uri.path_and_query().map_or("/", |p| p.as_str()));
                        let mut fwd = hyper::Request::builder().method(parts.method).uri(uri);
                        for (k, v) in &parts.headers {
                            fwd = fwd.header(k, v);
                        }
                        let resp = client.request(fwd.body(Full::new(body)).unwrap()).await.unwrap();
                        let (parts, body) = resp.into_parts();
                        let body = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
                        if n < faults {
                            // LoseAnswer: an error closes the connection with no answer.
                            return Err(std::io::Error::other("answer lost"));
                        }
                        Ok::<_, std::io::Error>(hyper::Response::from_parts(parts, Full::new(body)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
            });
        }
    });
    Faulty { addr, seen }
}

#[test]
fn throttling_is_waited_out_for_at_least_its_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let node = InProcess::start(dir.path(), 1 << 30, 2, |_| {});
    rt().block_on(async {
        let direct = remote(&format!("http://{}", node.addr), "tier", |_| {});
        direct.create_container().await.unwrap();
        let f = faulty(node.addr, Fault::Busy(1), 2).await;
        let r = remote(&format!("http://{}", f.addr), "tier", |_| {});
        let t = Instant::now();
        r.put_blob("manifest/1", Bytes::from_static(b"m"), true).await.unwrap();
        assert!(t.elapsed() >= Duration::from_secs(2), "two answers of Retry-After: 1 waited {:?}", t.elapsed());
        assert_eq!(f.seen.load(Ordering::SeqCst), 3);
        assert_eq!(&direct.get("manifest/1").await.unwrap()[..], b"m");

        // A Retry-After past the call's budget is not waited for: the call gives up at once.
        let f = faulty(node.addr, Fault::Busy(3600), usize::MAX).await;
        let r = remote(&format!("http://{}", f.addr), "tier", |_| {});
        let t = Instant::now();
        match r.put_blob("manifest/2", Bytes::from_static(b"m"), true).await {
            Err(RemoteError::Exhausted { attempts: 1, last, .. }) => assert_eq!(last.status(), Some(503)),
            other => panic!("{other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

        // Busy without end: the policy's attempts, then the last answer.
        let f = faulty(node.addr, Fault::Busy(0), usize::MAX).await;
        let r = remote(&format!("http://{}", f.addr), "tier", |c| c.retry.attempts = 3);
        match r.properties("manifest/1").await {
            Err(e @ RemoteError::Exhausted { attempts: 3, .. }) => assert_eq!(e.status(), Some(503)),
            other => panic!("{other:?}"),
        }
        assert_eq!(f.seen.load(Ordering::SeqCst), 3);
    });
}

/// A create-only commit whose answer is lost after the remote made it: the retry finds the
/// name taken, sees its own blocks there, and succeeds; a commit of other blocks under a taken
/// name still fails. A small object likewise, by its MD5.
#[test]
fn a_commit_whose_answer_was_lost_is_recognised_as_done() {
    let dir = tempfile::tempdir().unwrap();
    let node = InProcess::start(dir.path(), 1 << 30, 2, |_| {});
    rt().block_on(async {
        let direct = remote(&format!("http://{}", node.addr), "tier", |_| {});
        direct.create_container().await.unwrap();
        let ids = vec![b"b0".to_vec(), b"b1".to_vec()];
        for id in &ids {
            direct.put_block("packs/7", id, Bytes::from(data(id[1], 5000))).await.unwrap();
        }
        let f = faulty(node.addr, Fault::LoseAnswer, 1).await;
        let r = remote(&format!("http://{}", f.addr), "tier", |_| {});
        r.put_block_list("packs/7", &ids, true, None).await.unwrap();
        assert_eq!(f.seen.load(Ordering::SeqCst), 4, "the lost commit, its retry, the block list and properties read");
        assert_eq!(direct.properties("packs/7").await.unwrap().unwrap().len, 10_000);
        // Not a lost answer: someone else's blob under the name is not taken for ours.
        assert!(matches!(
            r.put_block_list("packs/7", &ids[..1], true, None).await,
            Err(RemoteError::AlreadyExists { .. })
        ));

        let f = faulty(node.addr, Fault::LoseAnswer, 1).await;
        let r = remote(&format!("http://{}", f.addr), "tier", |_| {});
        r.put_blob("manifest/9", Bytes::from_static(b"nine"), true).await.unwrap();
        assert_eq!(&direct.get("manifest/9").await.unwrap()[..], b"nine");
        assert!(matches!(
            r.put_blob("manifest/9", Bytes::from_static(b"other"), true).await,
            Err(RemoteError::AlreadyExists { .. })
        ));
    });
}
