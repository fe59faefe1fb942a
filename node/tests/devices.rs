//! The Blob API of a node on three devices, one of them lost: blobs on the others are served,
//! a read of a lost one and every write answer 503 ServerBusy naming the device, and a listing
//! (which would miss blobs) too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use edgeblob_meta::model::BlobKey;
use edgeblob_testkit::engine::ACCOUNT;
use edgeblob_testkit::node::InProcess;
use edgeblob_testkit::raw::signed;

#[test]
fn a_node_short_of_a_device_serves_the_others_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let devices: Vec<_> = (0..3).map(|i| dir.path().join(format!("nvme{i}.dat"))).collect();
    let with_devices = |c: &mut edgeblob::config::Config| {
        c.engine.devices = devices.clone();
        c.engine.shards = Some(3);
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let names: Vec<String> = (0..12).map(|i| format!("blob-{i}")).collect();
    let device_of = |node: &InProcess, name: &str| {
        let s = node.node().shared();
        s.device_of(s.owner_of(&BlobKey::new(ACCOUNT, "ctr", name)))
    };
    let lost_names: Vec<String> = {
        let node = InProcess::start(dir.path(), 128 << 20, 3, with_devices);
        let addr = node.addr.to_string();
        rt.block_on(async {
            let (status, _, _) = signed(&addr, "PUT", &format!("/{ACCOUNT}/ctr?restype=container"), &[], b"").await;
            assert_eq!(status, 201);
            for n in &names {
                let body = n.repeat(1000);
                let h = [("x-ms-blob-type", "BlockBlob")];
                let (status, _, _) = signed(&addr, "PUT", &format!("/{ACCOUNT}/ctr/{n}"), &h, body.as_bytes()).await;
                assert_eq!(status, 201, "{n}");
            }
        });
        names.iter().filter(|n| device_of(&node, n) == 2).cloned().collect()
    };
    assert!(!lost_names.is_empty() && lost_names.len() < names.len(), "{lost_names:?}");
    std::fs::remove_file(&devices[2]).unwrap();

    let node = InProcess::start(dir.path(), 128 << 20, 3, with_devices);
    let addr = node.addr.to_string();
    rt.block_on(async {
        for n in &names {
            let (status, head, body) = signed(&addr, "GET", &format!("/{ACCOUNT}/ctr/{n}"), &[], b"").await;
            if lost_names.contains(n) {
                assert_eq!(status, 503, "{n}");
                assert!(head.contains("x-ms-error-code: serverbusy") && head.contains("retry-after: 30"), "{head}");
                let text = String::from_utf8_lossy(&body);
                let want = format!("data device 2 ({}) is unavailable", devices[2].display());
                assert!(text.contains(&want), "{text}");
            } else {
                assert_eq!((status, body), (200, n.repeat(1000).into_bytes()), "{n}");
            }
        }
        let h = [("x-ms-blob-type", "BlockBlob")];
        let (status, head, _) = signed(&addr, "PUT", &format!("/{ACCOUNT}/ctr/new"), &h, b"x").await;
        assert_eq!(status, 503, "writes are refused: {head}");
        let (status, _, _) = signed(&addr, "DELETE", &format!("/{ACCOUNT}/ctr/{}", names[0]), &[], b"").await;
        assert_eq!(status, 503, "deletes too");
        let (status, _, body) =
            signed(&addr, "GET", &format!("/{ACCOUNT}/ctr?restype=container&comp=list"), &[], b"").await;
        assert_eq!(status, 503, "a listing would miss blobs: {}", String::from_utf8_lossy(&body));
    });
}
