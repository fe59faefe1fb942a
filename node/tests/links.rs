//! Linked containers, read-through: a node whose container `cache` is linked to the container
//! `lake` of a second edgeblob node (the lake), through a proxy that counts what the lake sends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use edgeblob::config::{Config, DEV_ACCOUNT, DEV_KEY};
use edgeblob::link_config::{LinkConfig, Revalidate};
use edgeblob_testkit::faulty::{Fault, Faulty, Rule, Seen};
use edgeblob_testkit::node::InProcess;
use edgeblob_testkit::raw::signed;
use futures::FutureExt;
use md5::Digest;

/// A test's lake: an edgeblob node of one shard, its address, and the runtime the test's
/// clients (and a proxy in front of the lake) run on. Bind `_dir` by name: it holds the lake's
/// files, and a field left to `..` would be dropped, and deleted, at once.
struct Lake {
    _dir: tempfile::TempDir,
    node: InProcess,
    addr: String,
    rt: tokio::runtime::Runtime,
}

impl Lake {
    fn start(size: u64) -> Lake {
        let dir = tempfile::tempdir().unwrap();
        let node = InProcess::start(dir.path(), size, 1, |_| {});
        let addr = node.addr.to_string();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Lake { _dir: dir, node, addr, rt }
    }
}

fn link(lake: SocketAddr, revalidate: Revalidate) -> impl FnOnce(&mut Config) {
    link_with(lake, revalidate, 1)
}

fn link_with(lake: SocketAddr, revalidate: Revalidate, retry_budget_secs: u64) -> impl FnOnce(&mut Config) {
    move |c: &mut Config| {
        c.links.push(LinkConfig {
            remote_account: Some(DEV_ACCOUNT.into()),
            remote_key: Some(DEV_KEY.into()),
            revalidate,
            retry_budget_secs,
            max_fetches: 4,
            ..LinkConfig::new("cache", &format!("http://{lake}/{DEV_ACCOUNT}/lake/datasets"))
        })
    }
}

