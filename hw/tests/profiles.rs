//! The shipped profiles: every one is valid with a provenance for each figure, and the Azure ones
//! are exactly what their table row generates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use edgeblob_hw::profile::{self, azure_profile, azure_sizes, Profile};

fn dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../hw-profiles")
}

#[test]
fn every_azure_profile_is_what_its_row_of_the_table_generates() {
    let csv = std::fs::read_to_string(dir().join("azure/l-series.csv")).unwrap();
    let sizes = azure_sizes(&csv).unwrap();
    assert_eq!(sizes.len(), 20, "eleven Lasv5 and nine Lasv4 sizes");
    for s in &sizes {
        let text = azure_profile(s);
        let path = dir().join(format!("azure/{}.toml", s.size));
        if std::env::var_os("EDGEBLOB_BLESS").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (EDGEBLOB_BLESS=1 writes it)", path.display()));
        assert_eq!(on_disk, text, "{} differs from its row", path.display());
        let p = Profile::from_toml(&text).unwrap();
        assert_eq!(p.fits.local_nvme_count, Some(s.disks));
        assert_eq!(p.storage.io.read_bandwidth, s.read_mbps * 1_000_000, "MB/s are 10^6 bytes");
        assert_eq!(p.memory.total_gib, s.vcpus as u64 * 8, "8 GiB a vCPU");
    }
    let l8 = sizes.iter().find(|s| s.size == "Standard_L8as_v5").unwrap();
    assert_eq!(
        (l8.disks, l8.disk_gb, l8.read_iops, l8.nic_mbps),
        (1, 1920, 600_000, 25_000),
        "Microsoft's figures for the L8as_v5"
    );
}

#[test]
fn every_shipped_profile_loads_and_names_where_its_figures_come_from() {
    let all = profile::load_dir(&dir()).unwrap();
    assert_eq!(all.len(), 21, "twenty Azure sizes and the ODM template");
    for (path, p) in &all {
        assert!(!p.profile.source.is_empty(), "{}", path.display());
        assert!(["vendor-spec", "measured", "default"].contains(&p.profile.confidence.as_str()), "{}", path.display());
    }
    let bad = std::fs::read_to_string(dir().join("azure/Standard_L8as_v5.toml"))
        .unwrap()
        .replace("provenance = \"vendor-spec: ", "provenance = \"a guess: ");
    assert!(Profile::from_toml(&bad).unwrap_err().contains("provenance"));
}
