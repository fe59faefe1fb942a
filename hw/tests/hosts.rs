//! `hw detect` on the committed fake hosts (tests/hosts/, written by tests/hosts/make.py): the
//! whole detection is held to a golden file per host, each exclusion is asserted with its
//! reason, and each host is matched to its profile and planned.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use edgeblob_hw::detect::{detect, Root, Use};
use edgeblob_hw::{plan, profile, Host};

fn hosts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hosts")
}

fn host(name: &str) -> Host {
    detect(&Root(hosts().join(name)))
}

fn profiles() -> Vec<(PathBuf, edgeblob_hw::Profile)> {
    profile::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../hw-profiles")).unwrap()
}

fn nvme<'h>(h: &'h Host, name: &str) -> &'h edgeblob_hw::Nvme {
    h.nvme.iter().find(|n| n.name == name).unwrap_or_else(|| panic!("{name} not detected"))
}

/// The reasons `name` is excluded, joined; panics if it is not excluded.
fn excluded(h: &Host, name: &str) -> String {
    let n = nvme(h, name);
    assert_eq!(n.usage, Use::Excluded, "{name}: {n:?}");
    n.reasons.join("; ")
}

#[test]
fn detection_matches_the_golden_output_of_every_host() {
    for name in ["l8as_v5", "l32as_v5", "l8as_v4", "odm_2s_8nvme"] {
        let text = host(name).to_toml();
        let golden = hosts().join(format!("{name}.detect.toml"));
        if std::env::var_os("EDGEBLOB_BLESS").is_some() {
            std::fs::write(&golden, &text).unwrap();
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e} (EDGEBLOB_BLESS=1 writes it)", golden.display()));
        assert_eq!(text, want, "{name}: detection differs from {}", golden.display());
    }
}

#[test]
fn each_exclusion_is_found_with_its_reason() {
    let l8v5 = host("l8as_v5");
    assert_eq!(l8v5.platform, "azure");
    let os = excluded(&l8v5, "nvme0n1");
    assert!(os.contains("a remote disk"), "{os}");
    assert!(os.contains("holds the root file system (nvme0n1p1)"), "{os}");
    assert!(os.contains("partitioned (nvme0n1p1, nvme0n1p14, nvme0n1p15)"), "{os}");
    assert_eq!(nvme(&l8v5, "nvme1n1").usage, Use::Data);
    assert_eq!(
        l8v5.nic.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        ["eth0"],
        "the VF is counted once, lo not at all"
    );

    let l32 = host("l32as_v5");
    assert_eq!(excluded(&l32, "nvme1n1"), "mounted at /mnt (nvme1n1)");
    assert_eq!(nvme(&l32, "nvme2n1").usage, Use::Data);

    let l8v4 = host("l8as_v4");
    let parted = excluded(&l8v4, "nvme2n1");
    assert_eq!(parted, "partitioned (nvme2n1p1)");
    assert_eq!(excluded(&l8v4, "nvme3n1"), "holds a xfs signature");
    assert_eq!(nvme(&l8v4, "nvme4n1").usage, Use::Edgeblob, "a superblock of ours is left to the ledger");
    assert_eq!(nvme(&l8v4, "nvme1n1").usage, Use::Data);

    let odm = host("odm_2s_8nvme");
    assert_eq!(odm.platform, "bare-metal", "no Azure agent");
    let boot = excluded(&odm, "nvme0n1");
    assert!(boot.contains("holds the root file system (nvme0n1p2)"), "{boot}");
    assert!(boot.contains("mounted at /boot/efi (nvme0n1p1)"), "{boot}");
    assert!(boot.contains("used as swap (nvme0n1p3)"), "{boot}");
    assert_eq!(excluded(&odm, "nvme8n1"), "held by md127");
    assert_eq!(odm.candidates().count(), 7);
    assert_eq!((odm.cpus, odm.numa.len(), odm.smt), (192, 2, true));
    assert_eq!(nvme(&odm, "nvme5n1").numa, 1);
    assert_eq!(
        odm.nic.iter().map(|n| (n.name.as_str(), n.speed_mbps)).collect::<Vec<_>>(),
        [("eno1", 1000), ("ens1f0np0", 200_000), ("ens2f0np0", 200_000)]
    );
}

#[test]
fn a_device_whose_bytes_cannot_be_read_is_not_offered() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&hosts().join("l8as_v5"), dir.path());
    std::fs::remove_file(dir.path().join("dev/nvme1n1")).unwrap();
    let h = detect(&Root(dir.path().to_path_buf()));
    assert!(excluded(&h, "nvme1n1").starts_with("its first bytes could not be read"));
}