/// A node's configuration linking `cache` to the lake's `lake/<path>` through `lake` (a proxy),
/// with the development account's key, and `extra` settings of the link (TOML lines).
fn node_config(lake: SocketAddr, path: &str, extra: &str) -> String {
    format!(
        "[[links]]\ncontainer = \"cache\"\nurl = \"http://{lake}/{DEV_ACCOUNT}/lake/{path}\"\nremote_account = \"{DEV_ACCOUNT}\"\nremote_key = \"{DEV_KEY}\"\n{extra}"
    )
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

/// Whether an answer was cut short of its Content-Length (a body sent as fetched whose bytes
/// turned out not to be the lake's is cut before its end, never completed).
fn cut((_, head, body): &(u16, String, Vec<u8>)) -> bool {
    header(head, "content-length").is_some_and(|n| n.parse::<usize>().unwrap() != body.len())
}

/// [`get`] until an answer is not cut (a client retries those); how many were.
async fn get_retried(node: &str, name: &str) -> ((u16, String, Vec<u8>), usize) {
    for cuts in 0..3 {
        let r = get(node, name).await;
        if !cut(&r) {
            return (r, cuts);
        }
    }
    panic!("{name}: three answers cut in a row");
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
    let dir_n = tempfile::tempdir().unwrap();
    let Lake { _dir, node: lake, addr: lake_addr, rt } = Lake::start(1 << 30);
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
        let lake_head = signed(&lake_addr, "HEAD", &format!("/{DEV_ACCOUNT}/lake/datasets/a/small"), &[], b"").await.1;
        assert_eq!(header(&head, "etag"), header(&lake_head, "etag"), "the lake's ETag");
        let fetched = lake_sent(&proxy.seen(), "a/small");
        assert!(fetched >= small.len() as u64, "the lake sent the blob ({fetched} bytes)");
        // Later reads, whole and ranged, come from flash: the lake sends nothing more.
        let before = proxy.seen().len();
        assert_eq!(get(&addr, "a/small").await.2, small);
        let range =
            signed(&addr, "GET", &format!("/{DEV_ACCOUNT}/cache/a/small"), &[("x-ms-range", "bytes=10-19")], b"").await;
        assert_eq!((range.0, &range.2[..]), (206, &small[10..20]));
        assert_eq!(proxy.seen().len(), before, "no request reached the lake for a cached blob");

        // A blob of several ranges, and an empty one (Get Blob Properties answers from the lake).
        let (status, _, body) = get(&addr, "big").await;
        assert_eq!(status, 200);
        assert!(body == big, "the big blob byte for byte");
        let sent = lake_sent(&proxy.seen(), "big");
        assert!(sent >= big.len() as u64 && sent < big.len() as u64 + 64 * 1024, "fetched once: {sent} bytes");
        let (status, head, _) = signed(&addr, "HEAD", &format!("/{DEV_ACCOUNT}/cache/a/empty"), &[], b"").await;
        assert_eq!((status, header(&head, "content-length")), (200, Some("0")), "{head}");

        // A lake blob whose MD5 its writer got wrong (Put Block List does not check it): the
        // whole does not match, each range is then checked on its own, and it is kept as the
        // lake has it.
        let wrong = "AAAAAAAAAAAAAAAAAAAAAA==";
        let odd = data(9, (5 << 20) + 7);
        let lake_path = format!("/{DEV_ACCOUNT}/lake/datasets/odd");
        assert_eq!(
            signed(&lake_addr, "PUT", &format!("{lake_path}?comp=block&blockid=YQ%3D%3D"), &[], &odd).await.0,
            201
        );
        let list = b"<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Latest>YQ==</Latest></BlockList>";
        let h = [("x-ms-blob-content-md5", wrong)];
        assert_eq!(signed(&lake_addr, "PUT", &format!("{lake_path}?comp=blocklist"), &h, list).await.0, 201);
        // The first answer, sent as fetched, is cut before its end (its bytes were not checked
        // when sent); the next is the lake's blob as it is.
        let ((status, head, body), cuts) = get_retried(&addr, "odd").await;
        assert_eq!(cuts, 1, "the first answer cut");
        assert_eq!(status, 200, "{head}");
        assert!(body == odd, "the bytes, whatever the MD5 says");
        assert_eq!(header(&head, "content-md5"), Some(wrong.to_ascii_lowercase().as_str()), "the lake's MD5, as it is");

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
    let dir_n = tempfile::tempdir().unwrap();
    let Lake { _dir, node: lake, addr: lake_addr, rt } = Lake::start(1 << 30);
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

/// One listing entry as the XML shows it: name, and for a blob its ETag, Last-Modified,
/// Content-Length and Content-Type (empty for a prefix).
type Entry = (String, String, String, String, String);

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let from = text.find(open)? + open.len();
    Some(&text[from..from + text[from..].find(close)?])
}

/// The entries of one List Blobs answer, and its NextMarker.
fn parse_listing(xml: &str) -> (Vec<Entry>, Option<String>) {
    let mut out = Vec::new();
    for part in xml.split("<Blob>").skip(1) {
        let f = |tag: &str| between(part, &format!("<{tag}>"), &format!("</{tag}>")).unwrap_or("").to_owned();
        out.push((f("Name"), f("Etag"), f("Last-Modified"), f("Content-Length"), f("Content-Type")));
    }
    for part in xml.split("<BlobPrefix>").skip(1) {
        out.push((
            between(part, "<Name>", "</Name>").unwrap().to_owned(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ));
    }
    out.sort();
    let next = between(xml, "<NextMarker>", "</NextMarker>").filter(|m| !m.is_empty()).map(str::to_owned);
    (out, next)
}

/// Every entry of a listing of `container` at `addr`, `page` at a time.
async fn list_all(addr: &str, container: &str, query: &str, page: usize) -> Vec<Entry> {
    let mut all = Vec::new();
    let mut marker: Option<String> = None;
    for _ in 0..10_000 {
        let mut q = format!("/{DEV_ACCOUNT}/{container}?restype=container&comp=list&maxresults={page}{query}");
        if let Some(m) = &marker {
            q.push_str(&format!(
                "&marker={}",
                percent_encoding::utf8_percent_encode(m, percent_encoding::NON_ALPHANUMERIC)
            ));
        }
        let (status, head, body) = signed(addr, "GET", &q, &[], b"").await;
        assert_eq!(status, 200, "{head}\n{}", String::from_utf8_lossy(&body));
        let (entries, next) = parse_listing(&String::from_utf8(body).unwrap());
        assert!(entries.len() <= page, "a page holds at most maxresults");
        all.extend(entries);
        match next {
            Some(m) => marker = Some(m),
            None => return all,
        }
    }
    panic!("the listing did not end");
}

/// The lake's listing of `datasets/`, named as the linked container names it.
async fn lake_listing(lake: &str, query: &str) -> Vec<Entry> {
    let q = format!("&prefix=datasets/{query}");
    let mut all = list_all(lake, "lake", &q, 5000).await;
    for e in &mut all {
        e.0 = e.0.strip_prefix("datasets/").unwrap().to_owned();
    }
    all.sort();
    all
}

async fn listings_merge_the_lake_with_what_is_here(lake: &str, node: &str) {
    assert_eq!(signed(lake, "PUT", &format!("/{DEV_ACCOUNT}/lake?restype=container"), &[], b"").await.0, 201);
    let names: Vec<String> = (0..30).map(|i| format!("d{}/b{i:02}", i % 3)).collect();
    for (i, n) in names.iter().enumerate() {
        lake_put(lake, n, &data(i as u32, i * 10)).await;
    }
    // Outside the link's prefix: never listed.
    let put = [("x-ms-blob-type", "BlockBlob")];
    assert_eq!(signed(lake, "PUT", &format!("/{DEV_ACCOUNT}/lake/other"), &put, b"x").await.0, 201);
    // Written here, and one fetched.
    for local in ["d1/local", "e-local"] {
        assert_eq!(signed(node, "PUT", &format!("/{DEV_ACCOUNT}/cache/{local}"), &put, b"here").await.0, 201);
    }
    assert_eq!(get(node, "d0/b03").await.0, 200);

    let mut want: Vec<String> = names.iter().cloned().chain(["d1/local".into(), "e-local".into()]).collect();
    want.sort();
    let lake_flat = lake_listing(lake, "").await;
    for page in [1, 2, 7, 100] {
        let got = list_all(node, "cache", "", page).await;
        let got_names: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(got_names, want, "flat, {page} a page");
        // The lake's blobs as the lake lists them: ETag, times, size, type (the fetched one too).
        let lake_here: Vec<&Entry> = got.iter().filter(|e| names.contains(&e.0)).collect();
        assert_eq!(lake_here, lake_flat.iter().collect::<Vec<_>>(), "the lake's entries, {page} a page");
    }
    for page in [1, 3, 100] {
        let got = list_all(node, "cache", "&delimiter=/", page).await;
        let got_names: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(got_names, ["d0/", "d1/", "d2/", "e-local"], "by directory, {page} a page");
        let under: Vec<String> =
            list_all(node, "cache", "&prefix=d1/&delimiter=/", page).await.into_iter().map(|e| e.0).collect();
        let want_d1: Vec<&String> = want.iter().filter(|n| n.starts_with("d1/")).collect();
        assert_eq!(under.iter().collect::<Vec<_>>(), want_d1, "under d1/, {page} a page");
    }
    let (_, _, body) = signed(
        node,
        "GET",
        &format!("/{DEV_ACCOUNT}/cache?restype=container&comp=list&include=metadata&prefix=d2/"),
        &[],
        b"",
    )
    .await;
    let xml = String::from_utf8(body).unwrap();
    assert_eq!(xml.matches("<origin>lake</origin>").count(), 10, "the lake's metadata: {xml}");

    // Deleted in the lake, the fetched blob leaves the listing; the blobs written here stay.
    assert_eq!(signed(lake, "DELETE", &format!("/{DEV_ACCOUNT}/lake/datasets/d0/b03"), &[], b"").await.0, 202);
    let got: Vec<String> = list_all(node, "cache", "", 4).await.into_iter().map(|e| e.0).collect();
    want.retain(|n| n != "d0/b03");
    assert_eq!(got, want);
}

#[test]
fn a_linked_listing_is_the_lakes_merged_with_writes_here_in_every_page_size() {
    let (dir_l, dir_n) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lake = InProcess::start(dir_l.path(), 1 << 30, 1, |_| {});
    let node = InProcess::start(dir_n.path(), 1 << 30, 2, link(lake.addr, Revalidate::Always));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(listings_merge_the_lake_with_what_is_here(&lake.addr.to_string(), &node.addr.to_string()));
}

#[test]
fn a_linked_listing_of_an_azurite_lake() {
    if edgeblob_testkit::peers::kit("a container linked to Azurite").is_none() {
        return;
    }
    let (dir_l, dir_n) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let azurite = edgeblob_testkit::peers::Azurite::start(dir_l.path());
    let addr: SocketAddr = format!("127.0.0.1:{}", azurite.port).parse().unwrap();
    let node = InProcess::start(dir_n.path(), 1 << 30, 2, link(addr, Revalidate::Always));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(listings_merge_the_lake_with_what_is_here(&addr.to_string(), &node.addr.to_string()));
}

/// azcopy, rclone and the Python SDK, pointed at the node, read a linked container unchanged:
/// a recursive download (listing, then ranged reads of blobs not yet here), a copy, and the
/// SDK's listing and downloads give the lake's bytes.
#[test]
fn azcopy_rclone_and_the_python_sdk_read_a_linked_container_unchanged() {
    let Some(kit) = edgeblob_testkit::peers::kit("azcopy and the SDK on a linked container") else { return };
    let (dir_l, dir_n, out) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lake = InProcess::start(dir_l.path(), 1 << 30, 1, |_| {});
    let node = InProcess::start(dir_n.path(), 1 << 30, 2, link(lake.addr, Revalidate::Always));
    let lake_addr = lake.addr.to_string();
    let blobs: Vec<(&str, Vec<u8>)> = vec![
        ("x/empty", Vec::new()),
        ("x/small", data(7, 1024)),
        ("y/mid", data(8, 3_000_001)),
        ("big", data(9, 20 << 20)),
    ];
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(signed(&lake_addr, "PUT", &format!("/{DEV_ACCOUNT}/lake?restype=container"), &[], b"").await.0, 201);
        for (name, body) in &blobs {
            lake_put(&lake_addr, name, body).await;
        }
    });
    // The node serves while this thread waits on the clients.
    let script = r#"
        set -e
        source "$KIT/env.sh"
        sas=$(peers_account_sas)
        azcopy copy "$BLOB_ENDPOINT/devstoreaccount1/cache?$sas" "$OUT" --recursive --from-to BlobLocal --log-level ERROR > "$OUT/azcopy.log" 2>&1 || { cat "$OUT/azcopy.log"; exit 1; }
        export RCLONE_CONFIG="$OUT/rclone.conf"; : > "$RCLONE_CONFIG"
        export RCLONE_CONFIG_EMU_TYPE=azureblob RCLONE_CONFIG_EMU_USE_EMULATOR=true RCLONE_CONFIG_EMU_ENDPOINT="$BLOB_ENDPOINT/devstoreaccount1"
        rclone copy emu:cache "$OUT/rclone-out" > "$OUT/rclone.log" 2>&1 || { cat "$OUT/rclone.log"; exit 1; }
        CONN=$(peers_conn_str) peers_python - <<'PY'
import hashlib, os
from azure.storage.blob import BlobServiceClient
svc = BlobServiceClient.from_connection_string(os.environ["CONN"])
c = svc.get_container_client("cache")
for b in c.list_blobs():
    data = c.download_blob(b.name).readall()
    print("SDK", b.name, b.size, hashlib.md5(data).hexdigest())
PY
    "#;
    let res = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("KIT", &kit)
        .env("OUT", out.path())
        .env("BLOB_ENDPOINT", format!("http://{}", node.addr))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&res.stdout).into_owned() + &String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{text}");
    for (name, body) in &blobs {
        let got = std::fs::read(out.path().join("cache").join(name)).unwrap_or_else(|e| panic!("azcopy's {name}: {e}"));
        assert!(&got == body, "azcopy downloaded {name} as the lake has it");
        let got =
            std::fs::read(out.path().join("rclone-out").join(name)).unwrap_or_else(|e| panic!("rclone's {name}: {e}"));
        assert!(&got == body, "rclone copied {name} as the lake has it");
        let md5 = format!("{:x}", md5::Md5::digest(body));
        assert!(text.contains(&format!("SDK {name} {} {md5}", body.len())), "the SDK listed and read {name}:\n{text}");
    }
}

/// A lake over a bad link (busy answers with Retry-After, connections cut, answers lost, bytes
/// flipped): every read gets the lake's bytes, never damaged ones; a first read sent as its blob
/// is fetched may be cut short (its client retries), never completed wrong.
#[test]
fn a_lake_over_a_bad_link_is_read_whole_and_right() {
    let dir_n = tempfile::tempdir().unwrap();
    let Lake { _dir, node: lake, addr: lake_addr, rt } = Lake::start(1 << 30);
    let rules = vec![
        Rule::ratio(Fault::Busy(1), 0.2),
        Rule::ratio(Fault::Cut, 0.1),
        Rule::ratio(Fault::LoseAnswer, 0.05),
        Rule::ratio(Fault::Flip, 0.1),
    ];
    let proxy = rt.block_on(Faulty::start(lake.addr, rules, 7));
    let node = InProcess::start(dir_n.path(), 1 << 30, 2, link_with(proxy.addr, Revalidate::Always, 60));
    let addr = node.addr.to_string();
    rt.block_on(async {
        assert_eq!(signed(&lake_addr, "PUT", &format!("/{DEV_ACCOUNT}/lake?restype=container"), &[], b"").await.0, 201);
        let sizes = [0usize, 1, 4096, 1 << 20, (4 << 20) + 1, 9 << 20];
        for (i, len) in sizes.iter().enumerate() {
            lake_put(&lake_addr, &format!("f{i}"), &data(20 + i as u32, *len)).await;
        }
        for (i, len) in sizes.iter().enumerate() {
            for read in 0..2 {
                let ((status, head, body), _) = get_retried(&addr, &format!("f{i}")).await;
                assert_eq!(status, 200, "f{i}, read {read}: {head}");
                assert!(body == data(20 + i as u32, *len), "f{i} ({len} bytes), read {read}: the lake's bytes");
            }
        }
    });
    let seen = proxy.seen();
    assert!(seen.iter().any(|s| s.fault == Some(Fault::Flip)), "a damaged answer was among them");
    assert!(seen.iter().any(|s| s.fault == Some(Fault::Busy(1))), "a busy answer was among them");
}

