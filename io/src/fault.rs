//! A simulated disk for tests that fails the way real disks do, which SIGKILL cannot show: it
//! loses writes not yet flushed, persists them in any order, tears a write at a sector boundary,
//! and answers EIO or ENOSPC on a chosen operation (as TigerBeetle's and redb's test storage
//! do). [`SimDisk::crash`] is a power cut at this instant: the image a restart would find.
//!
//! Model: a completed write is visible to reads at once but durable only after a completed
//! flush; until then it is *pending*. A flush makes every pending write durable (fdatasync on a
//! shared file flushes all of it, whichever shard asks). A failed flush leaves its writes pending:
//! after an fsync error nothing about them may be assumed. Writes land whole or, when torn, in
//! whole sectors: a sector is the unit a disk writes atomically.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::buf::AlignedBuf;
use crate::device::{check_aligned, io_len, BlockDevice, IoFuture};

/// The unit a disk writes atomically; a torn write ends on one of these boundaries.
pub const SECTOR: usize = 512;

/// An operation a fault can be armed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Flush,
}

/// What an armed fault answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// EIO: the medium failed.
    Io,
    /// ENOSPC: the file system had no room (a thin or sparse backing file).
    NoSpace,
}

/// How a power cut treats the writes still pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// Every pending write is lost.
    LoseUnflushed,
    /// A random subset of pending writes persists, applied in a random order (so an earlier
    /// write may land over a later one to the same place).
    Reorder { seed: u64 },
    /// Pending writes before `write` persist in order; `write` (an index into the pending list;
    /// past its end means the last) persists only up to `sectors` sectors; the rest are lost.
    Tear { write: usize, sectors: usize },
}

#[derive(Debug, Clone, Copy)]
struct Armed {
    op: Op,
    /// Fires on this operation of its kind (0-based, counted since the disk was made).
    nth: u64,
    failure: Failure,
}

struct Disk {
    durable: Vec<u8>,
    /// Completed, unflushed writes in completion order.
    pending: Vec<(u64, Vec<u8>)>,
    counts: [u64; 3],
    armed: Vec<Armed>,
    /// Power cuts armed on an operation: (kind, nth, how).
    cuts: Vec<(Op, u64, Crash)>,
    /// The images those cuts left, in the order they happened.
    cut_images: Vec<Vec<u8>>,
    /// Ranges gone bad: (kind, start, end, failure).
    bad: Vec<(Op, u64, u64, Failure)>,
}

/// A simulated disk; clones share it (one device per shard over one disk, as over one file).
#[derive(Clone)]
pub struct SimDisk {
    disk: Arc<Mutex<Disk>>,
}

impl SimDisk {
    /// A zeroed disk of `len` bytes (a multiple of a page).
    pub fn new(len: usize) -> SimDisk {
        SimDisk::from_image(vec![0; len])
    }

    /// A disk whose durable contents are `image`.
    pub fn from_image(image: Vec<u8>) -> SimDisk {
        debug_assert!(image.len().is_multiple_of(crate::buf::PAGE_SIZE));
        let disk = Disk {
            durable: image,
            pending: Vec::new(),
            counts: [0; 3],
            armed: Vec::new(),
            cuts: Vec::new(),
            cut_images: Vec::new(),
            bad: Vec::new(),
        };
        SimDisk { disk: Arc::new(Mutex::new(disk)) }
    }

