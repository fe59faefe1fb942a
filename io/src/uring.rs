//! One io_uring ring per shard. Operations are pushed to the submission queue and submitted at
//! once; completions are reaped by a driver task woken through an eventfd registered with the
//! ring (so the shard's tokio reactor sleeps in epoll as usual), and also opportunistically when
//! a waiting future is polled.
//!
//! At most as many operations as the completion queue holds are in the kernel at once; further
//! ones wait in a backlog and are submitted as completions make room. So the completion queue
//! can never overflow (an overflowed completion sits in a kernel list that nothing here would
//! flush, and its operation would never finish).
//!
//! Ownership rule: the buffer of an operation lives in the ring's slot table until the kernel
//! completes it. A future dropped early only marks its slot abandoned; the buffer is freed when
//! the completion arrives, never while the kernel may still write into it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use io_uring::{opcode, squeue, types, IoUring};
use slab::Slab;
use tokio::io::unix::AsyncFd;

use crate::buf::{AlignedBuf, FixedPool};
use crate::device::{check_aligned, io_len, BlockDevice, IoFuture};
use crate::file::DeviceFile;

pub struct Ring {
    inner: RefCell<RingInner>,
    eventfd: OwnedFd,
    /// Wakes the submitter: entries are queued and wait for one `io_uring_enter`.
    submit_wanted: Rc<tokio::sync::Notify>,
}

struct RingInner {
    ring: IoUring,
    ops: Slab<Slot>,
    /// Operations handed to the kernel and not yet completed.
    in_kernel: usize,
    /// The most that may be in the kernel: the completion queue's size.
    limit: usize,
    /// Operations waiting for room, in order.
    backlog: VecDeque<squeue::Entry>,
}

struct Slot {
    state: SlotState,
    buf: Option<AlignedBuf>,
}

enum SlotState {
    Waiting(Option<Waker>),
    Done(i32),
    Abandoned,
}

impl Ring {
    /// A ring with `entries` submission entries and an eventfd for completions, keeping at most
    /// `depth` operations in the kernel (never more than it has completion slots; the rest wait
    /// in order). Fails where io_uring is disabled; the caller then falls back to the
    /// synchronous backend.
    pub fn new(entries: u32, depth: usize) -> io::Result<Rc<Ring>> {
        let ring = IoUring::new(entries)?;
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        let eventfd = unsafe { OwnedFd::from_raw_fd(fd) };
        ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        let limit = (ring.params().cq_entries() as usize).min(depth.max(1));
        let inner = RingInner { ring, ops: Slab::new(), in_kernel: 0, limit, backlog: VecDeque::new() };
        Ok(Rc::new(Ring { inner: RefCell::new(inner), eventfd, submit_wanted: Rc::new(tokio::sync::Notify::new()) }))
    }

    /// The most operations it keeps in the kernel at once.
    pub fn depth(&self) -> usize {
        self.inner.borrow().limit
    }

    /// Registers the pool's buffers so that reads and writes through them skip the per-I/O page
    /// pinning. Registration counts against RLIMIT_MEMLOCK; on failure the pool keeps working
    /// as plain memory.
    pub fn register_pool(&self, pool: &FixedPool) -> io::Result<()> {
        let iovecs = pool.iovecs();
        let inner = self.inner.borrow();
        // SAFETY: the iovecs point into the pool's single allocation, which the pool keeps alive
        // as long as any clone of it exists; the shard keeps the pool for the ring's lifetime.
        unsafe { inner.ring.submitter().register_buffers(&iovecs)? };
        pool.mark_registered();
        Ok(())
    }

