//! Blob Batch bodies written by hand, as a careless client or another SDK might write them:
//! Azure's batch-level refusals (more than 256 sub-requests, kinds mixed), which run nothing, and
//! the sub-response as Azure writes it (the reason phrase is the error's message, the error's
//! XML with its length and type, a request id per sub-request, the client's id echoed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use edgeblob_testkit::node::InProcess;
use edgeblob_testkit::raw::signed;

/// One sub-request, SharedKey-signed on its own, in the batch's multipart form.
fn part(id: usize, method: &str, target: &str, extra: &[(&str, &str)]) -> String {
    let mut h = http::HeaderMap::new();
    for (k, v) in extra {
        h.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    edgeblob_testkit::sign::shared_key(method, target, &mut h, 0);
    let mut s = format!(
        "--batch_x\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {id}\r\n\r\n{method} {target} HTTP/1.1\r\n"
    );
    for (k, v) in &h {
        s.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
    }
    s.push_str("Content-Length: 0\r\n\r\n\r\n");
    s
}

async fn submit(addr: &str, parts: &[String]) -> (u16, String, String) {
    let body = format!("{}--batch_x--\r\n", parts.concat());
    let ct = [("Content-Type", "multipart/mixed; boundary=batch_x")];
    let (status, head, body) = signed(addr, "POST", "/devstoreaccount1/?comp=batch", &ct, body.as_bytes()).await;
    (status, head, String::from_utf8(body).unwrap())
}

#[test]
fn batch_refusals_run_nothing_and_sub_responses_are_written_as_azure_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let node = InProcess::start(dir.path(), 1 << 30, 1, |_| {});
    let a = node.addr.to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(signed(&a, "PUT", "/devstoreaccount1/ctr?restype=container", &[], b"").await.0, 201);
        for n in ["a", "b"] {
            let put = [("x-ms-blob-type", "BlockBlob")];
            assert_eq!(signed(&a, "PUT", &format!("/devstoreaccount1/ctr/{n}"), &put, b"x").await.0, 201);
        }
        let exists = |n: &'static str| {
            let a = a.clone();
            async move { signed(&a, "HEAD", &format!("/devstoreaccount1/ctr/{n}"), &[], b"").await.0 == 200 }
        };

        // A Delete Blob beside a Set Blob Tier: refused whole, nothing deleted.
        let mixed = [
            part(0, "DELETE", "/devstoreaccount1/ctr/a", &[]),
            part(1, "PUT", "/devstoreaccount1/ctr/b?comp=tier", &[("x-ms-access-tier", "Cool")]),
        ];
        let (status, head, _) = submit(&a, &mixed).await;
        assert_eq!(status, 400, "{head}");
        assert!(head.contains("x-ms-error-code: allbatchsubrequestsshouldbesameapi"), "{head}");
        assert!(exists("a").await, "a refused batch deleted a blob");

        // 257 sub-requests: over Azure's limit, refused whole.
        let many: Vec<String> = (0..257).map(|i| part(i, "DELETE", "/devstoreaccount1/ctr/a", &[])).collect();
        let (status, head, _) = submit(&a, &many).await;
        assert_eq!(status, 400, "{head}");
        assert!(head.contains("x-ms-error-code: exceedsmaxbatchrequestcount"), "{head}");
        assert!(exists("a").await);

        // A delete that succeeds and one that fails, each answered in Azure's form.
        let parts = [
            part(0, "DELETE", "/devstoreaccount1/ctr/a", &[("x-ms-client-request-id", "mine-1")]),
            part(1, "DELETE", "/devstoreaccount1/ctr/nope", &[]),
        ];
        let (status, head, body) = submit(&a, &parts).await;
        assert_eq!(status, 202, "{head}");
        let boundary = head.lines().find_map(|l| l.strip_prefix("content-type: multipart/mixed; boundary=")).unwrap();
        assert!(boundary.starts_with("batchresponse_"), "{head}");
        let subs: Vec<&str> = body.split(&format!("--{boundary}")).skip(1).collect();
        assert_eq!(subs.len(), 3, "two parts and the closing delimiter: {body}");
        assert!(subs[2].starts_with("--"), "{body}");
        let ok = subs[0];
        assert!(ok.contains("Content-ID: 0\r\n\r\nHTTP/1.1 202 Accepted\r\n"), "{ok}");
        assert!(
            ok.contains("x-ms-delete-type-permanent: true\r\n") && ok.contains("x-ms-client-request-id: mine-1\r\n")
        );
        let failed = subs[1];
        assert!(
            failed.contains("Content-ID: 1\r\n\r\nHTTP/1.1 404 The specified blob does not exist.\r\n"),
            "{failed}"
        );
        assert!(failed.contains("x-ms-error-code: BlobNotFound\r\n"), "{failed}");
        let (head, xml) = failed.split_once("\r\n\r\nHTTP/1.1").unwrap().1.split_once("\r\n\r\n").unwrap();
        let xml = xml.trim_end_matches("\r\n");
        assert!(head.contains(&format!("Content-Length: {}\r\n", xml.len())), "{head}");
        assert!(head.contains("Content-Type: application/xml"), "{head}");
        assert!(xml.contains("<Code>BlobNotFound</Code>"), "{xml}");
        let ids: Vec<&str> =
            [ok, failed].iter().map(|p| p.lines().find_map(|l| l.strip_prefix("x-ms-request-id: ")).unwrap()).collect();
        assert_ne!(ids[0], ids[1], "each sub-request has its own request id");
        assert!(xml.contains(&format!("RequestId:{}", ids[1])), "{xml}");
        assert!(!exists("a").await && exists("b").await);
    });
}
