//! The HTTP server with a plain socket client: many concurrent connections, error formats, and
//! SharedKey-signed operations end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use edgeblob_testkit::node::{self, NodeProc};
use edgeblob_testkit::peers;
use edgeblob_testkit::raw::{exchange, signed, signed_head, with_sas, with_sas_body};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn start(dir: &std::path::Path) -> NodeProc {
    node::spawn(dir, None, &[])
}

#[test]
fn a_thousand_concurrent_connections_are_all_served() {
    edgeblob_io::sys::raise_nofile();
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // Open every connection first, so that all are held at once.
        let mut conns = Vec::new();
        for _ in 0..1000 {
            conns.push(tokio::net::TcpStream::connect(&node.http).await.unwrap());
        }
        for c in conns.iter_mut() {
            c.write_all(b"HEAD /devstoreaccount1/nosuchcontainer?restype=container HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
        }
        let mut served = 0;
        for c in conns.iter_mut() {
            let mut buf = vec![0u8; 4096];
            let n = c.read(&mut buf).await.unwrap();
            let head = String::from_utf8_lossy(&buf[..n]);
            // Anonymous, in a container: as if nothing were there (Azure's answer).
            assert!(head.starts_with("HTTP/1.1 404"), "{head}");
            assert!(head.to_ascii_lowercase().contains("x-ms-error-code: resourcenotfound"), "{head}");
            served += 1;
        }
        assert_eq!(served, 1000);
    });
}

#[test]
fn errors_are_azure_xml_with_the_code_header_and_the_common_headers() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut c = tokio::net::TcpStream::connect(&node.http).await.unwrap();
        c.write_all(b"GET /devstoreaccount1/Bad_Name/x HTTP/1.1\r\nHost: x\r\nx-ms-client-request-id: abc-123\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        let lower = out.to_ascii_lowercase();
        for needle in ["x-ms-error-code: invalidresourcename", "x-ms-request-id: ", "x-ms-version: ", "x-ms-client-request-id: abc-123", "date: "] {
            assert!(lower.contains(needle), "missing {needle} in {out}");
        }
        assert!(out.contains("<Code>InvalidResourceName</Code>") && out.contains("RequestId:"), "{out}");
        // Its time as Azure writes it: 2026-11-22T09:31:17.2410000Z.
        let time = out.split("\nTime:").nth(1).and_then(|t| t.get(..28)).unwrap_or_default();
        let shape: String = time.chars().map(|c| if c.is_ascii_digit() { '9' } else { c }).collect();
        assert_eq!(shape, "9999-99-99T99:99:99.9999999Z", "{out}");
    });
}

#[test]
fn ranges_md5_and_if_range_behave_as_azure() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let a = node.http.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (st, _, _) = signed(&a, "PUT", "/devstoreaccount1/ctr?restype=container", &[], b"").await;
        assert_eq!(st, 201);
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let (st, head, _) =
            signed(&a, "PUT", "/devstoreaccount1/ctr/b", &[("x-ms-blob-type", "BlockBlob")], &data).await;
        assert_eq!(st, 201, "{head}");
        let etag = head.lines().find_map(|l| l.strip_prefix("etag: ")).unwrap().to_owned();
        // A wrong transactional MD5 is refused and the blob keeps its content.
        let (st, head, _) = signed(
            &a,
            "PUT",
            "/devstoreaccount1/ctr/b",
            &[("x-ms-blob-type", "BlockBlob"), ("content-md5", "AAAAAAAAAAAAAAAAAAAAAA==")],
            b"other",
        )
        .await;
        assert_eq!(st, 400);
        assert!(head.contains("x-ms-error-code: md5mismatch"), "{head}");
        // Put Block: the MD5 is checked and echoed when sent (Azure since 2019-02-02), and
        // neither computed nor returned when not.
        use md5::Digest;
        let b64 = |d: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, d);
        let block = "/devstoreaccount1/ctr/staged?comp=block&blockid=YmxrMQ%3D%3D";
        let (st, head, _) = signed(&a, "PUT", block, &[], b"block data").await;
        assert_eq!(st, 201, "{head}");
        assert!(!head.contains("content-md5"), "{head}");
        let md5 = b64(&md5::Md5::digest(b"block data"));
        let (st, head, _) = signed(&a, "PUT", block, &[("content-md5", &md5)], b"block data").await;
        assert_eq!(st, 201, "{head}");
        assert!(head.contains(&format!("content-md5: {}", md5.to_ascii_lowercase())), "{head}");
        let (st, head, _) = signed(&a, "PUT", block, &[("content-md5", &md5)], b"other data").await;
        assert_eq!(st, 400);
        assert!(head.contains("x-ms-error-code: md5mismatch"), "{head}");
        // Put Block List answers the MD5 of the list it was sent (Azure's Content-MD5 there is
        // the request's), and checks the one sent with it.
        let list = b"<?xml version=\"1.0\"?><BlockList><Latest>YmxrMQ==</Latest></BlockList>";
        let commit = "/devstoreaccount1/ctr/staged?comp=blocklist";
        let list_md5 = b64(&md5::Md5::digest(list));
        let (st, head, _) = signed(&a, "PUT", commit, &[("content-md5", "AAAAAAAAAAAAAAAAAAAAAA==")], list).await;
        assert!(st == 400 && head.contains("x-ms-error-code: md5mismatch"), "{head}");
        let (st, head, _) = signed(&a, "PUT", commit, &[], list).await;
        assert_eq!(st, 201, "{head}");
        assert!(head.contains(&format!("content-md5: {}", list_md5.to_ascii_lowercase())), "{head}");
        // Set Blob Metadata says the request was stored encrypted, as Azure's answer does.
        let (st, head, _) =
            signed(&a, "PUT", "/devstoreaccount1/ctr/staged?comp=metadata", &[("x-ms-meta-k", "v")], b"").await;
        assert!(st == 200 && head.contains("x-ms-request-server-encrypted: true"), "{head}");
        // Ranges: 206 with Content-Range; If-Range with the current ETag keeps the range.
        let (st, head, body) =
            signed(&a, "GET", "/devstoreaccount1/ctr/b", &[("x-ms-range", "bytes=10-19"), ("if-range", &etag)], b"")
                .await;
        assert_eq!((st, &body[..]), (206, &data[10..20]));
        assert!(head.contains("content-range: bytes 10-19/100000"), "{head}");
        // A stale If-Range gets the whole blob.
        let (st, _, body) =
            signed(&a, "GET", "/devstoreaccount1/ctr/b", &[("range", "bytes=10-19"), ("if-range", "\"0x1\"")], b"")
                .await;
        assert_eq!((st, body.len()), (200, data.len()));
        // The MD5 of a range, on request.
        let (st, head, body) = signed(
            &a,
            "GET",
            "/devstoreaccount1/ctr/b",
            &[("x-ms-range", "bytes=0-999"), ("x-ms-range-get-content-md5", "true")],
            b"",
        )
        .await;
        assert_eq!(st, 206);
        let want = b64(&md5::Md5::digest(&data[..1000])).to_ascii_lowercase();
        assert!(head.contains(&format!("content-md5: {want}")), "{head}");
        assert_eq!(body, &data[..1000]);
        // Or its CRC-64 (Azure's, checked against the SDK's values in proto's crc64 tests), in
        // x-ms-content-crc64; one digest at most, and only of a range of 4 MiB at most.
        let crc = [("x-ms-range", "bytes=1000-4999"), ("x-ms-range-get-content-crc64", "true")];
        let (st, head, body) = signed(&a, "GET", "/devstoreaccount1/ctr/b", &crc, b"").await;
        assert_eq!((st, &body[..]), (206, &data[1000..5000]), "{head}");
        let want = edgeblob_proto::crc64::to_header(edgeblob_proto::crc64::update(0, &data[1000..5000]));
        assert!(head.contains(&format!("x-ms-content-crc64: {}", want.to_ascii_lowercase())), "{head}");
        assert!(!head.contains("\ncontent-md5:"), "the range's MD5 only when asked: {head}");
        let both = [crc[0], crc[1], ("x-ms-range-get-content-md5", "true")];
        let (st, head, _) = signed(&a, "GET", "/devstoreaccount1/ctr/b", &both, b"").await;
        assert_eq!(st, 400, "{head}");
        let (st, head, _) = signed(&a, "GET", "/devstoreaccount1/ctr/b", &crc[1..], b"").await;
        assert_eq!(st, 400, "a digest of a whole blob is refused: {head}");
        // Empty blob: any range is 416 with Content-Range: bytes */0.
        let (st, _, _) =
            signed(&a, "PUT", "/devstoreaccount1/ctr/empty", &[("x-ms-blob-type", "BlockBlob")], b"").await;
        assert_eq!(st, 201);
        let (st, head, _) = signed(&a, "GET", "/devstoreaccount1/ctr/empty", &[("x-ms-range", "bytes=0-")], b"").await;
        assert_eq!(st, 416);
        assert!(head.contains("content-range: bytes */0") && head.contains("x-ms-error-code: invalidrange"), "{head}");
        // HEAD of a missing blob: 404 with the code header and no body.
        let (st, head, body) = signed(&a, "HEAD", "/devstoreaccount1/ctr/missing", &[], b"").await;
        assert_eq!((st, body.len()), (404, 0));
        assert!(head.contains("x-ms-error-code: blobnotfound"), "{head}");
    });
}

