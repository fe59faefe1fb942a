//! Opening the thing that backs a device: a preallocated file or a raw block device, with
//! `O_DIRECT` so that the page cache neither doubles memory nor hides write ordering.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// An open device, shared by all shards (each reaches it through its own ring).
#[derive(Debug)]
pub struct DeviceFile {
    file: File,
    path: PathBuf,
    len: u64,
    direct: bool,
}

impl DeviceFile {
    /// Opens an existing device or data file. Takes an exclusive advisory lock so that two
    /// processes never drive the same device.
    pub fn open(path: &Path) -> io::Result<DeviceFile> {
        let (file, direct) = open_direct(path, false)?;
        lock_exclusive(&file, path)?;
        let meta = file.metadata()?;
        let len = if meta.file_type().is_block_device() { block_device_len(&file)? } else { meta.len() };
        Ok(DeviceFile { file, path: path.to_owned(), len, direct })
    }

    /// Creates a data file of `len` bytes with its space reserved up front (fallocate), so a
    /// write can never fail for lack of space in the file system later.
    pub fn create(path: &Path, len: u64) -> io::Result<DeviceFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let (file, direct) = open_direct(path, true)?;
        lock_exclusive(&file, path)?;
        // SAFETY: plain syscall on an fd we own.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len as libc::off_t) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EOPNOTSUPP) {
                // Out of space (or quota): fallocate may have kept what it reserved before it
                // failed, so the file goes, and a node never starts on space it does not have.
                drop(file);
                let _ = std::fs::remove_file(path);
                return Err(io::Error::new(
                    err.kind(),
                    format!("{}: cannot reserve {len} bytes: {err}", path.display()),
                ));
            }
            // A file system without fallocate (tmpfs on old kernels, some FUSE): sparse it is.
            tracing::warn!(path = %path.display(), %err, "fallocate not supported; extending sparsely");
            file.set_len(len)?;
        }
        file.sync_all()?;
        Ok(DeviceFile { file, path: path.to_owned(), len, direct })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the device is opened with `O_DIRECT` (false only on file systems that refuse it).
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

fn open_direct(path: &Path, create: bool) -> io::Result<(File, bool)> {
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(create);
    match opts.clone().custom_flags(libc::O_DIRECT).open(path) {
        Ok(f) => Ok((f, true)),
        // tmpfs and some overlay file systems refuse O_DIRECT: still correct (every write is
        // followed by fdatasync before it is acknowledged), only slower and cache-polluting.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            tracing::warn!(path = %path.display(), "file system refuses O_DIRECT; using buffered I/O");
            Ok((opts.open(path)?, false))
        }
        Err(e) => Err(io::Error::new(e.kind(), format!("open {}: {e}", path.display()))),
    }
}

/// How long to wait for the lock. A process killed with I/O in flight keeps its files open
/// until the kernel has torn its io_uring down, which can take a moment after it is gone.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn lock_exclusive(file: &File, path: &Path) -> io::Result<()> {
    let start = std::time::Instant::now();
    let mut warned = false;
    loop {
        // SAFETY: plain syscall on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(err);
        }
        if start.elapsed() > LOCK_WAIT {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is in use by another process (flock)", path.display()),
            ));
        }
        if !warned {
            tracing::warn!(path = %path.display(), "device is locked; waiting for its previous user to release it");
            warned = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn block_device_len(file: &File) -> io::Result<u64> {
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    let mut len: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64 as _, &mut len as *mut u64) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_file_that_cannot_be_reserved_is_an_error_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev");
        // Past every file system's largest file: fallocate refuses (EFBIG) before reserving.
        let Err(err) = DeviceFile::create(&path, i64::MAX as u64) else { panic!("no file system holds 8 EiB") };
        assert!(err.to_string().contains("cannot reserve"), "{err}");
        assert!(!path.exists(), "the half-made file is removed");
        let ok = DeviceFile::create(&path, 1 << 20).unwrap();
        assert_eq!(ok.len(), 1 << 20);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
    }
}
