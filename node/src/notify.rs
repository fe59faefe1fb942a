//! systemd's readiness protocol (`Type=notify`): `READY=1` once the node serves, `STOPPING=1`
//! when it begins to stop, and, under `WatchdogSec=`, `WATCHDOG=1` only while every shard's
//! event loop answers (a stuck shard lets systemd restart the node). Without `NOTIFY_SOCKET`
//! (not started by systemd) nothing is sent.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use edgeblob_engine::Node;

/// Sends `state` (newline-separated `KEY=VALUE` lines) to systemd; false when not under systemd
/// or the socket refused it.
pub fn notify(state: &str) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return false;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket: systemd writes its leading NUL as '@'.
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name).and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    sent.is_ok()
}

/// Pings systemd's watchdog at half its interval while every shard answers a no-op job in time.
pub struct Watchdog {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Watchdog {
    /// Starts when systemd asked for a watchdog (`WATCHDOG_USEC`, for this process).
    pub fn start(node: Arc<Node>) -> Option<Watchdog> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        if let Some(pid) = std::env::var("WATCHDOG_PID").ok().and_then(|p| p.parse::<u32>().ok()) {
            if pid != std::process::id() {
                return None;
            }
        }
        let every = Duration::from_micros(usec / 2).max(Duration::from_millis(10));
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                    return;
                };
                loop {
                    let started = std::time::Instant::now();
                    let alive = rt.block_on(async {
                        let pings = (0..node.shards()).map(|i| node.on(i, |_| async {}));
                        tokio::time::timeout(every, futures::future::join_all(pings))
                            .await
                            .is_ok_and(|r| r.iter().all(|p| p.is_ok()))
                    });
                    if alive {
                        notify("WATCHDOG=1");
                    } else {
                        tracing::error!("a shard did not answer within {every:?}: not feeding systemd's watchdog");
                    }
                    match stopped.recv_timeout(every.saturating_sub(started.elapsed())) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                }
            })
            .ok()?;
        Some(Watchdog { stop, thread })
    }

    /// Stops it (and lets go of the node).
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}
