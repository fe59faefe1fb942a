//! The disk ledger: which devices are this node's, kept on the OS disk (`/var/lib/edgeblob/
//! ledger.toml`), which outlives the local NVMe of an Azure VM. Devices are known by serial, never
//! by `/dev` name (names move between boots), with the uuid of the superblock edgeblob wrote on
//! each. A ledger that names devices none of which is present, beside blank ones, is the mark of
//! an Azure redeploy: the node's disks were erased, and it comes back rebuilding, not as a new
//! empty node.

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ledger {
    /// The node's identity, made at its first prepare (hex).
    pub node: String,
    /// Whether the node's disks were erased since its data was written (set by prepare when it
    /// formats blank disks for a node that had others; cleared once a restore finishes).
    #[serde(default)]
    pub rebuilding: bool,
    #[serde(default)]
    pub device: Vec<LedgerDevice>,
    /// Serials of the blank devices prepare left for the node to restore itself onto (its disks
    /// were erased and it has a tier), in order: the node's devices until the next prepare
    /// finds them holding the node and lists them under `device`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerDevice {
    pub serial: String,
    pub model: String,
    /// The device's own uuid in its edgeblob superblock (hex): for a node on one device, the
    /// superblock's uuid; for a member of a node on several, its member uuid.
    pub uuid: String,
    /// Unix seconds of its format.
    pub formatted: u64,
}

impl Ledger {
    /// The ledger at `path`; None when there is none (a host never prepared).
    pub fn load(path: &Path) -> Result<Option<Ledger>, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map(Some).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes it whole: to a file beside, synced, then renamed over the old one, so a crash
    /// leaves the old ledger or the new, never half of one.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        use std::io::Write;
        let text = toml::to_string(self).map_err(|e| e.to_string())?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let tmp = path.with_extension("toml.new");
        let mut f = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(dir) = path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// The serials of the node's devices: those left for its restore while there are any,
    /// else those it was formatted on.
    pub fn serials(&self) -> Vec<String> {
        match self.pending.is_empty() {
            true => self.device.iter().map(|d| d.serial.clone()).collect(),
            false => self.pending.clone(),
        }
    }

    pub fn by_serial(&self, serial: &str) -> Option<&LedgerDevice> {
        self.device.iter().find(|d| d.serial == serial)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_ledger_saves_whole_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/ledger.toml");
        assert_eq!(Ledger::load(&path).unwrap(), None);
        let l = Ledger {
            node: "ab".into(),
            rebuilding: true,
            device: vec![LedgerDevice { serial: "S1".into(), model: "M".into(), uuid: "01".into(), formatted: 7 }],
            pending: vec!["S2".into()],
        };
        l.save(&path).unwrap();
        assert_eq!(Ledger::load(&path).unwrap(), Some(l.clone()));
        assert_eq!(l.by_serial("S1").unwrap().uuid, "01");
        std::fs::write(&path, "node = 1").unwrap();
        assert!(Ledger::load(&path).is_err(), "a damaged ledger is an error, not an empty one");
    }
}
