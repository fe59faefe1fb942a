//! The admin tool against real data files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn admin(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edgeblob-admin")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn format_inspect_fsck_stats_and_refuse_to_reformat() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.dat");
    let p = path.to_str().unwrap();
    let (code, out) = admin(&["format", "--data", p, "--size", "128M", "--shards", "2"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 shards"), "{out}");
    let (code, out) = admin(&["format", "--data", p, "--size", "128M"]);
    assert_ne!(code, 0, "an existing file is not reformatted without --force");
    assert!(out.contains("--force"), "{out}");
    let (code, out) = admin(&["inspect", "--data", p]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("half 0: generation 1 from LSN 1") && out.contains("half 1: unused"), "{out}");
    let (code, out) = admin(&["fsck", "--data", p]);
    assert_eq!((code, out.contains("clean")), (0, true), "{out}");
    let (code, out) = admin(&["stats", "--data", p]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("reduction ratio 1.000"), "{out}");
    let (code, out) = admin(&["inspect", "--data", dir.path().join("missing").to_str().unwrap()]);
    assert_ne!(code, 0, "{out}");
}

/// One node on three data files: formatted together, each inspected alone (its place and its
/// shards, numbered as in the node), checked and counted together; a missing one is named.
#[test]
fn a_node_on_three_devices_formats_inspects_and_checks_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<String> = (0..3).map(|i| dir.path().join(format!("nvme{i}.dat")).display().to_string()).collect();
    let data: Vec<&str> = paths.iter().flat_map(|p| ["--data", p.as_str()]).collect();
    let (code, out) = admin(&[&["format", "--size", "64M", "--shards", "4"], &data[..]].concat());
    assert_ne!(code, 0, "4 shards over 3 devices: {out}");
    assert!(out.contains("cannot be spread evenly over 3 devices"), "{out}");
    let (code, out) = admin(&[&["format", "--size", "64M", "--shards", "6"], &data[..]].concat());
    assert_eq!(code, 0, "{out}");
    for i in 0..3 {
        assert!(out.contains("2 shards, uuid") && out.contains(&format!("device {i} of 3")), "{out}");
    }
    let (code, out) = admin(&["inspect", "--data", &paths[1]]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("member       device 1 of 3"), "{out}");
    assert!(out.contains("shard 2 ") && out.contains("shard 3 ") && !out.contains("shard 0 "), "{out}");
    assert!(out.contains("half 0: generation 1 from LSN 1"), "{out}");
    let (code, out) = admin(&[&["fsck"], &data[..]].concat());
    assert_eq!((code, out.contains("clean")), (0, true), "{out}");
    let (code, out) = admin(&[&["stats"], &data[..]].concat());
    assert_eq!(code, 0, "{out}");
    std::fs::remove_file(&paths[2]).unwrap();
    // Read-only without it: fsck says which device is missing rather than check half a node.
    let (code, out) = admin(&[&["fsck"], &data[..]].concat());
    assert_ne!(code, 0, "{out}");
    assert!(out.contains(&format!("data device 2 ({})", paths[2])), "{out}");
}

