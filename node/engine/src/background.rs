//! The tasks a shard runs beside its requests: the delivery of reference changes, the key-filter
//! build and purges, the warm-up, the tier's uploads and epochs, the expiry sweep. tokio ends a
//! task that panics and says so only on stderr (the default hook), so one of these would stop
//! with nothing in the log and nothing in the metrics while the node went on serving without it.
//! A panic here is a broken invariant: it is logged as an error, counted by task
//! (`edgeblob_background_panics_total`), and whatever depends on the task is told.

use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Mutex;

use super::shard::Shard;

/// Panics of background tasks, by task, node-wide. Every task started has an entry (0 until it
/// panics), so that a metric series exists before anything goes wrong.
#[derive(Debug, Default)]
pub struct Panics(Mutex<BTreeMap<&'static str, u64>>);

impl Panics {
    fn add(&self, task: &'static str, n: u64) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(task).or_insert(0) += n;
        }
    }

    /// Each task started, and how many times one of its kind panicked.
    pub fn by_task(&self) -> Vec<(&'static str, u64)> {
        self.0.lock().map(|m| m.iter().map(|(k, v)| (*k, *v)).collect()).unwrap_or_default()
    }
}

/// Spawns `task` on this shard, watched: if it panics, `on_panic` runs after it is logged and
/// counted.
pub fn spawn(
    s: &Rc<Shard>,
    task: &'static str,
    fut: impl Future<Output = ()> + 'static,
    on_panic: impl FnOnce() + 'static,
) {
    s.node.background.add(task, 0);
    let (node, shard) = (s.node.clone(), s.index);
    watch(fut, move || {
        node.background.add(task, 1);
        tracing::error!(shard, task, "a background task panicked and has stopped");
        on_panic();
    });
}

/// Spawns `fut` on the current `LocalSet`, and `on_panic` if it panics.
fn watch(fut: impl Future<Output = ()> + 'static, on_panic: impl FnOnce() + 'static) {
    let handle = tokio::task::spawn_local(fut);
    tokio::task::spawn_local(async move {
        if handle.await.is_err_and(|e| e.is_panic()) {
            on_panic();
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::cell::Cell;

    #[tokio::test]
    async fn a_task_that_panics_is_told_and_one_that_ends_is_not() {
        let local = tokio::task::LocalSet::new();
        let told = Rc::new(Cell::new(0));
        local
            .run_until(async {
                let t = told.clone();
                watch(async { panic!("a broken invariant (this test's)") }, move || t.set(t.get() + 1));
                let t = told.clone();
                watch(async {}, move || t.set(t.get() + 10));
                for _ in 0..10 {
                    tokio::task::yield_now().await;
                }
            })
            .await;
        assert_eq!(told.get(), 1);
        let panics = Panics::default();
        panics.add("deliver-refs", 0);
        panics.add("purge", 0);
        panics.add("purge", 1);
        assert_eq!(panics.by_task(), [("deliver-refs", 0), ("purge", 1)]);
    }
}