/// A request without credentials; returns the status.
async fn anonymous(addr: &str, method: &str, path_query: &str) -> u16 {
    with_sas(addr, method, path_query, &[]).await.0
}

#[test]
fn public_access_opens_reads_only_as_far_as_the_container_allows() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let a = node.http.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (st, _, _) =
            signed(&a, "PUT", "/devstoreaccount1/pub?restype=container", &[("x-ms-blob-public-access", "blob")], b"")
                .await;
        assert_eq!(st, 201);
        let (st, _, _) =
            signed(&a, "PUT", "/devstoreaccount1/pub/b", &[("x-ms-blob-type", "BlockBlob")], b"hello").await;
        assert_eq!(st, 201);
        let (st, _, _) = signed(&a, "PUT", "/devstoreaccount1/priv?restype=container", &[], b"").await;
        assert_eq!(st, 201);
        assert_eq!(anonymous(&a, "GET", "/devstoreaccount1/pub/b").await, 200, "blob access: read");
        // Uncommitted blocks are the writer's business: an anonymous reader sees none, and a
        // blob that has nothing else does not exist for it.
        for name in ["b", "staged"] {
            let path = format!("/devstoreaccount1/pub/{name}?comp=block&blockid=YWFhYQ%3D%3D");
            assert_eq!(signed(&a, "PUT", &path, &[], b"secret").await.0, 201);
        }
        let (st, owner) = with_sas(&a, "GET", "/devstoreaccount1/pub/b?comp=blocklist&blocklisttype=all", &[]).await;
        assert_eq!(st, 200, "{owner}");
        assert!(!owner.contains("ywfhyq=="), "an anonymous reader sees an uncommitted block: {owner}");
        let (st, _, body) =
            signed(&a, "GET", "/devstoreaccount1/pub/b?comp=blocklist&blocklisttype=all", &[], b"").await;
        assert_eq!(st, 200);
        assert!(String::from_utf8_lossy(&body).contains("YWFhYQ=="), "the owner sees it");
        let staged = "/devstoreaccount1/pub/staged?comp=blocklist&blocklisttype=all";
        assert_eq!(anonymous(&a, "GET", staged).await, 404);
        // What anonymous access does not open is answered as Azure does, as if nothing were
        // there (404 ResourceNotFound): no one learns which containers and blobs exist.
        assert_eq!(
            anonymous(&a, "GET", "/devstoreaccount1/pub?restype=container&comp=list").await,
            404,
            "blob access: no listing"
        );
        assert_eq!(anonymous(&a, "PUT", "/devstoreaccount1/pub/c").await, 404, "never anonymous writes");
        assert_eq!(anonymous(&a, "DELETE", "/devstoreaccount1/pub/b").await, 404);
        assert_eq!(anonymous(&a, "GET", "/devstoreaccount1/priv?restype=container&comp=list").await, 404);
        let (st, head) = with_sas(&a, "GET", "/devstoreaccount1/priv/b", &[]).await;
        assert!(st == 404 && head.contains("x-ms-error-code: resourcenotfound"), "a private blob: {head}");
        assert_eq!(
            anonymous(&a, "GET", "/devstoreaccount1/priv/b").await,
            anonymous(&a, "GET", "/devstoreaccount1/nosuch/b").await
        );
        let (st, head, _) = signed(
            &a,
            "PUT",
            "/devstoreaccount1/pub?restype=container&comp=acl",
            &[("x-ms-blob-public-access", "container")],
            b"",
        )
        .await;
        assert_eq!(st, 200, "{head}");
        assert_eq!(
            anonymous(&a, "GET", "/devstoreaccount1/pub?restype=container&comp=list").await,
            200,
            "container access: listing"
        );
        let (st, head, body) = signed(&a, "GET", "/devstoreaccount1/pub?restype=container&comp=acl", &[], b"").await;
        assert_eq!(st, 200);
        assert!(
            head.contains("x-ms-blob-public-access: container")
                && String::from_utf8_lossy(&body).contains("SignedIdentifiers"),
            "{head}"
        );
        let (st, _, _) = signed(&a, "PUT", "/devstoreaccount1/pub?restype=container&comp=acl", &[], b"").await;
        assert_eq!(st, 200);
        assert_eq!(anonymous(&a, "GET", "/devstoreaccount1/pub/b").await, 404, "access removed");
        let (st, _, _) = signed(
            &a,
            "PUT",
            "/devstoreaccount1/bad?restype=container",
            &[("x-ms-blob-public-access", "everything")],
            b"",
        )
        .await;
        assert_eq!(st, 400);
    });
}

