//! A small HTTP/1.1 server for the tests' stand-ins (Key Vault, the identity endpoint, a
//! tenant's key set): a thread of its own, a connection task each, every request answered by
//! one function; over TLS where an acceptor is given.

use std::future::Future;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

pub type Answer = hyper::Response<Full<Bytes>>;

/// Serves `listener` (non-blocking) until the process ends.
pub fn spawn<F, Fut>(listener: std::net::TcpListener, tls: Option<tokio_rustls::TlsAcceptor>, answer: F)
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Answer> + Send + 'static,
{
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (answer, tls) = (answer.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let answer = answer.clone();
                        async move { Ok::<_, std::convert::Infallible>(answer(req).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        Some(acceptor) => match acceptor.accept(tcp).await {
                            Ok(s) => conn.serve_connection(TokioIo::new(s), svc).await,
                            Err(_) => return,
                        },
                        None => conn.serve_connection(TokioIo::new(tcp), svc).await,
                    };
                });
            }
        });
    });
}

/// A JSON answer with `status`.
pub fn json(status: u16, body: String) -> Answer {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}
