//! A node on several devices: shards spread evenly, each blob's bytes on its owner's device, the
//! devices found in any order; and a device lost (removed, or damaged) takes only its own blobs
//! offline: the node serves the others read-only, and a read of a lost blob fails saying which
//! device it needs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use edgeblob_engine::config::EngineConfig;
use edgeblob_engine::{EngineError, Node};
use edgeblob_meta::listing::ListQuery;
use edgeblob_meta::model::BlobKey;
use edgeblob_testkit::engine::*;

const DEVICES: usize = 3;

fn three(dir: &Path) -> EngineConfig {
    EngineConfig {
        devices: (0..DEVICES).map(|i| dir.join(format!("nvme{i}.dat"))).collect(),
        data_size: 128 << 20,
        shards: Some(2 * DEVICES),
        ..config(dir)
    }
}

/// Blobs until every device owns at least two, with their bytes.
fn fill(node: &Node) -> Vec<(BlobKey, Vec<u8>)> {
    let mut out = Vec::new();
    let mut per_device = [0; DEVICES];
    rt().block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        for i in 0.. {
            if per_device.iter().all(|&n| n >= 2) {
                break;
            }
            let k = key("c", &format!("blob-{i}"));
            // Several chunks each, some shared by two blobs (dedup within a device).
            let d = data(i as u64 % 5, 64 * 1024 * 3 + 100 * i, false);
            node.put_blob(i % node.shards(), k.clone(), body(&d), Default::default(), Default::default())
                .await
                .unwrap();
            per_device[device_of(node, &k)] += 1;
            out.push((k, d));
        }
    });
    out
}

fn device_of(node: &Node, k: &BlobKey) -> usize {
    node.shared().device_of(node.shared().owner_of(k))
}

fn chunk_devices(node: &Node, k: &BlobKey) -> Vec<usize> {
    let owner = node.shared().owner_of(k);
    let k = k.clone();
    let chunks = rt()
        .block_on(node.on(owner, move |s| async move { edgeblob_engine::blob::chunks(&s, &k).await }))
        .unwrap()
        .unwrap();
    chunks.iter().map(|c| edgeblob_io::volume::split(c.offset).0).collect()
}

fn read(node: &Node, k: &BlobKey) -> Result<Vec<u8>, EngineError> {
    rt().block_on(node.read_blob(0, k.clone(), None, Default::default())).map(|(_, _, b)| b.to_vec())
}

#[test]
fn shards_spread_evenly_and_each_blob_lies_on_its_owners_device() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = three(dir.path());
    let node = open(&cfg);
    let layout = node.shared().layout.clone();
    assert_eq!((layout.devices(), layout.per_device(), node.shards()), (DEVICES, 2, 2 * DEVICES));
    let blobs = fill(&node);
    for (k, d) in &blobs {
        assert_eq!(&read(&node, k).unwrap(), d);
        let on = device_of(&node, k);
        assert!(chunk_devices(&node, k).iter().all(|&c| c == on), "{k:?}: its chunks lie on device {on}");
    }
    let report = rt().block_on(node.check_all()).unwrap();
    assert!(report.damaged.is_empty(), "{:?}", report.damaged);
    node.stop();
    // Each file is a member: the node's identity, its own place.
    let sbs: Vec<_> = cfg
        .devices
        .iter()
        .map(|p| edgeblob_engine::startup::read_superblock(&edgeblob_io::DeviceFile::open(p).unwrap()).unwrap())
        .collect();
    for (i, sb) in sbs.iter().enumerate() {
        assert_eq!((sb.index(), sb.devices(), sb.uuid, sb.layout.shards), (i, DEVICES, sbs[0].uuid, 2));
    }
    // Listed in another order (a /dev name changed at boot): each device says its place.
    let mut shuffled = cfg.clone();
    shuffled.devices.reverse();
    let node = open(&shuffled);
    for (k, d) in &blobs {
        assert_eq!(&read(&node, k).unwrap(), d, "after a restart, devices listed in reverse");
    }
}

#[test]
fn a_removed_device_takes_only_its_own_blobs_offline_until_it_is_back() {
    for lost in [2, 0] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = three(dir.path());
        let node = open(&cfg);
        let blobs = fill(&node);
        // Stopped without a flush: the survivors' logs hold records their indexes do not yet.
        drop(node);
        let away = dir.path().join("away.dat");
        std::fs::rename(&cfg.devices[lost], &away).unwrap();
        let node = open(&cfg);
        let shared = node.shared();
        assert!(shared.read_only().is_some(), "a node short of a device changes nothing");
        check_degraded(&node, &blobs, lost, &cfg.devices[lost], "No such file");
        // Device 0 holds the catalog: without it the containers come from the blobs left.
        assert!(shared.container(ACCOUNT, "c").is_some(), "the container is known (device {lost} lost)");
        node.stop();
        // Back: the node is whole, as it was (the read-only run wrote nothing that matters).
        std::fs::rename(&away, &cfg.devices[lost]).unwrap();
        let node = open(&cfg);
        assert!(node.shared().read_only().is_none());
        for (k, d) in &blobs {
            assert_eq!(&read(&node, k).unwrap(), d, "{k:?} after device {lost} came back");
        }
        let report = rt().block_on(node.check_all()).unwrap();
        assert!(report.damaged.is_empty(), "{:?}", report.damaged);
        let extra = key("c", "after");
        rt().block_on(node.put_blob(0, extra.clone(), body(b"writable again"), Default::default(), Default::default()))
            .unwrap();
        assert_eq!(read(&node, &extra).unwrap(), b"writable again");
        node.stop();
    }
}

