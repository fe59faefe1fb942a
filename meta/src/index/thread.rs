//! The threads beside a shard that own its index. redb's calls may wait for the device, so the
//! shard's event loop never makes them: it sends a job here and awaits the answer. Reads and
//! flushes run on threads of their own: a flush is a long write transaction, and redb lets reads
//! see the last committed state meanwhile, so a point read never waits behind a flush.

use std::future::Future;
use std::sync::{mpsc, Arc, Mutex};
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
    walks: Option<mpsc::Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

/// Reader threads per shard. A cold point read waits on the device for each level of the tree
/// it misses; with one reader, the reads of concurrent requests queued behind each other (a cold
/// HEAD's p99 was 4.6 ms at 16 in flight on two shards), while the device serves several at once.
/// Eight, not four: at 10 million blobs the p99 was 1.8 and 2.3 ms with eight, 2.2 and 2.8 with
/// four (performance.md), and a listing's parts take as many readers as there are. redb's
/// readers share its cache and see the last commit each.
pub(crate) const READERS: usize = 8;

/// Starts `threads` threads named `name-i` that take jobs from one queue, each running one at a
/// time (with one thread, in the order sent).
fn workers(
    name: &str,
    threads: usize,
    index: &Arc<Index>,
) -> std::io::Result<(mpsc::Sender<Job>, Vec<JoinHandle<()>>)> {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let (rx, index) = (rx.clone(), index.clone());
        handles.push(std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || loop {
            // The lock is held only to take the next job, never while running it.
            let job = match rx.lock() {
                Ok(rx) => rx.recv(),
                Err(_) => return,
            };
            match job {
                Ok(job) => job(&index),
                Err(_) => return,
            }
        })?);
    }
    Ok((tx, handles))
}

impl IndexThread {
    /// Starts the readers and the writer of `index`, named after `name`. Flushes run in the
    /// order sent; reads run side by side.
    pub fn spawn(name: String, index: Index) -> std::io::Result<IndexThread> {
        let index = Arc::new(index);
        let (reads, mut threads) = workers(&format!("{name}-r"), READERS, &index)?;
        let (writes, w) = workers(&format!("{name}-w"), 1, &index)?;
        threads.extend(w);
        let (walks, w) = workers(&format!("{name}-s"), 1, &index)?;
        threads.extend(w);
        Ok(IndexThread { reads: Some(reads), writes: Some(writes), walks: Some(walks), threads })
    }

    /// Runs `f` (a read) on a reader thread; resolves with its result.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Index) -> T + Send + 'static,
    ) -> impl Future<Output = Result<T, Stopped>> + 'static {
        send(self.reads.as_ref(), f)
    }

    /// Runs `f` (a page of a walk over a whole table, as the key-filter build after a start) on
    /// a thread of its own: a walk of millions of keys would otherwise hold a reader for minutes
    /// and the point reads of requests would queue behind its pages.
    pub fn walk<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Index) -> T + Send + 'static,
    ) -> impl Future<Output = Result<T, Stopped>> + 'static {
        send(self.walks.as_ref(), f)
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
        self.walks = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