/// `edgeblob-admin link prefetch` fetches every lake blob under a prefix into a running node
/// (its progress followed to the end, within its bytes-per-second cap), after which reads send
/// nothing to the lake;
/// `link status` and `/metrics` report what the link did.
#[test]
fn a_prefetch_warms_the_cache_and_the_link_reports_it() {
    let dir_n = tempfile::tempdir().unwrap();
    let Lake { _dir, node: lake, addr: lake_addr, rt } = Lake::start(1 << 30);
    let proxy = rt.block_on(Faulty::start(lake.addr, Vec::new(), 3));
    let blobs: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| (format!("{}/{i:02}", if i < 30 { "train" } else { "eval" }), data(i, i as usize * 7919)))
        .collect();
    rt.block_on(async {
        assert_eq!(signed(&lake_addr, "PUT", &format!("/{DEV_ACCOUNT}/lake?restype=container"), &[], b"").await.0, 201);
        for (name, body) in &blobs {
            lake_put(&lake_addr, name, body).await;
        }
    });
    let config = node_config(proxy.addr, "datasets", "revalidate = \"never\"\n");
    let node = edgeblob_testkit::node::spawn_configured(dir_n.path(), "1G", &config);
    // The proxy runs on this thread's runtime: the admin tool runs beside it.
    let admin = edgeblob_testkit::node::workspace_bin("edgeblob-admin");
    let admin_addr = node.admin.clone();
    let out = rt.block_on(async move {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(admin)
                .args([
                    "link",
                    "prefetch",
                    "--container",
                    "cache",
                    "--prefix",
                    "train/",
                    "--parallel",
                    "4",
                    "--bytes-per-sec",
                    "1000000",
                    "--admin",
                    &admin_addr,
                ])
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    });
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let train_bytes: usize = blobs[..30].iter().map(|(_, b)| b.len()).sum();
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with(&format!("listed 30 ({train_bytes} bytes), here 30 ({train_bytes} bytes), errors 0")),
        "{text}"
    );
    rt.block_on(async {
        let before = proxy.seen().len();
        for (name, body) in &blobs[..30] {
            let (status, _, got) = get(&node.http, name).await;
            assert!(status == 200 && &got == body, "{name} after the prefetch");
        }
        assert_eq!(proxy.seen().len(), before, "prefetched blobs are read from flash");
        // Not under the prefix: fetched at its first read.
        assert!(get(&node.http, "eval/30").await.2 == blobs[30].1);
        assert!(proxy.seen().len() > before);
        let (status, _, body) = signed(&node.admin, "GET", "/links/status", &[], b"").await;
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let l = &v["links"][0];
        assert_eq!((l["container"].as_str(), l["fetched"].as_u64()), (Some("cache"), Some(31)), "{v}");
        assert_eq!(l["prefetch"]["done"].as_u64(), Some(30));
        // 3.4 MB at 1 MB/s (a second's worth may go at once): two seconds and more.
        assert!(l["prefetch"]["secs"].as_f64().unwrap() >= 1.5, "the prefetch kept to its cap: {v}");
        let (_, _, metrics) = signed(&node.admin, "GET", "/metrics", &[], b"").await;
        let metrics = String::from_utf8(metrics).unwrap();
        assert!(
            metrics.contains("edgeblob_link_fetched_blobs_total{account=\"devstoreaccount1\",container=\"cache\"} 31"),
            "{metrics}"
        );
        // A prefetch's numbers out of their ranges are refused, naming the range.
        for (q, says) in [
            ("parallel=0", "parallel: 1 to 256"),
            ("parallel=257", "parallel: 1 to 256"),
            ("parallel=four", "parallel: 1 to 256"),
            ("bytes_per_sec=0", "bytes_per_sec: 1 or more"),
            ("bytes_per_sec=-5", "bytes_per_sec: 1 or more"),
        ] {
            let (status, _, body) =
                signed(&node.admin, "POST", &format!("/links/prefetch?container=cache&{q}"), &[], b"").await;
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                (status, v["error"].as_str(), v["message"].as_str()),
                (400, Some("InvalidQueryParameterValue"), Some(says)),
                "{q}"
            );
        }
    });
}

/// Puts `blocks` as the blocks of `name` on `node`'s container `cache` and commits them with a
/// content type, metadata and the whole's MD5; the MD5.
async fn put_checkpoint(node: &str, name: &str, blocks: &[Vec<u8>], step: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let path = format!("/{DEV_ACCOUNT}/cache/{name}");
    let mut list = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
    let mut whole = md5::Md5::new();
    for (i, block) in blocks.iter().enumerate() {
        let id = b64.encode(format!("block-{i:06}"));
        let q = format!(
            "{path}?comp=block&blockid={}",
            percent_encoding::utf8_percent_encode(&id, percent_encoding::NON_ALPHANUMERIC)
        );
        assert_eq!(signed(node, "PUT", &q, &[], block).await.0, 201);
        list.push_str(&format!("<Latest>{id}</Latest>"));
        whole.update(block);
    }
    list.push_str("</BlockList>");
    let md5 = b64.encode(whole.finalize());
    let h = [
        ("x-ms-blob-content-md5", md5.as_str()),
        ("x-ms-blob-content-type", "application/x-ckpt"),
        ("x-ms-meta-step", step),
    ];
    let (status, head, _) = signed(node, "PUT", &format!("{path}?comp=blocklist"), &h, list.as_bytes()).await;
    assert_eq!(status, 201, "{head}");
    md5
}

/// Waits (up to a minute) until `check` holds, the proxy on this thread's runtime serving.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{what}: not within a minute");
}

async fn lake_has(lake: &str, name: &str) -> Option<String> {
    let (status, head, _) = signed(lake, "HEAD", &format!("/{DEV_ACCOUNT}/lake/ckpts/{name}"), &[], b"").await;
    (status == 200).then_some(head)
}

async fn link_status(admin: &str) -> serde_json::Value {
    let (status, _, body) = signed(admin, "GET", "/links/status", &[], b"").await;
    assert_eq!(status, 200);
    serde_json::from_slice::<serde_json::Value>(&body).unwrap()["links"][0].clone()
}