    /// The task that submits queued entries and reaps completions. It must be spawned on the
    /// shard's `LocalSet` (nothing is submitted without it); it ends when the ring is dropped.
    ///
    /// Submission is batched: operations only queue their entries, and the submitter hands them
    /// to the kernel in one `io_uring_enter` when it next runs, after the tasks that were ready
    /// with it have queued theirs. One syscall (and one device doorbell) then serves a batch.
    pub fn driver(self: &Rc<Self>) -> impl Future<Output = ()> + 'static {
        let submitter = {
            let weak = Rc::downgrade(self);
            let wanted = self.submit_wanted.clone();
            async move {
                loop {
                    wanted.notified().await;
                    match weak.upgrade() {
                        Some(ring) => {
                            let _ = ring.inner.borrow_mut().submit_queued();
                        }
                        None => return,
                    }
                }
            }
        };
        let reaper = self.reaper();
        async move {
            tokio::join!(submitter, reaper);
        }
    }

    fn reaper(self: &Rc<Self>) -> impl Future<Output = ()> + 'static {
        let weak = Rc::downgrade(self);
        // The driver watches its own duplicate, so the descriptor stays open as long as the
        // watch does, whatever happens to the ring.
        let own = self.eventfd.try_clone();
        async move {
            let watched = own.and_then(|fd| {
                // SAFETY: an OwnedFd stays open and refers to the same eventfd for the whole life
                // of the AsyncFd that owns it.
                unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.map_err(|e| e.into())
            });
            let Ok(afd) = watched else {
                tracing::error!("cannot watch the io_uring eventfd");
                return;
            };
            let fd = afd.get_ref().as_raw_fd();
            loop {
                let Ok(mut guard) = afd.readable().await else { return };
                let mut counter = [0u8; 8];
                // SAFETY: reading 8 bytes from an eventfd into an 8-byte buffer.
                let n = unsafe { libc::read(fd, counter.as_mut_ptr().cast(), 8) };
                if n < 0 {
                    guard.clear_ready();
                }
                match weak.upgrade() {
                    Some(ring) => ring.reap(),
                    None => return,
                }
            }
        }
    }

    fn reap(&self) {
        let mut inner = self.inner.borrow_mut();
        let RingInner { ring, ops, in_kernel, .. } = &mut *inner;
        for cqe in ring.completion() {
            *in_kernel -= 1;
            let key = cqe.user_data() as usize;
            let Some(slot) = ops.get_mut(key) else { continue };
            match std::mem::replace(&mut slot.state, SlotState::Done(cqe.result())) {
                SlotState::Waiting(waker) => {
                    if let Some(w) = waker {
                        w.wake();
                    }
                }
                SlotState::Abandoned => {
                    ops.remove(key);
                }
                SlotState::Done(_) => unreachable!("two completions for one operation"),
            }
        }
        if inner.push_backlog() {
            self.submit_wanted.notify_one();
        }
    }

    /// Queues one operation. `entry` must refer only to memory owned by `buf` (or none).
    fn submit(self: &Rc<Self>, entry: squeue::Entry, buf: Option<AlignedBuf>) -> Op {
        let mut inner = self.inner.borrow_mut();
        let key = inner.ops.insert(Slot { state: SlotState::Waiting(None), buf });
        // The entry's memory (the buffer) is held in the slot until completion.
        inner.backlog.push_back(entry.user_data(key as u64));
        if inner.push_backlog() {
            self.submit_wanted.notify_one();
        }
        Op { ring: self.clone(), key: Some(key) }
    }

    /// Operations in flight, for assertions and tests.
    pub fn in_flight(&self) -> usize {
        self.inner.borrow().ops.len()
    }
}

impl RingInner {
    /// Queues waiting operations for the kernel while there is room for their completions;
    /// returns whether any were queued (and so need a submit).
    fn push_backlog(&mut self) -> bool {
        let mut pushed = false;
        while self.in_kernel < self.limit {
            let Some(entry) = self.backlog.pop_front() else { break };
            // SAFETY: the entry refers only to memory held in its slot until completion.
            if unsafe { self.ring.submission().push(&entry) }.is_err() {
                // Submission queue full: submit what is queued, then retry this one.
                self.backlog.push_front(entry);
                if self.submit_queued().is_err() {
                    break;
                }
                continue;
            }
            self.in_kernel += 1;
            debug_assert!(self.in_kernel <= self.limit, "more operations in the kernel than completion slots");
            pushed = true;
        }
        pushed
    }