#[test]
fn copy_from_an_https_source_fetches_it_over_tls() {
    let Some(kit) = peers::tls("the HTTPS copy source uses the kit's certificate") else { return };
    let dir = tempfile::tempdir().unwrap();
    let node = node::spawn(dir.path(), Some(&kit), &[("SSL_CERT_FILE", kit.join("bundle.pem"))]);
    let tls_port = node.tls.as_deref().unwrap().rsplit(':').next().unwrap().to_owned();
    let a = node.http.clone();
    let sas = edgeblob_testkit::sign::account_sas("r");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(signed(&a, "PUT", "/devstoreaccount1/ctr?restype=container", &[], b"").await.0, 201);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect();
        assert_eq!(
            signed(&a, "PUT", "/devstoreaccount1/ctr/src", &[("x-ms-blob-type", "BlockBlob")], &data).await.0,
            201
        );
        let source = format!("https://127.0.0.1:{tls_port}/devstoreaccount1/ctr/src?{sas}");
        let (st, head, _) = signed(
            &a,
            "PUT",
            "/devstoreaccount1/ctr/dst",
            &[("x-ms-blob-type", "BlockBlob"), ("x-ms-copy-source", &source)],
            b"",
        )
        .await;
        assert_eq!(st, 201, "{head}");
        let (st, head, body) = signed(&a, "GET", "/devstoreaccount1/ctr/dst", &[], b"").await;
        assert_eq!((st, body == data), (200, true));
        // Readers see where the copy came from, never the source's signature.
        assert!(head.contains("x-ms-copy-source: https://127.0.0.1"), "{head}");
        assert!(head.contains("&sp=r&se=") && !head.contains("sig="), "the source's SAS signature is shown: {head}");
        // A ranged Put Block From URL over the same TLS source.
        let (st, head, _) = signed(
            &a,
            "PUT",
            "/devstoreaccount1/ctr/part?comp=block&blockid=YWFhYQ%3D%3D",
            &[("x-ms-copy-source", &source), ("x-ms-source-range", "bytes=1000-1999")],
            b"",
        )
        .await;
        assert_eq!(st, 201, "{head}");
        let list = "<?xml version=\"1.0\"?><BlockList><Latest>YWFhYQ==</Latest></BlockList>";
        assert_eq!(signed(&a, "PUT", "/devstoreaccount1/ctr/part?comp=blocklist", &[], list.as_bytes()).await.0, 201);
        let (_, _, body) = signed(&a, "GET", "/devstoreaccount1/ctr/part", &[], b"").await;
        assert_eq!(body, &data[1000..2000]);
        // A source that does not exist is CannotVerifyCopySource with the source's status.
        let missing = format!("https://127.0.0.1:{tls_port}/devstoreaccount1/ctr/nope?{sas}");
        let (st, head, _) = signed(
            &a,
            "PUT",
            "/devstoreaccount1/ctr/x",
            &[("x-ms-blob-type", "BlockBlob"), ("x-ms-copy-source", &missing)],
            b"",
        )
        .await;
        assert_eq!(st, 404, "{head}");
        assert!(
            head.contains("x-ms-error-code: cannotverifycopysource")
                && head.contains("x-ms-copy-source-status-code: 404"),
            "{head}"
        );
    });
}

#[test]
fn abort_copy_blob_finds_no_pending_copy_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let a = node.http.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(signed(&a, "PUT", "/devstoreaccount1/ctr?restype=container", &[], b"").await.0, 201);
        let put = [("x-ms-blob-type", "BlockBlob")];
        assert_eq!(signed(&a, "PUT", "/devstoreaccount1/ctr/src", &put, b"source bytes").await.0, 201);
        let source = format!("http://{a}/devstoreaccount1/ctr/src?{}", edgeblob_testkit::sign::account_sas("r"));
        let (st, head, _) = signed(&a, "PUT", "/devstoreaccount1/ctr/dst", &[("x-ms-copy-source", &source)], b"").await;
        assert_eq!(st, 202, "{head}");
        let copy_id = head.lines().find_map(|l| l.strip_prefix("x-ms-copy-id: ")).unwrap().trim().to_owned();
        let abort = [("x-ms-copy-action", "abort")];
        let at = |id: &str| format!("/devstoreaccount1/ctr/dst?comp=copy&copyid={id}");
        // Copies complete before they are answered: the copy's own id has nothing pending, and
        // any other id is not the blob's copy.
        for (id, status, code) in [
            (copy_id.as_str(), 409, "nopendingcopyoperation"),
            ("00000000-0000-0000-0000-000000000000", 409, "copyidmismatch"),
        ] {
            let (st, head, _) = signed(&a, "PUT", &at(id), &abort, b"").await;
            assert_eq!(st, status, "{head}");
            assert!(head.contains(&format!("x-ms-error-code: {code}")), "{head}");
        }
        // A blob never copied has no copy to abort; a missing blob is 404.
        let (st, head, _) = signed(&a, "PUT", "/devstoreaccount1/ctr/src?comp=copy&copyid=x", &abort, b"").await;
        assert!(st == 409 && head.contains("x-ms-error-code: copyidmismatch"), "{head}");
        let (st, head, _) = signed(&a, "PUT", "/devstoreaccount1/ctr/none?comp=copy&copyid=x", &abort, b"").await;
        assert!(st == 404 && head.contains("x-ms-error-code: blobnotfound"), "{head}");
        // The action header and the id are required.
        let (st, head, _) = signed(&a, "PUT", &at(&copy_id), &[], b"").await;
        assert!(st == 400 && head.contains("x-ms-error-code: missingrequiredheader"), "{head}");
        let (st, head, _) = signed(&a, "PUT", "/devstoreaccount1/ctr/dst?comp=copy", &abort, b"").await;
        assert!(st == 400 && head.contains("x-ms-error-code: missingrequiredqueryparameter"), "{head}");
        // The copy is intact, its state unchanged.
        let (st, head, body) = signed(&a, "GET", "/devstoreaccount1/ctr/dst", &[], b"").await;
        assert_eq!((st, &body[..]), (200, &b"source bytes"[..]));
        assert!(head.contains("x-ms-copy-status: success") && head.contains(&copy_id.to_ascii_lowercase()), "{head}");
    });
}

#[test]
fn transactional_crc64_is_verified_when_sent() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let a = node.http.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(signed(&a, "PUT", "/devstoreaccount1/ctr?restype=container", &[], b"").await.0, 201);
        let data = b"checkpoint shard bytes".repeat(1000);
        let good = edgeblob_proto::crc64::to_header(edgeblob_proto::crc64::update(0, &data));
        let (st, head, _) = signed(
            &a,
            "PUT",
            "/devstoreaccount1/ctr/b?comp=block&blockid=YQ%3D%3D",
            &[("x-ms-content-crc64", &good)],
            &data,
        )
        .await;
        assert_eq!(st, 201, "{head}");
        assert!(head.contains(&format!("x-ms-content-crc64: {}", good.to_ascii_lowercase())), "{head}");
        let bad = edgeblob_proto::crc64::to_header(1);
        let (st, head, _) = signed(
            &a,
            "PUT",
            "/devstoreaccount1/ctr/b",
            &[("x-ms-blob-type", "BlockBlob"), ("x-ms-content-crc64", &bad)],
            &data,
        )
        .await;
        assert_eq!(st, 400);
        assert!(head.contains("x-ms-error-code: crc64mismatch"), "{head}");
        let (st, _, _) = signed(&a, "HEAD", "/devstoreaccount1/ctr/b", &[], b"").await;
        assert_eq!(st, 404, "nothing was committed");
    });
}

#[test]
fn metadata_names_keep_the_case_they_were_written_in() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let a = node.http.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(
            signed(&a, "PUT", "/devstoreaccount1/ctr?restype=container", &[("X-Ms-Meta-Owner_Team", "ml")], b"")
                .await
                .0,
            201
        );
        let h = [("x-ms-blob-type", "BlockBlob"), ("x-ms-meta-Mixed_Case", "X"), ("X-Ms-Meta-Mtime", "1")];
        assert_eq!(signed(&a, "PUT", "/devstoreaccount1/ctr/b", &h, b"data").await.0, 201);
        let (_, _, body) =
            signed(&a, "GET", "/devstoreaccount1/ctr?restype=container&comp=list&include=metadata", &[], b"").await;
        let xml = String::from_utf8(body).unwrap();
        assert!(xml.contains("<Mixed_Case>X</Mixed_Case>") && xml.contains("<Mtime>1</Mtime>"), "{xml}");
        let (_, _, body) = signed(&a, "GET", "/devstoreaccount1?comp=list&include=metadata", &[], b"").await;
        assert!(String::from_utf8(body).unwrap().contains("<Owner_Team>ml</Owner_Team>"));
        // Matched without case: replacing with another case replaces the value.
        let h = [("x-ms-meta-MIXED_CASE", "Y")];
        assert_eq!(signed(&a, "PUT", "/devstoreaccount1/ctr/b?comp=metadata", &h, b"").await.0, 200);
        let (_, head, _) = signed(&a, "HEAD", "/devstoreaccount1/ctr/b", &[], b"").await;
        assert!(head.contains("x-ms-meta-mixed_case: y"), "{head}");
    });
}