#[test]
fn a_damaged_device_takes_only_its_own_blobs_offline() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = three(dir.path());
    let node = open(&cfg);
    let blobs = fill(&node);
    node.stop();
    // Overwritten from its start (a wrong dd, a reformat by another tool).
    let f = std::fs::OpenOptions::new().write(true).open(&cfg.devices[1]).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &vec![0xa5; 1 << 20], 0).unwrap();
    drop(f);
    let node = open(&cfg);
    check_degraded(&node, &blobs, 1, &cfg.devices[1], "not formatted");
}

/// Blobs of the other devices read byte for byte; those of `lost` fail naming it; writes and
/// listings (which would be incomplete) fail too.
fn check_degraded(node: &Node, blobs: &[(BlobKey, Vec<u8>)], lost: usize, path: &Path, why: &str) {
    let (mut served, mut refused) = (0, 0);
    for (k, d) in blobs {
        match (device_of(node, k), read(node, k)) {
            (on, Ok(got)) if on != lost => {
                assert_eq!(&got, d, "{k:?}");
                served += 1;
            }
            (on, Err(EngineError::DeviceLost(l))) if on == lost => {
                assert_eq!(l.index, lost);
                let msg = EngineError::DeviceLost(l).to_string();
                assert!(msg.contains(&format!("data device {lost} ({})", path.display())), "{msg}");
                assert!(msg.contains(why), "{msg}");
                refused += 1;
            }
            (on, r) => panic!("{k:?} on device {on} (device {lost} lost): {:?}", r.map(|b| b.len())),
        }
    }
    assert!(served >= 4 && refused >= 2, "{served} served, {refused} refused");
    let rt = rt();
    let put = rt.block_on(node.put_blob(0, key("c", "new"), body(b"x"), Default::default(), Default::default()));
    assert!(matches!(put, Err(EngineError::ReadOnly(_)) | Err(EngineError::DeviceLost(_))), "{put:?}");
    let (k, _) = blobs.iter().find(|(k, _)| device_of(node, k) != lost).unwrap();
    let del = rt.block_on(node.delete_blob(k.clone(), Default::default()));
    assert!(matches!(del, Err(EngineError::ReadOnly(_))), "{del:?}");
    let list = rt.block_on(node.list_blobs(ACCOUNT, "c", ListQuery::default()));
    assert!(matches!(list, Err(EngineError::DeviceLost(_))), "a listing would miss blobs: {:?}", list.map(|_| ()));
}

#[test]
fn devices_of_another_node_or_a_wrong_count_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = three(&dir.path().join("a"));
    let b = three(&dir.path().join("b"));
    drop(open(&a));
    drop(open(&b));
    let mixed =
        EngineConfig { devices: vec![a.devices[0].clone(), b.devices[1].clone(), a.devices[2].clone()], ..a.clone() };
    let err = Node::open(mixed).err().expect("another node's device");
    assert!(err.to_string().contains("belongs to another node"), "{err}");
    let two = EngineConfig { devices: a.devices[..2].to_vec(), shards: None, ..a.clone() };
    let err = Node::open(two).err().expect("one device short");
    assert!(err.to_string().contains("formatted on 3 device(s) but 2 are configured"), "{err}");
    let twice = EngineConfig { devices: vec![a.devices[0].clone(), a.devices[0].clone(), a.devices[2].clone()], ..a };
    let err = Node::open(twice).err().expect("a device listed twice");
    assert!(err.to_string().contains("listed twice"), "{err}");
    let uneven = EngineConfig { shards: Some(4), ..three(&dir.path().join("c")) };
    let err = Node::open(uneven).err().expect("4 shards over 3 devices");
    assert!(err.to_string().contains("cannot be spread evenly over 3 devices"), "{err}");
}

#[test]
fn a_format_interrupted_between_its_renames_is_finished_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = three(dir.path());
    let node = open(&cfg);
    let blobs = fill(&node);
    node.stop();
    // As if the format had renamed device 0 only: the others still under their format names.
    let pending: Vec<PathBuf> = cfg.devices[1..].iter().map(|p| edgeblob_engine::media::formatting_name(p)).collect();
    for (p, t) in cfg.devices[1..].iter().zip(&pending) {
        std::fs::rename(p, t).unwrap();
    }
    let node = open(&cfg);
    assert!(node.shared().read_only().is_none(), "every device found");
    for (k, d) in &blobs {
        assert_eq!(&read(&node, k).unwrap(), d);
    }
    assert!(pending.iter().all(|t| !t.exists()));
}