    fn submit_queued(&mut self) -> io::Result<usize> {
        loop {
            match self.ring.submit() {
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => {
                    // Entries stay queued and go with the next submit.
                    tracing::error!(%e, "io_uring submit failed");
                    return Err(e);
                }
                Ok(n) => return Ok(n),
            }
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Lets the submitter see the ring is gone and end.
        self.submit_wanted.notify_one();
    }
}

impl Drop for RingInner {
    fn drop(&mut self) {
        // Never submitted: nothing in the kernel refers to their buffers.
        self.backlog.clear();
        // Buffers of abandoned operations must outlive the kernel's use of them.
        while self.in_kernel > 0 {
            if self.ring.submit_and_wait(1).is_err() {
                break;
            }
            for cqe in self.ring.completion() {
                self.in_kernel -= 1;
                self.ops.try_remove(cqe.user_data() as usize);
            }
        }
    }
}

/// A queued operation; resolves to the kernel's result and the buffer.
struct Op {
    ring: Rc<Ring>,
    key: Option<usize>,
}

impl Future for Op {
    type Output = (i32, Option<AlignedBuf>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(key) = self.key else { unreachable!("polled after completion") };
        let ring = self.ring.clone();
        if matches!(ring.inner.borrow().ops[key].state, SlotState::Waiting(_)) {
            ring.reap();
        }
        let mut inner = ring.inner.borrow_mut();
        match &mut inner.ops[key].state {
            SlotState::Done(res) => {
                let res = *res;
                let slot = inner.ops.remove(key);
                drop(inner);
                self.key = None;
                Poll::Ready((res, slot.buf))
            }
            SlotState::Waiting(w) => {
                *w = Some(cx.waker().clone());
                Poll::Pending
            }
            SlotState::Abandoned => unreachable!("polled after drop"),
        }
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let mut inner = self.ring.inner.borrow_mut();
        if let Some(slot) = inner.ops.get_mut(key) {
            if matches!(slot.state, SlotState::Done(_)) {
                inner.ops.remove(key);
            } else {
                slot.state = SlotState::Abandoned;
            }
        }
    }
}

/// A device driven through a shard's ring.
pub struct UringDevice {
    ring: Rc<Ring>,
    file: Arc<DeviceFile>,
    registered: bool,
}

impl UringDevice {
    pub fn new(ring: Rc<Ring>, file: Arc<DeviceFile>, registered: bool) -> UringDevice {
        UringDevice { ring, file, registered }
    }

    fn transfer(&self, write: bool, buf: AlignedBuf, offset: u64) -> IoFuture<(io::Result<()>, AlignedBuf)> {
        let ring = self.ring.clone();
        let fd = types::Fd(self.file.raw_fd());
        Box::pin(async move {
            if let Err(e) = check_aligned(offset, &buf) {
                return (Err(e), buf);
            }
            let total = io_len(&buf);
            let mut buf = buf;
            let mut done = 0usize;
            while done < total {
                // SAFETY: the pointer stays valid: the buffer moves into the slot with the entry.
                let ptr = unsafe { buf.as_mut_ptr().add(done) };
                let len = (total - done) as u32;
                let at = offset + done as u64;
                let entry = match (write, buf.fixed_index()) {
                    (true, Some(i)) => opcode::WriteFixed::new(fd, ptr, len, i).offset(at).build(),
                    (true, None) => opcode::Write::new(fd, ptr, len).offset(at).build(),
                    (false, Some(i)) => opcode::ReadFixed::new(fd, ptr, len, i).offset(at).build(),
                    (false, None) => opcode::Read::new(fd, ptr, len).offset(at).build(),
                };
                let (res, back) = ring.submit(entry, Some(buf)).await;
                buf = back.expect("the ring returns the buffer it was given");
                if res < 0 {
                    return (Err(io::Error::from_raw_os_error(-res)), buf);
                }
                if res == 0 {
                    let e = io::Error::new(io::ErrorKind::UnexpectedEof, format!("I/O at {at} past the device end"));
                    return (Err(e), buf);
                }
                done += res as usize;
            }
            (Ok(()), buf)
        })
    }
}

impl BlockDevice for UringDevice {
    fn len(&self) -> u64 {
        self.file.len()
    }

    fn read(&self, buf: AlignedBuf, offset: u64) -> IoFuture<(io::Result<()>, AlignedBuf)> {
        self.transfer(false, buf, offset)
    }

    fn write(&self, buf: AlignedBuf, offset: u64) -> IoFuture<(io::Result<()>, AlignedBuf)> {
        self.transfer(true, buf, offset)
    }

    fn flush(&self) -> IoFuture<io::Result<()>> {
        let ring = self.ring.clone();
        let fd = types::Fd(self.file.raw_fd());
        Box::pin(async move {
            let entry = opcode::Fsync::new(fd).flags(types::FsyncFlags::DATASYNC).build();
            let (res, _) = ring.submit(entry, None).await;
            if res < 0 {
                Err(io::Error::from_raw_os_error(-res))
            } else {
                Ok(())
            }
        })
    }

    fn describe(&self) -> String {
        format!(
            "io_uring, {}, {} buffers",
            if self.file.is_direct() { "O_DIRECT" } else { "buffered" },
            if self.registered { "registered" } else { "plain" }
        )
    }

