//! The thread beside a shard that owns its index. redb's calls may wait for the device, so the
//! shard's event loop never makes them: it sends a job here and awaits the answer.

use std::future::Future;
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::db::Index;

type Job = Box<dyn FnOnce(&Index) + Send>;

/// The index thread went away (its index failed to open, or the node is stopping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the metadata index thread has stopped")]
pub struct Stopped;

pub struct IndexThread {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl IndexThread {
    /// Starts a thread named `name` that owns `index` and runs jobs in the order sent.
    pub fn spawn(name: String, index: Index) -> std::io::Result<IndexThread> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            for job in rx {
                job(&index);
            }
        })?;
        Ok(IndexThread { jobs: Some(tx), thread: Some(thread) })
    }

    /// Runs `f` on the index thread; resolves with its result.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Index) -> T + Send + 'static,
    ) -> impl Future<Output = Result<T, Stopped>> + 'static {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self.jobs.as_ref().is_some_and(|jobs| {
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
}

impl Drop for IndexThread {
    /// Lets the jobs already sent finish (a flush in progress completes), then joins.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
