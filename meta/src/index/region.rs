//! The storage under a shard's index: redb's [`StorageBackend`] over segments of the shard's
//! region, so the index needs no file system (as BlueStore gives RocksDB extents of its own
//! device through BlueFS).
//!
//! The index's bytes are a sequence of equal segments taken from the region's data area where
//! there is room, anywhere, in any order; a header names them. The shard grants segments ahead of
//! need ([`Segments::grant`]); growth takes from the grant, never from the allocator directly, so
//! the index never touches the shard's state from its own thread. The header also keeps the
//! storage length and a high-water mark: bytes at or above it have never been written since the
//! format and read as zeros, as redb requires of new space, without writing zeros first.
//!
//! Header: two slots of [`HEADER_LEN`] bytes at a fixed place in the region, written alternately
//! with a rising sequence number just before each flush (redb's `sync_data`), so one torn write
//! leaves the other. Layout in docs/format.md.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use edgeblob_io::{AlignedBuf, BlockDevice, PAGE_SIZE};
use redb::StorageBackend;
use xxhash_rust::xxh3::xxh3_64;

use super::blocking;

/// Bytes of one header slot.
pub const HEADER_LEN: usize = 4 * PAGE_SIZE;
const MAGIC: &[u8; 8] = b"EBINDEX\0";
const VERSION: u32 = 1;
const SEGMENTS_AT: usize = 72;
/// A segment slot not given a place yet (device offset 0 is the superblock, never a segment).
const HOLE: u64 = 0;
/// Segments one header can name.
pub const MAX_SEGMENTS: usize = (HEADER_LEN - 8 - SEGMENTS_AT) / 8;

/// A device a thread other than the shard's may drive: its operations complete when called
/// (`SyncDevice` over a file, `FaultDevice` over a simulated disk).
pub type SharedDevice = Arc<dyn BlockDevice + Send + Sync>;

/// Where the index lives in its region: its two header slots, and the length of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexPlace {
    pub shard: u32,
    pub uuid: [u8; 16],
    /// Device offset of header slot 0; slot 1 follows it.
    pub header: u64,
    pub segment_len: u64,
}

/// What the header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub seq: u64,
    /// The storage length redb last set.
    pub len: u64,
    /// Storage bytes at or above this were never written: they read as zeros.
    pub high_water: u64,
    /// Device offsets of the segments, in storage order.
    pub segments: Vec<u64>,
    /// Segments granted to the index and not taken yet, as of this header: its reserve, kept
    /// across a restart (where the region may have no contiguous room left to grant it again).
    pub spares: Vec<u64>,
}

impl Header {
    pub fn encode(&self, place: &IndexPlace) -> Vec<u8> {
        debug_assert!(self.segments.len() + self.spares.len() <= MAX_SEGMENTS);
        let mut p = vec![0u8; HEADER_LEN];
        p[0..8].copy_from_slice(MAGIC);
        p[8..12].copy_from_slice(&VERSION.to_le_bytes());
        p[12..16].copy_from_slice(&place.shard.to_le_bytes());
        p[16..32].copy_from_slice(&place.uuid);
        p[32..40].copy_from_slice(&self.seq.to_le_bytes());
        p[40..48].copy_from_slice(&self.len.to_le_bytes());
        p[48..56].copy_from_slice(&self.high_water.to_le_bytes());
        p[56..64].copy_from_slice(&place.segment_len.to_le_bytes());
        p[64..68].copy_from_slice(&(self.segments.len() as u32).to_le_bytes());
        p[68..72].copy_from_slice(&(self.spares.len() as u32).to_le_bytes());
        for (i, s) in self.segments.iter().chain(&self.spares).enumerate() {
            p[SEGMENTS_AT + i * 8..SEGMENTS_AT + i * 8 + 8].copy_from_slice(&s.to_le_bytes());
        }
        let sum = xxh3_64(&p[..HEADER_LEN - 8]);
        p[HEADER_LEN - 8..].copy_from_slice(&sum.to_le_bytes());
        p
    }

