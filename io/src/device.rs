//! The device interface every backend implements. A backend is per shard (it is driven by that
//! shard's thread only), so futures need not be `Send`. Buffers are moved into an operation and
//! handed back with its result: the kernel may write into them until completion, so no one else
//! may hold them meanwhile.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use crate::buf::AlignedBuf;

pub type IoFuture<T> = Pin<Box<dyn Future<Output = T>>>;

pub trait BlockDevice {
    /// Bytes addressable on the device.
    fn len(&self) -> u64;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads `buf.len()` bytes (rounded up to a page) at `offset` (page-aligned) into `buf`.
    fn read(&self, buf: AlignedBuf, offset: u64) -> IoFuture<(io::Result<()>, AlignedBuf)>;

    /// Writes `buf.len()` bytes (rounded up to a page) from `buf` at `offset` (page-aligned).
    /// Completion means the device has the data, not that it survives power loss: see `flush`.
    fn write(&self, buf: AlignedBuf, offset: u64) -> IoFuture<(io::Result<()>, AlignedBuf)>;

    /// Makes every completed write durable (fdatasync: the device's volatile cache and, for a
    /// file, the file system's extent metadata).
    fn flush(&self) -> IoFuture<io::Result<()>>;

    /// Short description for logs ("io_uring, registered buffers", "pread/pwrite").
    fn describe(&self) -> String;

    /// Whether its I/O goes through io_uring.
    fn uses_io_uring(&self) -> bool {
        false
    }

    /// Whether its I/O goes through buffers registered with the kernel.
    fn registered_buffers(&self) -> bool {
        false
    }
}

/// Rounds an I/O length to what `O_DIRECT` accepts.
pub(crate) fn io_len(buf: &AlignedBuf) -> usize {
    crate::buf::round_up(buf.len(), crate::buf::PAGE_SIZE).min(buf.capacity())
}

pub(crate) fn check_aligned(offset: u64, buf: &AlignedBuf) -> io::Result<()> {
    if !offset.is_multiple_of(crate::buf::PAGE_SIZE as u64) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("offset {offset} is not page-aligned")));
    }
    debug_assert_eq!(buf.as_ptr() as usize % crate::buf::PAGE_SIZE, 0);
    Ok(())
}

/// A shared device is a device (a node's devices are routed over shared members).
macro_rules! shared_device {
    ($ptr:ident) => {
        impl<T: BlockDevice + ?Sized> BlockDevice for $ptr<T> {
            fn len(&self) -> u64 {
                (**self).len()
            }

            fn read(&self, buf: AlignedBuf, offset: u64) -> IoFuture<(io::Result<()>, AlignedBuf)> {
                (**self).read(buf, offset)
            }

            fn write(&self, buf: AlignedBuf, offset: u64) -> IoFuture<(io::Result<()>, AlignedBuf)> {
                (**self).write(buf, offset)
            }

            fn flush(&self) -> IoFuture<io::Result<()>> {
                (**self).flush()
            }

            fn describe(&self) -> String {
                (**self).describe()
            }

            fn uses_io_uring(&self) -> bool {
                (**self).uses_io_uring()
            }

            fn registered_buffers(&self) -> bool {
                (**self).registered_buffers()
            }
        }
    };
}

shared_device!(Rc);
shared_device!(Arc);
