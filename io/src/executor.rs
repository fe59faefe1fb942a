//! Shards: one OS thread per shard, pinned to a core, running a tokio current-thread runtime and a
//! `LocalSet`. A shard's state (`S`) lives on its thread only (`Rc`, `RefCell`), so nothing in it
//! needs a lock. Other threads reach a shard by sending it a job through its inbox; the job runs on
//! the shard's thread with its state.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{mpsc as std_mpsc, Arc};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

pub type Job<S> = Box<dyn FnOnce(&Rc<S>) + Send>;

enum Msg<S> {
    Job(Job<S>),
    Stop,
}

/// Handles to every shard's inbox. Cheap to clone; usable from any thread.
pub struct Peers<S> {
    inboxes: Arc<Vec<mpsc::UnboundedSender<Msg<S>>>>,
}

impl<S> Clone for Peers<S> {
    fn clone(&self) -> Self {
        Peers { inboxes: self.inboxes.clone() }
    }
}

/// The shard went away (the node is stopping).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("shard {0} has stopped")]
pub struct ShardGone(pub usize);

impl<S: 'static> Peers<S> {
    pub fn len(&self) -> usize {
        self.inboxes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inboxes.is_empty()
    }

    /// Runs `job` on `shard`'s thread; returns at once.
    pub fn post(&self, shard: usize, job: impl FnOnce(&Rc<S>) + Send + 'static) -> Result<(), ShardGone> {
        self.inboxes[shard].send(Msg::Job(Box::new(job))).map_err(|_| ShardGone(shard))
    }

    /// Runs the future made by `f` on `shard` and returns its output.
    pub fn call<R, F, Fut>(&self, shard: usize, f: F) -> impl Future<Output = Result<R, ShardGone>> + Send + 'static
    where
        R: Send + 'static,
        F: FnOnce(Rc<S>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let posted = self.post(shard, move |s| {
            let s = s.clone();
            tokio::task::spawn_local(async move {
                let _ = tx.send(f(s).await);
            });
        });
        async move {
            posted?;
            rx.await.map_err(|_| ShardGone(shard))
        }
    }

    /// Asks every shard to stop after the jobs already in its inbox.
    pub fn stop_all(&self) {
        for inbox in self.inboxes.iter() {
            let _ = inbox.send(Msg::Stop);
        }
    }
}

pub type InitFuture<S> = Pin<Box<dyn Future<Output = io::Result<Rc<S>>>>>;

/// Starts `count` shards. `init` runs on each shard's thread, inside its runtime, and builds the
/// shard's state (opening its ring, recovering its metadata). Returns once every shard has
/// finished `init`, or the first error.
pub fn spawn_shards<S, I>(
    count: usize,
    pin: bool,
    cores: Option<Vec<usize>>,
    init: I,
) -> io::Result<(Peers<S>, Vec<JoinHandle<()>>)>
where
    S: 'static,
    I: Fn(usize, Peers<S>) -> InitFuture<S> + Send + Sync + 'static,
{
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..count).map(|_| mpsc::unbounded_channel()).unzip();
    let peers = Peers { inboxes: Arc::new(senders) };
    // Named cores only where the process may run (a unit's CPUAffinity= may narrow them).
    let allowed = available_cpus();
    let cpus = match cores {
        Some(named) => named.into_iter().filter(|c| allowed.contains(c)).collect(),
        None => allowed,
    };
    let init = Arc::new(init);
    let (ready_tx, ready_rx) = std_mpsc::channel::<(usize, Result<(), String>)>();
    let mut threads = Vec::with_capacity(count);
    for (index, mut inbox) in receivers.into_iter().enumerate() {
        let peers = peers.clone();
        let init = init.clone();
        let ready = ready_tx.clone();
        let cpu = (pin && !cpus.is_empty()).then(|| cpus[index % cpus.len()]);
        let thread = std::thread::Builder::new().name(format!("shard-{index}")).spawn(move || {
            if let Some(cpu) = cpu {
                pin_to(cpu, index);
            }
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready.send((index, Err(e.to_string())));
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                let state = match init(index, peers).await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready.send((index, Err(e.to_string())));
                        return;
                    }
                };
                let _ = ready.send((index, Ok(())));
                drop(ready);
                while let Some(msg) = inbox.recv().await {
                    match msg {
                        Msg::Job(job) => job(&state),
                        Msg::Stop => break,
                    }
                }
            });
        })?;
        threads.push(thread);
    }
    drop(ready_tx);
    let mut pending = count;
    let mut first_err = None;
    while pending > 0 {
        match ready_rx.recv() {
            Ok((i, Err(e))) => {
                first_err.get_or_insert(io::Error::other(format!("shard {i}: {e}")));
                pending -= 1;
            }
            Ok((_, Ok(()))) => pending -= 1,
            Err(_) => break,
        }
    }
    if let Some(e) = first_err {
        peers.stop_all();
        for t in threads {
            let _ = t.join();
        }
        return Err(e);
    }
    Ok((peers, threads))
}

fn available_cpus() -> Vec<usize> {
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..nix::sched::CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false)).collect(),
        Err(_) => Vec::new(),
    }
}

fn pin_to(cpu: usize, shard: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        if let Err(e) = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set) {
            tracing::warn!(shard, cpu, %e, "could not pin shard to its core");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct Counter {
        index: usize,
        hits: Cell<u32>,
    }

    #[test]
    fn jobs_run_on_their_shard_with_its_state() {
        let (peers, threads) = spawn_shards::<Counter, _>(3, true, None, |index, _peers| {
            Box::pin(async move { Ok(Rc::new(Counter { index, hits: Cell::new(0) })) })
        })
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            for round in 1..=2u32 {
                for s in 0..3 {
                    let (index, hits) = peers
                        .call(s, |c: Rc<Counter>| async move {
                            c.hits.set(c.hits.get() + 1);
                            (c.index, c.hits.get())
                        })
                        .await
                        .unwrap();
                    assert_eq!((index, hits), (s, round));
                }
            }
        });
        peers.stop_all();
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn init_errors_are_reported() {
        let res = spawn_shards::<Counter, _>(2, false, None, |index, _| {
            Box::pin(async move {
                if index == 1 {
                    Err(io::Error::other("boom"))
                } else {
                    Ok(Rc::new(Counter { index, hits: Cell::new(0) }))
                }
            })
        });
        let err = res.err().expect("shard 1 fails");
        assert!(err.to_string().contains("shard 1: boom"), "{err}");
    }
}
