//! What the node needs from the host, checked at start: io_uring, locked memory for registered
//! buffers, open files, O_DIRECT on the data device. Each finding says what is missing, what the
//! node does without it, and how to fix it. The node runs without any of them (pread/pwrite,
//! plain buffers, fewer connections, buffered I/O), only slower or smaller; with
//! `preflight = "strict"` it refuses to start instead.

use std::fmt;
use std::path::Path;

use crate::config::Config;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: &'static str,
    /// What was found, and (when short) what the node does about it.
    pub detail: String,
    /// How to fix it; None when nothing is missing.
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(&self) -> bool {
        self.fix.is_none()
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fix {
            None => write!(f, "ok       {:<9} {}", self.check, self.detail),
            Some(fix) => write!(f, "MISSING  {:<9} {}; fix: {fix}", self.check, self.detail),
        }
    }
}

/// Every check, against the host (`proc_root` is where `/proc` is: `/` but in tests).
pub fn run(config: &Config, proc_root: &Path) -> Vec<Finding> {
    let shards = config.engine.shards.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut all = vec![
        io_uring(proc_root),
        memlock(config.engine.registered_buffer_bytes, shards, edgeblob_io::sys::memlock_limit()),
        nofile(config, shards, edgeblob_io::sys::nofile_limit()),
    ];
    all.extend(config.engine.device_paths().iter().map(|p| o_direct(p)));
    all
}