    /// The header in `p`, if it is one of this place's (a slot from an earlier format, torn or
    /// never written is `None`).
    pub fn decode(p: &[u8], place: &IndexPlace) -> Option<Header> {
        let le64 = |at: usize| u64::from_le_bytes(p[at..at + 8].try_into().expect("8 bytes"));
        let le32 = |at: usize| u32::from_le_bytes(p[at..at + 4].try_into().expect("4 bytes"));
        if p.len() < HEADER_LEN
            || &p[0..8] != MAGIC
            || le64(HEADER_LEN - 8) != xxh3_64(&p[..HEADER_LEN - 8])
            || le32(8) != VERSION
            || le32(12) != place.shard
            || p[16..32] != place.uuid
            || le64(56) != place.segment_len
        {
            return None;
        }
        let (n, m) = (le32(64) as usize, le32(68) as usize);
        if n + m > MAX_SEGMENTS {
            return None;
        }
        let segments = (0..n).map(|i| le64(SEGMENTS_AT + i * 8)).collect();
        let spares = (n..n + m).map(|i| le64(SEGMENTS_AT + i * 8)).collect();
        Some(Header { seq: le64(32), len: le64(40), high_water: le64(48), segments, spares })
    }
}

/// The segments the shard has set aside for the index's growth, shared between the shard (which
/// grants them from its allocator, and takes back what the index will not need) and the index's
/// thread (which takes them as it grows).
#[derive(Debug, Default)]
pub struct Segments {
    pool: Mutex<Pool>,
}

#[derive(Debug, Default)]
struct Pool {
    spare: Vec<u64>,
    /// Segments the index holds: named by its header, or taken since.
    taken: usize,
    /// Changes to `spare`: the header's list is rewritten only after one (a tool that opens the
    /// index to read it leaves the spares the header names).
    changes: u64,
    /// Segments the index's length spans (redb's length, rounded up): those not taken are holes
    /// that any write, a compaction's too, may take a spare for.
    spanned: usize,
    /// A write found no spare left since [`Segments::ran_short`] was last asked.
    short: bool,
}

impl Segments {
    /// Adds segments for the index to grow into. They belong to the index from now on, until
    /// [`Segments::give_back`]; the header written at the next sync names them as spares, so that
    /// a restart finds them set aside still (where they are free then).
    pub fn grant(&self, offsets: impl IntoIterator<Item = u64>) {
        let mut pool = lock(&self.pool);
        pool.spare.extend(offsets);
        pool.changes += 1;
    }

    /// Takes back up to `n` spare segments for the shard's data. Only while no flush of the index
    /// runs: a flush may take any spare segment.
    pub fn give_back(&self, n: usize) -> Vec<u64> {
        let mut pool = lock(&self.pool);
        let keep = pool.spare.len().saturating_sub(n);
        pool.changes += 1;
        pool.spare.split_off(keep)
    }

    /// Takes back segments the index held and no longer maps: spares again.
    fn release(&self, offsets: Vec<u64>) {
        if offsets.is_empty() {
            return;
        }
        let mut pool = lock(&self.pool);
        debug_assert!(pool.taken >= offsets.len(), "releasing segments the index did not take");
        pool.taken -= offsets.len();
        pool.spare.extend(offsets);
        pool.changes += 1;
    }

    pub fn spare(&self) -> usize {
        lock(&self.pool).spare.len()
    }

    /// Segments within the index's length never written since it last grew there: a
    /// compaction moves pages down into them, one spare each (docs/architecture.md, room).
    pub fn holes(&self) -> usize {
        let pool = lock(&self.pool);
        pool.spanned.saturating_sub(pool.taken)
    }

    /// Whether a write found no spare segment since the last call: the transaction it was part
    /// of failed for want of room, not of the device.
    pub fn ran_short(&self) -> bool {
        std::mem::take(&mut lock(&self.pool).short)
    }

    /// After a failed transaction, the index holds what the header on the device names
    /// (`durable`): of what it held in memory (`held`), the rest is spare again, and spares that
    /// header still maps (a trim it never committed released them) are the index's again.
    fn reconcile(&self, held: &[u64], durable: &[u64]) {
        let mut pool = lock(&self.pool);
        let durable_set: std::collections::BTreeSet<u64> = durable.iter().copied().collect();
        let mut spare: std::collections::BTreeSet<u64> = pool.spare.drain(..).collect();
        spare.extend(held.iter().copied());
        spare.retain(|s| !durable_set.contains(s));
        pool.spare = spare.into_iter().collect();
        pool.taken = durable.len();
        pool.changes += 1;
    }