    fn lock(&self) -> MutexGuard<'_, Disk> {
        // A test that panicked while holding the lock has failed already; its disk is still
        // worth reading.
        self.disk.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> u64 {
        self.lock().durable.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A device over this disk for one shard's thread.
    pub fn device(&self) -> FaultDevice {
        FaultDevice { disk: self.clone() }
    }

    /// Makes the `nth` operation of kind `op` from now on fail with `failure`.
    pub fn fail(&self, op: Op, nth: u64, failure: Failure) {
        let mut d = self.lock();
        let at = d.counts[op as usize] + nth;
        d.armed.push(Armed { op, nth: at, failure });
    }

    /// Makes every operation of kind `op` on bytes of `[offset, offset + len)` fail with
    /// `failure` from now on, until [`SimDisk::disarm`]: a stretch of the medium gone bad (one
    /// shard's log, while the others' work).
    pub fn fail_within(&self, op: Op, offset: u64, len: u64, failure: Failure) {
        debug_assert!(op != Op::Flush, "a flush covers no range");
        self.lock().bad.push((op, offset, offset + len, failure));
    }

    /// Operations of kind `op` done so far (faults included).
    pub fn count(&self, op: Op) -> u64 {
        self.lock().counts[op as usize]
    }

    /// Writes completed but not yet flushed.
    pub fn pending_writes(&self) -> usize {
        self.lock().pending.len()
    }

    /// The image a restart after a power cut now would find, as a new disk; this one goes on.
    pub fn crash(&self, how: Crash) -> SimDisk {
        SimDisk::from_image(self.lock().crash_image(how))
    }

    /// Cuts the power at the `nth` operation of kind `op` from now on: right after it completes
    /// for a write (before any flush), as it is issued for a flush or a read. The disk goes on;
    /// [`SimDisk::power_cuts`] returns what a restart would have found.
    pub fn cut_power(&self, op: Op, nth: u64, how: Crash) {
        let mut d = self.lock();
        let at = d.counts[op as usize] + nth;
        d.cuts.push((op, at, how));
    }

    /// Disarms every fault and power cut not yet fired.
    pub fn disarm(&self) {
        let mut d = self.lock();
        d.armed.clear();
        d.cuts.clear();
        d.bad.clear();
    }

    /// The images the armed power cuts left, as disks, oldest first.
    pub fn power_cuts(&self) -> Vec<SimDisk> {
        self.lock().cut_images.drain(..).map(SimDisk::from_image).collect()
    }

    /// The durable contents with every pending write applied: what the disk reads now.
    pub fn image(&self) -> Vec<u8> {
        let d = self.lock();
        let mut image = d.durable.clone();
        for (at, data) in &d.pending {
            apply(&mut image, *at, data);
        }
        image
    }

    /// Counts the operation and returns the failure armed on it, if any.
    fn begin(d: &mut Disk, op: Op) -> Option<Failure> {
        let n = d.counts[op as usize];
        d.counts[op as usize] += 1;
        let i = d.armed.iter().position(|a| a.op == op && a.nth == n)?;
        Some(d.armed.swap_remove(i).failure)
    }
}

impl Disk {
    fn crash_image(&self, how: Crash) -> Vec<u8> {
        let mut image = self.durable.clone();
        match how {
            Crash::LoseUnflushed => {}
            Crash::Reorder { seed } => {
                let mut rng = Rng(seed);
                let mut chosen: Vec<&(u64, Vec<u8>)> =
                    self.pending.iter().filter(|_| rng.next().is_multiple_of(2)).collect();
                // Fisher-Yates: the order writes reach the medium is any order.
                for i in (1..chosen.len()).rev() {
                    chosen.swap(i, (rng.next() % (i as u64 + 1)) as usize);
                }
                for (at, data) in chosen {
                    apply(&mut image, *at, data);
                }
            }
            Crash::Tear { write, sectors } => {
                if let Some(last) = self.pending.len().checked_sub(1) {
                    let write = write.min(last);
                    for (at, data) in &self.pending[..write] {
                        apply(&mut image, *at, data);
                    }
                    let (at, data) = &self.pending[write];
                    apply(&mut image, *at, &data[..(sectors * SECTOR).min(data.len())]);
                }
            }
        }
        image
    }

    /// Takes the image of every power cut armed on the operation just counted.
    fn cut_if_armed(&mut self, op: Op) {
        let n = self.counts[op as usize] - 1;
        while let Some(i) = self.cuts.iter().position(|c| c.0 == op && c.1 == n) {
            let (_, _, how) = self.cuts.swap_remove(i);
            let image = self.crash_image(how);
            self.cut_images.push(image);
        }
    }
}

fn apply(image: &mut [u8], at: u64, data: &[u8]) {
    let at = at as usize;
    image[at..at + data.len()].copy_from_slice(data);
}

fn error(f: Failure) -> io::Error {
    io::Error::from_raw_os_error(match f {
        Failure::Io => libc::EIO,
        Failure::NoSpace => libc::ENOSPC,
    })
}

fn out_of_range(offset: u64, n: usize, len: usize) -> Option<io::Error> {
    (offset as usize + n > len)
        .then(|| io::Error::new(io::ErrorKind::UnexpectedEof, format!("{n} bytes at {offset} pass the end ({len})")))
}

/// splitmix64: the crash's choices, reproducible from a seed (any seed, 0 included).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// One shard's device over a [`SimDisk`]. Operations complete at once.
pub struct FaultDevice {
    disk: SimDisk,
}

impl FaultDevice {
    /// Checks and counts a read or write: the disk, locked, and the bytes the operation covers.
    fn begin_io(&self, op: Op, offset: u64, buf: &AlignedBuf) -> io::Result<(MutexGuard<'_, Disk>, usize)> {
        check_aligned(offset, buf)?;
        let mut d = self.disk.lock();
        if let Some(f) = SimDisk::begin(&mut d, op) {
            return Err(error(f));
        }
        let n = io_len(buf);
        let end = offset + n as u64;
        if let Some((.., f)) = d.bad.iter().find(|(o, lo, hi, _)| *o == op && *lo < end && offset < *hi) {
            return Err(error(*f));
        }
        match out_of_range(offset, n, d.durable.len()) {
            Some(e) => Err(e),
            None => Ok((d, n)),
        }
    }
}

impl BlockDevice for FaultDevice {
    fn len(&self) -> u64 {
        self.disk.len()
    }

