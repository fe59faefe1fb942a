//! The host edgeblob runs on: what it has (`detect`, read from sysfs and procfs under a root that
//! tests point at fake trees), what it is said to be (`profile`, the TOML files in
//! `hw-profiles/`), and how the node uses it (`plan`: shards, queue depths, the cores they run
//! on). Nothing here writes to a device or sends an NVMe admin command (Azure's NVMe Direct disks
//! slow down while one is pending).

pub mod cpulist;
pub mod detect;
pub mod imds;
pub mod ledger;
pub mod plan;
pub mod profile;
pub mod signature;

pub use detect::{detect, Host, Nvme, Use};
pub use plan::Plan;
pub use profile::Profile;
