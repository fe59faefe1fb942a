//! The threads beside a shard that own its index. redb's calls may wait for the device, so the
//! shard's event loop never makes them: it sends a job here and awaits the answer. Reads and
//! flushes run on threads of their own: a flush is a long write transaction, and redb lets reads
//! see the last committed state meanwhile, so a point read never waits behind a flush.

use std::future::Future;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use super::db::Index;

type Job = Box<dyn FnOnce(&Index) + Send>;

/// The index threads went away (the index failed to open, or the node is stopping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the metadata index thread has stopped")]
pub struct Stopped;

pub struct IndexThread {
    reads: Option<mpsc::Sender<Job>>,
    writes: Option<mpsc::Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

fn worker(name: String, index: Arc<Index>) -> std::io::Result<(mpsc::Sender<Job>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel::<Job>();
    let thread = std::thread::Builder::new().name(name).spawn(move || {
        for job in rx {
            job(&index);
        }
    })?;
    Ok((tx, thread))
}

impl IndexThread {
    /// Starts the reader and the writer of `index`, named after `name`; each runs its jobs in
    /// the order sent.
    pub fn spawn(name: String, index: Index) -> std::io::Result<IndexThread> {
        let index = Arc::new(index);
        let (reads, r) = worker(format!("{name}-r"), index.clone())?;
        let (writes, w) = worker(format!("{name}-w"), index)?;
        Ok(IndexThread { reads: Some(reads), writes: Some(writes), threads: vec![r, w] })
    }

    /// Runs `f` (a read) on the reader thread; resolves with its result.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Index) -> T + Send + 'static,
    ) -> impl Future<Output = Result<T, Stopped>> + 'static {
        send(self.reads.as_ref(), f)
    }

    /// Runs `f` (a flush) on the writer thread, after the flushes sent before it.
    pub fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Index) -> T + Send + 'static,
    ) -> impl Future<Output = Result<T, Stopped>> + 'static {
        send(self.writes.as_ref(), f)
    }
}

fn send<T: Send + 'static>(
    to: Option<&mpsc::Sender<Job>>,
    f: impl FnOnce(&Index) -> T + Send + 'static,
) -> impl Future<Output = Result<T, Stopped>> + 'static {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sent = to.is_some_and(|jobs| {
        jobs.send(Box::new(move |ix: &Index| {
            // The asker may have gone (a client that disconnected): nothing to tell.
            let _ = tx.send(f(ix));
        }))
        .is_ok()
    });
    async move {
        if !sent {
            return Err(Stopped);
        }
        rx.await.map_err(|_| Stopped)
    }
}

impl Drop for IndexThread {
    /// Lets the jobs already sent finish (a flush in progress completes), then joins.
    fn drop(&mut self) {
        self.reads = None;
        self.writes = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