/// `tier status` counts what a node uploaded and released; `tier rotate-key` wraps the node key
/// for a new customer key, which the node then opens its released data with; `tier epoch` makes
/// a restore point and `restore` rebuilds the node from it into a new data file.
#[test]
fn tier_status_and_key_rotation() {
    use edgeblob_engine::config::{EngineConfig, TierConfig};
    use edgeblob_engine::Node;
    use edgeblob_testkit::engine::{body, data, key, rt, ACCOUNT};
    let dir = tempfile::tempdir().unwrap();
    let remote = edgeblob_testkit::node::InProcess::start(&dir.path().join("remote"), 1 << 30, 1, |_| {});
    let path = dir.path().join("d.dat");
    let key_file = dir.path().join("old.key");
    std::fs::write(&key_file, [1u8; 32]).unwrap();
    let dev_key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    let url = format!("http://{}/{ACCOUNT}/tier/admin", remote.addr);
    let tier = TierConfig {
        url: url.clone(),
        account: Some(ACCOUNT.into()),
        account_key: Some(dev_key.into()),
        key_file: key_file.clone(),
        ..TierConfig::default()
    };
    let cfg = EngineConfig { tier: Some(tier.clone()), ..edgeblob_testkit::engine::config(dir.path()) };
    let cfg = EngineConfig { data_path: path.clone(), ..cfg };
    let blob = data(5, 1 << 20, false);
    let rt = rt();
    let node = Node::open(cfg.clone()).unwrap();
    rt.block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        node.put_blob(0, key("c", "b"), body(&blob), Default::default(), Default::default()).await.unwrap();
        node.tier_flush().await.unwrap();
        node.tier_release(None).await.unwrap();
    });
    node.stop();
    let p = path.to_str().unwrap();
    let (code, out) = admin(&["tier", "status", "--data", p]);
    assert_eq!(code, 0, "{out}");
    // 1 MiB of 64 KiB chunks: 17 chunks over the two shards, all released, each shard one pack.
    let rows: Vec<Vec<u64>> = out
        .lines()
        .skip(1)
        .map(|l| l.split(|c: char| !c.is_ascii_digit()).filter(|w| !w.is_empty()).map(|w| w.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(rows.iter().map(|r| r[2]).sum::<u64>(), 0, "nothing left to upload: {out}");
    assert!(rows.iter().map(|r| r[5]).sum::<u64>() >= 16, "released chunks counted: {out}");
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "port = 10000\n[engine]\ndata_path = \"{p}\"\n[engine.tier]\nurl = \"{url}\"\naccount = \"{ACCOUNT}\"\naccount_key = \"{dev_key}\"\nkey_file = \"{}\"\n",
            key_file.display()
        ),
    )
    .unwrap();
    let (code, out) = admin(&["tier", "verify", "--data", p, "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 packs, 0 damaged"), "{out}");
    let new_key = dir.path().join("new.key");
    std::fs::write(&new_key, [2u8; 32]).unwrap();
    let (code, out) = admin(&[
        "tier",
        "rotate-key",
        "--data",
        p,
        "--config",
        config.to_str().unwrap(),
        "--new-key",
        new_key.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("keys/node.00000001"), "{out}");
    let rotated = EngineConfig { tier: Some(TierConfig { key_file: new_key.clone(), ..tier }), ..cfg };
    let node = Node::open(rotated.clone()).unwrap();
    let (_, _, got) = rt.block_on(node.read_blob(0, key("c", "b"), None, Default::default())).unwrap();
    assert_eq!(&got[..], &blob[..]);
    node.stop();

    // A restore point, then the node rebuilt from it into a new data file, and checked.
    let text = std::fs::read_to_string(&config).unwrap().replace(key_file.to_str().unwrap(), new_key.to_str().unwrap());
    std::fs::write(&config, text).unwrap();
    let c = config.to_str().unwrap();
    let (code, out) = admin(&["tier", "epoch", "--data", p, "--config", c]);
    assert_eq!(code, 0, "{out}");
    // (Epoch 1 was taken by the release above: released copies need a restore point.)
    assert!(out.contains("epoch 2 committed") && out.contains("1 blobs"), "{out}");
    let (code, out) = admin(&["tier", "verify", "--data", p, "--config", c]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 restore points, 0 problems"), "{out}");
    let (code, out) = admin(&["tier", "drain", "--data", p, "--config", c]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("bytes pending upload") && out.contains("(0 left)") && out.contains("(epoch 3)"), "{out}");
    let restored = dir.path().join("restored.dat");
    let r = restored.to_str().unwrap();
    let (code, out) = admin(&["restore", "--data", r, "--config", c]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(epoch 3)") && out.contains("1 blobs (0 left out)"), "{out}");
    let (code, out) = admin(&["restore", "--data", r, "--config", c]);
    assert_ne!(code, 0, "a restore never overwrites a data file: {out}");
    let (code, out) = admin(&["restore-status", "--config", c, "--data", r]);
    assert_eq!(code, 0, "{out}");
    // The three epochs, and the restore's own manifest of the same state.
    assert!(out.contains("no restore in progress") && out.contains("4 restore points"), "{out}");
    let (code, out) = admin(&["fsck", "--data", r]);
    assert_eq!((code, out.contains("clean")), (0, true), "{out}");
    let node = Node::open(EngineConfig { data_path: restored, ..rotated }).unwrap();
    let (_, _, got) = rt.block_on(node.read_blob(0, key("c", "b"), None, Default::default())).unwrap();
    assert_eq!(&got[..], &blob[..]);
    node.stop();
}

/// `tier rotate-key` killed (SIGKILL) at each of its points: before anything is written the old
/// key still opens the tier; once the new wrapping is written the new key does; run again with
/// the same keys, the rotation finishes, and the old wrapping is gone so the retired key opens
/// nothing. Every blob reads back from the tier with the key the state calls for.
#[test]
fn a_key_rotation_killed_midway_is_finished_by_running_it_again() {
    use std::os::unix::process::ExitStatusExt;

    use edgeblob_engine::config::{EngineConfig, TierConfig};
    use edgeblob_engine::Node;
    use edgeblob_testkit::engine::{body, data, key, rt, ACCOUNT};
    let dir = tempfile::tempdir().unwrap();
    let remote = edgeblob_testkit::node::InProcess::start(&dir.path().join("remote"), 1 << 30, 1, |_| {});
    let path = dir.path().join("d.dat");
    let p = path.to_str().unwrap();
    let keys: Vec<std::path::PathBuf> = (1..=3u8)
        .map(|i| {
            let f = dir.path().join(format!("key-{i}"));
            std::fs::write(&f, [i; 32]).unwrap();
            f
        })
        .collect();
    let dev_key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    let url = format!("http://{}/{ACCOUNT}/tier/rotation", remote.addr);
    let with_key = |k: &std::path::Path| {
        let tier = TierConfig {
            url: url.clone(),
            account: Some(ACCOUNT.into()),
            account_key: Some(dev_key.into()),
            key_file: k.to_owned(),
            retry_budget_secs: 2,
            ..TierConfig::default()
        };
        EngineConfig { tier: Some(tier), data_path: path.clone(), ..edgeblob_testkit::engine::config(dir.path()) }
    };
    let config_file = |k: &std::path::Path| {
        let f = dir.path().join("node.toml");
        let text = format!(
            "port = 10000\n[engine]\ndata_path = \"{p}\"\n[engine.tier]\nurl = \"{url}\"\naccount = \"{ACCOUNT}\"\naccount_key = \"{dev_key}\"\nkey_file = \"{}\"\n",
            k.display()
        );
        std::fs::write(&f, text).unwrap();
        f
    };
    let blob = data(6, 1 << 20, false);
    let rt = rt();
    let node = Node::open(with_key(&keys[0])).unwrap();
    rt.block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        node.put_blob(0, key("c", "b"), body(&blob), Default::default(), Default::default()).await.unwrap();
        node.tier_flush().await.unwrap();
        assert!(node.tier_release(None).await.unwrap() > 0);
    });
    node.stop();
    // Whether key `k` opens the tier: the released blob reads back whole with it.
    let opens = |k: &std::path::Path| {
        let node = Node::open(with_key(k)).unwrap();
        let got = rt.block_on(node.read_blob(0, key("c", "b"), None, Default::default()));
        node.stop();
        match got {
            Ok((_, _, bytes)) => {
                assert!(bytes[..] == blob[..], "wrong bytes with {}", k.display());
                true
            }
            Err(_) => false,
        }
    };
    let wrappings = || {
        let cred = edgeblob_remote::Credential::shared_key(ACCOUNT, dev_key).unwrap();
        let r = edgeblob_remote::Remote::new(edgeblob_remote::RemoteConfig::new(&url, cred)).unwrap();
        let page = rt.block_on(r.list("", None, 5000)).unwrap();
        page.blobs.into_iter().map(|b| b.name).filter(|n| n.contains("/keys/")).collect::<Vec<_>>()
    };
    let rotate = |from: &std::path::Path, to: &std::path::Path, crash_at: Option<&str>| {
        let c = config_file(from);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgeblob-admin"));
        cmd.args(["tier", "rotate-key", "--data", p, "--config", c.to_str().unwrap()]);
        cmd.args(["--new-key", to.to_str().unwrap()]);
        if let Some(point) = crash_at {
            cmd.env("EDGEBLOB_CRASH_AT", point);
        }
        let out = cmd.output().unwrap();
        (out.status, String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let killed = |(status, out): (std::process::ExitStatus, String)| {
        assert_eq!(status.signal(), Some(9), "killed at its crash point: {status:?} {out}");
    };

    // Killed with the node key opened and nothing written: the old key still rules.
    killed(rotate(&keys[0], &keys[1], Some("rotate-key:opened")));
    assert_eq!(wrappings().len(), 1, "{:?}", wrappings());
    assert!(opens(&keys[0]) && !opens(&keys[1]));
    // Killed once the new wrapping is written: the new key opens the tier, the old one no more.
    killed(rotate(&keys[0], &keys[1], Some("rotate-key:wrapped")));
    assert_eq!(wrappings().len(), 2, "{:?}", wrappings());
    assert!(opens(&keys[1]) && !opens(&keys[0]));
    // Run again with the same keys: finished, and the old wrapping is gone.
    let (status, out) = rotate(&keys[0], &keys[1], None);
    assert!(status.success(), "{out}");
    let left = wrappings();
    assert!(left.len() == 1 && left[0].ends_with("/keys/node.00000001"), "{left:?}");
    assert!(opens(&keys[1]) && !opens(&keys[0]));
    // The next rotation killed just after it retired the older wrapping: done but for its
    // answer; run again, it says so.
    killed(rotate(&keys[1], &keys[2], Some("rotate-key:retired-one")));
    let left = wrappings();
    assert!(left.len() == 1 && left[0].ends_with("/keys/node.00000002"), "{left:?}");
    let (status, out) = rotate(&keys[1], &keys[2], None);
    assert!(status.success() && out.contains("keys/node.00000002"), "{out}");
    assert!(opens(&keys[2]) && !opens(&keys[1]) && !opens(&keys[0]));
    // Keys neither of which opens the newest wrapping: refused, nothing written or deleted.
    let (status, out) = rotate(&keys[0], &keys[1], None);
    assert!(!status.success(), "{out}");
    assert_eq!(wrappings(), left);
}

/// `replace-device` brings one lost device of three back from the tier: the kept two are
/// opened as they are, the report names what came back, and the node then reads every blob.
#[test]
fn replace_device_brings_a_lost_device_back_from_the_tier() {
    use edgeblob_engine::config::{EngineConfig, TierConfig};
    use edgeblob_engine::Node;
    use edgeblob_testkit::engine::{body, data, files_from, key, rt, ACCOUNT};
    let dir = tempfile::tempdir().unwrap();
    let remote = edgeblob_testkit::node::InProcess::start(&dir.path().join("remote"), 1 << 30, 1, |_| {});
    let key_file = dir.path().join("customer.key");
    std::fs::write(&key_file, [3u8; 32]).unwrap();
    let dev_key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    let url = format!("http://{}/{ACCOUNT}/tier/replace", remote.addr);
    let tier = TierConfig {
        url: url.clone(),
        account: Some(ACCOUNT.into()),
        account_key: Some(dev_key.into()),
        key_file: key_file.clone(),
        ..TierConfig::default()
    };
    let base = edgeblob_testkit::engine::config(dir.path());
    let devices = files_from(&dir.path().join("d.dat"), 3);
    let cfg =
        EngineConfig { tier: Some(tier), devices: devices.clone(), shards: Some(3), data_size: 128 << 20, ..base };
    let blobs: Vec<(String, Vec<u8>)> =
        (0..30).map(|i| (format!("b{i:02}"), data(i, 50_000 + 9_000 * i as usize, false))).collect();
    let rt = rt();
    let node = Node::open(cfg.clone()).unwrap();
    let on_two =
        blobs.iter().filter(|(n, _)| node.shared().device_of(node.shared().owner_of(&key("c", n))) == 2).count();
    assert!(on_two > 0);
    rt.block_on(async {
        node.create_container(ACCOUNT, "c", vec![]).await.unwrap();
        for (n, b) in &blobs {
            node.put_blob(0, key("c", n), body(b), Default::default(), Default::default()).await.unwrap();
        }
        node.tier_epoch().await.unwrap();
    });
    node.stop();
    std::fs::remove_file(&devices[2]).unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[engine.tier]\nurl = \"{url}\"\naccount = \"{ACCOUNT}\"\naccount_key = \"{dev_key}\"\nkey_file = \"{}\"\n",
            key_file.display()
        ),
    )
    .unwrap();
    let d: Vec<&str> = devices.iter().map(|p| p.to_str().unwrap()).collect();
    let args = |device: &str| {
        let mut a = vec!["replace-device", "--config", config.to_str().unwrap(), "--device", device];
        for p in &d {
            a.extend(["--data", p]);
        }
        a.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |device: &str| {
        let a = args(device);
        admin(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // One device at a time: device 0 cannot be replaced while device 2 is missing.
    let (code, out) = run("0");
    assert_ne!(code, 0, "{out}");
    assert!(out.contains(&format!("{} (kept)", d[2])), "{out}");
    let (code, out) = run("2");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("replaced device 2") && out.contains(&format!("{on_two} blobs back (0 left out)")), "{out}");
    assert!(!out.contains("lost with the device"), "nothing spilled across devices: {out}");
    let node = Node::open(cfg).unwrap();
    rt.block_on(async {
        for (n, b) in &blobs {
            let (_, _, got) = node.read_blob(0, key("c", n), None, Default::default()).await.unwrap();
            assert_eq!(&got[..], &b[..], "{n}");
        }
    });
    node.stop();
}