    /// Segments the index holds, spares aside.
    pub fn taken(&self) -> usize {
        lock(&self.pool).taken
    }

    fn take(&self) -> Option<u64> {
        let mut pool = lock(&self.pool);
        let Some(s) = pool.spare.pop() else {
            pool.short = true;
            return None;
        };
        pool.taken += 1;
        pool.changes += 1;
        Some(s)
    }

    /// The spares as a header may name them (as many as fit beside `held` segments), if they
    /// changed since `seen` changes; and the changes counted now.
    fn spares_for_header(&self, held: usize, seen: u64) -> (Option<Vec<u64>>, u64) {
        let pool = lock(&self.pool);
        if pool.changes == seen {
            return (None, seen);
        }
        let mut spares = pool.spare.clone();
        spares.truncate(MAX_SEGMENTS.saturating_sub(held));
        spares.sort_unstable();
        (Some(spares), pool.changes)
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here can panic while holding the lock and leave its value inconsistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// redb's storage over the segments of one shard's index.
pub struct RegionBackend {
    dev: SharedDevice,
    place: IndexPlace,
    segments: Arc<Segments>,
    state: Mutex<State>,
}

struct State {
    /// Shared with reads in flight, replaced whole on change (reads clone the `Arc`, not the list).
    header: Arc<Header>,
    /// The header has changed since it was last written.
    dirty: bool,
    /// Pages written since the last `sync_data`, by storage offset: redb writes a commit's pages
    /// one at a time; they go to the device at the sync as one write per contiguous run, so that
    /// a flush of the index costs a few large writes rather than thousands of small ones beside
    /// the log's.
    pending: Pending,
    /// The pages a `sync_data` is writing out, without the lock: reads see them meanwhile as
    /// they saw them pending. Written under the lock, a large flush stalled every point read of
    /// the index for as long as its writes took.
    writing: Arc<Pending>,
    /// Left for a backend opened again ([`RegionBackend::reopen`]): what redb writes here
    /// after a failed transaction must not reach the device.
    abandoned: bool,
    /// The changes to the spares the header's list reflects.
    spares_seen: u64,
}

type Pending = BTreeMap<u64, Box<[u8]>>;

/// Copies the pending pages within `[offset, offset + out.len())` over `out`.
fn overlay<'a>(pages: impl Iterator<Item = (&'a u64, &'a Box<[u8]>)>, offset: u64, out: &mut [u8]) {
    for (&at, page) in pages {
        let from = (at - offset) as usize;
        out[from..from + PAGE_SIZE].copy_from_slice(page);
    }
}

fn pending_in(p: &Pending, offset: u64, len: usize) -> impl Iterator<Item = (&u64, &Box<[u8]>)> {
    p.range(offset..offset + len as u64)
}

impl fmt::Debug for RegionBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegionBackend").field("place", &self.place).finish_non_exhaustive()
    }
}

impl RegionBackend {
    /// Writes an empty header into both slots: an index of no bytes and no segments.
    pub fn format(dev: &dyn BlockDevice, place: &IndexPlace) -> io::Result<()> {
        RegionBackend::format_with(dev, place, &[])
    }

    /// Writes an empty header naming `segments` as the index's first storage (so that the index
    /// can be created before the shard's allocator knows what is free).
    pub fn format_with(dev: &dyn BlockDevice, place: &IndexPlace, segments: &[u64]) -> io::Result<()> {
        let empty = Header { seq: 1, len: 0, high_water: 0, segments: segments.to_vec(), spares: Vec::new() };
        write_slot(dev, place, 0, &empty)?;
        write_slot(dev, place, 1, &Header { seq: 0, ..empty })?;
        blocking(dev.flush())
    }

