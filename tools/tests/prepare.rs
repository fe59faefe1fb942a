//! `edgeblob-admin node prepare` on copies of the fake hosts, with their devices as sparse files:
//! a dry run changes nothing, a real run formats only what it may and a second changes nothing,
//! a foreign device is refused unless named, an excluded one even when named, and a redeploy
//! (this node's devices gone, blank ones in their place) marks the node rebuilding.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use edgeblob_hw::ledger::Ledger;

fn admin(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edgeblob-admin")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// What the folder `from` holds, copied into `to` (links kept as links).
fn copy_tree(from: &Path, to: &Path) {
    let ok = std::process::Command::new("cp").arg("-a").arg(from.join(".")).arg(to).status().unwrap().success();
    assert!(ok, "cp -a {} {}", from.display(), to.display());
}

/// A host copied from `name`, its NVMe devices made `size` bytes (sparse; their first bytes kept).
fn host(name: &str, dir: &Path, size: u64) -> PathBuf {
    let root = dir.join(name);
    copy_tree(&repo(&format!("hw/tests/hosts/{name}")), &root);
    for e in std::fs::read_dir(root.join("dev")).unwrap() {
        std::fs::OpenOptions::new().write(true).open(e.unwrap().path()).unwrap().set_len(size).unwrap();
    }
    root
}

/// Every device file's bytes (up to `limit` of each), hashed.
fn hashes_upto(root: &Path, limit: usize) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = std::fs::read_dir(root.join("dev"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let mut bytes = std::fs::read(&p).unwrap();
            bytes.truncate(limit);
            (p.file_name().unwrap().to_str().unwrap().to_owned(), xxhash_rust::xxh3::xxh3_64(&bytes))
        })
        .collect();
    out.sort();
    out
}

fn hashes(root: &Path) -> Vec<(String, u64)> {
    hashes_upto(root, usize::MAX)
}

fn starts_with(root: &Path, dev: &str, magic: &[u8]) -> bool {
    std::fs::read(root.join("dev").join(dev)).unwrap().starts_with(magic)
}

fn prepare(root: &Path, ledger: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec![
        "node",
        "prepare",
        "--imds",
        "off",
        "--root",
        root.to_str().unwrap(),
        "--ledger",
        ledger.to_str().unwrap(),
    ];
    let profiles = repo("hw-profiles");
    args.extend(["--profiles", profiles.to_str().unwrap()]);
    args.extend(extra);
    admin(&args)
}

fn line<'a>(out: &'a str, dev: &str) -> &'a str {
    out.lines().find(|l| l.starts_with(&format!("{dev} "))).unwrap_or_else(|| panic!("no {dev} in {out}"))
}

