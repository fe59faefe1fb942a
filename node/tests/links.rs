//! Linked containers, read-through: a node whose container `cache` is linked to the container
//! `lake` of a second edgeblob node (the lake), through a proxy that counts what the lake sends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use edgeblob::config::{Config, DEV_ACCOUNT, DEV_KEY};
use edgeblob::link_config::{LinkConfig, Revalidate};
use edgeblob_testkit::faulty::{Faulty, Seen};
use edgeblob_testkit::node::InProcess;
use edgeblob_testkit::raw::signed;

fn link(lake: SocketAddr, revalidate: Revalidate) -> impl FnOnce(&mut Config) {
    move |c: &mut Config| {
        c.links.push(LinkConfig {
            account: DEV_ACCOUNT.into(),
            container: "cache".into(),
            url: format!("http://{lake}/{DEV_ACCOUNT}/lake/datasets"),
            remote_account: Some(DEV_ACCOUNT.into()),
            remote_key: Some(DEV_KEY.into()),
            sas: None,
            managed_identity: false,
            identity_endpoint: None,
            identity_client_id: None,
            ca_file: None,
            bytes_per_sec: None,
            revalidate,
            retry_budget_secs: 1,
            max_fetches: 4,
        })
    }
}

fn data(seed: u32, len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) ^ seed).rotate_left(seed % 31) as u8).collect()
}

/// A header of a head as `signed` gives it (lower-cased).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Puts `body` in the lake as `datasets/<name>` with a content type and metadata.
async fn lake_put(lake: &str, name: &str, body: &[u8]) -> String {
    let path = format!("/{DEV_ACCOUNT}/lake/datasets/{name}");
    let h = [("x-ms-blob-type", "BlockBlob"), ("x-ms-blob-content-type", "text/x-lake"), ("x-ms-meta-origin", "lake")];
    let (status, head, _) = signed(lake, "PUT", &path, &h, body).await;
    assert_eq!(status, 201, "{head}");
    header(&head, "last-modified").unwrap().to_owned()
}

async fn get(node: &str, name: &str) -> (u16, String, Vec<u8>) {
    signed(node, "GET", &format!("/{DEV_ACCOUNT}/cache/{name}"), &[], b"").await
}

/// Bytes the lake sent for reads of blob `name` since `from`.
fn lake_sent(seen: &[Seen], name: &str) -> u64 {
    let path = format!("/{DEV_ACCOUNT}/lake/datasets/{name}");
    seen.iter()
        .filter(|s| s.method == "GET" && s.path_and_query.split('?').next() == Some(&path))
        .map(|s| s.bytes_out)
        .sum()
}

#[test]
fn a_lake_blob_is_fetched_once_kept_whole_and_served_from_flash() {
    let (dir_l, dir_n) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lake = InProcess::start(dir_l.path(), 1 << 30, 1, |_| {});
    let lake_addr = lake.addr.to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let proxy = rt.block_on(Faulty::start(lake.addr, Vec::new(), 1));
    let node = InProcess::start(dir_n.path(), 1 << 30, 2, link(proxy.addr, Revalidate::Never));
    let addr = node.addr.to_string();
    rt.block_on(async {
        assert_eq!(signed(&lake_addr, "PUT", &format!("/{DEV_ACCOUNT}/lake?restype=container"), &[], b"").await.0, 201);
        let small = data(1, 1000);
        let big = data(2, 9 * (1 << 20) + 123);
        let modified = lake_put(&lake_addr, "a/small", &small).await;
        lake_put(&lake_addr, "a/empty", b"").await;
        lake_put(&lake_addr, "big", &big).await;

        // The first read fetches: the bytes, headers, metadata and times are the lake's.
        let (status, head, body) = get(&addr, "a/small").await;
        assert_eq!(status, 200, "{head}");
        assert_eq!(body, small);
        assert_eq!(header(&head, "content-type"), Some("text/x-lake"));
        assert_eq!(header(&head, "x-ms-meta-origin"), Some("lake"));
        assert_eq!(header(&head, "last-modified"), Some(modified.as_str()), "the lake's Last-Modified");
        assert!(header(&head, "content-md5").is_some(), "the lake's MD5 kept");
        assert!(!head.contains('$'), "the node's own metadata is never shown: {head}");
        let fetched = lake_sent(&proxy.seen(), "a/small");
        assert!(fetched >= small.len() as u64, "the lake sent the blob ({fetched} bytes)");
        // Later reads, whole and ranged, come from flash: the lake sends nothing more.
        let before = proxy.seen().len();
        assert_eq!(get(&addr, "a/small").await.2, small);
        let range =
            signed(&addr, "GET", &format!("/{DEV_ACCOUNT}/cache/a/small"), &[("x-ms-range", "bytes=10-19")], b"").await;
        assert_eq!((range.0, &range.2[..]), (206, &small[10..20]));
        assert_eq!(proxy.seen().len(), before, "no request reached the lake for a cached blob");

        // A blob of several ranges, and an empty one (Get Blob Properties fetches too).
        let (status, _, body) = get(&addr, "big").await;
        assert_eq!(status, 200);
        assert!(body == big, "the big blob byte for byte");
        let sent = lake_sent(&proxy.seen(), "big");
        assert!(sent >= big.len() as u64 && sent < big.len() as u64 + 64 * 1024, "fetched once: {sent} bytes");
        let (status, head, _) = signed(&addr, "HEAD", &format!("/{DEV_ACCOUNT}/cache/a/empty"), &[], b"").await;
        assert_eq!((status, header(&head, "content-length")), (200, Some("0")), "{head}");

        // Not in the lake: not found, as Azure says it.
        let (status, head, _) = get(&addr, "missing").await;
        assert_eq!((status, header(&head, "x-ms-error-code")), (404, Some("blobnotfound")));

        // 16 readers at once of a blob not here yet: one fetch.
        let shared = data(3, 12 << 20);
        lake_put(&lake_addr, "shared", &shared).await;
        let readers: Vec<_> = (0..16)
            .map(|_| {
                let addr = addr.clone();
                tokio::spawn(async move { get(&addr, "shared").await })
            })
            .collect();
        for r in readers {
            let (status, _, body) = r.await.unwrap();
            assert_eq!(status, 200);
            assert!(body == shared, "every reader gets the whole blob");
        }
        let sent = lake_sent(&proxy.seen(), "shared");
        assert!(sent < shared.len() as u64 + 64 * 1024, "16 readers, one fetch: the lake sent {sent} bytes");

        // A blob written here is the node's: served, and never looked for in the lake.
        let before = proxy.seen().len();
        let put =
            signed(&addr, "PUT", &format!("/{DEV_ACCOUNT}/cache/local"), &[("x-ms-blob-type", "BlockBlob")], b"mine")
                .await;
        assert_eq!(put.0, 201);
        assert_eq!(get(&addr, "local").await.2, b"mine");
        assert_eq!(proxy.seen().len(), before);
    });
    // After a restart the cache is still there: nothing is fetched again.
    drop(node);
    let node = InProcess::start(dir_n.path(), 1 << 30, 2, link(proxy.addr, Revalidate::Never));
    let addr = node.addr.to_string();
    rt.block_on(async {
        let before = proxy.seen().len();
        assert_eq!(get(&addr, "a/small").await.2, data(1, 1000));
        assert_eq!(proxy.seen().len(), before);
    });
}