    /// Opens the index storage of `place`: the newer valid header slot.
    pub fn open(dev: SharedDevice, place: IndexPlace, segments: Arc<Segments>) -> io::Result<RegionBackend> {
        let mut buf = AlignedBuf::zeroed(2 * HEADER_LEN);
        let (res, b) = blocking(dev.read(buf, place.header));
        res?;
        buf = b;
        let header = [0, 1]
            .into_iter()
            .filter_map(|slot| Header::decode(&buf[slot * HEADER_LEN..(slot + 1) * HEADER_LEN], &place))
            .max_by_key(|h| h.seq)
            .ok_or_else(|| {
                io::Error::other(format!("shard {}: the index header is missing or damaged", place.shard))
            })?;
        let most = MAX_SEGMENTS as u64 * place.segment_len;
        if header.len > most || header.high_water > header.len {
            return Err(io::Error::other(format!("shard {}: the index header is inconsistent", place.shard)));
        }
        let spares_seen = {
            let mut pool = lock(&segments.pool);
            pool.taken = header.segments.iter().filter(|&&s| s != HOLE).count();
            pool.spanned = header.len.div_ceil(place.segment_len) as usize;
            pool.changes
        };
        Ok(RegionBackend {
            dev,
            place,
            segments,
            state: Mutex::new(State {
                header: Arc::new(header),
                dirty: false,
                pending: Pending::new(),
                writing: Arc::default(),
                spares_seen,
                abandoned: false,
            }),
        })
    }

    /// The index's storage as its header on the device has it, for a new redb to open after a
    /// transaction failed (redb refuses all writes after one until it is opened again). This
    /// backend writes nothing from now on: not the failed transaction's pages, nor a header
    /// naming the segments they took, which are spare again ([`Segments::reconcile`]).
    pub fn reopen(&self) -> io::Result<RegionBackend> {
        let held = {
            let mut st = lock(&self.state);
            st.abandoned = true;
            st.pending.clear();
            st.dirty = false;
            st.header.segments.iter().copied().filter(|&s| s != HOLE).collect::<Vec<_>>()
        };
        let fresh = RegionBackend::open(self.dev.clone(), self.place, self.segments.clone())?;
        self.segments.reconcile(&held, &fresh.segments());
        Ok(fresh)
    }

    /// The pool the index takes its segments from.
    pub fn pool(&self) -> &Arc<Segments> {
        &self.segments
    }

    /// The segments the index holds (the shard reserves them in its allocator at start).
    pub fn segments(&self) -> Vec<u64> {
        lock(&self.state).header.segments.iter().copied().filter(|&s| s != HOLE).collect()
    }

    /// The spare segments the header names: the shard grants again those still free at start.
    pub fn spares(&self) -> Vec<u64> {
        lock(&self.state).header.spares.clone()
    }

    /// The storage length and the header, as last set.
    pub fn header(&self) -> Header {
        Header::clone(&lock(&self.state).header)
    }

    /// Calls `f(device offset, storage offset, length)` for each piece of `[offset, offset+len)`
    /// within one segment; the device offset is None where no segment was ever taken.
    fn pieces(
        &self,
        h: &Header,
        offset: u64,
        len: u64,
        mut f: impl FnMut(Option<u64>, u64, u64) -> io::Result<()>,
    ) -> io::Result<()> {
        let seg = self.place.segment_len;
        let mut at = offset;
        while at < offset + len {
            let i = (at / seg) as usize;
            let within = at % seg;
            let n = (seg - within).min(offset + len - at);
            let base = h.segments.get(i).copied().filter(|&b| b != HOLE);
            f(base.map(|b| b + within), at, n)?;
            at += n;
        }
        Ok(())
    }

    /// Gives every segment under storage `[lo, hi)` a place on the device, from the grant.
    fn take_segments(&self, h: &mut Header, lo: u64, hi: u64) -> io::Result<bool> {
        let seg = self.place.segment_len;
        let (first, last) = ((lo / seg) as usize, ((hi - 1) / seg) as usize);
        let mut changed = false;
        if h.segments.len() <= last {
            h.segments.resize(last + 1, HOLE);
        }
        for slot in &mut h.segments[first..=last] {
            if *slot == HOLE {
                *slot = self.segments.take().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::StorageFull, "the index has no segment granted to grow into")
                })?;
                changed = true;
            }
        }
        Ok(changed)
    }

    /// Reads whole pages at page-aligned storage offset `offset` into `out` (a page multiple),
    /// with zeros at and above the high-water mark.
    fn read_pages(&self, h: &Header, pending: &Pending, offset: u64, out: &mut [u8]) -> io::Result<()> {
        debug_assert!(offset.is_multiple_of(PAGE_SIZE as u64) && out.len().is_multiple_of(PAGE_SIZE));
        let written = h.high_water.saturating_sub(offset).min(out.len() as u64);
        out[written as usize..].fill(0);
        self.pieces(h, offset, written.next_multiple_of(PAGE_SIZE as u64).min(out.len() as u64), |dev_at, at, n| {
            // A segment never taken was never written: its zeros are already in place.
            let Some(dev_at) = dev_at else { return Ok(()) };
            let (res, buf) = blocking(self.dev.read(AlignedBuf::zeroed(n as usize), dev_at));
            res?;
            let from = (at - offset) as usize;
            out[from..from + n as usize].copy_from_slice(&buf[..n as usize]);
            Ok(())
        })?;
        overlay(pending_in(pending, offset, out.len()), offset, out);
        // A page straddling the mark was read whole: what lies above the mark is not the index's.
        out[written as usize..].fill(0);
        Ok(())
    }
}

