//! A backend of plain `pread`/`pwrite`/`fdatasync`, for the admin tool and for hosts where
//! io_uring is unavailable (disabled by sysctl or a seccomp profile). Operations block the calling
//! thread; the returned futures are already complete.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::buf::AlignedBuf;
use crate::device::{check_aligned, io_len, BlockDevice, IoFuture};
use crate::file::DeviceFile;

pub struct SyncDevice {
    file: Arc<DeviceFile>,
}

impl SyncDevice {
    pub fn new(file: Arc<DeviceFile>) -> SyncDevice {
        SyncDevice { file }
    }
}

impl BlockDevice for SyncDevice {
    fn len(&self) -> u64 {
        self.file.len()
    }

    fn read(&self, mut buf: AlignedBuf, offset: u64) -> IoFuture<(io::Result<()>, AlignedBuf)> {
        let res = check_aligned(offset, &buf).and_then(|_| {
            let n = io_len(&buf);
            self.file.file().read_exact_at(&mut buf.full_mut()[..n], offset)
        });
        Box::pin(std::future::ready((res, buf)))
    }

    fn write(&self, mut buf: AlignedBuf, offset: u64) -> IoFuture<(io::Result<()>, AlignedBuf)> {
        let res = check_aligned(offset, &buf).and_then(|_| {
            let n = io_len(&buf);
            self.file.file().write_all_at(&buf.full_mut()[..n], offset)
        });
        Box::pin(std::future::ready((res, buf)))
    }

    fn flush(&self) -> IoFuture<io::Result<()>> {
        Box::pin(std::future::ready(self.file.file().sync_data()))
    }

    fn describe(&self) -> String {
        format!("pread/pwrite{}", if self.file.is_direct() { ", O_DIRECT" } else { ", buffered" })
    }
}
