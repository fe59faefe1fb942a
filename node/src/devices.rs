//! The node's data devices from its disk ledger, when its configuration names none.
//!
//! `edgeblob-admin node prepare` formats the host's local NVMe and records them in the ledger by
//! serial; `/dev` names move between boots, so the configuration cannot name them for good. A
//! node whose `ledger` is set and whose `[engine]` lists no `devices` takes the ledger's: found
//! by serial among the host's NVMe namespaces (`hw::detect`), in the ledger's order (each
//! superblock says its place anyway). A device the ledger names that is not present is given a
//! path that never exists, so the node starts without it (read-only, the path naming the
//! serial) rather than as a node of fewer devices; none present is an error, never a new node
//! on the data file. A ledger that names no device (a host not prepared yet) changes nothing.

use std::path::{Path, PathBuf};

use edgeblob_hw::detect::{detect, Root};
use edgeblob_hw::ledger::Ledger;

use crate::config::Config;

/// The path a device the ledger names but the host lacks is given.
fn absent(root: &Path, serial: &str) -> PathBuf {
    let safe: String = serial.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    root.join("dev").join(format!("edgeblob-absent-{safe}"))
}

/// Sets `config.engine.devices` from the ledger, reading the host under `root`; returns the
/// serials taken (None: the configuration names devices, or there is no ledger or device in it).
pub fn from_ledger(config: &mut Config, root: &Path) -> Result<Option<Vec<String>>, String> {
    let Some(path) = &config.ledger else { return Ok(None) };
    if !config.engine.devices.is_empty() {
        return Ok(None);
    }
    let Some(ledger) = Ledger::load(path)? else { return Ok(None) };
    let serials = ledger.serials();
    if serials.is_empty() {
        return Ok(None);
    }
    let host = detect(&Root(root.to_path_buf()));
    let found: Vec<Option<PathBuf>> = serials
        .iter()
        .map(|s| host.nvme.iter().find(|n| &n.serial == s).map(|n| root.join("dev").join(&n.name)))
        .collect();
    if found.iter().all(Option::is_none) {
        return Err(format!(
            "none of the devices the ledger {} names is on this host (serials {}): run edgeblob-admin node prepare",
            path.display(),
            serials.join(", ")
        ));
    }
    config.engine.devices =
        found.into_iter().zip(&serials).map(|(p, s)| p.unwrap_or_else(|| absent(root, s))).collect();
    Ok(Some(serials))
}

#[cfg(test)]
mod tests {
    use edgeblob_hw::ledger::LedgerDevice;

    use super::*;

    fn host(dir: &Path) -> PathBuf {
        let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hw/tests/hosts/l32as_v5");
        let root = dir.join("host");
        std::fs::create_dir_all(&root).unwrap();
        let ok = std::process::Command::new("cp").arg("-a").arg(from.join(".")).arg(&root).status().unwrap();
        assert!(ok.success());
        root
    }

    fn serial_of(root: &Path, name: &str) -> String {
        let host = detect(&Root(root.to_path_buf()));
        host.nvme.iter().find(|n| n.name == name).unwrap().serial.clone()
    }

    fn device(serial: &str) -> LedgerDevice {
        LedgerDevice { serial: serial.into(), model: "m".into(), uuid: "00".into(), formatted: 1 }
    }

    #[test]
    fn the_ledger_names_the_devices_by_serial_when_the_configuration_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = host(dir.path());
        let (a, b) = (serial_of(&root, "nvme2n1"), serial_of(&root, "nvme1n1"));
        let path = dir.path().join("ledger.toml");
        let mut config = Config { ledger: Some(path.clone()), ..Config::default() };
        // No ledger yet, then one of no device: the data file, as configured.
        assert_eq!(from_ledger(&mut config, &root).unwrap(), None);
        Ledger { node: "ab".into(), ..Ledger::default() }.save(&path).unwrap();
        assert_eq!(from_ledger(&mut config, &root).unwrap(), None);
        assert!(config.engine.devices.is_empty());

        let ledger = Ledger { node: "ab".into(), device: vec![device(&a), device(&b)], ..Ledger::default() };
        ledger.save(&path).unwrap();
        assert_eq!(from_ledger(&mut config, &root).unwrap(), Some(vec![a.clone(), b.clone()]));
        assert_eq!(config.engine.devices, [root.join("dev/nvme2n1"), root.join("dev/nvme1n1")], "the ledger's order");
        // A configuration that names devices keeps them.
        let mut named = Config { ledger: Some(path.clone()), ..Config::default() };
        named.engine.devices = vec![PathBuf::from("/data/a.dat")];
        assert_eq!(from_ledger(&mut named, &root).unwrap(), None);
        assert_eq!(named.engine.devices, [PathBuf::from("/data/a.dat")]);

        // One of them gone: a path that does not exist in its place (the node starts without it).
        Ledger { device: vec![device(&a), device("GONE/1")], ..ledger.clone() }.save(&path).unwrap();
        let mut config = Config { ledger: Some(path.clone()), ..Config::default() };
        from_ledger(&mut config, &root).unwrap();
        assert_eq!(config.engine.devices[1], root.join("dev/edgeblob-absent-GONE_1"));
        assert!(!config.engine.devices[1].exists());
        // All gone: an error, not a node on the data file.
        Ledger { device: vec![device("GONE1"), device("GONE2")], ..ledger.clone() }.save(&path).unwrap();
        let mut config = Config { ledger: Some(path.clone()), ..Config::default() };
        let err = from_ledger(&mut config, &root).unwrap_err();
        assert!(err.contains("GONE1, GONE2") && err.contains("node prepare"), "{err}");

        // Rebuilding: the blank devices prepare left to the restore, until prepare lists them.
        let rebuilding = Ledger { rebuilding: true, device: Vec::new(), pending: vec![b.clone()], ..ledger.clone() };
        rebuilding.save(&path).unwrap();
        let mut config = Config { ledger: Some(path.clone()), ..Config::default() };
        assert_eq!(from_ledger(&mut config, &root).unwrap(), Some(vec![b.clone()]));
        assert_eq!(config.engine.devices, [root.join("dev/nvme1n1")]);
    }
}