/// Azure's `include=uncommittedblobs`: a blob with staged blocks only is listed, as a block
/// blob of no bytes, and only when asked for; one committed too is listed once, as committed.
#[test]
fn uncommitted_blobs_are_listed_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let a = node.http.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(signed(&a, "PUT", "/devstoreaccount1/ctr?restype=container", &[], b"").await.0, 201);
        let blob = [("x-ms-blob-type", "BlockBlob")];
        assert_eq!(signed(&a, "PUT", "/devstoreaccount1/ctr/both", &blob, b"committed").await.0, 201);
        for name in ["both", "d/staged", "staged"] {
            let path = format!("/devstoreaccount1/ctr/{name}?comp=block&blockid=YmxrMQ%3D%3D");
            assert_eq!(signed(&a, "PUT", &path, &[], b"block").await.0, 201);
        }
        let list = |q: &'static str| {
            let a = a.clone();
            async move {
                let (st, _, body) =
                    signed(&a, "GET", &format!("/devstoreaccount1/ctr?restype=container&comp=list{q}"), &[], b"").await;
                assert_eq!(st, 200);
                String::from_utf8(body).unwrap()
            }
        };
        let names = |xml: &str| -> Vec<String> {
            xml.split("<Name>").skip(1).map(|s| s.split("</Name>").next().unwrap().to_owned()).collect()
        };
        assert_eq!(names(&list("").await), ["both"]);
        let xml = list("&include=uncommittedblobs").await;
        assert_eq!(names(&xml), ["both", "d/staged", "staged"]);
        let staged = xml.split("<Name>staged</Name>").nth(1).unwrap();
        assert!(staged.contains("<Content-Length>0</Content-Length>"), "{xml}");
        assert!(staged.contains("<BlobType>BlockBlob</BlobType>"), "{xml}");
        let both = xml.split("<Name>both</Name>").nth(1).unwrap();
        assert!(both.contains("<Content-Length>9</Content-Length>"), "the committed version: {xml}");
        // Paged one at a time, and collapsed under a delimiter, with metadata asked for too.
        let xml = list("&include=uncommittedblobs,metadata&delimiter=/&maxresults=1").await;
        assert_eq!(names(&xml), ["both"]);
        let xml = list("&include=uncommittedblobs&delimiter=/&maxresults=1&marker=both").await;
        assert!(xml.contains("<BlobPrefix><Name>d/</Name></BlobPrefix>"), "{xml}");
        let xml = list("&include=uncommittedblobs&delimiter=/&marker=d/").await;
        assert_eq!(names(&xml), ["staged"]);
        // Committed, it is listed without asking, once; dropped by a commit, its staged blocks
        // no longer list the other.
        let put_list = "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Latest>YmxrMQ==</Latest></BlockList>";
        let path = "/devstoreaccount1/ctr/staged?comp=blocklist";
        assert_eq!(signed(&a, "PUT", path, &[], put_list.as_bytes()).await.0, 201);
        assert_eq!(names(&list("").await), ["both", "staged"]);
        assert_eq!(names(&list("&include=uncommittedblobs").await), ["both", "d/staged", "staged"]);
    });
    // After a restart, from what the index holds.
    drop(node);
    let node = start(dir.path());
    rt.block_on(async {
        let q = "/devstoreaccount1/ctr?restype=container&comp=list&include=uncommittedblobs";
        let (_, _, body) = signed(&node.http, "GET", q, &[], b"").await;
        let xml = String::from_utf8(body).unwrap();
        assert_eq!(xml.matches("<Name>").count(), 3, "{xml}");
        assert!(xml.contains("<Name>d/staged</Name>"), "{xml}");
    });
}

/// Recovery reads each shard's log half whole (48 MiB apiece on a 3 GiB file with 2 shards);
/// once the node listens, that memory must be back with the OS, not held by the allocator until
/// traffic comes.
#[test]
fn a_started_node_holds_no_recovery_buffers() {
    let dir = tempfile::tempdir().unwrap();
    for start in ["format", "reopen"] {
        let node = node::spawn_sized(dir.path(), "3G", None, &[]);
        let status = std::fs::read_to_string(format!("/proc/{}/status", node.pid())).unwrap();
        let kib = |field: &str| -> u64 {
            let line = status.lines().find(|l| l.starts_with(field)).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        };
        // 32 MiB a shard (two, or more on a node of several devices).
        let bound = (32 << 10) * edgeblob_testkit::engine::shards_for(2) as u64;
        assert!(kib("VmRSS:") < bound, "{start}: resident {} KiB after start:\n{status}", kib("VmRSS:"));
    }
}

/// The node's heap takes no transparent huge pages (architecture.md, "No transparent huge pages
/// for the node's heap"), and `MIMALLOC_ALLOW_THP` in its environment still decides. The kernel
/// says which in `THP_enabled` of the process's status (Linux 5.0 and later).
#[test]
fn a_node_runs_without_transparent_huge_pages_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let thp = |node: &node::NodeProc| -> String {
        let status = std::fs::read_to_string(format!("/proc/{}/status", node.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("THP_enabled:")).expect("a kernel that reports THP_enabled");
        line.split_whitespace().nth(1).unwrap().to_string()
    };
    let node = node::spawn(dir.path(), None, &[]);
    assert_eq!(thp(&node), "0");
    drop(node);
    let node = node::spawn(dir.path(), None, &[("MIMALLOC_ALLOW_THP", "1".into())]);
    assert_eq!(thp(&node), "1");
}

/// A request whose client goes away while its handler waits gives its slot back (hyper drops the
/// handler's future): with one request at a time allowed, the next one is served, not refused.
#[test]
fn a_request_dropped_mid_flight_gives_back_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let node = node::InProcess::start(dir.path(), 1 << 30, 1, |c| c.max_requests_per_shard = 1);
    let a = node.addr.to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let props = "/devstoreaccount1/ctr?restype=container";
        assert_eq!(signed(&a, "PUT", props, &[], b"").await.0, 201);
        // A copy source that accepts the node's connection and never answers: the copy waits.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let source = format!("http://{}/other/ctr/src", silent.local_addr().unwrap());
        let copy = signed_head("PUT", "/devstoreaccount1/ctr/dst", &[("x-ms-copy-source", &source)], 0);
        let mut waiting = tokio::net::TcpStream::connect(&a).await.unwrap();
        waiting.write_all(copy.as_bytes()).await.unwrap();
        let _held = silent.accept().await.unwrap();
        let (st, head, _) = signed(&a, "GET", props, &[], b"").await;
        assert_eq!(st, 503, "the copy holds the only slot: {head}");
        assert!(head.contains("x-ms-error-code: serverbusy") && head.contains("retry-after: 1"), "{head}");
        drop(waiting);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (st, head, _) = signed(&a, "GET", props, &[], b"").await;
            if st != 503 {
                assert_eq!(st, 200, "{head}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the dropped request's slot was never given back");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
}