impl RegionBackend {
    /// Serves a read of pages `[lo, hi)` from this thread's scan window, reading a new window
    /// from `lo` (to the end of its segment at most) when it is not within the current one;
    /// false when no scan runs here or the read cannot be served so (it spans segments, or
    /// storage never written).
    fn read_windowed(
        &self,
        h: &Header,
        pending: &Pending,
        lo: u64,
        hi: u64,
        offset: u64,
        out: &mut [u8],
    ) -> io::Result<bool> {
        WINDOW.with(|w| {
            let mut w = w.borrow_mut();
            if !w.active {
                return Ok(false);
            }
            let me = self as *const RegionBackend as usize;
            let within =
                |w: &Window| w.owner == me && w.at <= lo && w.buf.as_ref().is_some_and(|b| hi <= w.at + b.len() as u64);
            if !within(&w) {
                let seg = self.place.segment_len;
                let end = (lo / seg + 1) * seg;
                let end = end.min(lo + AHEAD as u64).min(h.high_water.next_multiple_of(PAGE_SIZE as u64));
                let Some(dev_at) = h.segments.get((lo / seg) as usize).copied().filter(|&b| b != HOLE) else {
                    return Ok(false);
                };
                if hi > end {
                    return Ok(false);
                }
                w.owner = 0;
                let mut buf = w.buf.take().unwrap_or_else(|| AlignedBuf::zeroed(AHEAD));
                buf.set_len((end - lo) as usize);
                let (res, mut buf) = blocking(self.dev.read(buf, dev_at + lo % seg));
                res?;
                // A page straddling the mark was read whole: what lies above it is not the index's.
                let written = (h.high_water - lo) as usize;
                if written < buf.len() {
                    buf[written..].fill(0);
                }
                (w.owner, w.at, w.buf) = (me, lo, Some(buf));
            }
            debug_assert!(within(&w));
            let at = w.at;
            let buf = w.buf.as_mut().expect("a window that holds the read");
            // Pages written since the last sync (to pages this transaction cannot reach, as a
            // flush's) are copied over the window as over any read.
            overlay(pending.iter(), at, buf);
            let from = (offset - at) as usize;
            out.copy_from_slice(&buf[from..from + out.len()]);
            Ok(true)
        })
    }
}

impl Drop for RegionBackend {
    /// What redb wrote is on the device when it lets go of its storage, synced or not, as with a
    /// file (redb writes its header on a clean close).
    fn drop(&mut self) {
        if lock(&self.state).abandoned {
            return;
        }
        if let Err(e) = self.sync_data() {
            tracing::error!(shard = self.place.shard, %e, "index writes lost at close");
        }
    }
}

impl RegionBackend {
    /// Writes pending pages to the device, one write per run of contiguous pages in a segment.
    fn write_out(&self, h: &Header, pending: &Pending) -> io::Result<()> {
        let seg = self.place.segment_len;
        let mut run: Vec<(u64, &Box<[u8]>)> = Vec::new();
        let flush_run = |run: &mut Vec<(u64, &Box<[u8]>)>| -> io::Result<()> {
            let Some(&(first, _)) = run.first() else { return Ok(()) };
            let base = h.segments.get((first / seg) as usize).copied().filter(|&b| b != HOLE);
            let base = base.ok_or_else(|| io::Error::other("an index write outside its segments"))?;
            let mut buf = AlignedBuf::zeroed(run.len() * PAGE_SIZE);
            for (i, (_, page)) in run.iter().enumerate() {
                buf[i * PAGE_SIZE..(i + 1) * PAGE_SIZE].copy_from_slice(page);
            }
            let (res, _) = blocking(self.dev.write(buf, base + first % seg));
            run.clear();
            res
        };
        for (&at, page) in pending {
            let joins = run.last().is_some_and(|&(prev, _)| prev + PAGE_SIZE as u64 == at && prev / seg == at / seg);
            if !joins {
                flush_run(&mut run)?;
            }
            run.push((at, page));
        }
        flush_run(&mut run)
    }
}

