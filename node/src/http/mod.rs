//! The Blob REST API over HTTP/1.1 on every shard: one SO_REUSEPORT listener per shard (the
//! kernel spreads connections), hyper serving each connection on the shard that accepted it.

mod auth;
mod batch;
mod blobs;
mod blocks;
mod body;
mod containers;
mod copy;
mod copy_source;
mod cors;
mod dispatch;
mod egress;
mod error;
mod linked_listing;
mod model;
pub mod read_through;
mod response;
mod service;
mod slots;
mod sniff;
mod stall;
pub mod stats;
mod tokens;

pub use copy_source::tls_client;
pub use slots::Slots;

use std::cell::Cell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use base64::Engine;
use edgeblob_engine::{Node, Shard};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::config::Config;
pub use egress::Egress;
use stall::Stall;

/// What every handler on a shard needs besides the shard.
pub struct HttpCtx {
    /// Account name -> decoded keys.
    pub accounts: HashMap<String, Vec<Vec<u8>>>,
    /// Requests this shard is running, bounded.
    pub slots: Slots,
    /// Connections this shard holds open, bounded.
    pub connections: Slots,
    /// Time for a request head, a TLS handshake, or an idle keep-alive connection.
    pub header_timeout: std::time::Duration,
    /// Time a request or response body may go without progress.
    pub body_timeout: std::time::Duration,
    /// Where copy sources may be fetched from.
    pub egress: Egress,
    pub next_request: Cell<u64>,
    /// This listener speaks TLS (a SAS with `spr=https` is accepted here only; Bearer tokens
    /// too).
    pub https: bool,
    /// Entra ID tokens, where configured.
    pub entra: Option<Arc<crate::entra::Entra>>,
    /// Tokens this shard validated, remembered while they hold.
    pub tokens: std::cell::RefCell<tokens::TokenCache>,
    /// Whether writes are taken (not while the node drains).
    pub lifecycle: Arc<crate::lifecycle::Lifecycle>,
    /// The node's request counters (this shard counts in its own slot).
    pub stats: Arc<stats::RequestStats>,
    /// Linked containers (`[[links]]`), node-wide.
    pub links: Arc<crate::link::Links>,
}

/// The addresses the node serves on, and what its listeners share with the admin listener.
pub struct Bound {
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub shared: Shared,
}

/// What the Blob API's listeners share with the admin listener.
#[derive(Clone, Default)]
pub struct Shared {
    /// Entra ID's keys and bindings (the admin listener reports them).
    pub entra: Option<Arc<crate::entra::Entra>>,
    /// Whether the node drains.
    pub lifecycle: Arc<crate::lifecycle::Lifecycle>,
    /// Request counters (the admin listener's /metrics).
    pub requests: Arc<stats::RequestStats>,
    /// Linked containers, their lake clients and counters.
    pub links: Arc<crate::link::Links>,
}

/// Starts the listeners (HTTP, and HTTPS when configured) on every shard of `node`.
pub fn serve(node: &Node, config: &Config) -> std::io::Result<Bound> {
    let tls = match &config.tls {
        Some(t) => Some((t.port, Arc::new(tls_acceptor(t)?))),
        None => None,
    };
    let shared = Shared {
        entra: crate::entra::Entra::start(config).map_err(std::io::Error::other)?,
        lifecycle: Arc::new(crate::lifecycle::Lifecycle::default()),
        requests: Arc::new(stats::RequestStats::new(node.shards())),
        links: Arc::new(crate::link::Links::new(&config.links).map_err(std::io::Error::other)?),
    };
    // A linked container is there from the start: a client may write to it before reading.
    if !shared.links.is_empty() && node.shared().read_only().is_none() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        for link in shared.links.iter() {
            let (account, container) = (&link.cfg.account, &link.cfg.container);
            match rt.block_on(node.create_container(account, container, Vec::new())) {
                Ok(_) | Err(edgeblob_engine::EngineError::ContainerAlreadyExists) => {}
                Err(e) => return Err(std::io::Error::other(format!("linked container {account}/{container}: {e}"))),
            }
        }
    }
    crate::link_upload::start(node.peers().clone(), node.shards(), shared.links.clone())?;
    // Without some of its devices the node serves the others read-only: writes are sent away
    // before their bodies are read, and readiness says why.
    if let Some(why) = node.shared().read_only() {
        shared.lifecycle.begin("degraded", why.to_string());
    }
    let http = serve_on(node, config, config.port, None, &shared)?;
    let https = match tls {
        Some((port, acceptor)) => Some(serve_on(node, config, port, Some(acceptor), &shared)?),
        None => None,
    };
    Ok(Bound { http, https, shared })
}

fn tls_acceptor(t: &crate::config::TlsConfig) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&t.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| std::io::Error::other(format!("{}: {e}", t.cert.display())))?;
    let key =
        PrivateKeyDer::from_pem_file(&t.key).map_err(|e| std::io::Error::other(format!("{}: {e}", t.key.display())))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut cfg = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(std::io::Error::other)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

