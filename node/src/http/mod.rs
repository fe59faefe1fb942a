//! The Blob REST API over HTTP/1.1 on every shard: one SO_REUSEPORT listener per shard (the
//! kernel spreads connections), hyper serving each connection on the shard that accepted it.

mod body;
mod copy;
mod handler;
mod response;

use std::cell::Cell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;

use base64::Engine;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::config::Config;
use crate::engine::{Node, Shard};

/// What every handler on a shard needs besides the shard.
pub struct HttpCtx {
    /// Account name -> decoded keys.
    pub accounts: HashMap<String, Vec<Vec<u8>>>,
    pub in_flight: Cell<usize>,
    pub max_in_flight: usize,
    pub next_request: Cell<u64>,
}

/// Starts a listener on every shard of `node`.
pub fn serve(node: &Node, config: &Config) -> std::io::Result<SocketAddr> {
    let addr: SocketAddr = format!("{}:{}", config.listen, config.port)
        .parse()
        .map_err(|e| std::io::Error::other(format!("listen address {}:{}: {e}", config.listen, config.port)))?;
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
        rt.block_on(node.on(i, move |shard| async move {
            let ctx =
                Rc::new(HttpCtx { accounts, in_flight: Cell::new(0), max_in_flight: max, next_request: Cell::new(0) });
            match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => {
                    tokio::task::spawn_local(accept_loop(shard, ctx, l));
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }))
        .map_err(std::io::Error::other)??;
    }
    tracing::info!(%bound, shards = node.shards(), "serving the Blob API");
    Ok(bound)
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    // azcopy keeps 20-32 connections busy and opens them in bursts.
    socket.listen(4096)?;
    Ok(socket.into())
}

async fn accept_loop(shard: Rc<Shard>, ctx: Rc<HttpCtx>, listener: tokio::net::TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(shard = shard.index, %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (shard, ctx) = (shard.clone(), ctx.clone());
        tokio::task::spawn_local(async move {
            let svc = service_fn(move |req| {
                let (shard, ctx) = (shard.clone(), ctx.clone());
                async move { Ok::<_, Infallible>(handler::handle(shard, ctx, req, peer).await) }
            });
            if let Err(e) = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!(%peer, %e, "connection ended");
            }
        });
    }
}