fn write_slot(dev: &dyn BlockDevice, place: &IndexPlace, slot: u64, h: &Header) -> io::Result<()> {
    let mut buf = AlignedBuf::zeroed(HEADER_LEN);
    buf.copy_from_slice(&h.encode(place));
    let (res, _) = blocking(dev.write(buf, place.header + slot * HEADER_LEN as u64));
    res
}

/// Bytes a scan reads from the device at once ([`read_ahead`]). Measured: 16 and 64 KiB list no
/// faster, 256 KiB slower (most of it is not the scan's).
const AHEAD: usize = 32 << 10;

/// Storage read ahead by the scan running on this thread.
struct Window {
    /// A scan runs on this thread ([`read_ahead`]).
    active: bool,
    /// The backend the bytes were read from (its address: one thread may serve several indexes'
    /// reads in tests); 0 when they are no one's.
    owner: usize,
    /// Storage offset of `buf`'s first byte.
    at: u64,
    /// Kept from scan to scan: reading into it costs neither an allocation nor a copy.
    buf: Option<AlignedBuf>,
}

thread_local! {
    static WINDOW: RefCell<Window> = const { RefCell::new(Window { active: false, owner: 0, at: 0, buf: None }) };
}

/// Runs `f`, one read transaction's scan, with this thread's reads of index storage served from
/// windows of [`AHEAD`] bytes read at once. A scan walks leaves one at a time, each a device
/// round trip; leaves written by one flush often lie near each other, so one larger read brings
/// some of the next ones (2.8 leaves a read in the fill benchmark; docs/performance.md). The
/// window is forgotten when `f` returns: what it holds of pages the transaction can reach cannot
/// change while the transaction lives (redb frees nothing a live reader can see), and what it
/// holds of other pages this transaction never asks for.
pub fn read_ahead<T>(f: impl FnOnce() -> T) -> T {
    struct End;
    impl Drop for End {
        fn drop(&mut self) {
            WINDOW.with(|w| {
                let mut w = w.borrow_mut();
                (w.active, w.owner) = (false, 0);
            });
        }
    }
    WINDOW.with(|w| {
        let mut w = w.borrow_mut();
        (w.active, w.owner) = (true, 0);
    });
    let _end = End;
    f()
}

fn refuse_if_abandoned(st: &State) -> io::Result<()> {
    match st.abandoned {
        true => Err(io::Error::other("this index storage was opened again after a failed transaction")),
        false => Ok(()),
    }
}

/// A backend shared between redb and the index that opened it, which keeps it to open the
/// storage again after a failed transaction ([`RegionBackend::reopen`]).
#[derive(Debug, Clone)]
pub struct SharedBackend(pub Arc<RegionBackend>);

impl StorageBackend for SharedBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.0.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.0.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.0.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.0.write(offset, data)
    }
}

fn out_of_range(offset: u64, len: usize, storage: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("index storage access at {offset}+{len} past its length {storage}"),
    )
}