/// A full node answers writes with 503 ServerBusy and a Retry-After (a condition that passes when
/// space is freed), not a 500 InternalError; deletes still go through and make room.
#[test]
fn a_full_node_answers_server_busy_and_deletes_make_room() {
    let dir = tempfile::tempdir().unwrap();
    let node = node::InProcess::start(dir.path(), 64 << 20, 1, |_| {});
    let a = node.addr.to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(signed(&a, "PUT", "/devstoreaccount1/ctr?restype=container", &[], b"").await.0, 201);
        let mut stored = 0;
        let (head, body) = loop {
            assert!(stored < 64, "64 MiB took {stored} distinct 4 MiB blobs");
            let data = edgeblob_testkit::engine::data(stored, 4 << 20, false);
            let (st, head, body) = signed(
                &a,
                "PUT",
                &format!("/devstoreaccount1/ctr/b{stored}"),
                &[("x-ms-blob-type", "BlockBlob")],
                &data,
            )
            .await;
            if st != 201 {
                assert_eq!(st, 503, "{head}");
                break (head, body);
            }
            stored += 1;
        };
        assert!(stored >= 8, "only {stored} blobs fit");
        assert!(head.contains("x-ms-error-code: serverbusy") && head.contains("retry-after: 10"), "{head}");
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("<Code>ServerBusy</Code>") && body.contains("no space left"), "{body}");
        let (st, head, _) = signed(&a, "DELETE", "/devstoreaccount1/ctr/b0", &[], b"").await;
        assert_eq!(st, 202, "{head}");
        let data = edgeblob_testkit::engine::data(1000, 1 << 20, false);
        let put = || signed(&a, "PUT", "/devstoreaccount1/ctr/after", &[("x-ms-blob-type", "BlockBlob")], &data);
        // Freed space is reused once no read can still see it (an epoch later): soon, not never.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while put().await.0 != 201 {
            assert!(std::time::Instant::now() < deadline, "the deleted blob's space never came back");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
}

/// A loopback HTTP service that answers every request with `secret`; counts its connections.
async fn secret_service() -> (String, std::rc::Rc<std::cell::Cell<usize>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let seen = std::rc::Rc::new(std::cell::Cell::new(0));
    let counter = seen.clone();
    tokio::task::spawn_local(async move {
        while let Ok((mut c, _)) = l.accept().await {
            counter.set(counter.get() + 1);
            tokio::task::spawn_local(async move {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf).await;
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret").await;
            });
        }
    });
    (addr, seen)
}

/// A copy's source is fetched by the node, so it must not reach what only the node can: an
/// internal address is refused unless allow-listed, and every failure to reach a source (refused
/// address, closed port, silent service) gets the same answer, after at most the time-out.
#[test]
fn copies_reach_internal_addresses_only_when_allowed_and_fail_alike() {
    use edgeblob_testkit::node::InProcess;
    let strict_dir = tempfile::tempdir().unwrap();
    let strict = InProcess::start(strict_dir.path(), 1 << 30, 1, |c| {
        c.copy_source_allow = Some(vec![]);
        c.copy_source_timeout_secs = 1;
    });
    let allowed_dir = tempfile::tempdir().unwrap();
    let allowed = InProcess::start(allowed_dir.path(), 1 << 30, 1, |c| {
        c.copy_source_allow = Some(vec!["127.0.0.0/8".into()]);
        c.copy_source_timeout_secs = 1;
        c.body_timeout_secs = 1;
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio::task::LocalSet::new().block_on(&rt, async {
        let (service, seen) = secret_service().await;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap().to_string();
        let copy = |node: String, src: String, dst: &'static str| async move {
            let path = format!("/devstoreaccount1/ctr/{dst}");
            signed(&node, "PUT", &path, &[("x-ms-copy-source", &format!("http://{src}/a/c/b"))], b"").await
        };
        let (strict_a, allowed_a) = (strict.addr.to_string(), allowed.addr.to_string());
        for a in [&strict_a, &allowed_a] {
            assert_eq!(signed(a, "PUT", "/devstoreaccount1/ctr?restype=container", &[], b"").await.0, 201);
        }
        let mut answers = Vec::new();
        for (node, src) in [
            (&strict_a, service.clone()),
            (&strict_a, "169.254.169.254".to_owned()),
            (&allowed_a, closed.clone()),
            (&allowed_a, silent_addr.clone()),
        ] {
            let started = std::time::Instant::now();
            let (st, head, body) = copy(node.clone(), src.clone(), "dst").await;
            assert!(started.elapsed() < std::time::Duration::from_secs(10), "{src}: the copy waited too long");
            assert_eq!(st, 500, "{src}: {head}");
            assert!(head.contains("x-ms-error-code: cannotverifycopysource"), "{head}");
            answers.push(String::from_utf8_lossy(&body).split("RequestId").next().unwrap_or("").to_owned());
        }
        assert!(answers.windows(2).all(|w| w[0] == w[1]), "the answers tell the failures apart: {answers:?}");
        assert_eq!(seen.get(), 0, "the refused copy connected to the internal service");
        assert_eq!(signed(&strict_a, "HEAD", "/devstoreaccount1/ctr/dst", &[], b"").await.0, 404);
        // Allow-listed, the same service is a source like any other.
        let (st, head, _) = copy(allowed_a.clone(), service.clone(), "fetched").await;
        assert_eq!(st, 202, "{head}");
        let (_, _, got) = signed(&allowed_a, "GET", "/devstoreaccount1/ctr/fetched", &[], b"").await;
        assert_eq!(got, b"secret");
        drop(silent);
    });
}

/// A chunked request body is refused (Azure wants a length), also when a Content-Length comes with
/// it: the two disagreeing is how requests are smuggled past a proxy. The connection then closes.
#[test]
fn a_request_with_transfer_encoding_is_refused_and_its_connection_closed() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let a = node.http.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(signed(&a, "PUT", "/devstoreaccount1/ctr?restype=container", &[], b"").await.0, 201);
        // Length before the encoding, after it, or none.
        for (before, after) in [("Content-Length: 5\r\n", ""), ("", "Content-Length: 5\r\n"), ("", "")] {
            let mut head = signed_head("PUT", "/devstoreaccount1/ctr/smuggled", &[("x-ms-blob-type", "BlockBlob")], 0);
            head.truncate(head.len() - 2);
            head.push_str(before);
            head.push_str("Transfer-Encoding: chunked\r\n");
            head.push_str(after);
            head.push_str("\r\n5\r\nhello\r\n0\r\n\r\n");
            // What a proxy reading the Content-Length would take for a second request.
            head.push_str("GET /devstoreaccount1/ctr?restype=container HTTP/1.1\r\nHost: x\r\n\r\n");
            let mut c = tokio::net::TcpStream::connect(&a).await.unwrap();
            c.write_all(head.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            let read = tokio::time::timeout(std::time::Duration::from_secs(10), c.read_to_end(&mut out)).await;
            assert!(read.is_ok(), "the connection was kept open");
            let out = String::from_utf8_lossy(&out).to_ascii_lowercase();
            // hyper itself refuses some orders (a bare 400); the rest get Azure's answer.
            assert!(
                out.starts_with("http/1.1 400") || out.contains("x-ms-error-code: missingcontentlengthheader"),
                "{before}{after}: {out}"
            );
            if before.is_empty() && after.is_empty() {
                assert!(out.starts_with("http/1.1 411"), "{out}");
            }
            assert_eq!(out.matches("http/1.1 ").count(), 1, "a second request was answered: {out}");
        }
        assert_eq!(signed(&a, "HEAD", "/devstoreaccount1/ctr/smuggled", &[], b"").await.0, 404);
        // No length and no encoding is an empty body (RFC 9112, 6.3), as hyper's client sends an
        // empty PUT: taken, where Azure answers 411.
        let head = signed_head("PUT", "/devstoreaccount1/ctr/unsized", &[("x-ms-blob-type", "BlockBlob")], 0)
            .replace("Content-Length: 0\r\n", "");
        assert!(!head.to_ascii_lowercase().contains("content-length"), "{head}");
        let (st, out, _) = exchange(&a, &head, b"").await;
        assert_eq!(st, 201, "{out}");
        let (st, out, _) = signed(&a, "HEAD", "/devstoreaccount1/ctr/unsized", &[], b"").await;
        assert!(st == 200 && out.contains("content-length: 0"), "{out}");
    });
}

