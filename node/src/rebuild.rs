//! A node whose disks were erased under it restores itself from the tier before it serves.
//!
//! After an Azure redeploy (or a host repair) the VM's local NVMe come back blank; `edgeblob-admin
//! node prepare` finds the ledger's devices gone and blank ones in their place, marks the ledger
//! `rebuilding`, and, when the node has a tier, leaves them blank. At its start the node then
//! restores itself onto them from its newest restore point (as `edgeblob-admin restore` does:
//! metadata only, data read from the tier as asked), and clears the mark. A restore cut short
//! leaves its devices flagged, so the next start does it again; devices that hold a node are
//! never written: the node then starts as it is, reporting itself rebuilding until the operator
//! clears the mark.

use std::path::Path;

use edgeblob_hw::ledger::Ledger;

use crate::config::Config;

/// What the start did about a rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebuild {
    /// No ledger, or it does not say rebuilding.
    NotAsked,
    /// Rebuilding, but the node cannot restore itself: why (no tier, devices that hold a node).
    Left(String),
    /// Restored: from which manifest, how many blobs.
    Restored { from: String, blobs: u64 },
}

/// Restores the node onto its devices when its ledger says rebuilding and it can; run before the
/// engine opens them.
pub fn before_open(config: &Config) -> Result<Rebuild, String> {
    let Some(path) = &config.ledger else { return Ok(Rebuild::NotAsked) };
    let Some(mut ledger) = Ledger::load(path)? else { return Ok(Rebuild::NotAsked) };
    if !ledger.rebuilding {
        return Ok(Rebuild::NotAsked);
    }
    if config.engine.tier.is_none() {
        return Ok(Rebuild::Left("the node has no tier to restore itself from".into()));
    }
    if let Err(why) = edgeblob_engine::tier::restore::writable(&config.engine.device_paths()) {
        return Ok(Rebuild::Left(why.to_string()));
    }
    tracing::warn!(node = %ledger.node, "the node's disks were erased: restoring it from the tier before it serves");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let extending = Extend::start(format!("restoring node {} from the tier", ledger.node));
    let restored = rt.block_on(edgeblob_engine::tier::restore::restore(&config.engine, Some(&ledger.node), None));
    drop(extending);
    let report = restored.map_err(|e| format!("restoring node {} from the tier: {e}", ledger.node))?;
    tracing::info!(?report, "the node restored itself from the tier");
    ledger.rebuilding = false;
    save(&ledger, path)?;
    Ok(Rebuild::Restored { from: report.from, blobs: report.blobs })
}

/// Keeps systemd's start timeout ahead of a restore: a node of tens of millions of blobs reads
/// all their metadata before it serves, which may take longer than the unit's `TimeoutStartSec`
/// (a start killed there would restore again, forever). Every [`EXTEND_EVERY`] it asks for
/// [`EXTEND_BY`] more, until dropped; a restore that hangs is bounded by its remote calls'
/// own timeouts, not by this.
struct Extend {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const EXTEND_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
const EXTEND_BY: std::time::Duration = std::time::Duration::from_secs(300);

impl Extend {
    fn start(status: String) -> Extend {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let state = format!("EXTEND_TIMEOUT_USEC={}\nSTATUS={status}", EXTEND_BY.as_micros());
        let thread = std::thread::Builder::new()
            .name("start-timeout".into())
            .spawn(move || loop {
                crate::notify::notify(&state);
                if stopped.recv_timeout(EXTEND_EVERY) != Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                    return;
                }
            })
            .ok();
        Extend { stop: Some(stop), thread }
    }
}

impl Drop for Extend {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn save(ledger: &Ledger, path: &Path) -> Result<(), String> {
    ledger.save(path).map_err(|e| format!("the node is restored, but its ledger still says rebuilding: {e}"))
}