/// Write-back: a checkpoint committed here appears in the lake with the same bytes, block list,
/// Content-MD5, type and metadata; an upload cut by SIGKILL resumes after the restart with the
/// blocks the lake holds; a lake blob someone else changed is not overwritten (a conflict,
/// reported), nor one that was there before.
#[test]
fn checkpoints_go_to_the_lake_resume_after_a_kill_and_never_overwrite_anothers_change() {
    let dir_n = tempfile::tempdir().unwrap();
    let Lake { _dir, node: lake, addr: lake_addr, rt } = Lake::start(2 << 30);
    let proxy = rt.block_on(Faulty::start(lake.addr, Vec::new(), 5));
    let config = node_config(
        proxy.addr,
        "ckpts",
        "read_through = false\nwrite_back = true\nupload_after_secs = 0\nbytes_per_sec = 12000000\n",
    );
    let node = edgeblob_testkit::node::spawn_configured(dir_n.path(), "1G", &config);
    let ckpt1: Vec<Vec<u8>> = (0..16).map(|i| data(100 + i, 1 << 20)).collect();
    let ckpt2: Vec<Vec<u8>> = (0..16).map(|i| data(200 + i, 4 << 20)).collect();
    let node = rt.block_on(async {
        assert_eq!(signed(&lake_addr, "PUT", &format!("/{DEV_ACCOUNT}/lake?restype=container"), &[], b"").await.0, 201);
        let md5 = put_checkpoint(&node.http, "ckpt1", &ckpt1, "1").await;
        until("ckpt1 in the lake", || lake_has(&lake_addr, "ckpt1").map(|h| h.is_some())).await;
        let head = lake_has(&lake_addr, "ckpt1").await.unwrap();
        assert_eq!(header(&head, "content-md5"), Some(md5.to_ascii_lowercase().as_str()), "the checkpoint's MD5");
        assert_eq!(header(&head, "content-type"), Some("application/x-ckpt"));
        assert_eq!(header(&head, "x-ms-meta-step"), Some("1"));
        let (_, _, body) = signed(&lake_addr, "GET", &format!("/{DEV_ACCOUNT}/lake/ckpts/ckpt1"), &[], b"").await;
        assert!(body == ckpt1.concat(), "the lake's bytes");
        let lake_list =
            signed(&lake_addr, "GET", &format!("/{DEV_ACCOUNT}/lake/ckpts/ckpt1?comp=blocklist"), &[], b"").await.2;
        let here_list =
            signed(&node.http, "GET", &format!("/{DEV_ACCOUNT}/cache/ckpt1?comp=blocklist"), &[], b"").await.2;
        assert_eq!(String::from_utf8(lake_list).unwrap(), String::from_utf8(here_list).unwrap(), "the same block list");
        let s = link_status(&node.admin).await;
        assert_eq!(s["write_back"]["uploaded"].as_u64(), Some(1), "{s}");

        // A 64 MiB checkpoint at 12 MB/s: killed after its third block.
        put_checkpoint(&node.http, "ckpt2", &ckpt2, "2").await;
        let blocks_of = |seen: &[Seen]| {
            seen.iter()
                .filter(|s| {
                    s.method == "PUT"
                        && s.path_and_query.contains("/ckpt2?")
                        && s.path_and_query.contains("comp=block&")
                })
                .count()
        };
        until("three blocks of ckpt2 sent", || {
            let n = blocks_of(&proxy.seen());
            async move { n >= 3 }
        })
        .await;
        node
    });
    drop(node);
    let sent_before = proxy
        .seen()
        .iter()
        .filter(|s| s.path_and_query.contains("/ckpt2?") && s.path_and_query.contains("comp=block&"))
        .count();
    assert!(sent_before < 16, "killed mid-upload ({sent_before} blocks sent)");
    let node = edgeblob_testkit::node::spawn_configured(dir_n.path(), "1G", &config);
    rt.block_on(async {
        until("ckpt2 in the lake after the restart", || lake_has(&lake_addr, "ckpt2").map(|h| h.is_some())).await;
        let (_, _, body) = signed(&lake_addr, "GET", &format!("/{DEV_ACCOUNT}/lake/ckpts/ckpt2"), &[], b"").await;
        assert!(body == ckpt2.concat(), "the lake's bytes after the resumed upload");
        let sent = proxy
            .seen()
            .iter()
            .filter(|s| s.path_and_query.contains("/ckpt2?") && s.path_and_query.contains("comp=block&"))
            .count();
        assert!(sent <= 16 + 1, "the remaining blocks, and at most one more: {sent} Put Blocks for 16 blocks");
        let s = link_status(&node.admin).await;
        assert!(s["write_back"]["blocks_resumed"].as_u64().unwrap() >= 2, "{s}");

        // Someone else changes ckpt1 in the lake; a new version here is not uploaded over it.
        let put = [("x-ms-blob-type", "BlockBlob")];
        assert_eq!(
            signed(&lake_addr, "PUT", &format!("/{DEV_ACCOUNT}/lake/ckpts/ckpt1"), &put, b"theirs").await.0,
            201
        );
        assert_eq!(signed(&node.http, "PUT", &format!("/{DEV_ACCOUNT}/cache/ckpt1"), &put, b"ours").await.0, 201);
        // A name the lake has, never uploaded from here: not overwritten either.
        assert_eq!(
            signed(&lake_addr, "PUT", &format!("/{DEV_ACCOUNT}/lake/ckpts/taken"), &put, b"lake's").await.0,
            201
        );
        assert_eq!(signed(&node.http, "PUT", &format!("/{DEV_ACCOUNT}/cache/taken"), &put, b"node's").await.0, 201);
        until("both conflicts reported", || {
            let admin = node.admin.clone();
            async move {
                let s = link_status(&admin).await;
                let c = &s["write_back"]["conflicts"];
                c.get("ckpt1").is_some() && c.get("taken").is_some()
            }
        })
        .await;
        for (name, lake_bytes, here) in [("ckpt1", &b"theirs"[..], &b"ours"[..]), ("taken", b"lake's", b"node's")] {
            let (_, _, body) = signed(&lake_addr, "GET", &format!("/{DEV_ACCOUNT}/lake/ckpts/{name}"), &[], b"").await;
            assert_eq!(body, lake_bytes, "{name}: the lake's kept");
            assert_eq!(get(&node.http, name).await.2, here, "{name}: ours kept");
        }
    });
    // A conflict is kept on its version: after a restart it is reported at once and not tried
    // again (the lake sees nothing of it) until a new version is written.
    drop(node);
    let asked_before = proxy.seen().len();
    let node = edgeblob_testkit::node::spawn_configured(dir_n.path(), "1G", &config);
    rt.block_on(async {
        until("both conflicts reported after the restart", || {
            let admin = node.admin.clone();
            async move {
                let s = link_status(&admin).await;
                let c = &s["write_back"]["conflicts"];
                c.get("ckpt1").is_some() && c.get("taken").is_some()
            }
        })
        .await;
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        let asked: Vec<String> = proxy.seen()[asked_before..].iter().map(|s| s.path_and_query.clone()).collect();
        assert!(
            !asked.iter().any(|p| p.contains("/ckpts/ckpt1") || p.contains("/ckpts/taken")),
            "a conflict is not tried again: {asked:?}"
        );
        let put = [("x-ms-blob-type", "BlockBlob")];
        // Settled by deleting the lake's and writing here again: uploaded.
        assert_eq!(signed(&lake_addr, "DELETE", &format!("/{DEV_ACCOUNT}/lake/ckpts/ckpt1"), &[], b"").await.0, 202);
        assert_eq!(
            signed(&node.http, "PUT", &format!("/{DEV_ACCOUNT}/cache/ckpt1"), &put, b"ours, again").await.0,
            201
        );
        until("ckpt1 uploaded once the lake's was deleted", || async {
            signed(&lake_addr, "GET", &format!("/{DEV_ACCOUNT}/lake/ckpts/ckpt1"), &[], b"").await.2 == b"ours, again"
        })
        .await;
        let s = link_status(&node.admin).await;
        assert!(s["write_back"]["conflicts"].get("ckpt1").is_none(), "no longer a conflict: {s}");
    });
}

/// Write-back over a bad link (busy answers, cut connections, lost answers, flipped bytes):
/// writes here never wait on it, and every checkpoint reaches the lake whole, with no conflict
/// reported for a commit whose answer was lost.
#[test]
fn write_back_over_a_bad_link_drains_its_backlog_whole() {
    let dir_n = tempfile::tempdir().unwrap();
    let Lake { _dir, node: lake, addr: lake_addr, rt } = Lake::start(1 << 30);
    let rules = vec![
        Rule::ratio(Fault::LoseAnswer, 0.25),
        Rule::ratio(Fault::Busy(1), 0.15),
        Rule::ratio(Fault::Cut, 0.1),
        Rule::ratio(Fault::Flip, 0.05),
    ];
    let proxy = rt.block_on(Faulty::start(lake.addr, rules, 11));
    let node = InProcess::start(dir_n.path(), 1 << 30, 2, |c| {
        link_with(proxy.addr, Revalidate::Always, 60)(c);
        let l = &mut c.links[0];
        (l.read_through, l.write_back, l.upload_after_secs) = (false, true, 0);
        l.url = format!("http://{}/{DEV_ACCOUNT}/lake/ckpts", proxy.addr);
    });
    let addr = node.addr.to_string();
    rt.block_on(async {
        assert_eq!(signed(&lake_addr, "PUT", &format!("/{DEV_ACCOUNT}/lake?restype=container"), &[], b"").await.0, 201);
        let ckpts: Vec<Vec<Vec<u8>>> =
            (0..4).map(|c| (0..3).map(|i| data(300 + c * 10 + i, 1 << 20)).collect()).collect();
        let started = std::time::Instant::now();
        for (c, blocks) in ckpts.iter().enumerate() {
            put_checkpoint(&addr, &format!("c{c}"), blocks, "1").await;
        }
        let put = [("x-ms-blob-type", "BlockBlob")];
        assert_eq!(signed(&addr, "PUT", &format!("/{DEV_ACCOUNT}/cache/small"), &put, b"tiny").await.0, 201);
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "writes here do not wait on the lake");
        for (c, blocks) in ckpts.iter().enumerate() {
            let name = format!("c{c}");
            until(&format!("{name} in the lake"), || lake_has(&lake_addr, &name).map(|h| h.is_some())).await;
            let (_, _, body) = signed(&lake_addr, "GET", &format!("/{DEV_ACCOUNT}/lake/ckpts/{name}"), &[], b"").await;
            assert!(body == blocks.concat(), "{name} whole in the lake");
        }
        until("small in the lake", || lake_has(&lake_addr, "small").map(|h| h.is_some())).await;
    });
    let seen = proxy.seen();
    assert!(seen.iter().any(|s| s.fault == Some(Fault::LoseAnswer)), "an answer was lost");
    let (status, head, body) =
        rt.block_on(signed(&lake_addr, "GET", &format!("/{DEV_ACCOUNT}/lake/ckpts/small"), &[], b""));
    assert_eq!((status, &body[..]), (200, &b"tiny"[..]), "{head}");
}

/// Random bytes: what compression does not shrink.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    use rand::{Rng, SeedableRng};
    let mut out = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill(&mut out[..]);
    out
}