/// SharedKey requests carry their time: more than 15 minutes off is refused (a captured request
/// cannot be replayed later), with the reason in the error. (No date at all: proto's tests.)
#[test]
fn a_shared_key_request_outside_fifteen_minutes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let a = node.http.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let ctr = "/devstoreaccount1/dated?restype=container";
        let at = |secs_ago: u64| {
            httpdate::fmt_http_date(std::time::SystemTime::now() - std::time::Duration::from_secs(secs_ago))
        };
        let (st, head, body) = signed(&a, "PUT", ctr, &[("x-ms-date", &at(16 * 60))], b"").await;
        assert_eq!(st, 403, "{head}");
        assert!(head.contains("x-ms-error-code: authenticationfailed"), "{head}");
        assert!(
            String::from_utf8_lossy(&body).contains("Request date header too old"),
            "{}",
            String::from_utf8_lossy(&body)
        );
        let ahead = httpdate::fmt_http_date(std::time::SystemTime::now() + std::time::Duration::from_secs(20 * 60));
        assert_eq!(signed(&a, "PUT", ctr, &[("x-ms-date", &ahead)], b"").await.0, 403, "a date far ahead");
        assert_eq!(signed(&a, "PUT", ctr, &[("x-ms-date", &at(10 * 60))], b"").await.0, 201, "ten minutes is within");
    });
}

/// Metadata as Azure bounds it: names are identifiers, names and values at most 8 KiB together;
/// past that a clear 400, and nothing is written.
#[test]
fn metadata_past_azure_limits_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let a = node.http.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(signed(&a, "PUT", "/devstoreaccount1/meta?restype=container", &[], b"").await.0, 201);
        let big = "v".repeat(9 << 10);
        let cases = [
            (("x-ms-meta-big", big.as_str()), "metadatatoolarge"),
            (("x-ms-meta-1abc", "v"), "invalidmetadata"),
            (("x-ms-meta-a-b", "v"), "invalidmetadata"),
        ];
        for ((name, value), code) in cases {
            let h = [("x-ms-blob-type", "BlockBlob"), (name, value)];
            let (st, head, _) = signed(&a, "PUT", "/devstoreaccount1/meta/b", &h, b"data").await;
            assert_eq!(st, 400, "{name}: {head}");
            assert!(head.contains(&format!("x-ms-error-code: {code}")), "{name}: {head}");
            let (st, _, _) =
                signed(&a, "PUT", "/devstoreaccount1/meta?restype=container&comp=metadata", &[(name, value)], b"")
                    .await;
            assert_eq!(st, 400, "{name} on a container");
        }
        assert_eq!(signed(&a, "HEAD", "/devstoreaccount1/meta/b", &[], b"").await.0, 404, "nothing was written");
    });
}

/// A copy's source on this node is authorised on its own: a SAS scoped to one container copies
/// within it, but cannot pull a private blob of another container into its scope (through Copy
/// Blob, Put Blob From URL or Put Block From URL); an account SAS that grants read can.
#[test]
fn a_sas_cannot_copy_a_private_blob_from_outside_its_scope() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let a = node.http.clone();
    let key = base64::engine::general_purpose::STANDARD.decode(edgeblob::config::DEV_KEY).unwrap();
    let sas =
        |sts: &str| edgeblob_proto::sas::sign(&key, sts).replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
    // A service SAS for container `open` with read, write and create.
    let open_sts = "rwc\n\n2099-01-01T00:00:00Z\n/blob/devstoreaccount1/open\n\n\n\n2026-10-06\nc\n\n\n\n\n\n\n";
    let open_sas = format!("sv=2026-10-06&sr=c&sp=rwc&se=2099-01-01T00%3A00%3A00Z&sig={}", sas(open_sts));
    let account_sas = edgeblob_testkit::sign::account_sas("rwc");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        for c in ["open", "secret"] {
            assert_eq!(signed(&a, "PUT", &format!("/devstoreaccount1/{c}?restype=container"), &[], b"").await.0, 201);
            let put = [("x-ms-blob-type", "BlockBlob")];
            assert_eq!(signed(&a, "PUT", &format!("/devstoreaccount1/{c}/src"), &put, b"private bytes").await.0, 201);
        }
        let secret = format!("http://{a}/devstoreaccount1/secret/src");
        let inside = format!("http://{a}/devstoreaccount1/open/src");
        let copies = |source: String| {
            [
                ("/devstoreaccount1/open/copy", vec![("x-ms-copy-source", source.clone())]),
                (
                    "/devstoreaccount1/open/from-url",
                    vec![("x-ms-copy-source", source.clone()), ("x-ms-blob-type", "BlockBlob".to_owned())],
                ),
                ("/devstoreaccount1/open/block?comp=block&blockid=YWFhYQ%3D%3D", vec![("x-ms-copy-source", source)]),
            ]
        };
        for (path, headers) in copies(secret.clone()) {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let sep = if path.contains('?') { '&' } else { '?' };
            let (st, head) = with_sas(&a, "PUT", &format!("{path}{sep}{open_sas}"), &h).await;
            assert_eq!(st, 403, "{path}: a container SAS reached a private blob elsewhere: {head}");
            assert!(head.contains("x-ms-error-code: cannotverifycopysource"), "{head}");
            let (st, head) = with_sas(&a, "PUT", &format!("{path}{sep}{account_sas}"), &h).await;
            assert!(st == 201 || st == 202, "{path}: an account SAS with read copies: {head}");
        }
        for (path, headers) in copies(inside) {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let sep = if path.contains('?') { '&' } else { '?' };
            let (st, head) = with_sas(&a, "PUT", &format!("{path}{sep}{open_sas}"), &h).await;
            assert!(st == 201 || st == 202, "{path}: a copy within the SAS's container: {head}");
        }
        assert_eq!(signed(&a, "GET", "/devstoreaccount1/open/copy", &[], b"").await.2, b"private bytes");
    });
}

/// Whether the node closes `c` within `secs` (reads until end of stream, whatever it sends).
async fn closed_within(c: &mut tokio::net::TcpStream, secs: u64) -> bool {
    let mut sink = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(secs), c.read_to_end(&mut sink)).await.is_ok()
}