fn serve_on(
    node: &Node,
    config: &Config,
    port: u16,
    tls: Option<Arc<tokio_rustls::TlsAcceptor>>,
    shared: &Shared,
) -> std::io::Result<SocketAddr> {
    let listen = config.listen_address();
    let addr: SocketAddr = format!("{listen}:{port}")
        .parse()
        .map_err(|e| std::io::Error::other(format!("listen address {listen}:{port}: {e}")))?;
    let mut accounts = HashMap::new();
    for a in &config.accounts {
        let keys = a
            .keys
            .iter()
            .map(|k| base64::engine::general_purpose::STANDARD.decode(k).map_err(std::io::Error::other))
            .collect::<Result<Vec<_>, _>>()?;
        accounts.insert(a.name.clone(), keys);
    }
    let mut bound = addr;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    for i in 0..node.shards() {
        let listener = bind(bound)?;
        // Port 0: every shard must share the port the first one got.
        bound = listener.local_addr()?;
        let accounts = accounts.clone();
        let max = config.max_requests_per_shard;
        let max_connections = max_connections_per_shard(config, node.shards());
        let header_timeout = std::time::Duration::from_secs(config.header_timeout_secs.max(1));
        let body_timeout = std::time::Duration::from_secs(config.body_timeout_secs.max(1));
        let egress = config.egress().map_err(std::io::Error::other)?;
        let tls = tls.clone();
        let entra = shared.entra.clone();
        let lifecycle = shared.lifecycle.clone();
        let stats = shared.requests.clone();
        let links = shared.links.clone();
        rt.block_on(node.on(i, move |shard| async move {
            let https = tls.is_some();
            let ctx = Rc::new(HttpCtx {
                accounts,
                slots: Slots::new(max),
                connections: Slots::new(max_connections),
                header_timeout,
                body_timeout,
                egress,
                next_request: Cell::new(0),
                https,
                entra,
                tokens: Default::default(),
                lifecycle,
                stats,
                links,
            });
            match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => {
                    tokio::task::spawn_local(accept_loop(shard, ctx, l, tls));
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }))
        .map_err(std::io::Error::other)??;
    }
    tracing::info!(%bound, shards = node.shards(), tls = tls.is_some(), "serving the Blob API");
    Ok(bound)
}

/// A non-blocking `SO_REUSEPORT` listener: every shard binds its own on the same port and the
/// kernel spreads connections over them. Public for the benchmark's static server, which must
/// accept connections exactly as the node does to be its ceiling.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    // azcopy keeps 20-32 connections busy and opens them in bursts.
    socket.listen(4096)?;
    Ok(socket.into())
}

/// The per-connection service: every request goes to the handler with this connection's
/// record of metadata header names.
fn service(
    shard: Rc<Shard>,
    ctx: Rc<HttpCtx>,
    peer: SocketAddr,
    names: sniff::Names,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<body::RespBody>,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<http::Response<body::RespBody>, Infallible>>,
> {
    service_fn(move |req| {
        let (shard, ctx, names) = (shard.clone(), ctx.clone(), names.clone());
        async move {
            let mut resp = dispatch::handle(shard, ctx, req, peer, &names).await;
            if let Some(response::MetaCase(stored)) = resp.extensions_mut().remove::<response::MetaCase>() {
                names.borrow_mut().restore_next(stored);
            }
            Ok::<_, Infallible>(resp)
        }
    })
}

/// The connection bound of a shard: as configured, else what the open-file limit allows, less a
/// reserve (data files, copy sources, logs), shared by the shards.
fn max_connections_per_shard(config: &Config, shards: usize) -> usize {
    config.max_connections_per_shard.unwrap_or_else(|| connections_for(edgeblob_io::sys::nofile_limit(), shards))
}

/// What an open-file limit allows each of `shards` shards, less the reserve.
pub fn connections_for(nofile: u64, shards: usize) -> usize {
    let files = nofile.min(usize::MAX as u64) as usize;
    (files.saturating_sub(256) / shards.max(1)).max(16)
}

/// A warning at most once a second, with how many were suppressed meanwhile: a flood of failed
/// accepts or refused connections must not become a flood of log lines.
struct RateLimited {
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl RateLimited {
    fn new() -> RateLimited {
        RateLimited { last: None, suppressed: 0 }
    }

    /// Whether to log now; if so, how many were suppressed since the last line.
    fn allow(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < std::time::Duration::from_secs(1)) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

async fn accept_loop(
    shard: Rc<Shard>,
    ctx: Rc<HttpCtx>,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<tokio_rustls::TlsAcceptor>>,
) {
    let (mut accept_failed, mut refused) = (RateLimited::new(), RateLimited::new());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                if let Some(suppressed) = accept_failed.allow() {
                    tracing::warn!(shard = shard.index, %e, suppressed, "accept failed");
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        // Past the bound the connection is closed at once: its descriptor is back at once, and
        // the client sees a reset it retries, not a hang.
        let Some(held) = ctx.connections.take() else {
            if let Some(suppressed) = refused.allow() {
                tracing::warn!(
                    shard = shard.index,
                    open = ctx.connections.in_use(),
                    suppressed,
                    "connection refused: too many open"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (shard, ctx, tls) = (shard.clone(), ctx.clone(), tls.clone());
        tokio::task::spawn_local(async move {
            let _held = held;
            let mut conn = http1::Builder::new();
            // The head of every request (and the idle time before it) is bounded: no slowloris,
            // no idle connection kept for ever.
            conn.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(ctx.header_timeout);
            let res = match tls {
                None => {
                    let (io, names) = sniff::Sniff::new(Stall::new(stream, ctx.body_timeout));
                    conn.serve_connection(TokioIo::new(io), service(shard, ctx, peer, names)).await
                }
                Some(acceptor) => match tokio::time::timeout(ctx.header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => {
                        let (io, names) = sniff::Sniff::new(Stall::new(s, ctx.body_timeout));
                        conn.serve_connection(TokioIo::new(io), service(shard, ctx, peer, names)).await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
            };
            if let Err(e) = res {
                tracing::debug!(%peer, %e, "connection ended");
            }
        });
    }
}