/// A node filling up with lake blobs evicts them, least recently read first, down to its low
/// mark: a blob read lately and one written here stay, an evicted one is fetched again when read.
#[test]
fn cached_lake_blobs_are_evicted_least_recently_read_first_and_fetched_again() {
    let dir_n = tempfile::tempdir().unwrap();
    let Lake { _dir, node: lake, addr: lake_addr, rt } = Lake::start(1 << 30);
    let node = InProcess::start(dir_n.path(), 256 << 20, 1, |c| {
        link(lake.addr, Revalidate::Never)(c);
        (c.links[0].evict_above, c.links[0].evict_below) = (0.5, 0.3);
    });
    let addr = node.addr.to_string();
    let blobs: Vec<Vec<u8>> = (0..14).map(|i| noise(i, 8 << 20)).collect();
    let blob = |i: u64| &blobs[i as usize];
    rt.block_on(async {
        assert_eq!(signed(&lake_addr, "PUT", &format!("/{DEV_ACCOUNT}/lake?restype=container"), &[], b"").await.0, 201);
        for i in 0..14 {
            lake_put(&lake_addr, &format!("b{i:02}"), blob(i)).await;
        }
        let put = [("x-ms-blob-type", "BlockBlob")];
        assert_eq!(signed(&addr, "PUT", &format!("/{DEV_ACCOUNT}/cache/mine"), &put, &noise(99, 8 << 20)).await.0, 201);
        // b00 is read again after each fetch: the most recently read throughout.
        for i in 0..14 {
            assert!(&get(&addr, &format!("b{i:02}")).await.2 == blob(i));
            assert_eq!(get(&addr, "b00").await.0, 200);
        }
        // 15 blobs of 8 MiB in a node of 256 MiB: evicted down to 30% (the merged listing
        // still shows the lake's; the node's own blobs are asked of the engine).
        until("eviction", || async { here(&node).await.len() < 15 }).await;
        let kept = here(&node).await;
        assert!(kept.contains(&"mine".to_owned()), "a blob written here is never evicted: {kept:?}");
        assert!(kept.contains(&"b00".to_owned()), "the most recently read stays: {kept:?}");
        assert!(!kept.contains(&"b01".to_owned()), "the least recently read goes first: {kept:?}");
        let listed =
            signed(&addr, "GET", &format!("/{DEV_ACCOUNT}/cache?restype=container&comp=list"), &[], b"").await.2;
        assert_eq!(
            String::from_utf8(listed).unwrap().matches("<Blob>").count(),
            15,
            "evicted blobs are still listed (the lake's)"
        );
        // An evicted blob reads again, fetched anew.
        assert!(&get(&addr, "b01").await.2 == blob(1));
    });
}

/// The blobs the node itself holds in `cache` (not the merged listing).
async fn here(node: &InProcess) -> Vec<String> {
    let q = edgeblob_meta::listing::ListQuery {
        prefix: String::new(),
        delimiter: None,
        marker: None,
        max: 5000,
        uncommitted: false,
    };
    let page = node.node().list_blobs(DEV_ACCOUNT, "cache", q).await.unwrap();
    page.entries.iter().map(|e| e.name().to_owned()).collect()
}

/// A range of a large lake blob not here yet is read straight from the lake, its whole fetched
/// behind it once; later ranges come from flash. Its ETag is the lake's, as the cached blob's
/// will be, and a failing condition gets its Azure answer.
#[test]
fn a_range_of_a_blob_not_here_yet_comes_straight_from_the_lake() {
    let dir_n = tempfile::tempdir().unwrap();
    let Lake { _dir, node: lake, addr: lake_addr, rt } = Lake::start(1 << 30);
    let proxy = rt.block_on(Faulty::start(lake.addr, Vec::new(), 9));
    let node = InProcess::start(dir_n.path(), 1 << 30, 2, link(proxy.addr, Revalidate::Never));
    let addr = node.addr.to_string();
    let shard = data(40, 24 << 20);
    rt.block_on(async {
        assert_eq!(signed(&lake_addr, "PUT", &format!("/{DEV_ACCOUNT}/lake?restype=container"), &[], b"").await.0, 201);
        lake_put(&lake_addr, "shard", &shard).await;
        let lake_head = signed(&lake_addr, "HEAD", &format!("/{DEV_ACCOUNT}/lake/datasets/shard"), &[], b"").await.1;
        let at = 10 << 20;
        let range = format!("bytes={at}-{}", at + 4095);
        let (status, head, body) =
            signed(&addr, "GET", &format!("/{DEV_ACCOUNT}/cache/shard"), &[("x-ms-range", range.as_str())], b"").await;
        assert_eq!(status, 206, "{head}");
        assert!(body == shard[at..at + 4096], "the range's bytes");
        assert_eq!(header(&head, "content-range"), Some(format!("bytes {at}-{}/{}", at + 4095, shard.len()).as_str()));
        assert_eq!(header(&head, "etag"), header(&lake_head, "etag"), "the lake's ETag, as the cached blob's");
        let seen = proxy.seen();
        assert!(
            seen.iter().any(|s| s.method == "GET" && s.path_and_query.ends_with("/shard") && s.bytes_out == 4096),
            "the range came from the lake as a range"
        );
        // The whole is fetched behind it, once.
        until("the blob here", || async { here(&node).await.contains(&"shard".to_owned()) }).await;
        let sent = lake_sent(&proxy.seen(), "shard");
        assert!(sent < shard.len() as u64 + 4096 + 64 * 1024, "one fetch and the range: {sent} bytes");
        let before = proxy.seen().len();
        let (status, _, body) =
            signed(&addr, "GET", &format!("/{DEV_ACCOUNT}/cache/shard"), &[("x-ms-range", "bytes=7-70")], b"").await;
        assert!(status == 206 && body == shard[7..71]);
        assert_eq!(proxy.seen().len(), before, "later ranges from flash");
        // Conditions are the ordinary read's.
        let h = [("x-ms-range", "bytes=0-9"), ("if-match", "\"0x1\"")];
        let (status, head, _) = signed(&addr, "GET", &format!("/{DEV_ACCOUNT}/cache/shard"), &h, b"").await;
        assert_eq!((status, header(&head, "x-ms-error-code")), (412, Some("conditionnotmet")));

        // A long range (12 MiB) comes from the lake in pieces of at most 4 MiB, as it is sent,
        // not after the whole (held back here at its last range, from 16 MiB).
        let long = data(41, 20 << 20);
        lake_put(&lake_addr, "long", &long).await;
        let before = proxy.seen().len();
        let (at, n) = ((1 << 20) + 3, 12 << 20);
        let range = format!("bytes={at}-{}", at + n - 1);
        proxy.hold_ranges_from(16 << 20);
        let (status, head, body) = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            signed(&addr, "GET", &format!("/{DEV_ACCOUNT}/cache/long"), &[("x-ms-range", range.as_str())], b""),
        )
        .await
        .expect("the range answered without the whole");
        assert!(!here(&node).await.contains(&"long".to_owned()), "answered before the whole was here");
        proxy.release();
        assert_eq!(status, 206, "{head}");
        assert!(body == long[at..at + n], "the long range's bytes");
        let pieces: Vec<u64> = proxy.seen()[before..]
            .iter()
            .filter(|s| s.method == "GET" && s.path_and_query.ends_with("/long"))
            .map(|s| s.bytes_out)
            .collect();
        assert!(pieces.iter().take(3).all(|n| *n <= 4 << 20), "pieces of 4 MiB at most: {pieces:?}");
        until("the long blob here", || async { here(&node).await.contains(&"long".to_owned()) }).await;
    });
}