/// A body that stops making progress ends its request: an upload whose client stops sending,
/// and a download whose client stops reading. Each then gives back its slot (the only one here),
/// so the next request is served.
#[test]
fn stalled_uploads_and_unread_downloads_give_back_their_slot() {
    use edgeblob_testkit::node::InProcess;
    let dir = tempfile::tempdir().unwrap();
    let node = InProcess::start(dir.path(), 1 << 30, 1, |c| {
        c.body_timeout_secs = 1;
        c.max_requests_per_shard = 1;
    });
    let a = node.addr.to_string();
    let props = "/devstoreaccount1/ctr?restype=container";
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(signed(&a, "PUT", props, &[], b"").await.0, 201);
        // Half of a 1 MiB body, then nothing.
        let head = signed_head("PUT", "/devstoreaccount1/ctr/stalled", &[("x-ms-blob-type", "BlockBlob")], 1 << 20);
        let mut stalled = tokio::net::TcpStream::connect(&a).await.unwrap();
        stalled.write_all(head.as_bytes()).await.unwrap();
        stalled.write_all(&vec![7u8; 512 << 10]).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(signed(&a, "GET", props, &[], b"").await.0, 503, "the upload holds the slot");
        assert!(closed_within(&mut stalled, 10).await, "a stalled upload kept its connection");
        assert_eq!(signed(&a, "GET", props, &[], b"").await.0, 200, "the stalled upload's slot came back");
        assert_eq!(signed(&a, "HEAD", "/devstoreaccount1/ctr/stalled", &[], b"").await.0, 404, "nothing was stored");

        // A download far larger than the socket buffers, never read.
        let big = edgeblob_testkit::engine::data(5, 32 << 20, false);
        let (st, head, _) =
            signed(&a, "PUT", "/devstoreaccount1/ctr/big", &[("x-ms-blob-type", "BlockBlob")], &big).await;
        assert_eq!(st, 201, "{head}");
        let mut unread = tokio::net::TcpStream::connect(&a).await.unwrap();
        unread.write_all(signed_head("GET", "/devstoreaccount1/ctr/big", &[], 0).as_bytes()).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let (st, head, _) = signed(&a, "GET", props, &[], b"").await;
            if st == 200 {
                break;
            }
            assert_eq!(st, 503, "{head}");
            assert!(std::time::Instant::now() < deadline, "an unread download kept its slot");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        drop(unread);
    });
}

/// Connections are bounded in time and number: a request head that never completes, a kept-alive
/// connection left idle and a TLS handshake that never starts are closed after the header time;
/// past the connection bound a new connection is closed at once, and once one is freed the next
/// is served.
#[test]
fn slow_idle_and_surplus_connections_are_closed() {
    use edgeblob_testkit::node::InProcess;
    let dir = tempfile::tempdir().unwrap();
    let tls = peers::tls("the TLS handshake case uses the kit's certificate");
    let node = InProcess::start(dir.path(), 1 << 30, 1, |c| {
        c.header_timeout_secs = 1;
        c.max_connections_per_shard = Some(3);
        if let Some(t) = &tls {
            c.tls =
                Some(edgeblob::config::TlsConfig { port: 0, cert: t.join("server.pem"), key: t.join("server.key") });
        }
    });
    let a = node.addr.to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // Slowloris: half a head, never finished.
        let mut slow = tokio::net::TcpStream::connect(&a).await.unwrap();
        slow.write_all(b"GET /devstoreaccount1?comp=list HTTP/1.1\r\nHost: x\r\nx-ms-ver").await.unwrap();
        // Idle: one answered request, then nothing.
        let mut idle = tokio::net::TcpStream::connect(&a).await.unwrap();
        idle.write_all(b"HEAD /devstoreaccount1/nosuch?restype=container HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut head = [0u8; 12];
        idle.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 404", "anonymous, answered");
        // A third fills the bound of three; a fourth is closed at once.
        let _third = tokio::net::TcpStream::connect(&a).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mut surplus = tokio::net::TcpStream::connect(&a).await.unwrap();
        assert!(closed_within(&mut surplus, 1).await, "a connection past the bound was kept");
        assert!(closed_within(&mut slow, 5).await, "an unfinished head kept its connection");
        assert!(closed_within(&mut idle, 5).await, "an idle keep-alive connection was kept");
        // Their slots are back: a new connection is served.
        assert_eq!(anonymous(&a, "HEAD", "/devstoreaccount1/nosuch?restype=container").await, 404);
        if let Some(tls_addr) = node.tls {
            let mut silent = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
            assert!(closed_within(&mut silent, 5).await, "a TLS handshake that never starts kept its connection");
        }
    });
}

/// With the public development key and no `listen` set, the node listens on loopback only, and
/// its listening line says so.
#[test]
fn the_public_key_listens_on_loopback_only() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(node::workspace_bin("edgeblob"))
        .arg("--data")
        .arg(dir.path().join("node.dat"))
        .args(["--port", "0", "--shards", "1", "--data-size", "1G", "--admin-listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.starts_with("edgeblob listening on 127.0.0.1:"), "{line}");
    assert!(line.contains("loopback only"), "{line}");
}

/// What a container SAS may do, as Azure allows: its blobs, never the container itself; and a
/// create-only SAS (`c` without `w`) makes new blobs but never replaces one.
#[test]
fn a_container_sas_reaches_its_blobs_only_and_create_only_never_overwrites() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let a = node.http.clone();
    let key = base64::engine::general_purpose::STANDARD.decode(edgeblob::config::DEV_KEY).unwrap();
    let service_sas = |sp: &str| {
        let sts =
            format!("{sp}\n\n2099-01-01T00:00:00Z\n/blob/devstoreaccount1/scoped\n\n\n\n2026-10-06\nc\n\n\n\n\n\n\n");
        let sig = edgeblob_proto::sas::sign(&key, &sts).replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
        format!("sv=2026-10-06&sr=c&sp={sp}&se=2099-01-01T00%3A00%3A00Z&sig={sig}")
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(signed(&a, "PUT", "/devstoreaccount1/scoped?restype=container", &[], b"").await.0, 201);
        let all = service_sas("racwdl");
        for (method, path, headers) in [
            (
                "PUT",
                "/devstoreaccount1/scoped?restype=container&comp=acl",
                vec![("x-ms-blob-public-access", "container")],
            ),
            ("PUT", "/devstoreaccount1/scoped?restype=container&comp=metadata", vec![("x-ms-meta-k", "v")]),
            ("GET", "/devstoreaccount1/scoped?restype=container", vec![]),
            ("DELETE", "/devstoreaccount1/scoped?restype=container", vec![]),
            ("PUT", "/devstoreaccount1/scoped?restype=container", vec![]),
        ] {
            let (st, head) = with_sas(&a, method, &format!("{path}&{all}"), &headers).await;
            assert_eq!(st, 403, "{method} {path} with a container SAS: {head}");
            // The ACL is for the account key alone; the rest is a container operation, which
            // takes an account SAS.
            let code = if path.contains("comp=acl") {
                "authorizationpermissionmismatch"
            } else {
                "authorizationresourcetypemismatch"
            };
            assert!(head.contains(&format!("x-ms-error-code: {code}")), "{head}");
        }
        let (st, _) =
            with_sas(&a, "GET", &format!("/devstoreaccount1/scoped?restype=container&comp=list&{all}"), &[]).await;
        assert_eq!(st, 200, "List Blobs is on its blobs");
        assert_eq!(
            signed(&a, "HEAD", "/devstoreaccount1/scoped?restype=container", &[], b"").await.0,
            200,
            "not deleted"
        );

        let create = service_sas("c");
        let put = [("x-ms-blob-type", "BlockBlob")];
        let (st, head) = with_sas(&a, "PUT", &format!("/devstoreaccount1/scoped/new?{create}"), &put).await;
        assert_eq!(st, 201, "a create-only SAS creates: {head}");
        let (st, head) = with_sas(&a, "PUT", &format!("/devstoreaccount1/scoped/new?{create}"), &put).await;
        assert_eq!(st, 409, "a create-only SAS overwrote: {head}");
        assert!(head.contains("x-ms-error-code: blobalreadyexists"), "{head}");
        // Blocks are staged and committed under `w` alone (Azure's table): `c` makes whole blobs.
        let block = format!("/devstoreaccount1/scoped/new?comp=block&blockid=YWFhYQ%3D%3D&{create}");
        let (st, head) = with_sas(&a, "PUT", &block, &[]).await;
        assert_eq!(st, 403, "{head}");
        assert!(head.contains("x-ms-error-code: authorizationpermissionmismatch"), "{head}");
        let list = format!("/devstoreaccount1/scoped/new?comp=blocklist&{create}");
        let xml = b"<?xml version=\"1.0\"?><BlockList><Latest>YWFhYQ==</Latest></BlockList>";
        assert_eq!(with_sas_body(&a, "PUT", &list, &[], xml).await.0, 403, "Put Block List takes w");
        let source = format!("http://{a}/devstoreaccount1/scoped/new");
        let copy = format!("/devstoreaccount1/scoped/new?{create}");
        assert_eq!(
            with_sas(&a, "PUT", &copy, &[("x-ms-copy-source", &source)]).await.0,
            403,
            "c cannot read the source"
        );
        let (st, _) = with_sas(&a, "PUT", &format!("/devstoreaccount1/scoped/new?{}", service_sas("w")), &put).await;
        assert_eq!(st, 201, "w overwrites");
    });
}

