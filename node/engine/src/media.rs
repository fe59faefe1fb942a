//! Where a node's bytes live: its devices (data files or raw block devices), each addressed at
//! node offsets (`edgeblob_io::volume`), or a simulated disk that injects faults (tests). Every
//! shard gets one device over all of them, driven by its own ring.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use edgeblob_io::counted::{Counted, DeviceStats};
use edgeblob_io::fault::SimDisk;
use edgeblob_io::routed::{DeviceLost, Member, Routed};
use edgeblob_io::superblock::Superblock;
use edgeblob_io::sync_device::SyncDevice;
use edgeblob_io::uring::{Ring, UringDevice};
use edgeblob_io::{AlignedBuf, BlockDevice, DeviceFile, FixedPool, PAGE_SIZE};
use edgeblob_meta::index::region::SharedDevice;

use super::error::{EngineError, Result};
use crate::config::EngineConfig;

pub trait Media: Send + Sync + 'static {
    /// How many devices the node has (lost ones included).
    fn count(&self) -> usize;

    /// Bytes device `d` holds (0 when it is lost).
    fn len(&self, d: usize) -> u64;

    /// A device over all of the node's, for shard `index`, made on the shard's thread;
    /// `register` is a buffer pool to register with it where the backend can. What passes to
    /// device `d` is counted in `stats[d]`.
    fn device(&self, index: usize, register: Option<&FixedPool>, stats: &[Arc<DeviceStats>]) -> Rc<dyn BlockDevice>;

    /// A device whose operations complete at once, for the calling thread (format, superblock).
    fn sync_device(&self) -> Rc<dyn BlockDevice>;

    /// A device whose operations complete at once, for any thread (the metadata index's).
    fn shared_device(&self) -> SharedDevice;

    /// What to call device `d` in errors and logs.
    fn name(&self, d: usize) -> String;
}

/// Data files or raw block devices, driven by io_uring (pread/pwrite where io_uring is not
/// available).
pub struct FileMedia {
    members: Vec<Member<Arc<DeviceFile>>>,
    /// Operations a shard keeps in the kernel at once ([`EngineConfig::queue_depth`]).
    pub queue_depth: usize,
}

impl FileMedia {
    pub fn of(members: Vec<Member<Arc<DeviceFile>>>) -> FileMedia {
        FileMedia { members, queue_depth: EngineConfig::default().queue_depth }
    }

    /// Each member as `make` turns an open file (and its index) into a device.
    fn routed<D: BlockDevice + 'static>(&self, make: impl Fn(usize, &Arc<DeviceFile>) -> D) -> Routed<D> {
        Routed::new(
            self.members
                .iter()
                .enumerate()
                .map(|(d, m)| match m {
                    Member::Present(f) => Member::Present(make(d, f)),
                    Member::Lost(l) => Member::Lost(l.clone()),
                })
                .collect(),
        )
    }

    fn only(&self) -> Option<&Arc<DeviceFile>> {
        match self.members.as_slice() {
            [Member::Present(f)] => Some(f),
            _ => None,
        }
    }
}

impl Media for FileMedia {
    fn count(&self) -> usize {
        self.members.len()
    }

    fn len(&self, d: usize) -> u64 {
        match &self.members[d] {
            Member::Present(f) => f.len(),
            Member::Lost(_) => 0,
        }
    }

    fn device(&self, index: usize, register: Option<&FixedPool>, stats: &[Arc<DeviceStats>]) -> Rc<dyn BlockDevice> {
        let counted = |d: usize, dev: Rc<dyn BlockDevice>| Counted::new(dev, stats[d].clone());
        match Ring::new(256, self.queue_depth) {
            Ok(ring) => {
                tokio::task::spawn_local(ring.driver());
                let registered = register.is_some_and(|pool| {
                    ring.register_pool(pool)
                        .map_err(|e| tracing::warn!(shard = index, %e, "buffer registration refused; plain buffers"))
                        .is_ok()
                });
                // One ring for all of the node's devices: each entry names its file.
                let uring = |d: usize, f: &Arc<DeviceFile>| {
                    counted(d, Rc::new(UringDevice::new(ring.clone(), f.clone(), registered)))
                };
                match self.only() {
                    Some(f) => Rc::new(uring(0, f)),
                    None => Rc::new(self.routed(uring)),
                }
            }
            Err(e) => {
                tracing::warn!(shard = index, %e, "io_uring unavailable; falling back to pread/pwrite");
                let sync = |d: usize, f: &Arc<DeviceFile>| counted(d, Rc::new(SyncDevice::new(f.clone())));
                match self.only() {
                    Some(f) => Rc::new(sync(0, f)),
                    None => Rc::new(self.routed(sync)),
                }
            }
        }
    }

    fn sync_device(&self) -> Rc<dyn BlockDevice> {
        match self.only() {
            Some(f) => Rc::new(SyncDevice::new(f.clone())),
            None => Rc::new(self.routed(|_, f| SyncDevice::new(f.clone()))),
        }
    }

    fn shared_device(&self) -> SharedDevice {
        match self.only() {
            Some(f) => Arc::new(SyncDevice::new(f.clone())),
            None => Arc::new(self.routed(|_, f| SyncDevice::new(f.clone()))),
        }
    }

    fn name(&self, d: usize) -> String {
        match &self.members[d] {
            Member::Present(f) => f.path().display().to_string(),
            Member::Lost(l) => l.name.clone(),
        }
    }
}

impl Media for SimDisk {
    fn count(&self) -> usize {
        1
    }