    fn uses_io_uring(&self) -> bool {
        true
    }

    fn registered_buffers(&self) -> bool {
        self.registered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::PAGE_SIZE;

    fn run<F: Future>(f: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        tokio::task::LocalSet::new().block_on(&rt, f)
    }

    #[test]
    fn write_read_flush_through_the_ring_with_and_without_registered_buffers() {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(DeviceFile::create(&dir.path().join("dev"), 1 << 20).unwrap());
        run(async move {
            let ring = Ring::new(32, usize::MAX).unwrap();
            tokio::task::spawn_local(ring.driver());
            let pool = FixedPool::new(4, 2 * PAGE_SIZE);
            let registered = ring.register_pool(&pool).is_ok();
            let dev = UringDevice::new(ring.clone(), file, registered);
            for (i, mut buf) in [pool.get(2 * PAGE_SIZE), AlignedBuf::zeroed(3 * PAGE_SIZE)].into_iter().enumerate() {
                buf.fill(i as u8 + 1);
                let at = (i * 16 * PAGE_SIZE) as u64;
                let (res, _) = dev.write(buf, at).await;
                res.unwrap();
                dev.flush().await.unwrap();
                let back = AlignedBuf::zeroed(2 * PAGE_SIZE);
                let (res, back) = dev.read(back, at).await;
                res.unwrap();
                assert!(back.iter().all(|&b| b == i as u8 + 1));
            }
            assert_eq!(ring.in_flight(), 0);
        });
    }

    #[test]
    fn many_concurrent_operations_complete() {
        many_concurrent_operations_complete_at(true);
        many_concurrent_operations_complete_at(false);
    }

    fn many_concurrent_operations_complete_at(deep: bool) {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(DeviceFile::create(&dir.path().join("dev"), 4 << 20).unwrap());
        run(async move {
            // Far more operations than completion slots: the backlog must carry them all through.
            // With a depth below the slots, no more than it are in the kernel (a debug assertion
            // at each submission) and still all complete.
            let ring = Ring::new(8, if deep { usize::MAX } else { 3 }).unwrap();
            assert_eq!(ring.depth(), if deep { 16 } else { 3 });
            tokio::task::spawn_local(ring.driver());
            let dev = Rc::new(UringDevice::new(ring.clone(), file, false));
            let mut tasks = Vec::new();
            for i in 0..1000u64 {
                let dev = dev.clone();
                tasks.push(tokio::task::spawn_local(async move {
                    let at = (i % 1024) * PAGE_SIZE as u64;
                    let mut b = AlignedBuf::zeroed(PAGE_SIZE);
                    b.fill(i as u8);
                    let (r, _) = dev.write(b, at).await;
                    r.unwrap();
                    let (r, b) = dev.read(AlignedBuf::zeroed(PAGE_SIZE), at).await;
                    r.unwrap();
                    assert!(b.iter().all(|&x| x == i as u8));
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
    }

    #[test]
    fn dropped_operation_keeps_its_buffer_until_completion() {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(DeviceFile::create(&dir.path().join("dev"), 1 << 20).unwrap());
        run(async move {
            let ring = Ring::new(8, usize::MAX).unwrap();
            tokio::task::spawn_local(ring.driver());
            let dev = UringDevice::new(ring.clone(), file, false);
            let fut = dev.read(AlignedBuf::zeroed(PAGE_SIZE), 0);
            // Start it, then drop it while (possibly) in flight.
            let mut fut = fut;
            let _ = futures_poll_once(&mut fut);
            drop(fut);
            while ring.in_flight() > 0 {
                tokio::task::yield_now().await;
            }
        });
    }

    fn futures_poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        Pin::new(f).poll(&mut cx)
    }

    #[test]
    fn reads_past_the_end_fail() {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(DeviceFile::create(&dir.path().join("dev"), 8192).unwrap());
        run(async move {
            let ring = Ring::new(8, usize::MAX).unwrap();
            tokio::task::spawn_local(ring.driver());
            let dev = UringDevice::new(ring, file, false);
            let (res, _) = dev.read(AlignedBuf::zeroed(PAGE_SIZE), 8192).await;
            assert!(res.is_err());
            let (res, _) = dev.read(AlignedBuf::zeroed(PAGE_SIZE), 100).await;
            assert!(res.is_err(), "unaligned offsets are refused");
        });
    }
}