/// Azure's largest block list over HTTP: one 100 MiB block listed 50,000 times (a 4.77 TiB blob)
/// commits, answers HEAD with its size, serves ranges at its end, and lists its 50,000 blocks.
#[test]
fn a_block_list_of_fifty_thousand_blocks_makes_a_blob_over_four_tebibytes() {
    let dir = tempfile::tempdir().unwrap();
    let node = node::InProcess::start(dir.path(), 1 << 30, 2, |_| {});
    let a = node.addr.to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(signed(&a, "PUT", "/devstoreaccount1/ctr?restype=container", &[], b"").await.0, 201);
        let block = edgeblob_testkit::engine::data(7, 100 << 20, false);
        let id = "YmxvY2stMDAwMQ=="; // base64 of "block-0001"
        let put = format!("/devstoreaccount1/ctr/huge?comp=block&blockid={}", id.replace('=', "%3D"));
        assert_eq!(signed(&a, "PUT", &put, &[], &block).await.0, 201);
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for _ in 0..50_000 {
            xml.push_str(&format!("<Latest>{id}</Latest>"));
        }
        xml.push_str("</BlockList>");
        let (st, head, body) =
            signed(&a, "PUT", "/devstoreaccount1/ctr/huge?comp=blocklist", &[], xml.as_bytes()).await;
        assert_eq!(st, 201, "{head}\n{}", String::from_utf8_lossy(&body));
        let total: u64 = 50_000 * (100 << 20);
        let (st, head, _) = signed(&a, "HEAD", "/devstoreaccount1/ctr/huge", &[], b"").await;
        assert_eq!(st, 200);
        assert!(head.contains(&format!("content-length: {total}\r\n")), "{head}");
        let (first, last) = (total - 300, total - 1);
        let range = format!("bytes={first}-{last}");
        let (st, head, got) = signed(&a, "GET", "/devstoreaccount1/ctr/huge", &[("x-ms-range", &range)], b"").await;
        assert_eq!(st, 206, "{head}");
        assert!(head.contains(&format!("content-range: bytes {first}-{last}/{total}")), "{head}");
        assert_eq!(got[..], block[block.len() - 300..]);
        let (st, _, list) = signed(&a, "GET", "/devstoreaccount1/ctr/huge?comp=blocklist", &[], b"").await;
        assert_eq!(st, 200);
        let list = String::from_utf8(list).unwrap();
        assert_eq!(list.matches("<Block>").count(), 50_000);
        assert_eq!(list.matches(&format!("<Name>{id}</Name><Size>{}</Size>", 100 << 20)).count(), 50_000);
    });
}

/// CORS as a browser meets it: without rules a preflight is refused (403
/// `CorsPreflightFailure`) and answers carry no CORS headers; with a rule set through Set Blob
/// Service Properties, the preflight is answered with what the rule allows and a cross-origin
/// upload with a SAS succeeds with `Access-Control-Allow-Origin` and the exposed headers; other
/// origins, methods or headers stay refused.
#[test]
fn cors_preflight_and_cross_origin_upload_follow_the_accounts_rules() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let a = node.http.clone();
    let sas = edgeblob_testkit::sign::account_sas("rwc");
    let origin = ("Origin", "https://app.example");
    let preflight = |method: &'static str, headers: &'static str, from: &'static str| {
        let a = a.clone();
        async move {
            let mut h = vec![("Origin", from), ("Access-Control-Request-Method", method)];
            if !headers.is_empty() {
                h.push(("Access-Control-Request-Headers", headers));
            }
            with_sas(&a, "OPTIONS", "/devstoreaccount1/web/up.txt", &h).await
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(signed(&a, "PUT", "/devstoreaccount1/web?restype=container", &[], b"").await.0, 201);
        let (st, head) = preflight("PUT", "x-ms-blob-type", "https://app.example").await;
        assert_eq!(st, 403, "{head}");
        assert!(head.contains("x-ms-error-code: corspreflightfailure"), "{head}");
        let upload = format!("/devstoreaccount1/web/up.txt?{sas}");
        let (st, head) = with_sas_body(&a, "PUT", &upload, &[origin, ("x-ms-blob-type", "BlockBlob")], b"hi").await;
        assert_eq!(st, 201, "{head}");
        assert!(!head.contains("access-control-allow-origin"), "CORS headers without a rule: {head}");

        let rules = "<?xml version=\"1.0\" encoding=\"utf-8\"?><StorageServiceProperties><Cors><CorsRule>\
            <AllowedOrigins>https://app.example</AllowedOrigins><AllowedMethods>PUT,GET</AllowedMethods>\
            <MaxAgeInSeconds>300</MaxAgeInSeconds><ExposedHeaders>x-ms-meta-*,etag</ExposedHeaders>\
            <AllowedHeaders>x-ms-*,content-type</AllowedHeaders></CorsRule></Cors></StorageServiceProperties>";
        let (st, head, _) =
            signed(&a, "PUT", "/devstoreaccount1/?restype=service&comp=properties", &[], rules.as_bytes()).await;
        assert_eq!(st, 202, "{head}");

        let (st, head) = preflight("PUT", "x-ms-blob-type,Content-Type", "https://app.example").await;
        assert_eq!(st, 200, "{head}");
        for want in [
            "access-control-allow-origin: https://app.example",
            "access-control-allow-methods: put",
            "access-control-allow-headers: x-ms-blob-type,content-type",
            "access-control-max-age: 300",
            "access-control-allow-credentials: true",
        ] {
            assert!(head.contains(want), "{want} missing: {head}");
        }
        let (st, head) = with_sas_body(&a, "PUT", &upload, &[origin, ("x-ms-blob-type", "BlockBlob")], b"hello").await;
        assert_eq!(st, 201, "{head}");
        assert!(head.contains("access-control-allow-origin: https://app.example"), "{head}");
        assert!(head.contains("access-control-expose-headers: x-ms-meta-*,etag"), "{head}");
        let (st, _, body) = signed(&a, "GET", "/devstoreaccount1/web/up.txt", &[], b"").await;
        assert_eq!((st, body.as_slice()), (200, &b"hello"[..]));

        // What the rule does not allow: another origin, method or header.
        for (method, headers, from) in [
            ("PUT", "", "https://evil.example"),
            ("DELETE", "", "https://app.example"),
            ("PUT", "authorization", "https://app.example"),
        ] {
            let (st, head) = preflight(method, headers, from).await;
            assert_eq!(st, 403, "{method} {headers} {from}: {head}");
        }
        let (_, head) = with_sas_body(&a, "GET", &upload, &[("Origin", "https://evil.example")], b"").await;
        assert!(!head.contains("access-control-allow-origin"), "another origin got CORS headers: {head}");
    });
}
