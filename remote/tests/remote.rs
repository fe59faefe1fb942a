//! The remote client against real remotes (Azurite from the peers kit, and an edgeblob node in
//! this process) and against a faulty one in front of them: answers that are refused, lost or
//! throttled, as a remote over a WAN gives them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgeblob::config::{DEV_ACCOUNT, DEV_KEY};
use edgeblob_remote::{Credential, Remote, RemoteConfig, RemoteError, RetryPolicy};
use edgeblob_testkit::faulty::{Fault, Faulty, Rule};
use edgeblob_testkit::{node::InProcess, peers};

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

/// With the host's managed identity (a stand-in identity endpoint minting Entra-shaped tokens)
/// against Azurite over TLS taking bearer tokens: every call works, one token serves them all,
/// and a token is never offered over plain http off loopback.
#[test]
fn every_call_with_a_managed_identity_token_against_azurite_over_tls() {
    let Some(tls) = peers::tls("the remote client with a managed identity against Azurite") else { return };
    use rustls_pki_types::pem::PemObject;
    let dir = tempfile::tempdir().unwrap();
    let azurite = peers::Azurite::start_oauth(dir.path(), &tls);
    let stub = edgeblob_testkit::keyvault::KeyVaultStub::start("unused");
    let cred = Credential::managed_identity(Some(&stub.identity_endpoint()), None).unwrap();
    let origin = format!("https://127.0.0.1:{}", azurite.port);
    let ca = || vec![rustls_pki_types::CertificateDer::from_pem_file(tls.join("ca.pem")).unwrap()];
    let r = remote(&origin, "tier-mi", |c| {
        c.credential = cred.clone();
        c.extra_roots = ca();
    });
    rt().block_on(every_call_does_what_azure_documents(&r));
    assert_eq!(stub.calls("token"), 1, "one token, kept until it nears its expiry");
    // Without a token, Azurite over TLS with OAuth refuses: the token is what let the calls in.
    let anonymous = remote(&origin, "tier-mi", |c| {
        c.credential = Credential::Anonymous;
        c.retry.attempts = 1;
        c.extra_roots = ca();
    });
    assert!(rt().block_on(anonymous.list("", None, 10)).is_err(), "anonymous listing refused");
    let plain = RemoteConfig::new("http://lake.example.com/tier/a", cred);
    assert!(Remote::new(plain).is_err(), "a token over plain http");
}

/// An edgeblob node in this process as the remote, with the tests' container made: runs `f` with
/// the node's address and a client straight to it.
fn on_node<F, Fut>(f: F)
where
    F: FnOnce(std::net::SocketAddr, Remote) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let node = InProcess::start(dir.path(), 1 << 30, 2, |_| {});
    rt().block_on(async {
        let direct = remote(&format!("http://{}", node.addr), "tier", |_| {});
        direct.create_container().await.unwrap();
        f(node.addr, direct).await
    });
}

