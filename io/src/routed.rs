//! A node's devices behind one [`BlockDevice`] in node offsets (`crate::volume`): each operation
//! goes to the device its offset names. A device that is lost (missing, unreadable, or another
//! node's) stays in its place and fails every operation with a [`DeviceLost`] error, so what the
//! other devices hold is still served.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::buf::AlignedBuf;
use crate::device::{BlockDevice, IoFuture};
use crate::volume::{at, split};

/// Why a device of the node cannot be used; the error of every operation on it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("data device {index} ({name}) is unavailable: {reason}")]
pub struct DeviceLost {
    pub index: usize,
    pub name: String,
    pub reason: String,
}

impl DeviceLost {
    pub fn error(&self) -> io::Error {
        io::Error::new(io::ErrorKind::NotConnected, self.clone())
    }

    /// The lost device an I/O error reports, if that is what it is.
    pub fn of(e: &io::Error) -> Option<&DeviceLost> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<DeviceLost>())
    }
}

/// One place in the node: a device, or why there is none.
pub enum Member<D> {
    Present(D),
    Lost(DeviceLost),
}

struct Slot<D> {
    member: Member<D>,
    /// Written since its last flush: a flush syncs only those (a shard writes to its own device;
    /// its commits must not wait on the others).
    dirty: Arc<AtomicBool>,
}

pub struct Routed<D> {
    slots: Vec<Slot<D>>,
}

impl<D: BlockDevice> Routed<D> {
    pub fn new(members: Vec<Member<D>>) -> Routed<D> {
        Routed { slots: members.into_iter().map(|member| Slot { member, dirty: Arc::default() }).collect() }
    }

    fn route(&self, offset: u64) -> Result<(&Slot<D>, &D, u64), io::Error> {
        let (d, local) = split(offset);
        let Some(slot) = self.slots.get(d) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("offset {offset:#x} names no device")));
        };
        match &slot.member {
            Member::Present(dev) => Ok((slot, dev, local)),
            Member::Lost(lost) => Err(lost.error()),
        }
    }

    fn first(&self) -> Option<&D> {
        self.slots.iter().find_map(|s| match &s.member {
            Member::Present(d) => Some(d),
            Member::Lost(_) => None,
        })
    }
}

impl<D: BlockDevice> BlockDevice for Routed<D> {
    fn len(&self) -> u64 {
        let last = self.slots.len().saturating_sub(1);
        let len = match self.slots.last().map(|s| &s.member) {
            Some(Member::Present(d)) => d.len(),
            _ => 0,
        };
        at(last, len)
    }

    fn read(&self, buf: AlignedBuf, offset: u64) -> IoFuture<(io::Result<()>, AlignedBuf)> {
        match self.route(offset) {
            Ok((_, dev, local)) => dev.read(buf, local),
            Err(e) => Box::pin(std::future::ready((Err(e), buf))),
        }
    }

    fn write(&self, buf: AlignedBuf, offset: u64) -> IoFuture<(io::Result<()>, AlignedBuf)> {
        match self.route(offset) {
            Ok((slot, dev, local)) => {
                let fut = dev.write(buf, local);
                // Marked at completion: a flush covers the writes completed before it.
                let dirty = slot.dirty.clone();
                Box::pin(async move {
                    let out = fut.await;
                    dirty.store(true, Ordering::SeqCst);
                    out
                })
            }
            Err(e) => Box::pin(std::future::ready((Err(e), buf))),
        }
    }

    fn flush(&self) -> IoFuture<io::Result<()>> {
        let mut flushes = Vec::new();
        for slot in &self.slots {
            if let Member::Present(dev) = &slot.member {
                if slot.dirty.swap(false, Ordering::SeqCst) {
                    flushes.push(dev.flush());
                }
            }
        }
        Box::pin(async move {
            let mut first_err = None;
            for r in futures::future::join_all(flushes).await {
                if let Err(e) = r {
                    first_err.get_or_insert(e);
                }
            }
            first_err.map_or(Ok(()), Err)
        })
    }