/// `kernel.io_uring_disabled` (Linux 6.6 and later): 0 on, 1 for root and one group only, 2 off.
/// Then a ring is set up for real: seccomp filters (container runtimes) refuse it too.
pub fn io_uring(proc_root: &Path) -> Finding {
    let check = "io_uring";
    let sysctl = std::fs::read_to_string(proc_root.join("proc/sys/kernel/io_uring_disabled"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let fallback = "the node falls back to pread/pwrite, one system call and one thread wait per I/O";
    let enable = "sysctl -w kernel.io_uring_disabled=0, and keep it in /etc/sysctl.d/";
    if sysctl == 2 {
        return Finding {
            check,
            detail: format!("io_uring is disabled (kernel.io_uring_disabled = 2): {fallback}"),
            fix: Some(enable.into()),
        };
    }
    match edgeblob_io::uring::Ring::new(8, 8) {
        Ok(_) => Finding { check, detail: format!("available (kernel.io_uring_disabled = {sysctl})"), fix: None },
        Err(e) if sysctl == 1 => Finding {
            check,
            detail: format!("io_uring is limited to root and kernel.io_uring_group (kernel.io_uring_disabled = 1) and refused this user ({e}): {fallback}"),
            fix: Some(format!("add the node's user to the group kernel.io_uring_group names, or {enable}")),
        },
        Err(e) => Finding {
            check,
            detail: format!("io_uring cannot be set up ({e}): {fallback}"),
            fix: Some("allow io_uring_setup, io_uring_enter and io_uring_register (a container's seccomp profile refuses them by default)".into()),
        },
    }
}

/// Registered buffers pin memory against RLIMIT_MEMLOCK; the engine takes at most half the limit
/// for them (the rest is the kernel's and other users').
pub fn memlock(per_shard: usize, shards: usize, limit: usize) -> Finding {
    let check = "memlock";
    let want = per_shard.saturating_mul(shards).saturating_mul(2);
    if per_shard == 0 {
        return Finding { check, detail: "no registered buffers configured".into(), fix: None };
    }
    if limit >= want {
        return Finding {
            check,
            detail: format!("RLIMIT_MEMLOCK {} covers the registered buffers", size(limit)),
            fix: None,
        };
    }
    let got = (limit / 2 / shards.max(1)).min(per_shard);
    Finding {
        check,
        detail: format!(
            "RLIMIT_MEMLOCK is {}; registered buffers of {} a shard over {shards} shards want {} (twice what they pin): each shard registers {} and does the rest of its I/O from plain buffers, pinned per operation",
            size(limit),
            size(per_shard),
            size(want),
            size(got)
        ),
        fix: Some(format!(
            "raise the locked-memory limit to {} or more (systemd: LimitMEMLOCK={}; a shell: ulimit -l {}; /etc/security/limits.conf: memlock), or set engine.registered_buffer_bytes = 0",
            size(want),
            want,
            want.div_ceil(1024)
        )),
    }
}

/// The open-file limit bounds connections (each a descriptor).
pub fn nofile(config: &Config, shards: usize, limit: u64) -> Finding {
    let check = "nofile";
    let per_shard = crate::http::connections_for(limit, shards);
    const WANT: u64 = 65_536;
    if limit >= WANT || config.max_connections_per_shard.is_some() {
        return Finding {
            check,
            detail: format!("open-file limit {limit}: {per_shard} connections a shard"),
            fix: None,
        };
    }
    Finding {
        check,
        detail: format!(
            "open-file limit {limit}: at most {per_shard} connections a shard, past which new ones are closed"
        ),
        fix: Some(format!("raise it to {WANT} or more (systemd: LimitNOFILE=1048576; a shell: ulimit -n {WANT})")),
    }
}

/// O_DIRECT on the data file or device (or, before it exists, on a file in its folder).
pub fn o_direct(data: &Path) -> Finding {
    let check = "O_DIRECT";
    let probe = |path: &Path, create: bool| -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .write(create)
            .create_new(create)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .map(drop)
    };
    let (target, result) = if data.exists() {
        (data.to_path_buf(), probe(data, false))
    } else {
        let dir = data.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !dir.exists() {
            return Finding {
                check,
                detail: format!("{} does not exist yet (made at the first start)", dir.display()),
                fix: None,
            };
        }
        let tmp = dir.join(format!(".edgeblob-preflight-{}", std::process::id()));
        let r = probe(&tmp, true);
        let _ = std::fs::remove_file(&tmp);
        (dir.to_path_buf(), r)
    };
    direct_io_finding(&target, result)
}

/// What an attempt to open `target` with O_DIRECT says.
fn direct_io_finding(target: &Path, result: std::io::Result<()>) -> Finding {
    let check = "O_DIRECT";
    match result {
        Ok(()) => Finding { check, detail: format!("{} takes direct I/O", target.display()), fix: None },
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Finding {
            check,
            detail: format!(
                "the file system of {} refuses O_DIRECT (tmpfs, some overlays): the node uses buffered I/O, syncing every write, slower and doubling memory in the page cache",
                target.display()
            ),
            fix: Some("put the data on a raw NVMe device or a local ext4 or xfs file system".into()),
        },
        Err(e) => Finding {
            check,
            detail: format!("{} cannot be opened for direct I/O: {e}", target.display()),
            fix: Some("check the path and that the node's user may read and write it".into()),
        },
    }
}

fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_disabling_sysctl_is_named_with_its_fix() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("proc/sys/kernel")).unwrap();
        std::fs::write(root.path().join("proc/sys/kernel/io_uring_disabled"), "2\n").unwrap();
        let f = io_uring(root.path());
        assert!(!f.ok());
        assert!(f.detail.contains("kernel.io_uring_disabled = 2") && f.detail.contains("pread/pwrite"), "{f}");
        assert!(f.fix.unwrap().contains("sysctl -w kernel.io_uring_disabled=0"));
    }

    #[test]
    fn locked_memory_short_of_the_buffers_names_the_limit_to_raise() {
        let f = memlock(2 << 20, 4, 64 << 10);
        assert!(!f.ok());
        assert!(f.detail.contains("RLIMIT_MEMLOCK is 64 KiB") && f.detail.contains("want 16 MiB"), "{f}");
        assert!(f.detail.contains("registers 8 KiB"), "{f}");
        assert!(f.fix.as_deref().unwrap().contains("LimitMEMLOCK=16777216"), "{f}");
        assert!(memlock(2 << 20, 4, 16 << 20).ok());
        assert!(memlock(0, 4, 0).ok(), "nothing to register, nothing to lock");
    }

    #[test]
    fn a_file_system_that_refuses_direct_io_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = o_direct(&dir.path().join("later/d.dat"));
        assert!(f.ok(), "a folder not made yet is not a finding: {f}");
        // tmpfs took O_DIRECT from Linux 6.6 on; what older kernels and some overlays answer:
        let f = direct_io_finding(Path::new("/x"), Err(std::io::Error::from_raw_os_error(libc::EINVAL)));
        assert!(!f.ok() && f.detail.contains("refuses O_DIRECT"), "{f}");
        let f = direct_io_finding(Path::new("/x"), Err(std::io::Error::from_raw_os_error(libc::EACCES)));
        assert!(!f.ok() && f.fix.unwrap().contains("may read and write"));
    }
}
