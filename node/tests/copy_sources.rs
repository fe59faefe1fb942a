//! The source headers of the copy operations, checked as Azure checks them, for a source on this
//! node (read from the engine) and one on another node (fetched over HTTP): the digests the bytes
//! from the source must have (`x-ms-source-content-md5`, `x-ms-source-content-crc64`), and the
//! source conditions (`x-ms-source-if-*`, 412 `SourceConditionNotMet`). A refused copy writes
//! nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use edgeblob_testkit::node::InProcess;
use edgeblob_testkit::raw::{exchange, sas_head, signed, signed_head};
use edgeblob_testkit::sign::account_sas;
use md5::Digest;

/// A request carrying a SAS; the answer's status and head, as sent.
async fn with_sas(addr: &str, method: &str, target: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let (status, head, _) = exchange(addr, &sas_head(addr, method, target, headers, 0), b"").await;
    (status, head)
}

/// A header's value, its name in any case.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn error_code(head: &str) -> &str {
    header(head, "x-ms-error-code").unwrap_or("")
}

async fn etag(addr: &str, target: &str) -> String {
    let (_, head, _) = exchange(addr, &signed_head("HEAD", target, &[], 0), b"").await;
    header(&head, "etag").unwrap().to_owned()
}

#[test]
fn source_digests_and_conditions_are_checked_for_local_and_remote_sources() {
    let allow = |c: &mut edgeblob::config::Config| c.copy_source_allow = Some(vec!["127.0.0.0/8".into()]);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = InProcess::start(dir_a.path(), 1 << 30, 1, allow);
    let b = InProcess::start(dir_b.path(), 1 << 30, 1, allow);
    let (a, b) = (a.addr.to_string(), b.addr.to_string());
    let sas = account_sas("rwc");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let md5 = |bytes: &[u8]| B64.encode(md5::Md5::digest(bytes));
    let crc64 = |bytes: &[u8]| edgeblob_proto::crc64::to_header(edgeblob_proto::crc64::update(0, bytes));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        for node in [&a, &b] {
            assert_eq!(signed(node, "PUT", "/devstoreaccount1/ctr?restype=container", &[], b"").await.0, 201);
            let put = [("x-ms-blob-type", "BlockBlob")];
            assert_eq!(signed(node, "PUT", "/devstoreaccount1/ctr/src", &put, &data).await.0, 201);
        }
        let dst_node = a.as_str();
        // The source on this node (the URL names the node the request came to), then on the other.
        for (place, host) in [("local", &a), ("remote", &b)] {
            let source = format!("http://{host}/devstoreaccount1/ctr/src?{sas}");
            let source_etag = etag(host, "/devstoreaccount1/ctr/src").await;
            let put_from_url = |dst: &str, extra: &[(&'static str, String)]| {
                let mut h = vec![("x-ms-blob-type", "BlockBlob".to_owned()), ("x-ms-copy-source", source.clone())];
                h.extend_from_slice(extra);
                let target = format!("/devstoreaccount1/ctr/{place}-{dst}?{sas}");
                async move {
                    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    with_sas(dst_node, "PUT", &target, &h).await
                }
            };
            let exists = |dst: &str| {
                let target = format!("/devstoreaccount1/ctr/{place}-{dst}");
                async move { signed(dst_node, "HEAD", &target, &[], b"").await.0 == 200 }
            };

            // The source's MD5, as the client gave it: checked against the bytes that arrived.
            let (st, head) = put_from_url("md5", &[("x-ms-source-content-md5", md5(&data))]).await;
            assert_eq!(st, 201, "{place}: {head}");
            assert_eq!(header(&head, "content-md5"), Some(md5(&data).as_str()), "{place}");
            let (st, head) = put_from_url("bad-md5", &[("x-ms-source-content-md5", md5(b"other"))]).await;
            assert_eq!((st, error_code(&head)), (400, "Md5Mismatch"), "{place}: {head}");
            assert!(!exists("bad-md5").await, "{place}: a copy that failed its MD5 was written");
            let (st, head) = put_from_url("junk-md5", &[("x-ms-source-content-md5", "not base64".into())]).await;
            assert_eq!((st, error_code(&head)), (400, "InvalidHeaderValue"), "{place}: {head}");

            // The source conditions, against the source: each failure is 412 SourceConditionNotMet.
            let failing = [
                ("x-ms-source-if-match", "\"0x1234\"".to_owned()),
                ("x-ms-source-if-none-match", source_etag.clone()),
                ("x-ms-source-if-unmodified-since", "Mon, 01 Jan 2001 00:00:00 GMT".to_owned()),
                ("x-ms-source-if-modified-since", "Fri, 01 Jan 2100 00:00:00 GMT".to_owned()),
            ];
            for (name, value) in failing {
                let (st, head) = put_from_url("cond", &[(name, value.clone())]).await;
                assert_eq!((st, error_code(&head)), (412, "SourceConditionNotMet"), "{place} {name}: {head}");
                assert!(!exists("cond").await, "{place}: a copy whose source condition failed was written");
            }
            let (st, head) = put_from_url("cond", &[("x-ms-source-if-match", source_etag)]).await;
            assert_eq!(st, 201, "{place}: a condition that holds: {head}");
            assert_eq!(signed(&a, "GET", &format!("/devstoreaccount1/ctr/{place}-cond"), &[], b"").await.2, data);

            // Put Block From URL: a range, checked by MD5 or CRC-64 and answered with the digest.
            let range = &data[1000..5096];
            let block = |id: &str, extra: &[(&'static str, String)]| {
                let mut h = vec![("x-ms-copy-source", source.clone()), ("x-ms-source-range", "bytes=1000-5095".into())];
                h.extend_from_slice(extra);
                let target = format!("/devstoreaccount1/ctr/{place}-blocks?comp=block&blockid={id}&{sas}");
                async move {
                    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    with_sas(dst_node, "PUT", &target, &h).await
                }
            };
            let (st, head) = block("QUFBQQ%3D%3D", &[("x-ms-source-content-crc64", crc64(range))]).await;
            assert_eq!(st, 201, "{place}: {head}");
            assert_eq!(header(&head, "x-ms-content-crc64"), Some(crc64(range).as_str()), "{place}");
            let (st, head) = block("QkJCQg%3D%3D", &[("x-ms-source-content-crc64", crc64(&data))]).await;
            assert_eq!((st, error_code(&head)), (400, "Crc64Mismatch"), "{place}: {head}");
            let (st, head) = block("Q0NDQw%3D%3D", &[("x-ms-source-content-md5", md5(range))]).await;
            assert_eq!(st, 201, "{place}: {head}");
            assert_eq!(header(&head, "content-md5"), Some(md5(range).as_str()), "{place}");
            let (st, head) = block("RERERA%3D%3D", &[("x-ms-source-content-md5", md5(&data))]).await;
            assert_eq!((st, error_code(&head)), (400, "Md5Mismatch"), "{place}: {head}");
            // Only the blocks that passed were staged.
            let list = format!("/devstoreaccount1/ctr/{place}-blocks?comp=blocklist&blocklisttype=uncommitted");
            let (_, _, xml) = signed(&a, "GET", &list, &[], b"").await;
            let xml = String::from_utf8(xml).unwrap();
            assert_eq!(xml.matches("<Block>").count(), 2, "{place}: {xml}");
            assert!(xml.contains("QUFBQQ==") && xml.contains("Q0NDQw=="), "{place}: {xml}");
        }
    });
}