    fn len(&self, _: usize) -> u64 {
        SimDisk::len(self)
    }

    fn device(&self, _: usize, _: Option<&FixedPool>, stats: &[Arc<DeviceStats>]) -> Rc<dyn BlockDevice> {
        Rc::new(Counted::new(Rc::new(SimDisk::device(self)), stats[0].clone()))
    }

    fn sync_device(&self) -> Rc<dyn BlockDevice> {
        Rc::new(SimDisk::device(self))
    }

    fn shared_device(&self) -> SharedDevice {
        Arc::new(SimDisk::device(self))
    }

    fn name(&self, _: usize) -> String {
        "simulated disk".into()
    }
}

/// Reads and verifies the superblock of an open device.
pub fn read_superblock(file: &DeviceFile) -> Result<Superblock> {
    let mut page = AlignedBuf::zeroed(PAGE_SIZE);
    file.file().read_exact_at(&mut page, 0)?;
    Superblock::decode(&page, file.len())
        .map_err(|e| EngineError::Io(std::io::Error::other(format!("{}: {e}", file.path().display()))))
}

/// The superblock of the device or data file at `path` (an error when it does not open, or
/// holds none).
pub fn superblock_of(path: &Path) -> Result<Superblock> {
    read_superblock(&DeviceFile::open(path)?)
}

/// The superblock of device `d` of a media.
pub fn superblock_at(media: &dyn Media, d: usize) -> Result<Superblock> {
    let dev = media.sync_device();
    let at = edgeblob_io::volume::at(d, 0);
    let (res, page) = futures::executor::block_on(dev.read(AlignedBuf::zeroed(PAGE_SIZE), at));
    res?;
    Superblock::decode(&page, media.len(d))
        .map_err(|e| EngineError::Io(std::io::Error::other(format!("{}: {e}", media.name(d)))))
}

/// A node's devices opened from the paths of its configuration, in the node's order (each
/// device's superblock says its place, so paths may be listed in any order, and a renamed
/// `/dev` entry changes nothing), with the superblock of each.
///
/// A device that cannot be opened or whose superblock is damaged is lost: it keeps a place, and
/// the others open, as long as one device can say what the node is. Devices of two nodes, or a
/// count that is not the node's, are an error: nothing is guessed.
pub fn open_devices(paths: &[PathBuf]) -> Result<(FileMedia, Vec<Result<Superblock, DeviceLost>>)> {
    let mut found: Vec<(PathBuf, Arc<DeviceFile>, Superblock)> = Vec::new();
    let mut failed: Vec<(PathBuf, String)> = Vec::new();
    for p in paths {
        let opened = DeviceFile::open(p).map_err(EngineError::from).and_then(|f| {
            let sb = read_superblock(&f)?;
            Ok((Arc::new(f), sb))
        });
        match opened {
            Ok((f, sb)) => found.push((p.clone(), f, sb)),
            Err(e) => failed.push((p.clone(), e.to_string())),
        }
    }
    let Some((_, _, first)) = found.first() else {
        let (p, e) = failed.into_iter().next().unwrap_or_else(|| (PathBuf::new(), "no device configured".into()));
        let msg = if e.contains(&p.display().to_string()) { e } else { format!("{}: {e}", p.display()) };
        return Err(EngineError::Io(std::io::Error::other(msg)));
    };
    let (uuid, count) = (first.uuid, first.devices());
    if count != paths.len() {
        return Err(EngineError::Io(std::io::Error::other(format!(
            "the node was formatted on {count} device(s) but {} are configured",
            paths.len()
        ))));
    }
    let mut slots: Vec<Option<(PathBuf, Arc<DeviceFile>, Superblock)>> = vec![None; count];
    for (p, f, sb) in found {
        if sb.uuid != uuid {
            return Err(EngineError::Io(std::io::Error::other(format!(
                "{} belongs to another node (uuid {}) than {} (uuid {})",
                p.display(),
                uuid::Uuid::from_bytes(sb.uuid),
                paths[0].display(),
                uuid::Uuid::from_bytes(uuid)
            ))));
        }
        let i = sb.index();
        if let Some((other, _, _)) = &slots[i] {
            return Err(EngineError::Io(std::io::Error::other(format!(
                "{} and {} both say they are device {i} of the node",
                other.display(),
                p.display()
            ))));
        }
        slots[i] = Some((p, f, sb));
    }
    // The lost take the places left, in the order listed (their own superblocks cannot say).
    let mut failed = failed.into_iter();
    let mut members = Vec::with_capacity(count);
    let mut sbs = Vec::with_capacity(count);
    for (index, slot) in slots.into_iter().enumerate() {
        match slot {
            Some((_, f, sb)) => {
                members.push(Member::Present(f));
                sbs.push(Ok(sb));
            }
            None => {
                let (p, reason) = failed.next().unwrap_or_default();
                let lost = DeviceLost { index, name: p.display().to_string(), reason };
                members.push(Member::Lost(lost.clone()));
                sbs.push(Err(lost));
            }
        }
    }
    Ok((FileMedia::of(members), sbs))
}

/// Whether any of a node's device paths exists (else the node is new and formatted at start).
pub fn any_exists(paths: &[PathBuf]) -> bool {
    paths.iter().any(|p| p.exists())
}

/// The name a device is formatted under until every device of the node is formatted.
pub fn formatting_name(path: &Path) -> PathBuf {
    beside(path, ".formatting")
}

/// The file beside `path` whose name is `path`'s with `suffix` appended (not an extension
/// replaced: `a.1` and `a.2` keep apart).
pub fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