impl StorageBackend for RegionBackend {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(lock(&self.state).header.len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let page = PAGE_SIZE as u64;
        let lo = offset / page * page;
        let hi = (offset + out.len() as u64).next_multiple_of(page);
        // The device is read without the lock; the pages written since the last sync are copied
        // out under it.
        let (h, pending) = {
            let st = lock(&self.state);
            let mine: Pending =
                st.writing.range(lo..hi).chain(st.pending.range(lo..hi)).map(|(k, v)| (*k, v.clone())).collect();
            (st.header.clone(), mine)
        };
        if offset + out.len() as u64 > h.len {
            return Err(out_of_range(offset, out.len(), h.len));
        }
        if self.read_windowed(&h, &pending, lo, hi, offset, out)? {
            return Ok(());
        }
        if lo == offset && hi == offset + out.len() as u64 {
            return self.read_pages(&h, &pending, offset, out);
        }
        let mut span = vec![0u8; (hi - lo) as usize];
        self.read_pages(&h, &pending, lo, &mut span)?;
        let from = (offset - lo) as usize;
        out.copy_from_slice(&span[from..from + out.len()]);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut st = lock(&self.state);
        refuse_if_abandoned(&st)?;
        if len > MAX_SEGMENTS as u64 * self.place.segment_len {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "the index is as long as its header can map"));
        }
        // Segments are taken when first written, not here: redb doubles its length as it grows,
        // and only what it writes needs a place on the device.
        let seg = self.place.segment_len;
        let st = &mut *st;
        let h = Arc::make_mut(&mut st.header);
        // Shrinking forgets what lay above the new length (growing back must read zeros there),
        // and the segments wholly above it are spares again: redb trims only pages free in every
        // snapshot still readable, and the header that drops them is written with this commit
        // (a crash before it leaves the older one, which still maps them, and no flush or data
        // takes a spare before then). Deletes thus give the index room the check can see.
        let keep = len.div_ceil(seg) as usize;
        if h.segments.len() > keep {
            let freed: Vec<u64> = h.segments.drain(keep..).filter(|&s| s != HOLE).collect();
            st.pending.split_off(&(keep as u64 * seg));
            self.segments.release(freed);
        }
        lock(&self.segments.pool).spanned = keep;
        h.high_water = h.high_water.min(len);
        h.len = len;
        st.dirty = true;
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        // One writer (redb's committing thread) calls this and `write`; readers run beside it.
        let (header, writing) = {
            let mut st = lock(&self.state);
            refuse_if_abandoned(&st)?;
            debug_assert!(st.writing.is_empty(), "one sync at a time");
            st.writing = Arc::new(std::mem::take(&mut st.pending));
            (st.header.clone(), st.writing.clone())
        };
        let written = self.write_out(&header, &writing);
        let mut st = lock(&self.state);
        st.writing = Arc::default();
        if let Err(e) = written {
            // Not on the device: pending again, under what was written since.
            let newer = std::mem::replace(&mut st.pending, Pending::clone(&writing));
            st.pending.extend(newer);
            return Err(e);
        }
        let (spares, seen) = self.segments.spares_for_header(st.header.segments.len(), st.spares_seen);
        st.spares_seen = seen;
        if let Some(spares) = spares.filter(|s| *s != st.header.spares) {
            Arc::make_mut(&mut st.header).spares = spares;
            st.dirty = true;
        }
        if st.dirty {
            // The header goes with the writes it covers: the flush below makes both durable, and
            // a crash before it leaves the older slot, which covers what was durable then.
            let h = Arc::make_mut(&mut st.header);
            h.seq += 1;
            write_slot(self.dev.as_ref(), &self.place, h.seq % 2, h)?;
            st.dirty = false;
        }
        drop(st);
        blocking(self.dev.flush())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut st = lock(&self.state);
        refuse_if_abandoned(&st)?;
        if offset + data.len() as u64 > st.header.len {
            return Err(out_of_range(offset, data.len(), st.header.len));
        }
        let page = PAGE_SIZE as u64;
        let lo = offset / page * page;
        let hi = (offset + data.len() as u64).next_multiple_of(page);
        let mut span = vec![0u8; (hi - lo) as usize];
        if lo != offset || hi != offset + data.len() as u64 {
            // A partial page keeps the bytes around what is written.
            self.read_pages(&st.header, &st.pending, lo, &mut span)?;
        }
        let from = (offset - lo) as usize;
        span[from..from + data.len()].copy_from_slice(data);
        // The segments are taken now, so that a full grant fails this write, not the sync.
        if self.take_segments(Arc::make_mut(&mut st.header), lo, hi)? {
            st.dirty = true;
        }
        for (i, page) in span.chunks(PAGE_SIZE).enumerate() {
            st.pending.insert(lo + (i * PAGE_SIZE) as u64, page.into());
        }
        if hi > st.header.high_water {
            Arc::make_mut(&mut st.header).high_water = hi;
            st.dirty = true;
        }
        Ok(())
    }
}
