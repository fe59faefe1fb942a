//! A shard's on-flash metadata index (format v2, issue 10): a redb database on segments of the
//! shard's own region ([`region`]). The write-ahead log stays the commit point; the index holds
//! what the log has made durable up to the LSN it records, so recovery replays only the log after
//! it. redb is synchronous: the index runs on a thread of its own beside its shard, never on the
//! shard's event loop (docs/architecture.md, "Metadata at scale").

pub mod region;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// The result of a device operation that completes when called. The index's devices
/// ([`region::SharedDevice`]) do their I/O inside the call (pread/pwrite, or a simulated disk),
/// so their futures are ready at the first poll; one that is not is a device this thread cannot
/// drive, which is a programming error.
pub(crate) fn blocking<T>(f: impl Future<Output = T>) -> T {
    match pin!(f).as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the index's device must complete its operations when called"),
    }
}