/// What the folder `from` holds, copied into `to` (links kept as links).
fn copy_tree(from: &Path, to: &Path) {
    let ok = std::process::Command::new("cp").arg("-a").arg(from.join(".")).arg(to).status().unwrap().success();
    assert!(ok, "cp -a {} {}", from.display(), to.display());
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// On the ODM server (two sockets), every shard of a device runs on a core of the device's NUMA
/// node, but for those a node has more of than cores.
#[test]
fn the_odm_plan_puts_each_devices_shards_on_its_numa_node() {
    let h = host("odm_2s_8nvme");
    let all = profiles();
    let p = profile::best(&all, &h, None).unwrap();
    let plan = plan::derive(p, &h);
    let node_of = |c: u32| {
        h.numa.iter().find(|n| edgeblob_hw::cpulist::parse(&n.cpus).unwrap().contains(&c)).map(|n| n.id as i32)
    };
    let cores = edgeblob_hw::cpulist::parse(&plan.cpus).unwrap();
    let mut away = std::collections::BTreeMap::<i32, usize>::new();
    for (s, &cpu) in plan.shard_cpus.iter().enumerate() {
        let dev = &plan.devices[s / plan.shards_per_device];
        let numa = h.nvme.iter().find(|n| &n.name == dev).unwrap().numa;
        if node_of(cpu) != Some(numa) {
            *away.entry(numa).or_default() += 1;
        }
    }
    // Node 0 has four devices (100 shards) and 90 of the plan's cores: 10 of its shards run on
    // node 1; node 1's three devices (75 shards) all run at home.
    for numa in [0, 1] {
        let wanted = plan.devices.iter().filter(|d| h.nvme.iter().any(|n| &n.name == *d && n.numa == numa)).count()
            * plan.shards_per_device;
        let home = cores.iter().filter(|&&c| node_of(c) == Some(numa)).count();
        assert_eq!(away.get(&numa).copied().unwrap_or(0), wanted.saturating_sub(home), "node {numa}: {away:?}");
    }
    assert_eq!(away.values().sum::<usize>(), 10);
}

#[test]
fn each_host_fits_its_profile_and_gets_its_plan() {
    let profiles = profiles();
    let cases = [
        ("l8as_v5", "azure/Standard_L8as_v5", "0-7", strings(&["nvme1n1"]), 8, 128),
        // Two cores kept (one in sixteen); nvme1n1 is mounted, so all 30 shards share nvme2n1.
        ("l32as_v5", "azure/Standard_L32as_v5", "1-15,17-31", strings(&["nvme2n1"]), 30, 34),
        // The blank disk and the one edgeblob formatted; the partitioned and xfs ones are not used.
        ("l8as_v4", "azure/Standard_L8as_v4", "0-7", strings(&["nvme1n1", "nvme4n1"]), 4, 128),
        // 180 cores left over 7 devices: 25 shards on each, the last 5 cores to the host.
        (
            "odm_2s_8nvme",
            "bare-metal/odm-2s-8nvme-2x200g",
            "3-47,51-95,99-143,147-186",
            (1..=7).map(|i| format!("nvme{i}n1")).collect(),
            25,
            128,
        ),
    ];
    for (name, id, cpus, devices, per_device, depth) in cases {
        let h = host(name);
        let p = profile::best(&profiles, &h, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(p.profile.id, id, "{name}");
        let plan = plan::derive(p, &h);
        assert_eq!(plan.cpus, cpus, "{name}");
        assert_eq!(plan.shards, edgeblob_hw::cpulist::parse(cpus).unwrap().len(), "{name}");
        assert_eq!(plan.devices, devices, "{name}");
        assert_eq!((plan.shards_per_device, plan.io_depth), (per_device, depth), "{name}");
        assert!(
            plan.io_depth * plan.shards_per_device <= p.storage.device_queue_depth_limit,
            "{name}: a device's queue limit"
        );
        let mut sorted = plan.shard_cpus.clone();
        sorted.sort_unstable();
        assert_eq!(edgeblob_hw::cpulist::format(&sorted), plan.cpus, "{name}: each shard a core of the plan's");
        assert_eq!(plan.shard_cpus.len(), plan.shards, "{name}");
    }
}

#[test]
fn the_vm_size_decides_between_profiles_and_a_wrong_one_fits_nothing() {
    let profiles = profiles();
    let h = host("l8as_v5");
    assert_eq!(profile::best(&profiles, &h, Some("Standard_L8as_v5")).unwrap().profile.id, "azure/Standard_L8as_v5");
    let err = profile::best(&profiles, &h, Some("Standard_L16as_v5")).unwrap_err();
    assert!(err.contains("no profile fits"), "{err}");
    // A host with fewer local disks than its size has (one not yet enumerated) fits no profile.
    let mut short = host("l8as_v4");
    short.nvme.retain(|n| n.name != "nvme1n1");
    assert!(profile::best(&profiles, &short, None).is_err());
}