#[test]
fn a_changed_lake_blob_is_fetched_again_a_deleted_one_goes_and_a_lake_down_serves_the_cache() {
    let (dir_l, dir_n) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lake = InProcess::start(dir_l.path(), 1 << 30, 1, |_| {});
    let lake_addr = lake.addr.to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let node = InProcess::start(dir_n.path(), 1 << 30, 2, link(lake.addr, Revalidate::Always));
    let addr = node.addr.to_string();
    rt.block_on(async {
        assert_eq!(signed(&lake_addr, "PUT", &format!("/{DEV_ACCOUNT}/lake?restype=container"), &[], b"").await.0, 201);
        let (v1, v2) = (data(4, 5 << 20), data(5, 6 << 20));
        lake_put(&lake_addr, "v", &v1).await;
        lake_put(&lake_addr, "gone", b"soon gone").await;
        lake_put(&lake_addr, "kept", b"cached").await;
        assert!(get(&addr, "v").await.2 == v1);
        assert_eq!(get(&addr, "gone").await.2, b"soon gone");
        assert_eq!(get(&addr, "kept").await.2, b"cached");
        let etag1 = header(&get(&addr, "v").await.1, "etag").unwrap().to_owned();

        // Overwritten in the lake: the next read is the new version, whole.
        lake_put(&lake_addr, "v", &v2).await;
        let (status, head, body) = get(&addr, "v").await;
        assert_eq!(status, 200);
        assert!(body == v2, "the new version, never a mix");
        assert_ne!(header(&head, "etag").unwrap(), etag1, "a new version here has a new ETag");

        // Deleted in the lake: gone here too.
        assert_eq!(signed(&lake_addr, "DELETE", &format!("/{DEV_ACCOUNT}/lake/datasets/gone"), &[], b"").await.0, 202);
        assert_eq!(get(&addr, "gone").await.0, 404);

        // A blob written here over a cached one is the client's: the lake's version does not
        // replace it.
        let put =
            signed(&addr, "PUT", &format!("/{DEV_ACCOUNT}/cache/v"), &[("x-ms-blob-type", "BlockBlob")], b"ours").await;
        assert_eq!(put.0, 201);
        assert_eq!(get(&addr, "v").await.2, b"ours");
    });
    // The lake goes away: what is cached is served, what is not is 503 with Retry-After.
    drop(lake);
    rt.block_on(async {
        assert_eq!(get(&addr, "kept").await.2, b"cached");
        let (status, head, _) = get(&addr, "never-fetched").await;
        assert_eq!(status, 503, "{head}");
        assert_eq!(header(&head, "x-ms-error-code"), Some("serverbusy"));
        assert!(header(&head, "retry-after").is_some());
    });
}