#[test]
fn throttling_is_waited_out_for_at_least_its_retry_after() {
    on_node(|node, direct| async move {
        let f = Faulty::start(node, vec![Rule::first(Fault::Busy(1), 2)], 1).await;
        let r = remote(&format!("http://{}", f.addr), "tier", |_| {});
        let t = Instant::now();
        r.put_blob("manifest/1", Bytes::from_static(b"m"), true).await.unwrap();
        assert!(t.elapsed() >= Duration::from_secs(2), "two answers of Retry-After: 1 waited {:?}", t.elapsed());
        assert_eq!(f.seen().len(), 3);
        assert_eq!(&direct.get("manifest/1").await.unwrap()[..], b"m");

        // A Retry-After past the call's budget is not waited for: the call gives up at once.
        let f = Faulty::start(node, vec![Rule::ratio(Fault::Busy(3600), 1.0)], 1).await;
        let r = remote(&format!("http://{}", f.addr), "tier", |_| {});
        let t = Instant::now();
        match r.put_blob("manifest/2", Bytes::from_static(b"m"), true).await {
            Err(RemoteError::Exhausted { attempts: 1, last, .. }) => assert_eq!(last.status(), Some(503)),
            other => panic!("{other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

        // Busy without end: the policy's attempts, then the last answer.
        let f = Faulty::start(node, vec![Rule::ratio(Fault::Busy(0), 1.0)], 1).await;
        let r = remote(&format!("http://{}", f.addr), "tier", |c| c.retry.attempts = 3);
        match r.properties("manifest/1").await {
            Err(e @ RemoteError::Exhausted { attempts: 3, .. }) => assert_eq!(e.status(), Some(503)),
            other => panic!("{other:?}"),
        }
        assert_eq!(f.seen().len(), 3);
    });
}

/// A create-only commit whose answer is lost after the remote made it: the retry finds the
/// name taken, sees its own blocks there, and succeeds; a commit of other blocks under a taken
/// name still fails. A small object likewise, by its MD5.
#[test]
fn a_commit_whose_answer_was_lost_is_recognised_as_done() {
    on_node(|node, direct| async move {
        let ids = vec![b"b0".to_vec(), b"b1".to_vec()];
        for id in &ids {
            direct.put_block("packs/7", id, Bytes::from(data(id[1], 5000))).await.unwrap();
        }
        let f = Faulty::start(node, vec![Rule::first(Fault::LoseAnswer, 1)], 1).await;
        let r = remote(&format!("http://{}", f.addr), "tier", |_| {});
        r.put_block_list("packs/7", &ids, true, None).await.unwrap();
        assert_eq!(f.seen().len(), 4, "the lost commit, its retry, the block list and properties read");
        assert_eq!(direct.properties("packs/7").await.unwrap().unwrap().len, 10_000);
        // Not a lost answer: someone else's blob under the name is not taken for ours.
        assert!(matches!(
            r.put_block_list("packs/7", &ids[..1], true, None).await,
            Err(RemoteError::AlreadyExists { .. })
        ));

        let f = Faulty::start(node, vec![Rule::first(Fault::LoseAnswer, 1)], 1).await;
        let r = remote(&format!("http://{}", f.addr), "tier", |_| {});
        r.put_blob("manifest/9", Bytes::from_static(b"nine"), true).await.unwrap();
        assert_eq!(&direct.get("manifest/9").await.unwrap()[..], b"nine");
        assert!(matches!(
            r.put_blob("manifest/9", Bytes::from_static(b"other"), true).await,
            Err(RemoteError::AlreadyExists { .. })
        ));
    });
}

/// A remote that answers 30% of requests busy (Retry-After: 1), cuts 10% of connections (and the
/// first) before
/// passing them on, loses 5% of answers after acting, and flips a byte in 10% of the rest: an
/// upload of a pack, its create-only commit and reads of it all complete with the right bytes,
/// and no attempt that followed a busy answer came sooner than its Retry-After.
#[test]
fn a_storm_of_faults_is_ridden_out_and_every_retry_after_is_honoured() {
    on_node(|node, direct| async move {
        let rules = vec![
            Rule::first(Fault::Cut, 1),
            Rule::ratio(Fault::Busy(1), 0.3),
            Rule::ratio(Fault::Cut, 0.1),
            Rule::ratio(Fault::LoseAnswer, 0.05),
            Rule::ratio(Fault::Flip, 0.1),
        ];
        let f = Faulty::start(node, rules, 7).await;
        let r = remote(&format!("http://{}", f.addr), "tier", |c| {
            c.retry = RetryPolicy {
                attempts: 20,
                base: Duration::from_millis(10),
                max_backoff: Duration::from_millis(100),
                budget: Duration::from_secs(120),
            };
        });
        let blocks: Vec<Vec<u8>> = (1..=6).map(|i| data(i, 30_000)).collect();
        let ids: Vec<Vec<u8>> = (0u32..6).map(|i| i.to_be_bytes().to_vec()).collect();
        for (id, b) in ids.iter().zip(&blocks) {
            r.put_block("packs/storm", id, Bytes::from(b.clone())).await.unwrap();
        }
        r.put_block_list("packs/storm", &ids, true, None).await.unwrap();
        let whole = blocks.concat();
        for (at, len) in [(0u64, 4096u64), (29_000, 5000), (170_000, 10_000)] {
            assert_eq!(
                &r.get_range("packs/storm", at, len).await.unwrap()[..],
                &whole[at as usize..(at + len) as usize]
            );
        }
        assert_eq!(&direct.get("packs/storm").await.unwrap()[..], &whole[..]);

        let seen = f.seen();
        let busy = seen.iter().filter(|s| s.fault == Some(Fault::Busy(1))).count();
        assert!(
            busy >= 3 && seen.iter().any(|s| s.fault == Some(Fault::Cut)),
            "faults happened: {busy} busy of {}",
            seen.len()
        );
        // The client's own counts agree with what the proxy did to it.
        let stats = r.stats().snapshot();
        let count = |want: fn(&edgeblob_remote::Outcome) -> bool| -> usize {
            stats.attempts.iter().filter(|(_, o, _)| want(o)).map(|(_, _, n)| *n as usize).sum()
        };
        assert_eq!(count(|o| *o == edgeblob_remote::Outcome::Status(503)), busy, "503s counted");
        let cut = seen.iter().filter(|s| matches!(s.fault, Some(Fault::Cut | Fault::LoseAnswer))).count();
        assert!(count(|o| *o == edgeblob_remote::Outcome::Transport) >= cut, "cut connections counted");
        assert!(stats
            .attempts
            .iter()
            .any(|(op, o, _)| *op == "Put Block List" && *o == edgeblob_remote::Outcome::Status(201)));
        assert!(stats.bytes_sent >= whole.len() as u64, "{} bytes sent", stats.bytes_sent);
        assert!(stats.bytes_received >= 4096 + 5000 + 10_000, "{} bytes received", stats.bytes_received);
        let mut by_call: HashMap<&str, Vec<&edgeblob_testkit::faulty::Seen>> = HashMap::new();
        for s in &seen {
            assert!(!s.request_id.is_empty(), "every request carries its call's id");
            by_call.entry(&s.request_id).or_default().push(s);
        }
        for attempts in by_call.values() {
            for w in attempts.windows(2) {
                if w[0].fault == Some(Fault::Busy(1)) {
                    let gap = w[1].at - w[0].at;
                    assert!(
                        gap >= Duration::from_secs(1),
                        "{} {} retried {gap:?} after a Retry-After of 1 s",
                        w[1].method,
                        w[1].path_and_query
                    );
                }
            }
        }
    });
}

/// An answer with a flipped byte is read again, never returned: a whole object by its stored
/// MD5, a range by the MD5 Azure gives for ranges up to 4 MiB.
#[test]
fn a_damaged_answer_is_read_again_and_never_returned() {
    on_node(|node, direct| async move {
        let body = Bytes::from(data(9, 50_000));
        direct.put_blob("manifest/m", body.clone(), true).await.unwrap();
        let f = Faulty::start(node, vec![Rule::first(Fault::Flip, 1)], 1).await;
        let r = remote(&format!("http://{}", f.addr), "tier", |_| {});
        assert_eq!(r.get("manifest/m").await.unwrap(), body);
        assert_eq!(f.seen().len(), 2, "the damaged answer, then a whole one");
        let f = Faulty::start(node, vec![Rule::first(Fault::Flip, 1)], 1).await;
        let r = remote(&format!("http://{}", f.addr), "tier", |_| {});
        assert_eq!(r.get_range("manifest/m", 1000, 20_000).await.unwrap(), body.slice(1000..21_000));
        assert_eq!(f.seen().len(), 2);
        // Damaged every time: an error, not bytes.
        let f = Faulty::start(node, vec![Rule::ratio(Fault::Flip, 1.0)], 1).await;
        let r = remote(&format!("http://{}", f.addr), "tier", |c| c.retry.attempts = 3);
        assert!(matches!(r.get("manifest/m").await, Err(RemoteError::Integrity { .. })));
        // An answer longer than the range asked for is cut off where the range ends: never read
        // whole into memory, and an error.
        let f = Faulty::start(node, vec![Rule::ratio(Fault::Grow(8 << 20), 1.0)], 1).await;
        let r = remote(&format!("http://{}", f.addr), "tier", |c| c.retry.attempts = 2);
        match r.get_range("manifest/m", 0, 100).await {
            Err(RemoteError::Exhausted { last, .. }) => {
                assert!(matches!(*last, RemoteError::Transport { .. }), "{last}");
                assert!(last.to_string().contains("at most 100 bytes"), "{last}");
            }
            other => panic!("{other:?}"),
        }
    });
}
