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