/// With `fetch_behind_ranges = false`, ranges of a blob not here are read from the lake and
/// nothing more: the blob is not fetched behind them.
#[test]
fn ranges_alone_fetch_nothing_behind_them_where_the_link_says_so() {
    let dir_n = tempfile::tempdir().unwrap();
    let Lake { _dir, node: lake, addr: lake_addr, rt } = Lake::start(1 << 30);
    let proxy = rt.block_on(Faulty::start(lake.addr, Vec::new(), 37));
    let node = InProcess::start(dir_n.path(), 1 << 30, 2, |c| {
        link(proxy.addr, Revalidate::Never)(c);
        c.links[0].fetch_behind_ranges = false;
    });
    let addr = node.addr.to_string();
    let blob = data(42, 6 << 20);
    rt.block_on(async {
        assert_eq!(signed(&lake_addr, "PUT", &format!("/{DEV_ACCOUNT}/lake?restype=container"), &[], b"").await.0, 201);
        lake_put(&lake_addr, "parquet", &blob).await;
        // A reader's HEAD before its ranges is answered from the lake, and fetches nothing here.
        let (status, head, _) = signed(&addr, "HEAD", &format!("/{DEV_ACCOUNT}/cache/parquet"), &[], b"").await;
        assert_eq!((status, header(&head, "content-length")), (200, Some("6291456")), "{head}");
        for (a, b) in [(100, 199), (5 << 20, (5 << 20) + 4095), (100, 199)] {
            let range = format!("bytes={a}-{b}");
            let (status, _, body) =
                signed(&addr, "GET", &format!("/{DEV_ACCOUNT}/cache/parquet"), &[("x-ms-range", range.as_str())], b"")
                    .await;
            assert!(status == 206 && body == blob[a..=b], "{range}");
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        assert!(here(&node).await.is_empty(), "nothing fetched behind the ranges");
        let sent = lake_sent(&proxy.seen(), "parquet");
        assert_eq!(sent, 100 + 4096 + 100, "the lake sent the ranges and nothing more");
    });
}

/// Get Blob Properties of a lake blob not here yet is answered from the lake at once (a HEAD
/// waited for the whole fetch, minutes for a large blob), showing the blob as it will be here:
/// the lake's ETag, size, headers and metadata; its conditions are checked against that; the
/// whole is fetched behind it, once however many HEADs come, and read from flash after.
#[test]
fn a_head_of_a_blob_not_here_is_answered_from_the_lake_and_fetches_behind_it() {
    let dir_n = tempfile::tempdir().unwrap();
    let Lake { _dir, node: lake, addr: lake_addr, rt } = Lake::start(1 << 30);
    let proxy = rt.block_on(Faulty::start(lake.addr, Vec::new(), 41));
    let node = InProcess::start(dir_n.path(), 1 << 30, 2, link(proxy.addr, Revalidate::Never));
    let addr = node.addr.to_string();
    let blob = data(43, (12 << 20) + 5);
    rt.block_on(async {
        assert_eq!(signed(&lake_addr, "PUT", &format!("/{DEV_ACCOUNT}/lake?restype=container"), &[], b"").await.0, 201);
        let modified = lake_put(&lake_addr, "sample", &blob).await;
        let lake_head = signed(&lake_addr, "HEAD", &format!("/{DEV_ACCOUNT}/lake/datasets/sample"), &[], b"").await.1;
        let etag = header(&lake_head, "etag").unwrap().to_owned();
        // Every range of the lake's blob held: a HEAD that waited for the fetch would not end.
        proxy.hold_ranges_from(0);
        let path = format!("/{DEV_ACCOUNT}/cache/sample");
        for h in
            [vec![], vec![("if-match", etag.as_str())], vec![("if-modified-since", "Sat, 01 Jan 2000 00:00:00 GMT")]]
        {
            let (status, head, _) =
                tokio::time::timeout(std::time::Duration::from_secs(30), signed(&addr, "HEAD", &path, &h, b""))
                    .await
                    .expect("answered without the whole");
            assert_eq!(status, 200, "{h:?}: {head}");
            assert_eq!(header(&head, "etag"), Some(etag.as_str()), "the lake's ETag, as the blob will have here");
            assert_eq!(header(&head, "content-length"), Some(blob.len().to_string().as_str()));
            assert_eq!(header(&head, "last-modified"), Some(modified.as_str()));
            assert_eq!(header(&head, "content-type"), Some("text/x-lake"));
            assert_eq!(header(&head, "x-ms-meta-origin"), Some("lake"));
            assert_eq!(header(&head, "x-ms-blob-type"), Some("blockblob"));
        }
        assert!(!here(&node).await.contains(&"sample".to_owned()), "answered before the blob was here");
        proxy.release();
        until("the blob here", || async { here(&node).await.contains(&"sample".to_owned()) }).await;
        let sent = lake_sent(&proxy.seen(), "sample");
        assert!(sent < blob.len() as u64 + 64 * 1024, "fetched once behind three HEADs: {sent} bytes");
        let before = proxy.seen().len();
        let (status, head, body) = get(&addr, "sample").await;
        assert!(status == 200 && body == blob, "the blob from flash");
        assert_eq!(header(&head, "etag"), Some(etag.as_str()), "the ETag the HEAD showed");
        assert_eq!(proxy.seen().len(), before, "nothing asked of the lake once here");
        // Here now: conditions are the ordinary read's.
        let (status, _, _) = signed(&addr, "HEAD", &path, &[("if-none-match", etag.as_str())], b"").await;
        assert_eq!(status, 304);
    });
}

/// A lake blob past the link's `fetch_by_block_above` (Put Blob's limit by default; 1 MiB here)
/// is fetched block by block under the lake's ids: the bytes and Get Block List are the lake's.
#[test]
fn a_large_lake_blob_is_fetched_block_by_block_with_the_lakes_block_list() {
    let dir_n = tempfile::tempdir().unwrap();
    let Lake { _dir, node: lake, addr: lake_addr, rt } = Lake::start(1 << 30);
    let proxy = rt.block_on(Faulty::start(lake.addr, Vec::new(), 13));
    let node = InProcess::start(dir_n.path(), 1 << 30, 2, |c| {
        link(proxy.addr, Revalidate::Never)(c);
        c.links[0].fetch_by_block_above = 1 << 20;
    });
    let addr = node.addr.to_string();
    let blocks: Vec<Vec<u8>> =
        [3 << 20, 5 << 20, 1, 2 << 20].iter().enumerate().map(|(i, n)| data(60 + i as u32, *n)).collect();
    rt.block_on(async {
        use base64::Engine;
        assert_eq!(signed(&lake_addr, "PUT", &format!("/{DEV_ACCOUNT}/lake?restype=container"), &[], b"").await.0, 201);
        let path = format!("/{DEV_ACCOUNT}/lake/datasets/big");
        let mut list = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for (i, b) in blocks.iter().enumerate() {
            let id = base64::engine::general_purpose::STANDARD.encode(format!("lake-block-{i:03}"));
            let q = percent_encoding::utf8_percent_encode(&id, percent_encoding::NON_ALPHANUMERIC).to_string();
            assert_eq!(signed(&lake_addr, "PUT", &format!("{path}?comp=block&blockid={q}"), &[], b).await.0, 201);
            list.push_str(&format!("<Latest>{id}</Latest>"));
        }
        list.push_str("</BlockList>");
        assert_eq!(signed(&lake_addr, "PUT", &format!("{path}?comp=blocklist"), &[], list.as_bytes()).await.0, 201);
        let lake_list = signed(&lake_addr, "GET", &format!("{path}?comp=blocklist"), &[], b"").await.2;
        // Not here yet: Get Block List is the lake's (its ETag too), and fetches nothing.
        let (status, head, early) =
            signed(&addr, "GET", &format!("/{DEV_ACCOUNT}/cache/big?comp=blocklist"), &[], b"").await;
        assert_eq!(status, 200, "{head}");
        assert_eq!(String::from_utf8(early).unwrap(), String::from_utf8(lake_list.clone()).unwrap());
        let lake_head = signed(&lake_addr, "HEAD", &path, &[], b"").await.1;
        assert_eq!(header(&head, "etag"), header(&lake_head, "etag"));
        assert!(here(&node).await.is_empty(), "nothing fetched for a block list");
        let (status, _, body) = get(&addr, "big").await;
        assert!(status == 200 && body == blocks.concat(), "the lake's bytes");
        let here_list = signed(&addr, "GET", &format!("/{DEV_ACCOUNT}/cache/big?comp=blocklist"), &[], b"").await.2;
        assert_eq!(
            String::from_utf8(here_list).unwrap(),
            String::from_utf8(lake_list).unwrap(),
            "the lake's block list"
        );
        let before = proxy.seen().len();
        assert!(get(&addr, "big").await.2 == blocks.concat());
        assert_eq!(proxy.seen().len(), before, "kept here");
    });
}

/// Reads an answer's head and then body bytes up to `want` from `c`: the head, and the body so far.
async fn read_until(c: &mut tokio::net::TcpStream, want: usize) -> (String, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    loop {
        if let Some(split) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if buf.len() - split - 4 >= want {
                let head = String::from_utf8_lossy(&buf[..split]).to_ascii_lowercase();
                return (head, buf[split + 4..].to_vec());
            }
        }
        let mut piece = vec![0; 1 << 20];
        let n = c.read(&mut piece).await.unwrap();
        assert!(n > 0, "the answer ended after {} bytes", buf.len());
        buf.extend_from_slice(&piece[..n]);
    }
}