    fn describe(&self) -> String {
        let lost = self.slots.iter().filter(|s| matches!(s.member, Member::Lost(_))).count();
        let base = self.first().map_or_else(|| "no device".to_owned(), |d| d.describe());
        format!("{base}, {} devices ({lost} lost)", self.slots.len())
    }

    fn uses_io_uring(&self) -> bool {
        self.first().is_some_and(|d| d.uses_io_uring())
    }

    fn registered_buffers(&self) -> bool {
        self.first().is_some_and(|d| d.registered_buffers())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::file::DeviceFile;
    use crate::sync_device::SyncDevice;
    use crate::PAGE_SIZE;

    fn page(byte: u8) -> AlignedBuf {
        let mut b = AlignedBuf::zeroed(PAGE_SIZE);
        b.fill(byte);
        b
    }

    #[test]
    fn each_offset_reaches_its_own_device_and_a_lost_one_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<Arc<DeviceFile>> =
            (0..2).map(|i| Arc::new(DeviceFile::create(&dir.path().join(format!("d{i}")), 1 << 20).unwrap())).collect();
        let lost = DeviceLost { index: 2, name: "/dev/nvme2n1".into(), reason: "not found".into() };
        let dev = Routed::new(vec![
            Member::Present(SyncDevice::new(files[0].clone())),
            Member::Present(SyncDevice::new(files[1].clone())),
            Member::Lost(lost.clone()),
        ]);
        futures::executor::block_on(async {
            dev.write(page(1), at(0, 8192)).await.0.unwrap();
            dev.write(page(2), at(1, 8192)).await.0.unwrap();
            dev.flush().await.unwrap();
            let (r, back) = dev.read(AlignedBuf::zeroed(PAGE_SIZE), at(1, 8192)).await;
            r.unwrap();
            assert!(back.iter().all(|&b| b == 2));
            let (r, back) = dev.read(AlignedBuf::zeroed(PAGE_SIZE), 8192).await;
            r.unwrap();
            assert!(back.iter().all(|&b| b == 1), "device 0 keeps its plain offsets");
            let (r, _) = dev.read(AlignedBuf::zeroed(PAGE_SIZE), at(2, 0)).await;
            let e = r.unwrap_err();
            assert_eq!(DeviceLost::of(&e).map(|l| l.index), Some(2));
            assert!(e.to_string().contains("data device 2 (/dev/nvme2n1) is unavailable: not found"), "{e}");
            assert!(dev.read(AlignedBuf::zeroed(PAGE_SIZE), at(3, 0)).await.0.is_err(), "no such device");
        });
        let mut raw = AlignedBuf::zeroed(PAGE_SIZE);
        std::os::unix::fs::FileExt::read_exact_at(files[1].file(), &mut raw, 8192).unwrap();
        assert!(raw.iter().all(|&b| b == 2), "written at the device's own offset");
    }

    #[test]
    fn a_flush_syncs_only_the_devices_written_since_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(DeviceFile::create(&dir.path().join("d0"), 1 << 20).unwrap());
        let stats: Vec<Arc<crate::counted::DeviceStats>> = (0..2).map(|_| Default::default()).collect();
        let member = |i: usize| {
            let inner: std::rc::Rc<dyn BlockDevice> = std::rc::Rc::new(SyncDevice::new(file.clone()));
            Member::Present(crate::counted::Counted::new(inner, stats[i].clone()))
        };
        let dev = Routed::new(vec![member(0), member(1)]);
        let flushes = |i: usize| stats[i].flushes.load(Ordering::SeqCst);
        futures::executor::block_on(async {
            dev.write(page(1), at(1, 0)).await.0.unwrap();
            dev.flush().await.unwrap();
            assert_eq!((flushes(0), flushes(1)), (0, 1));
            dev.flush().await.unwrap();
            assert_eq!((flushes(0), flushes(1)), (0, 1), "nothing written since");
        });
    }
}
