//! A connection whose client stops reading our answer: a write that stays pending for longer
//! than the progress timeout fails, so hyper ends the connection and drops the request's future
//! (its slot, its read of the blob, which holds the blob's space from reuse). Without this a
//! client that never reads a download holds all of those for ever.
//!
//! Only writes are timed here. A read may rightly wait long: while a copy fetches its source,
//! the client has nothing to send. Request bodies are timed piece by piece (`body::pieces`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

pub struct Stall<T> {
    inner: T,
    limit: Duration,
    /// Set while a write is pending: when it must have made progress.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<T> Stall<T> {
    pub fn new(inner: T, limit: Duration) -> Stall<T> {
        Stall { inner, limit, deadline: None }
    }

    /// Pending writes: is the deadline past? Registers the waker with the timer otherwise.
    fn overdue(&mut self, cx: &mut Context<'_>) -> bool {
        let limit = self.limit;
        let deadline = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        deadline.as_mut().poll(cx).is_ready()
    }

    fn timed<R>(&mut self, cx: &mut Context<'_>, res: Poll<std::io::Result<R>>) -> Poll<std::io::Result<R>> {
        match res {
            Poll::Pending if self.overdue(cx) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client read nothing for {} s", self.limit.as_secs()),
            ))),
            Poll::Pending => Poll::Pending,
            ready => {
                self.deadline = None;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Stall<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Stall<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.timed(cx, res)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.timed(cx, res)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let res = Pin::new(&mut self.inner).poll_flush(cx);
        self.timed(cx, res)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let res = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.timed(cx, res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_reads_fails_after_the_limit_and_progress_resets_it() {
        // A pipe with room for 8 bytes: the peer reads nothing, so the ninth byte waits.
        let (client, _peer) = tokio::io::duplex(8);
        let mut s = Stall::new(client, Duration::from_secs(5));
        s.write_all(b"12345678").await.unwrap();
        let started = tokio::time::Instant::now();
        let err = s.write_all(b"9").await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed().as_secs(), 5);
        // A reader that keeps up, however slowly, never trips it.
        let (client, mut peer2) = tokio::io::duplex(8);
        let mut s = Stall::new(client, Duration::from_secs(5));
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 4];
            let mut got = 0;
            while got < 64 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                got += tokio::io::AsyncReadExt::read(&mut peer2, &mut buf).await.unwrap();
            }
        });
        s.write_all(&[7u8; 64]).await.unwrap();
        reader.await.unwrap();
    }
}
