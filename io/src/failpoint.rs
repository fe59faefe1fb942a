//! Named crash points for the crash tests: where `EDGEBLOB_CRASH_AT` names a point, the process
//! kills itself there with SIGKILL, as a power cut or the OOM killer would, with nothing
//! flushed or cleaned up. Points sit only on rare paths (an operator's command, not a request),
//! so the lookup costs nothing that matters; unset, nothing happens.

/// The environment variable that names the point to die at.
pub const CRASH_AT: &str = "EDGEBLOB_CRASH_AT";

/// Dies here if `EDGEBLOB_CRASH_AT` names `point`.
pub fn crash_point(point: &str) {
    if std::env::var(CRASH_AT).is_ok_and(|p| p == point) {
        tracing::error!(point, "crash point reached: killing this process");
        let pid = std::process::id() as libc::pid_t;
        // SAFETY: a plain syscall; SIGKILL to ourselves does not return.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}
