//! A device that counts what passes through it, for the node's metrics: operations, bytes,
//! errors and the operations in flight (how deep the shard's queue runs). One set of counters
//! per shard, written only by that shard's thread (relaxed atomics, so a scrape from another
//! thread reads them without a lock), on a cache line of its own.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::buf::AlignedBuf;
use crate::device::{BlockDevice, IoFuture};

#[derive(Debug, Default)]
#[repr(align(128))]
pub struct DeviceStats {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub flushes: AtomicU64,
    pub read_bytes: AtomicU64,
    pub written_bytes: AtomicU64,
    pub errors: AtomicU64,
    pub in_flight: AtomicU64,
    /// Whether the shard's I/O goes through io_uring, and through registered buffers.
    pub io_uring: AtomicBool,
    pub registered: AtomicBool,
}

pub struct Counted {
    inner: Rc<dyn BlockDevice>,
    stats: std::sync::Arc<DeviceStats>,
}

impl Counted {
    pub fn new(inner: Rc<dyn BlockDevice>, stats: std::sync::Arc<DeviceStats>) -> Counted {
        stats.io_uring.store(inner.uses_io_uring(), Relaxed);
        stats.registered.store(inner.registered_buffers(), Relaxed);
        Counted { inner, stats }
    }
}

/// Counts one operation in flight until dropped (a dropped future still leaves the queue).
struct InFlight(std::sync::Arc<DeviceStats>);

impl InFlight {
    fn start(stats: &std::sync::Arc<DeviceStats>) -> InFlight {
        stats.in_flight.fetch_add(1, Relaxed);
        InFlight(stats.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A transfer counted when it completes: one operation, and its bytes or an error.
fn counted(
    held: InFlight,
    fut: IoFuture<(std::io::Result<()>, AlignedBuf)>,
    len: u64,
    which: fn(&DeviceStats) -> (&AtomicU64, &AtomicU64),
) -> IoFuture<(std::io::Result<()>, AlignedBuf)> {
    Box::pin(async move {
        let (r, buf) = fut.await;
        let (ops, bytes) = which(&held.0);
        ops.fetch_add(1, Relaxed);
        match &r {
            Ok(()) => bytes.fetch_add(len, Relaxed),
            Err(_) => held.0.errors.fetch_add(1, Relaxed),
        };
        (r, buf)
    })
}

impl BlockDevice for Counted {
    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn read(&self, buf: AlignedBuf, offset: u64) -> IoFuture<(std::io::Result<()>, AlignedBuf)> {
        let len = buf.len() as u64;
        counted(InFlight::start(&self.stats), self.inner.read(buf, offset), len, |s| (&s.reads, &s.read_bytes))
    }

    fn write(&self, buf: AlignedBuf, offset: u64) -> IoFuture<(std::io::Result<()>, AlignedBuf)> {
        let len = buf.len() as u64;
        counted(InFlight::start(&self.stats), self.inner.write(buf, offset), len, |s| (&s.writes, &s.written_bytes))
    }

    fn flush(&self) -> IoFuture<std::io::Result<()>> {
        let held = InFlight::start(&self.stats);
        let fut = self.inner.flush();
        Box::pin(async move {
            let r = fut.await;
            held.0.flushes.fetch_add(1, Relaxed);
            if r.is_err() {
                held.0.errors.fetch_add(1, Relaxed);
            }
            r
        })
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn uses_io_uring(&self) -> bool {
        self.inner.uses_io_uring()
    }

    fn registered_buffers(&self) -> bool {
        self.inner.registered_buffers()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::file::DeviceFile;
    use crate::sync_device::SyncDevice;
    use crate::PAGE_SIZE;

    #[test]
    fn operations_bytes_errors_and_the_queue_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::sync::Arc::new(DeviceFile::create(&dir.path().join("dev"), 1 << 20).unwrap());
        let stats = std::sync::Arc::new(DeviceStats::default());
        let dev = Counted::new(Rc::new(SyncDevice::new(file)), stats.clone());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (r, _) = dev.write(AlignedBuf::zeroed(PAGE_SIZE), 0).await;
            r.unwrap();
            let pending = dev.read(AlignedBuf::zeroed(PAGE_SIZE), 0);
            assert_eq!(stats.in_flight.load(Relaxed), 1, "in flight from the call until its end");
            pending.await.0.unwrap();
            dev.flush().await.unwrap();
            let (r, _) = dev.read(AlignedBuf::zeroed(PAGE_SIZE), 7).await;
            assert!(r.is_err(), "an unaligned offset fails");
        });
        let s = &stats;
        assert_eq!((s.writes.load(Relaxed), s.written_bytes.load(Relaxed)), (1, PAGE_SIZE as u64));
        assert_eq!(
            (s.reads.load(Relaxed), s.read_bytes.load(Relaxed)),
            (2, PAGE_SIZE as u64),
            "a failed read counts, its bytes do not"
        );
        assert_eq!((s.flushes.load(Relaxed), s.errors.load(Relaxed), s.in_flight.load(Relaxed)), (1, 1, 0));
        assert!(!s.io_uring.load(Relaxed) && !s.registered.load(Relaxed), "pread/pwrite");
    }
}
