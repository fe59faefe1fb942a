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

impl BlockDevice for Counted {
    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn read(&self, buf: AlignedBuf, offset: u64) -> IoFuture<(std::io::Result<()>, AlignedBuf)> {
        let len = buf.len() as u64;
        let held = InFlight::start(&self.stats);
        let fut = self.inner.read(buf, offset);
        Box::pin(async move {
            let (r, buf) = fut.await;
            let s = &held.0;
            s.reads.fetch_add(1, Relaxed);
            match &r {
                Ok(()) => s.read_bytes.fetch_add(len, Relaxed),
                Err(_) => s.errors.fetch_add(1, Relaxed),
            };
            (r, buf)
        })
    }

    fn write(&self, buf: AlignedBuf, offset: u64) -> IoFuture<(std::io::Result<()>, AlignedBuf)> {
        let len = buf.len() as u64;
        let held = InFlight::start(&self.stats);
        let fut = self.inner.write(buf, offset);
        Box::pin(async move {
            let (r, buf) = fut.await;
            let s = &held.0;
            s.writes.fetch_add(1, Relaxed);
            match &r {
                Ok(()) => s.written_bytes.fetch_add(len, Relaxed),
                Err(_) => s.errors.fetch_add(1, Relaxed),
            };
            (r, buf)
        })
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
