//! The units and the package: `systemd-analyze verify` and `security`, the .deb built by
//! packaging/deb/build.sh from this build's binaries, installed into a test root (its files
//! listed by dpkg), and lintian clean of errors. The tools come from Debian's packages (.ci/run
//! installs them); without them the checks are skipped here, and fail under CI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use edgeblob_testkit::node::workspace_bin;
use edgeblob_testkit::peers::tool;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// The units with their programs pointed at this build's (verify checks that they exist).
fn units(dir: &Path) -> Vec<PathBuf> {
    ["edgeblob.service", "edgeblob-prepare.service"]
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(repo().join("packaging/systemd").join(name)).unwrap();
            let text = text
                .replace("/usr/bin/edgeblob-admin", workspace_bin("edgeblob-admin").to_str().unwrap())
                .replace("/usr/bin/edgeblob ", &format!("{} ", workspace_bin("edgeblob").display()));
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect()
}

#[test]
fn both_units_verify_and_the_node_unit_is_hardened() {
    if !tool("systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let paths = units(dir.path());
    let (ok, out) = run(Command::new("systemd-analyze").arg("verify").args(&paths));
    assert!(ok && out.trim().is_empty(), "systemd-analyze verify: {out}");
    let (_, out) = run(Command::new("systemd-analyze").args(["security", "--offline=yes"]).arg(&paths[0]));
    let level: f64 = out
        .lines()
        .find_map(|l| {
            l.split_once("Overall exposure level for edgeblob.service: ")?.1.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no exposure level in {out}"));
    assert!(level <= 2.5, "exposure {level} (docs/operations.md says 1.9): {out}");
}

#[test]
fn the_package_installs_into_a_test_root_with_every_file_and_passes_lintian() {
    if !tool("dpkg-deb") || !tool("strip") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let bins = workspace_bin("edgeblob").parent().unwrap().to_path_buf();
    let out =
        Command::new("bash").arg(repo().join("packaging/deb/build.sh")).arg(&bins).arg(work.path()).output().unwrap();
    assert!(out.status.success(), "build.sh: {}", String::from_utf8_lossy(&out.stderr));
    let deb = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());

    let (ok, contents) = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    assert!(ok, "{contents}");
    let mut want: Vec<String> = [
        "usr/bin/edgeblob",
        "usr/bin/edgeblob-admin",
        "usr/bin/edgeblob-bench",
        "lib/systemd/system/edgeblob.service",
        "lib/systemd/system/edgeblob-prepare.service",
        "etc/edgeblob/edgeblob.toml",
        "usr/share/doc/edgeblob/copyright",
        "usr/share/doc/edgeblob/operations.md",
        "usr/share/edgeblob/hw-profiles/azure/l-series.csv",
        "usr/share/edgeblob/hw-profiles/bare-metal/odm-2s-8nvme-2x200g.toml",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for entry in std::fs::read_dir(repo().join("hw-profiles/azure")).unwrap() {
        want.push(format!("usr/share/edgeblob/hw-profiles/azure/{}", entry.unwrap().file_name().to_str().unwrap()));
    }
    for w in &want {
        assert!(contents.lines().any(|l| l.ends_with(&format!("./{w}"))), "{w} not in the package:\n{contents}");
    }
    let (_, conffiles) = run(Command::new("dpkg-deb").args(["--info"]).arg(&deb).arg("conffiles"));
    assert_eq!(conffiles.trim(), "/etc/edgeblob/edgeblob.toml");

    // Installed into a root of its own: dpkg sets DPKG_ROOT for the maintainer scripts, which
    // then leave the host's users and units alone.
    let root = work.path().join("root");
    std::fs::create_dir_all(root.join("var/lib/dpkg/info")).unwrap();
    std::fs::create_dir_all(root.join("var/lib/dpkg/updates")).unwrap();
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let dpkg = |args: &[&str]| {
        let mut c = Command::new("dpkg");
        c.arg(format!("--root={}", root.display())).args(args);
        run(&mut c)
    };
    let (ok, out) =
        dpkg(&["--force-depends", "--force-script-chrootless", "--force-not-root", "-i", deb.to_str().unwrap()]);
    assert!(ok, "dpkg -i: {out}");
    let (ok, listed) = dpkg(&["-L", "edgeblob"]);
    assert!(ok, "{listed}");
    for w in &want {
        assert!(listed.lines().any(|l| l == format!("/{w}")), "dpkg -L lacks /{w}:\n{listed}");
        assert!(root.join(w).is_file(), "{w} not installed");
    }
    let (ok, version) = run(Command::new(root.join("usr/bin/edgeblob-admin")).arg("--version"));
    assert!(ok && version.starts_with("edgeblob-admin "), "{version}");

    if tool("lintian") {
        let (ok, out) = run(Command::new("lintian").args(["--fail-on", "error"]).arg(&deb));
        assert!(ok && !out.lines().any(|l| l.starts_with("E: ")), "lintian: {out}");
    }
}

#[test]
fn the_azure_image_template_and_its_user_data_validate_and_hold_no_secret() {
    let dir = repo().join("packaging/image/azure");
    if tool("packer") {
        // No call home to HashiCorp (CI reaches only the package registries).
        let (ok, out) = run(Command::new("packer")
            .args(["validate", "-syntax-only"])
            .arg(&dir)
            .current_dir(&dir)
            .env("CHECKPOINT_DISABLE", "1"));
        assert!(ok, "packer validate: {out}");
    }
    let user_data = dir.join("user-data.yaml");
    if tool("cloud-init") {
        let (ok, out) = run(Command::new("cloud-init").args(["schema", "--config-file"]).arg(&user_data));
        assert!(ok && out.contains("Valid cloud-config"), "cloud-init schema: {out}");
    }
    let text = std::fs::read_to_string(&user_data).unwrap();
    for secret in ["account_key", "sas =", "sig=", "-----BEGIN", "AccountKey=", "client_secret", "token ="] {
        assert!(!text.contains(secret), "user data carries a secret ({secret})");
    }
    assert!(
        text.contains("managed_identity = true") && text.contains("/dev/urandom"),
        "the identity and a key made on the VM"
    );
}
