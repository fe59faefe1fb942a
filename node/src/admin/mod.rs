//! The admin listener (default 127.0.0.1:9100), apart from the Blob API: Prometheus `/metrics`,
//! `/health/live` and `/health/ready`, and the tier's operations while the node serves
//! (`edgeblob-admin tier ... --admin`). It runs on a thread of its own, so that a scrape or a
//! long drain takes nothing from a shard's loop but the work itself.
//!
//! Reads (GET) are open to whoever reaches the listener; operations (POST) need the configured
//! bearer token, or, with none configured, a loopback peer. One operation runs at a time; the
//! listener holds a bounded number of connections, each with a time limit on its head.

pub mod metrics;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use edgeblob_engine::Node;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;

use crate::config::Config;

/// Connections the listener holds at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 32;

/// A running admin listener; stopped (and its thread joined) by [`Admin::stop`].
pub struct Admin {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Admin {
    /// Stops the listener and waits for its thread: operations in flight are dropped where they
    /// stand (each leaves the node consistent: they are made of the engine's own steps).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Starts the admin listener of `config` for `node` (None when it is disabled).
pub fn serve(node: Arc<Node>, config: &Config, shared: crate::http::Shared) -> std::io::Result<Option<Admin>> {
    if !config.admin.enabled {
        return Ok(None);
    }
    let addr: SocketAddr = config.admin.address().parse().map_err(std::io::Error::other)?;
    let listener = match std::net::TcpListener::bind(addr) {
        Ok(l) => l,
        // The default port taken (another node on this host, a node_exporter): the Blob API is
        // the product, the admin listener its aid.
        Err(e) if config.admin.listen.is_none() && e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(%addr, "the admin listener's default port is taken: no metrics, health or operations (set [admin] listen, or --admin-listen)");
            return Ok(None);
        }
        Err(e) => {
            return Err(std::io::Error::new(e.kind(), format!("admin listener {addr}: {e} (set [admin] listen)")))
        }
    };
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let state = Arc::new(routes::State::new(node, config, shared));
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new().name("edgeblob-admin".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return tracing::error!(%e, "the admin listener could not start its runtime"),
        };
        rt.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => return tracing::error!(%e, "the admin listener could not start"),
            };
            tokio::select! {
                _ = accept_loop(listener, state) => {}
                _ = stopped => {}
            }
        });
    })?;
    tracing::info!(%bound, "serving metrics, health and operations");
    Ok(Some(Admin { addr: bound, stop: Some(stop), thread: Some(thread) }))
}

async fn accept_loop(listener: tokio::net::TcpListener, state: Arc<routes::State>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(held) = slots.clone().acquire_owned().await else { return };
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(%e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::task::spawn(async move {
            let _held = held;
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(routes::handle(&state, req, peer).await) }
            });
            let mut conn = http1::Builder::new();
            conn.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(std::time::Duration::from_secs(10));
            if let Err(e) = conn.serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!(%peer, %e, "admin connection ended");
            }
        });
    }
}