    fn read(&self, mut buf: AlignedBuf, offset: u64) -> IoFuture<(io::Result<()>, AlignedBuf)> {
        let res = self.begin_io(Op::Read, offset, &buf).map(|(mut d, n)| {
            d.cut_if_armed(Op::Read);
            let out = &mut buf.full_mut()[..n];
            out.copy_from_slice(&d.durable[offset as usize..offset as usize + n]);
            // Reads see completed writes, flushed or not, newest last.
            for (at, data) in &d.pending {
                let (lo, hi) = ((*at).max(offset), (at + data.len() as u64).min(offset + n as u64));
                if lo < hi {
                    out[(lo - offset) as usize..(hi - offset) as usize]
                        .copy_from_slice(&data[(lo - at) as usize..(hi - at) as usize]);
                }
            }
        });
        Box::pin(std::future::ready((res, buf)))
    }

    fn write(&self, mut buf: AlignedBuf, offset: u64) -> IoFuture<(io::Result<()>, AlignedBuf)> {
        let res = self.begin_io(Op::Write, offset, &buf).map(|(mut d, n)| {
            d.pending.push((offset, buf.full_mut()[..n].to_vec()));
            d.cut_if_armed(Op::Write);
        });
        Box::pin(std::future::ready((res, buf)))
    }

    fn flush(&self) -> IoFuture<io::Result<()>> {
        let mut d = self.disk.lock();
        let res = match SimDisk::begin(&mut d, Op::Flush) {
            Some(f) => Err(error(f)),
            None => {
                d.cut_if_armed(Op::Flush);
                let pending = std::mem::take(&mut d.pending);
                for (at, data) in pending {
                    apply(&mut d.durable, at, &data);
                }
                Ok(())
            }
        };
        Box::pin(std::future::ready(res))
    }

    fn describe(&self) -> String {
        "simulated disk with fault injection".into()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::buf::PAGE_SIZE;

    fn page(byte: u8) -> AlignedBuf {
        let mut b = AlignedBuf::zeroed(PAGE_SIZE);
        b.full_mut().fill(byte);
        b
    }

    /// The futures here are ready at once: poll once.
    fn run<T>(mut f: IoFuture<T>) -> T {
        let waker = std::task::Waker::noop();
        match f.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("a simulated operation did not complete at once"),
        }
    }

    fn read_at(dev: &FaultDevice, at: u64) -> Vec<u8> {
        let (res, mut buf) = run(dev.read(AlignedBuf::zeroed(PAGE_SIZE), at));
        res.unwrap();
        buf.full_mut()[..PAGE_SIZE].to_vec()
    }

    #[test]
    fn unflushed_writes_are_read_back_but_lost_in_a_crash() {
        let disk = SimDisk::new(4 * PAGE_SIZE);
        let dev = disk.device();
        run(dev.write(page(1), 0)).0.unwrap();
        run(dev.flush()).unwrap();
        run(dev.write(page(2), 0)).0.unwrap();
        assert_eq!(read_at(&dev, 0), vec![2; PAGE_SIZE], "reads see completed writes");
        let after = disk.crash(Crash::LoseUnflushed).device();
        assert_eq!(read_at(&after, 0), vec![1; PAGE_SIZE], "the flushed version survives, the other is lost");
    }