/// A whole read of a blob not here yet is answered as the blob is fetched: with the lake's
/// later ranges held back, the first reader, and a second who joins, already have the first
/// ranges while the blob is not stored yet; once the lake goes on, both get the rest, the lake
/// sent the blob once, and a third read comes from flash.
#[test]
fn a_whole_read_of_a_blob_not_here_yet_starts_as_it_is_fetched() {
    use tokio::io::AsyncWriteExt;
    let dir_n = tempfile::tempdir().unwrap();
    let Lake { _dir, node: lake, addr: lake_addr, rt } = Lake::start(1 << 30);
    let proxy = rt.block_on(Faulty::start(lake.addr, Vec::new(), 17));
    let node = InProcess::start(dir_n.path(), 1 << 30, 2, link(proxy.addr, Revalidate::Never));
    let addr = node.addr.to_string();
    let blob = data(70, (20 << 20) + 5);
    let first = 8 << 20;
    rt.block_on(async {
        assert_eq!(signed(&lake_addr, "PUT", &format!("/{DEV_ACCOUNT}/lake?restype=container"), &[], b"").await.0, 201);
        lake_put(&lake_addr, "long", &blob).await;
        let lake_head = signed(&lake_addr, "HEAD", &format!("/{DEV_ACCOUNT}/lake/datasets/long"), &[], b"").await.1;
        proxy.hold_ranges_from(first as u64);
        let request = edgeblob_testkit::raw::signed_head("GET", &format!("/{DEV_ACCOUNT}/cache/long"), &[], 0);
        let mut readers = Vec::new();
        for _ in 0..2 {
            let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
            c.write_all(request.as_bytes()).await.unwrap();
            let (head, body) = tokio::time::timeout(std::time::Duration::from_secs(60), read_until(&mut c, first))
                .await
                .expect("the first ranges sent while the rest is held back");
            assert!(head.starts_with("http/1.1 200"), "{head}");
            assert_eq!(header(&head, "content-length"), Some(blob.len().to_string().as_str()));
            assert_eq!(header(&head, "etag"), header(&lake_head, "etag"), "the lake's ETag, as the blob's here");
            assert_eq!(header(&head, "content-md5"), header(&lake_head, "content-md5"));
            assert_eq!(header(&head, "x-ms-meta-origin"), Some("lake"));
            assert!(body[..first] == blob[..first], "the first ranges, as the lake has them");
            readers.push((c, body));
        }
        assert!(here(&node).await.is_empty(), "answered before the blob is stored here");
        proxy.release();
        for (mut c, mut body) in readers {
            use tokio::io::AsyncReadExt;
            c.read_to_end(&mut body).await.unwrap();
            assert!(body == blob, "the whole blob, byte for byte");
        }
        let sent = lake_sent(&proxy.seen(), "long");
        assert!(sent < blob.len() as u64 + 64 * 1024, "two readers, one fetch: the lake sent {sent} bytes");
        assert_eq!(here(&node).await, ["long"], "an answer ends once its blob is stored");
        let before = proxy.seen().len();
        let again = get(&addr, "long").await;
        assert!(again.0 == 200 && again.2 == blob, "read again, from flash");
        assert_eq!(proxy.seen().len(), before, "nothing more from the lake");
    });
}