#[test]
fn dry_run_changes_nothing_a_second_run_changes_nothing_and_foreign_devices_need_naming() {
    let dir = tempfile::tempdir().unwrap();
    // Four shards a device (eight cores over two usable disks): 128 MiB holds them.
    let root = host("l8as_v4", dir.path(), 128 << 20);
    let ledger = dir.path().join("state/ledger.toml");
    let untouched = hashes(&root);

    let (code, out) = prepare(&root, &ledger, &["--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(line(&out, "nvme1n1").contains("blank: format"), "{out}");
    assert!(line(&out, "nvme2n1").contains("excluded (partitioned (nvme2n1p1))"), "{out}");
    assert!(line(&out, "nvme3n1").contains("foreign (holds a xfs signature): leave: refused"), "{out}");
    assert!(line(&out, "nvme4n1").contains("foreign") && line(&out, "nvme4n1").contains("refused"), "{out}");
    assert!(!out.contains("nvme0n1"), "the OS disk is not even listed: {out}");
    assert_eq!(hashes(&root), untouched, "a dry run writes nothing");
    assert!(!ledger.exists(), "nor a ledger");

    // The blank device (ephemeral disks) and another node's edgeblob device, named: one node on
    // both.
    let (code, out) = prepare(&root, &ledger, &["--allow-format", "1F00A7C6"]);
    assert_eq!(code, 0, "{out}");
    assert!(starts_with(&root, "nvme1n1", b"EDGEBLOB"), "the blank device is formatted (ephemeral disks)");
    let formatted = hashes(&root);
    for (dev, h) in &untouched {
        if dev != "nvme1n1" && dev != "nvme4n1" {
            assert!(formatted.contains(&(dev.clone(), *h)), "{dev} was changed");
        }
    }
    let l = Ledger::load(&ledger).unwrap().unwrap();
    assert_eq!(l.device.iter().map(|d| d.serial.as_str()).collect::<Vec<_>>(), ["1F00A7C3", "1F00A7C6"]);
    assert!(!l.rebuilding);
    let devs = [root.join("dev/nvme1n1"), root.join("dev/nvme4n1")];
    let sbs: Vec<_> = devs
        .iter()
        .map(|p| edgeblob_engine::startup::read_superblock(&edgeblob_io::DeviceFile::open(p).unwrap()).unwrap())
        .collect();
    assert_eq!((sbs[0].index(), sbs[1].index(), sbs[0].devices(), sbs[1].uuid), (0, 1, 2, sbs[0].uuid));
    for (d, sb) in l.device.iter().zip(&sbs) {
        let hex: String = sb.device_uuid().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(d.uuid, hex, "the ledger names each device by its own uuid");
    }
    // And it is a node: it opens on them (listed in any order), and serves.
    let cfg = edgeblob_engine::config::EngineConfig {
        devices: vec![devs[1].clone(), devs[0].clone()],
        pin_threads: false,
        ..Default::default()
    };
    let node = edgeblob_engine::Node::open(cfg).unwrap();
    assert_eq!(node.shared().layout.devices(), 2);
    node.stop();
    let formatted = hashes(&root);

    let ledger_text = std::fs::read_to_string(&ledger).unwrap();
    let (code, out) = prepare(&root, &ledger, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(line(&out, "nvme1n1").contains("ours: keep"), "{out}");
    assert_eq!(hashes(&root), formatted, "a second run changes nothing");
    assert_eq!(std::fs::read_to_string(&ledger).unwrap(), ledger_text);

    // Named, a foreign device is formatted; an excluded one never is, and nothing is done then.
    let (code, out) = prepare(&root, &ledger, &["--allow-format", "1F00A7C4"]);
    assert_ne!(code, 0);
    assert!(out.contains("never formatted, even when named"), "{out}");
    assert_eq!(hashes(&root), formatted);
    // A node's devices are fixed: even named, a device does not join a node that has its own.
    let (code, out) = prepare(&root, &ledger, &["--allow-format", "1F00A7C5"]);
    assert_eq!(code, 0, "{out}");
    assert!(line(&out, "nvme3n1").contains("cannot join"), "{out}");
    assert_eq!(hashes(&root), formatted);
    assert!(Ledger::load(&ledger).unwrap().unwrap().by_serial("1F00A7C5").is_none());
    let (code, out) = prepare(&root, &ledger, &["--allow-format", "NO-SUCH-SERIAL"]);
    assert_ne!(code, 0, "{out}");
}

#[test]
fn on_kept_disks_blank_devices_wait_to_be_named() {
    let dir = tempfile::tempdir().unwrap();
    // 26 shards a device need 437 MB; only the heads are hashed (a format writes its superblock
    // at byte 0), nine devices of 512 MiB being much to read.
    let root = host("odm_2s_8nvme", dir.path(), 512 << 20);
    let ledger = dir.path().join("ledger.toml");
    let before = hashes_upto(&root, 1 << 20);
    let (code, out) = prepare(&root, &ledger, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        line(&out, "nvme1n1").contains("blank: leave: blank; format it with --allow-format S6CKNA0W200100"),
        "{out}"
    );
    assert!(line(&out, "nvme8n1").contains("excluded (held by md127)"), "{out}");
    assert_eq!(hashes_upto(&root, 1 << 20), before);
    let (code, out) = prepare(&root, &ledger, &["--allow-format", "S6CKNA0W200100"]);
    assert_eq!(code, 0, "{out}");
    assert!(starts_with(&root, "nvme1n1", b"EDGEBLOB"));
    assert!(!starts_with(&root, "nvme2n1", b"EDGEBLOB"), "only the named one");
}

#[test]
fn after_a_redeploy_the_node_comes_back_rebuilding() {
    let dir = tempfile::tempdir().unwrap();
    let root = host("l8as_v5", dir.path(), 256 << 20);
    let ledger = dir.path().join("ledger.toml");
    let (code, out) = prepare(&root, &ledger, &[]);
    assert_eq!(code, 0, "{out}");
    let first = Ledger::load(&ledger).unwrap().unwrap();
    assert_eq!(first.device.len(), 1);

    // Redeployed: a new host's blank disk, another serial; the OS disk (and the ledger) kept.
    std::fs::write(root.join("sys/class/nvme/nvme1/serial"), "NEWHOSTSERIAL0001\n").unwrap();
    let f = std::fs::OpenOptions::new().write(true).truncate(true).open(root.join("dev/nvme1n1")).unwrap();
    f.set_len(256 << 20).unwrap();
    let (code, out) = prepare(&root, &ledger, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("comes back rebuilding"), "{out}");
    let after = Ledger::load(&ledger).unwrap().unwrap();
    assert!(after.rebuilding);
    assert_eq!(after.node, first.node, "the same node, not a new one");
    assert_eq!(after.device.iter().map(|d| d.serial.as_str()).collect::<Vec<_>>(), ["NEWHOSTSERIAL0001"]);
}

/// With a tier in the node's configuration, a redeploy's blank disks are left blank: the node
/// restores itself onto them when it starts (edgeblob's `rebuild`). The node it restores carries
/// the ledger's id (the id a new node's superblocks take at its first format), and the next
/// prepare knows the restored device as the node's and records its serial.
#[test]
fn after_a_redeploy_a_node_with_a_tier_leaves_its_blank_disks_to_its_restore() {
    let dir = tempfile::tempdir().unwrap();
    let root = host("l8as_v5", dir.path(), 256 << 20);
    let ledger = dir.path().join("ledger.toml");
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "[engine.tier]\nurl = \"http://127.0.0.1:1/acct/tier/site\"\nkey_file = \"/nowhere\"\n")
        .unwrap();
    let cfg = ["--config", config.to_str().unwrap()];
    let (code, out) = prepare(&root, &ledger, &cfg);
    assert_eq!(code, 0, "{out}");
    let first = Ledger::load(&ledger).unwrap().unwrap();
    let dev = root.join("dev/nvme1n1");
    let sb = edgeblob_engine::startup::read_superblock(&edgeblob_io::DeviceFile::open(&dev).unwrap()).unwrap();
    let hex = |u: &[u8]| u.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(first.node, hex(&sb.uuid), "the ledger names the node its device holds");

    std::fs::write(root.join("sys/class/nvme/nvme1/serial"), "NEWHOSTSERIAL0001\n").unwrap();
    let f = std::fs::OpenOptions::new().write(true).truncate(true).open(&dev).unwrap();
    f.set_len(256 << 20).unwrap();
    let blank = hashes(&root);
    let (code, out) = prepare(&root, &ledger, &cfg);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("restores itself from the tier"), "{out}");
    assert_eq!(hashes(&root), blank, "the blank disk is left to the restore");
    let after = Ledger::load(&ledger).unwrap().unwrap();
    assert!(after.rebuilding && after.node == first.node, "{after:?}");
    assert_eq!(after.pending, ["NEWHOSTSERIAL0001"], "the node's devices until it has restored onto them");
    // A reboot before the node restored itself: prepare runs again and still leaves the disk
    // to the restore (not a new node's), under the same id.
    let (code, out) = prepare(&root, &ledger, &cfg);
    assert_eq!(code, 0, "{out}");
    assert_eq!(hashes(&root), blank, "{out}");
    assert_eq!(Ledger::load(&ledger).unwrap().unwrap(), after);

    // What the node's restore writes: the node, by its id, on the new disk.
    let file = std::sync::Arc::new(edgeblob_io::DeviceFile::open(&dev).unwrap());
    let restored = edgeblob_io::superblock::Superblock { uuid: sb.uuid, ..sb.clone() };
    edgeblob_engine::startup::format_devices_as(&[file], vec![restored]).unwrap();
    let (code, out) = prepare(&root, &ledger, &cfg);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ours: keep"), "{out}");
    let known = Ledger::load(&ledger).unwrap().unwrap();
    assert_eq!(known.device.iter().map(|d| d.serial.as_str()).collect::<Vec<_>>(), ["NEWHOSTSERIAL0001"]);
    assert_eq!(known.device[0].uuid, hex(&sb.uuid));
    assert!(known.pending.is_empty(), "listed as the node's now: {known:?}");
}