    #[test]
    fn a_torn_write_keeps_whole_sectors_of_the_new_data() {
        let disk = SimDisk::new(2 * PAGE_SIZE);
        run(disk.device().write(page(7), PAGE_SIZE as u64)).0.unwrap();
        let torn = read_at(&disk.crash(Crash::Tear { write: usize::MAX, sectors: 3 }).device(), PAGE_SIZE as u64);
        assert_eq!(&torn[..3 * SECTOR], &[7; 3 * SECTOR][..]);
        assert_eq!(&torn[3 * SECTOR..], &vec![0; PAGE_SIZE - 3 * SECTOR][..]);
    }

    #[test]
    fn reordered_writes_can_land_older_over_newer() {
        // Two writes to one page: some seeds keep neither, one, or both, in either order.
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let disk = SimDisk::new(PAGE_SIZE);
            let dev = disk.device();
            run(dev.write(page(1), 0)).0.unwrap();
            run(dev.write(page(2), 0)).0.unwrap();
            seen.insert(read_at(&disk.crash(Crash::Reorder { seed }).device(), 0)[0]);
        }
        assert_eq!(seen, [0, 1, 2].into_iter().collect(), "lost, older-last and newer-last all occur");
    }

    #[test]
    fn armed_faults_fail_their_operation_once() {
        let disk = SimDisk::new(2 * PAGE_SIZE);
        let dev = disk.device();
        disk.fail(Op::Write, 1, Failure::NoSpace);
        disk.fail(Op::Flush, 0, Failure::Io);
        run(dev.write(page(1), 0)).0.unwrap();
        let e = run(dev.write(page(2), 0)).0.unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(read_at(&dev, 0)[0], 1, "a failed write changes nothing");
        assert_eq!(run(dev.flush()).unwrap_err().raw_os_error(), Some(libc::EIO));
        assert_eq!(disk.pending_writes(), 1, "a failed flush makes nothing durable");
        run(dev.flush()).unwrap();
        assert_eq!((disk.pending_writes(), disk.count(Op::Write), disk.count(Op::Flush)), (0, 2, 2));
        let past_end = run(dev.read(AlignedBuf::zeroed(PAGE_SIZE), 2 * PAGE_SIZE as u64)).0;
        assert!(past_end.is_err(), "a read past the end is an error, not a panic");
    }

    #[test]
    fn a_bad_range_fails_what_touches_it_until_disarmed() {
        let disk = SimDisk::new(4 * PAGE_SIZE);
        let dev = disk.device();
        disk.fail_within(Op::Write, PAGE_SIZE as u64 + 512, 512, Failure::Io);
        run(dev.write(page(1), 0)).0.unwrap();
        for _ in 0..2 {
            let e = run(dev.write(page(2), PAGE_SIZE as u64)).0.unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EIO), "every write into the range, not one");
        }
        run(dev.write(page(3), 2 * PAGE_SIZE as u64)).0.unwrap();
        assert_eq!(read_at(&dev, PAGE_SIZE as u64)[0], 0, "a failed write changes nothing");
        assert_eq!(read_at(&dev, 2 * PAGE_SIZE as u64)[0], 3, "reads of the range, and writes beside it, work");
        disk.disarm();
        run(dev.write(page(2), PAGE_SIZE as u64)).0.unwrap();
        assert_eq!(read_at(&dev, PAGE_SIZE as u64)[0], 2);
    }

    #[test]
    fn a_power_cut_between_a_write_and_its_flush_keeps_the_flushed_state() {
        let disk = SimDisk::new(PAGE_SIZE);
        let dev = disk.device();
        disk.cut_power(Op::Write, 1, Crash::LoseUnflushed);
        disk.cut_power(Op::Flush, 1, Crash::Tear { write: 0, sectors: 1 });
        for byte in [1, 2] {
            run(dev.write(page(byte), 0)).0.unwrap();
            run(dev.flush()).unwrap();
        }
        let cuts = disk.power_cuts();
        assert_eq!(cuts.len(), 2);
        assert_eq!(read_at(&cuts[0].device(), 0)[0], 1, "cut after the second write: the first is durable");
        let torn = read_at(&cuts[1].device(), 0);
        assert_eq!((torn[0], torn[SECTOR]), (2, 1), "cut as the flush was issued: one sector of the new write");
        assert_eq!(read_at(&dev, 0)[0], 2, "the disk itself goes on");
    }
}