/// Runs `edgeblob-admin` beside the runtime `rt` (which may serve what it talks to): whether it
/// succeeded, and what it printed.
fn admin_tool(rt: &tokio::runtime::Runtime, args: &[&str]) -> (bool, String) {
    let admin = edgeblob_testkit::node::workspace_bin("edgeblob-admin");
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = rt.block_on(async move {
        tokio::task::spawn_blocking(move || std::process::Command::new(admin).args(args).output().unwrap())
            .await
            .unwrap()
    });
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// `edgeblob-admin link sync` keeps the lake's listing on the node: List Blobs of the linked
/// container is then answered without the lake (every page size, flat and by directory, with
/// metadata, merged with writes here), through a restart and with the lake down; what changes
/// in the lake shows after the next sync (added, replaced, deleted), and the node's own
/// container for it is never listed.
#[test]
fn a_synced_listing_is_answered_without_the_lake() {
    let dir_n = tempfile::tempdir().unwrap();
    let Lake { _dir, node: lake, addr: lake_addr, rt } = Lake::start(1 << 30);
    let proxy = rt.block_on(Faulty::start(lake.addr, Vec::new(), 23));
    let names: Vec<String> = (0..120).map(|i| format!("d{}/b{i:03}", i % 4)).collect();
    rt.block_on(async {
        assert_eq!(signed(&lake_addr, "PUT", &format!("/{DEV_ACCOUNT}/lake?restype=container"), &[], b"").await.0, 201);
        for (i, n) in names.iter().enumerate() {
            lake_put(&lake_addr, n, &data(i as u32, i * 13)).await;
        }
        let put = [("x-ms-blob-type", "BlockBlob")];
        assert_eq!(signed(&lake_addr, "PUT", &format!("/{DEV_ACCOUNT}/lake/other"), &put, b"x").await.0, 201);
    });
    let config = node_config(proxy.addr, "datasets", "revalidate = \"never\"\n");
    let node = edgeblob_testkit::node::spawn_configured(dir_n.path(), "1G", &config);
    let sync = |admin: &str| admin_tool(&rt, &["link", "sync", "cache", "--admin", admin]);
    let (ok, text) = sync(&node.admin);
    assert!(ok, "{text}");
    assert!(
        text.lines().last().unwrap().starts_with("listed 120, added 120, updated 0, removed 0, errors 0"),
        "{text}"
    );

    // Every listing from what is kept: the lake sees none of them.
    let check = |node: &str, mut want: Vec<String>, lake_flat: Vec<Entry>| {
        let node = node.to_owned();
        async move {
            want.sort();
            for page in [1, 7, 1000] {
                let got = list_all(&node, "cache", "", page).await;
                assert_eq!(got.iter().map(|e| e.0.clone()).collect::<Vec<_>>(), want, "flat, {page} a page");
                let lake_here: Vec<&Entry> = got.iter().filter(|e| !e.0.ends_with("local")).collect();
                assert_eq!(lake_here, lake_flat.iter().collect::<Vec<_>>(), "the lake's entries, {page} a page");
            }
            for page in [1, 3] {
                let got: Vec<String> =
                    list_all(&node, "cache", "&delimiter=/", page).await.into_iter().map(|e| e.0).collect();
                assert_eq!(got, ["d0/", "d1/", "d2/", "d3/"], "by directory, {page} a page");
            }
            let q = format!("/{DEV_ACCOUNT}/cache?restype=container&comp=list&include=metadata&prefix=d3/");
            let xml = String::from_utf8(signed(&node, "GET", &q, &[], b"").await.2).unwrap();
            assert_eq!(xml.matches("<origin>lake</origin>").count(), 30, "the lake's metadata: {xml}");
            assert!(!xml.contains('$'), "the node's entries are never shown");
        }
    };
    let mut want: Vec<String> = names.iter().cloned().chain(["d1/local".into()]).collect();
    rt.block_on(async {
        let put = [("x-ms-blob-type", "BlockBlob")];
        assert_eq!(signed(&node.http, "PUT", &format!("/{DEV_ACCOUNT}/cache/d1/local"), &put, b"here").await.0, 201);
        let before = proxy.seen().len();
        check(&node.http, want.clone(), lake_listing(&lake_addr, "").await).await;
        assert_eq!(proxy.seen().len(), before, "no listing reached the lake");
        let (_, _, body) = signed(&node.http, "GET", &format!("/{DEV_ACCOUNT}?comp=list"), &[], b"").await;
        let xml = String::from_utf8(body).unwrap();
        assert!(xml.contains("<Name>cache</Name>") && !xml.contains("synced"), "{xml}");

        // Changed in the lake: the listing kept is as it was until the next sync.
        lake_put(&lake_addr, "d0/new", b"new").await;
        lake_put(&lake_addr, "d2/b002", b"replaced").await;
        assert_eq!(
            signed(&lake_addr, "DELETE", &format!("/{DEV_ACCOUNT}/lake/datasets/d1/b001"), &[], b"").await.0,
            202
        );
        let got: Vec<String> = list_all(&node.http, "cache", "", 50).await.into_iter().map(|e| e.0).collect();
        want.sort();
        assert_eq!(got, want, "as kept");
    });
    let (ok, text) = sync(&node.admin);
    assert!(ok, "{text}");
    assert!(text.lines().last().unwrap().starts_with("listed 120, added 1, updated 1, removed 1, errors 0"), "{text}");
    want.retain(|n| n != "d1/b001");
    want.push("d0/new".into());
    let lake_now = rt.block_on(lake_listing(&lake_addr, ""));
    rt.block_on(check(&node.http, want.clone(), lake_now.clone()));
    let status = rt.block_on(link_status(&node.admin));
    assert_eq!(status["synced"][0]["prefix"], "", "{status}");
    assert_eq!(status["sync"]["running"], false, "{status}");

    // Restarted, with the lake gone: the listing is still there.
    drop(node);
    drop(lake);
    let node = edgeblob_testkit::node::spawn_configured(dir_n.path(), "1G", &config);
    rt.block_on(check(&node.http, want, lake_now));
}

/// A checkpoint of many files goes up `uploads_at_once` at a time: with the lake's PUTs held,
/// exactly that many are uploading, never more; released, every file reaches the lake and the
/// link reports each done.
#[test]
fn a_checkpoint_of_many_files_goes_up_several_at_once() {
    let dir_n = tempfile::tempdir().unwrap();
    let Lake { _dir, node: lake, addr: lake_addr, rt } = Lake::start(1 << 30);
    let proxy = rt.block_on(Faulty::start(lake.addr, Vec::new(), 29));
    let config = node_config(
        proxy.addr,
        "ckpts",
        "read_through = false\nwrite_back = true\nupload_after_secs = 0\nuploads_at_once = 4\n",
    );
    let node = edgeblob_testkit::node::spawn_configured(dir_n.path(), "1G", &config);
    let files: Vec<(String, Vec<u8>)> =
        (0..12).map(|i| (format!("step-9/rank-{i:02}"), data(300 + i, 1000 + i as usize))).collect();
    rt.block_on(async {
        assert_eq!(signed(&lake_addr, "PUT", &format!("/{DEV_ACCOUNT}/lake?restype=container"), &[], b"").await.0, 201);
        proxy.hold_puts();
        let put = [("x-ms-blob-type", "BlockBlob")];
        for (name, body) in &files {
            assert_eq!(signed(&node.http, "PUT", &format!("/{DEV_ACCOUNT}/cache/{name}"), &put, body).await.0, 201);
        }
        until("four uploading at once", || {
            let admin = node.admin.clone();
            async move { link_status(&admin).await["write_back"]["uploading"].as_array().unwrap().len() == 4 }
        })
        .await;
        for _ in 0..10 {
            let s = link_status(&node.admin).await;
            assert_eq!(s["write_back"]["uploading"].as_array().unwrap().len(), 4, "never more: {s}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        proxy.release();
        for (name, body) in &files {
            until("every file in the lake", || lake_has(&lake_addr, name).map(|h| h.is_some())).await;
            let (_, _, got) = signed(&lake_addr, "GET", &format!("/{DEV_ACCOUNT}/lake/ckpts/{name}"), &[], b"").await;
            assert!(&got == body, "{name}: the lake's bytes");
        }
        until("every file reported done", || {
            let admin = node.admin.clone();
            async move {
                let s = link_status(&admin).await;
                s["write_back"]["done_names"].as_array().unwrap().len() == 12 && s["write_back"]["pending"] == 0
            }
        })
        .await;
    });
}

/// The lake out of reach for a while (every connection cut): writes and reads here go on as
/// ever, the link reports the lake down and tries only the first blobs of its backlog (not
/// every blob once a pass), and once the lake is back the whole backlog drains, nothing lost.
#[test]
fn a_lake_outage_holds_up_nothing_here_and_the_backlog_drains_after_it() {
    let dir_n = tempfile::tempdir().unwrap();
    let Lake { _dir, node: lake, addr: lake_addr, rt } = Lake::start(1 << 30);
    let proxy = rt.block_on(Faulty::start(lake.addr, Vec::new(), 31));
    let config = node_config(
        proxy.addr,
        "ckpts",
        "read_through = false\nwrite_back = true\nupload_after_secs = 0\nuploads_at_once = 2\nretry_budget_secs = 1\n",
    );
    let node = edgeblob_testkit::node::spawn_configured(dir_n.path(), "1G", &config);
    let addr = node.http.clone();
    let files: Vec<(String, Vec<u8>)> =
        (0..10).map(|i| (format!("out/f{i:02}"), data(400 + i, 5000 + i as usize))).collect();
    rt.block_on(async {
        assert_eq!(signed(&lake_addr, "PUT", &format!("/{DEV_ACCOUNT}/lake?restype=container"), &[], b"").await.0, 201);
        proxy.down();
        let cut_before = proxy.seen().len();
        let put = [("x-ms-blob-type", "BlockBlob")];
        for (name, body) in &files {
            assert_eq!(signed(&addr, "PUT", &format!("/{DEV_ACCOUNT}/cache/{name}"), &put, body).await.0, 201);
        }
        for (name, body) in &files {
            assert!(get(&addr, name).await.2 == *body, "{name} read here while the lake is down");
        }
        until("the lake reported down", || {
            let admin = node.admin.clone();
            async move { link_status(&admin).await["write_back"]["lake_down_secs"].as_f64().unwrap() > 2.0 }
        })
        .await;
        // Oldest first, two at once, each pass stopped by its first failure: the same two.
        let tried: std::collections::HashSet<String> = proxy.seen()[cut_before..]
            .iter()
            .filter_map(|s| {
                s.path_and_query
                    .split('?')
                    .next()?
                    .strip_prefix(&format!("/{DEV_ACCOUNT}/lake/ckpts/"))
                    .map(str::to_owned)
            })
            .collect();
        assert!(tried.len() <= 2 && !tried.is_empty(), "the lake asked about {tried:?}");
        proxy.release();
        for (name, body) in &files {
            until("every file in the lake", || lake_has(&lake_addr, name).map(|h| h.is_some())).await;
            let (_, _, got) = signed(&lake_addr, "GET", &format!("/{DEV_ACCOUNT}/lake/ckpts/{name}"), &[], b"").await;
            assert!(&got == body, "{name}: the lake's bytes");
        }
    });
}

/// A whole Get Blob read to its end without keeping the body: status, head, length and xxh3.
async fn get_digest(node: &str, name: &str) -> (u16, String, u64, u64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = edgeblob_testkit::raw::signed_head("GET", &format!("/{DEV_ACCOUNT}/cache/{name}"), &[], 0);
    let mut c = tokio::net::TcpStream::connect(node).await.unwrap();
    c.write_all(request.as_bytes()).await.unwrap();
    let (head, first) = read_until(&mut c, 0).await;
    let status = head[9..12].parse().unwrap();
    let want: u64 = header(&head, "content-length").map_or(0, |n| n.parse().unwrap());
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&first);
    let mut len = first.len() as u64;
    let mut buf = vec![0; 1 << 20];
    while len < want {
        let n = c.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    (status, head, len, h.digest())
}

/// The issue's first case at CI sizes (`EDGEBLOB_LINK_FULL=1`: its own sizes, a 64 MiB blob
/// among the thousand and one of 256 MiB read by 32 at once): 1,000 lake blobs from 0 B up,
/// listed through the node in several page sizes exactly as the lake lists them; every first
/// read byte for byte the lake's, every second read nothing from the lake; 32 readers at once
/// of a blob not here yet, one fetch.
#[test]
fn a_thousand_lake_blobs_list_and_read_as_the_lake_has_them() {
    use futures::StreamExt;
    let full = std::env::var_os("EDGEBLOB_LINK_FULL").is_some();
    let (largest, shared_len) = if full { (64 << 20, 256 << 20) } else { (8 << 20, 32 << 20) };
    let size = |i: usize| match i {
        0 => 0,
        1 => 1,
        997 => largest,
        998 => (4 << 20) + 1,
        999 => 1 << 20,
        i => (i * 37) % 20_000,
    };
    let dir_n = tempfile::tempdir().unwrap();
    let Lake { _dir, node: lake, addr: lake_addr, rt } = Lake::start(2 << 30);
    let proxy = rt.block_on(Faulty::start(lake.addr, Vec::new(), 41));
    let node = InProcess::start(dir_n.path(), 2 << 30, 2, link(proxy.addr, Revalidate::Always));
    let addr = node.addr.to_string();
    let names: Vec<String> = (0..1000).map(|i| format!("set/{:02}/{i:04}", i % 7)).collect();
    rt.block_on(async {
        assert_eq!(signed(&lake_addr, "PUT", &format!("/{DEV_ACCOUNT}/lake?restype=container"), &[], b"").await.0, 201);
        for (i, n) in names.iter().enumerate() {
            lake_put(&lake_addr, n, &data(i as u32, size(i))).await;
        }
        let lake_flat = lake_listing(&lake_addr, "").await;
        assert_eq!(lake_flat.len(), 1000);
        for page in [5000, 100, 7] {
            assert_eq!(list_all(&addr, "cache", "", page).await, lake_flat, "{page} a page: the lake's listing");
        }
        let got: Vec<String> =
            list_all(&addr, "cache", "&delimiter=/&prefix=set/", 3).await.into_iter().map(|e| e.0).collect();
        assert_eq!(got, (0..7).map(|d| format!("set/{d:02}/")).collect::<Vec<_>>());

        // Every first read the lake's bytes; eight at a time.
        let reads = futures::stream::iter(names.iter().enumerate().map(|(i, n)| {
            let (addr, n) = (addr.clone(), n.clone());
            async move { (i, n.clone(), get_digest(&addr, &n).await) }
        }))
        .buffer_unordered(8);
        let firsts: Vec<_> = reads.collect().await;
        for (i, n, (status, head, len, digest)) in firsts {
            assert_eq!((status, len), (200, size(i) as u64), "{n}: {head}");
            assert_eq!(digest, xxhash_rust::xxh3::xxh3_64(&data(i as u32, size(i))), "{n}: the lake's bytes");
        }
        let sent_first: u64 = names.iter().map(|n| lake_sent(&proxy.seen(), n)).sum();
        for (i, n) in names.iter().enumerate().filter(|(i, _)| i % 50 == 0 || *i >= 997) {
            let (status, _, len, digest) = get_digest(&addr, n).await;
            assert!(
                status == 200
                    && len == size(i) as u64
                    && digest == xxhash_rust::xxh3::xxh3_64(&data(i as u32, size(i)))
            );
        }
        let sent_after: u64 = names.iter().map(|n| lake_sent(&proxy.seen(), n)).sum();
        assert_eq!(sent_after, sent_first, "second reads take nothing from the lake");

        // 32 readers at once of a blob not here yet: the lake sends it once.
        let shared = data(7, shared_len);
        let want = xxhash_rust::xxh3::xxh3_64(&shared);
        lake_put(&lake_addr, "shared", &shared).await;
        drop(shared);
        let readers: Vec<_> = (0..32).map(|_| tokio::spawn(get_digest_owned(addr.clone(), "shared"))).collect();
        for r in readers {
            let (status, head, len, digest) = r.await.unwrap();
            assert!(status == 200 && len == shared_len as u64 && digest == want, "every reader the whole blob: {head}");
        }
        let sent = lake_sent(&proxy.seen(), "shared");
        assert!(sent < shared_len as u64 + (64 << 10), "32 readers, one fetch: the lake sent {sent} bytes");
    });
}

async fn get_digest_owned(node: String, name: &'static str) -> (u16, String, u64, u64) {
    get_digest(&node, name).await
}
