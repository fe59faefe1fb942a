//! The per-shard write-ahead log.
//!
//! The log area at the start of a shard's region is split into two halves. A half starts with a
//! header page (generation, first LSN) followed by frames; the first frames of a half are a
//! checkpoint (an image of the shard's state) ended by `CheckpointEnd`, then come the records
//! appended since. When a half fills, the next checkpoint is written into the other half with a
//! higher generation, and the old half is free to be overwritten at the switch after that.
//!
//! Group commit: `append` only queues a frame; a single flusher task per shard writes everything
//! queued since its last round in one write (rewriting the last partial page), issues one
//! fdatasync, and then declares every LSN up to that point durable. Records queued while a round
//! is in flight go together in the next round. A frame no client waits for (`append_lazy`: a
//! count of references) starts no round: it goes in the next one that a client's frame starts,
//! or after [`LAZY_WAIT`]. Rounds still go in LSN order, so a lazy frame is durable only with
//! every frame before it.
//!
//! Torn writes: each frame carries the LSN of the first frame of its round (`group_lsn`). Rounds
//! are strictly sequential (a round starts only after the previous one's flush completed), so at
//! recovery an invalid frame followed by a valid frame of a *later* round proves damage to
//! durable data (an error), whereas valid frames of the *same* round after an invalid one are a
//! torn, unacknowledged round (truncated). Byte layout: docs/format.md.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use edgeblob_io::{AlignedBuf, BlockDevice, PAGE_SIZE};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use xxhash_rust::xxh3::xxh3_64;

pub const HEADER_MAGIC: [u8; 8] = *b"EBLOGHDR";
pub const LOG_VERSION: u32 = 1;
pub const FRAME_HEADER: usize = 32;
/// Payloads are padded so that every frame starts at a multiple of this.
pub const FRAME_ALIGN: usize = 8;

/// A half's header page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HalfHeader {
    pub shard: u32,
    pub generation: u64,
    pub first_lsn: u64,
    pub uuid: [u8; 16],
}

impl HalfHeader {
    pub fn encode(&self) -> [u8; PAGE_SIZE] {
        let mut p = [0u8; PAGE_SIZE];
        p[0..8].copy_from_slice(&HEADER_MAGIC);
        p[8..12].copy_from_slice(&LOG_VERSION.to_le_bytes());
        p[12..16].copy_from_slice(&self.shard.to_le_bytes());
        p[16..24].copy_from_slice(&self.generation.to_le_bytes());
        p[24..32].copy_from_slice(&self.first_lsn.to_le_bytes());
        p[32..48].copy_from_slice(&self.uuid);
        let sum = xxh3_64(&p[..PAGE_SIZE - 8]);
        p[PAGE_SIZE - 8..].copy_from_slice(&sum.to_le_bytes());
        p
    }

    /// None when the page is not a valid header of this device and shard (never written,
    /// damaged, or left from an earlier format).
    pub fn decode(p: &[u8], shard: u32, uuid: &[u8; 16]) -> Option<HalfHeader> {
        let sum = u64::from_le_bytes(p[PAGE_SIZE - 8..PAGE_SIZE].try_into().ok()?);
        if p[0..8] != HEADER_MAGIC || sum != xxh3_64(&p[..PAGE_SIZE - 8]) {
            return None;
        }
        let h = HalfHeader {
            shard: u32::from_le_bytes(p[12..16].try_into().ok()?),
            generation: u64::from_le_bytes(p[16..24].try_into().ok()?),
            first_lsn: u64::from_le_bytes(p[24..32].try_into().ok()?),
            uuid: p[32..48].try_into().ok()?,
        };
        let version = u32::from_le_bytes(p[8..12].try_into().ok()?);
        (version == LOG_VERSION && h.shard == shard && &h.uuid == uuid).then_some(h)
    }
}

/// Appends one frame for `payload` to `out`.
pub fn encode_frame(out: &mut Vec<u8>, lsn: u64, group_lsn: u64, payload: &[u8]) {
    let start = out.len();
    debug_assert_eq!(start % FRAME_ALIGN, 0);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&group_lsn.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(payload);
    let sum = frame_checksum(&out[start..start + 24], payload);
    out[start + 24..start + 32].copy_from_slice(&sum.to_le_bytes());
    out.resize(out.len().next_multiple_of(FRAME_ALIGN), 0);
}

pub fn frame_len(payload_len: usize) -> usize {
    (FRAME_HEADER + payload_len).next_multiple_of(FRAME_ALIGN)
}

fn frame_checksum(head: &[u8], payload: &[u8]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(head);
    h.update(payload);
    h.digest()
}

/// A frame found in a log half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub lsn: u64,
    pub group_lsn: u64,
    pub payload: &'a [u8],
    /// Offset of the next frame.
    pub end: usize,
}

/// Parses the frame at `at` in `half`, if it is one intact frame.
pub fn parse_frame(half: &[u8], at: usize) -> Option<Frame<'_>> {
    parse_frame_in(half, at, 0..u64::MAX)
}

/// The frame at `at` if its LSN is in `lsns`, checked before its checksum: past a log's end the
/// bytes are older frames and the insides of their payloads, whose lengths would have the
/// checksum run over up to the rest of the half at every position (minutes over a 512 MiB half).
pub fn parse_frame_in(half: &[u8], at: usize, lsns: std::ops::Range<u64>) -> Option<Frame<'_>> {
    let head = half.get(at..at + FRAME_HEADER)?;
    if !lsns.contains(&u64::from_le_bytes(head[8..16].try_into().ok()?)) {
        return None;
    }
    let len = u32::from_le_bytes(head[0..4].try_into().ok()?) as usize;
    let payload = half.get(at + FRAME_HEADER..at + FRAME_HEADER + len)?;
    let sum = u64::from_le_bytes(head[24..32].try_into().ok()?);
    if frame_checksum(&head[..24], payload) != sum {
        return None;
    }
    Some(Frame {
        lsn: u64::from_le_bytes(head[8..16].try_into().ok()?),
        group_lsn: u64::from_le_bytes(head[16..24].try_into().ok()?),
        payload,
        end: at + frame_len(len),
    })
}

/// Where a shard's log lives on the device.
#[derive(Debug, Clone, Copy)]
pub struct LogPlace {
    pub shard: u32,
    pub uuid: [u8; 16],
    /// (device offset, length) of each half.
    pub halves: [(u64, u64); 2],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    pub lsn: u64,
    pub failed: bool,
}

/// How long a lazy frame ([`LogWriter::append_lazy`]) waits for a round that a client wants:
/// long enough to meet the next request's round on a shard that a lone client writes to every
/// millisecond or so, short enough that what waits on it (space freed by a delete, pins given
/// back) is not noticed.
pub const LAZY_WAIT: Duration = Duration::from_millis(2);

/// The position the log resumes from after recovery (or format).
#[derive(Debug, Clone)]
pub struct Resume {
    pub half: u8,
    /// The LSN of the current half's first frame (its header's).
    pub first_lsn: u64,
    /// Highest generation seen on either half; the next checkpoint uses one more.
    pub generation: u64,
    pub next_lsn: u64,
    /// Bytes of the half in use (header page and intact frames).
    pub end: usize,
    /// The bytes of the last, partial page (to be rewritten with what follows).
    pub partial_page: Vec<u8>,
}

/// The appending side; owned by the shard's metadata store.
pub struct LogWriter {
    buf: Rc<RefCell<LogBuf>>,
    notify: Rc<Notify>,
    durable: watch::Receiver<Durable>,
}

struct LogBuf {
    place: LogPlace,
    half: u8,
    first_lsn: u64,
    generation: u64,
    next_lsn: u64,
    /// Page-aligned offset in the current half where `tail` starts.
    tail_start: usize,
    tail: Vec<u8>,
    /// The round that frames appended now will be written in, if one is open.
    open_group: Option<u64>,
    /// Whether the open round holds a frame that wants it written at once: one of only lazy
    /// frames ([`LogWriter::append_lazy`]) waits for one that does, or for [`LAZY_WAIT`].
    eager: bool,
    last_appended: u64,
    /// Final bytes of the previous half, not yet written (after a switch).
    sealed: Vec<(u64, Vec<u8>)>,
    /// LSN of the current half's `CheckpointEnd`: the other half may be overwritten only once
    /// this is durable, or a crash could leave no complete checkpoint at all.
    checkpoint_lsn: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AppendError {
    #[error("a change of {0} bytes of metadata (a very long block list) is more than this shard's log holds at once")]
    TooLarge(usize),
    #[error("the metadata log is full: a checkpoint of this shard does not fit in a log half")]
    Full,
    #[error("the metadata log failed an I/O; this shard refuses further changes")]
    Failed,
    #[error("this shard's metadata waits for its flushes to catch up (the log switching halves, or the index short of room until they end); retry")]
    Busy,
    #[error("this shard's metadata has reached its limit; delete blobs or containers to make room")]
    MetadataFull,
    #[error("this shard holds as many uncommitted blocks as it may; commit or delete some")]
    StagedFull,
    #[error("reference changes wait for other shards to count them; retry")]
    Undelivered,
}

impl LogWriter {
    /// Starts the writer at `resume` and spawns its flusher on the current `LocalSet`.
    pub fn start(place: LogPlace, resume: Resume, dev: Rc<dyn BlockDevice>) -> LogWriter {
        debug_assert_eq!(resume.partial_page.len(), resume.end % PAGE_SIZE);
        let tail_start = resume.end - resume.partial_page.len();
        let buf = Rc::new(RefCell::new(LogBuf {
            place,
            half: resume.half,
            first_lsn: resume.first_lsn,
            generation: resume.generation,
            next_lsn: resume.next_lsn,
            tail_start,
            tail: resume.partial_page,
            open_group: None,
            eager: false,
            last_appended: resume.next_lsn - 1,
            sealed: Vec::new(),
            checkpoint_lsn: 0,
        }));
        let notify = Rc::new(Notify::new());
        let (tx, rx) = watch::channel(Durable { lsn: resume.next_lsn - 1, failed: false });
        tokio::task::spawn_local(flusher(buf.clone(), notify.clone(), tx, dev));
        LogWriter { buf, notify, durable: rx }
    }

    /// Bytes free in the current half.
    pub fn room(&self) -> usize {
        let b = self.buf.borrow();
        b.place.halves[b.half as usize].1 as usize - b.tail_start - b.tail.len()
    }

    /// Queues a record; returns its LSN. The record is durable once [`LogWriter::wait`] for it
    /// returns.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, AppendError> {
        self.queue(payload, true)
    }

    /// Queues a record that no client waits for, to be written with the next round that one
    /// wants, or within [`LAZY_WAIT`]: it adds a frame to a round rather than a round (two
    /// barriers and a write) of its own.
    pub fn append_lazy(&mut self, payload: &[u8]) -> Result<u64, AppendError> {
        self.queue(payload, false)
    }

    fn queue(&mut self, payload: &[u8], eager: bool) -> Result<u64, AppendError> {
        if self.durable.borrow().failed {
            return Err(AppendError::Failed);
        }
        let mut b = self.buf.borrow_mut();
        let half_len = b.place.halves[b.half as usize].1 as usize;
        if b.tail_start + b.tail.len() + frame_len(payload.len()) > half_len {
            return Err(if frame_len(payload.len()) + PAGE_SIZE > half_len {
                AppendError::TooLarge(payload.len())
            } else {
                AppendError::Full
            });
        }
        let lsn = b.next_lsn;
        let group = *b.open_group.get_or_insert(lsn);
        encode_frame(&mut b.tail, lsn, group, payload);
        b.eager |= eager;
        b.next_lsn += 1;
        b.last_appended = lsn;
        drop(b);
        self.notify.notify_one();
        Ok(lsn)
    }

    /// Switches to the other half, starting it with `checkpoint` (the encoded records of a
    /// snapshot, ending with `CheckpointEnd`). Fails, changing nothing, when it does not fit.
    pub fn checkpoint(&mut self, checkpoint: &[Vec<u8>]) -> Result<(), AppendError> {
        if self.durable.borrow().failed {
            return Err(AppendError::Failed);
        }
        let mut b = self.buf.borrow_mut();
        if self.durable.borrow().lsn < b.checkpoint_lsn {
            return Err(AppendError::Busy);
        }
        let next_half = 1 - b.half;
        let half_len = b.place.halves[next_half as usize].1 as usize;
        let first_lsn = b.next_lsn;
        let generation = b.generation + 1;
        let header = HalfHeader { shard: b.place.shard, generation, first_lsn, uuid: b.place.uuid };
        let mut tail = header.encode().to_vec();
        let mut lsn = first_lsn;
        for payload in checkpoint {
            if tail.len() + frame_len(payload.len()) > half_len {
                return Err(AppendError::Full);
            }
            encode_frame(&mut tail, lsn, first_lsn, payload);
            lsn += 1;
        }
        let old_tail = std::mem::replace(&mut b.tail, tail);
        let old_at = b.place.halves[b.half as usize].0 + b.tail_start as u64;
        if !old_tail.is_empty() {
            b.sealed.push((old_at, old_tail));
        }
        b.half = next_half;
        b.first_lsn = first_lsn;
        b.generation = generation;
        b.tail_start = 0;
        b.next_lsn = lsn;
        b.last_appended = lsn - 1;
        b.checkpoint_lsn = lsn - 1;
        b.open_group = Some(first_lsn);
        b.eager = true;
        drop(b);
        self.notify.notify_one();
        tracing::debug!(generation, first_lsn, "log checkpoint queued");
        Ok(())
    }

    /// Waits until `lsn` is durable. Fails if the log failed an I/O first.
    pub fn wait(&self, lsn: u64) -> impl std::future::Future<Output = Result<(), AppendError>> + 'static {
        let mut rx = self.durable.clone();
        async move {
            match rx.wait_for(|d| d.lsn >= lsn || d.failed).await {
                Ok(d) if d.lsn >= lsn => Ok(()),
                _ => Err(AppendError::Failed),
            }
        }
    }

    /// Resolves once the current half's checkpoint is durable, when a switch to the other half
    /// is no longer refused as [`AppendError::Busy`].
    pub fn switch_ready(&self) -> impl std::future::Future<Output = Result<(), AppendError>> + 'static {
        self.wait(self.buf.borrow().checkpoint_lsn)
    }

    pub fn generation(&self) -> u64 {
        self.buf.borrow().generation
    }

    pub fn half(&self) -> u8 {
        self.buf.borrow().half
    }

    pub fn next_lsn(&self) -> u64 {
        self.buf.borrow().next_lsn
    }

    /// The LSN of the current half's first frame: every record before it is in the other half.
    pub fn first_lsn(&self) -> u64 {
        self.buf.borrow().first_lsn
    }

    /// Bytes of one half.
    pub fn half_len(&self) -> usize {
        let b = self.buf.borrow();
        b.place.halves[b.half as usize].1 as usize
    }

    pub fn durable_lsn(&self) -> u64 {
        self.durable.borrow().lsn
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        // Lets the flusher write what is queued and then end.
        self.notify.notify_one();
    }
}

impl LogBuf {
    /// Everything queued since the last round, as page-aligned writes, and the LSN they make
    /// durable. Keeps the last partial page in the tail to be rewritten next round.
    fn take_round(&mut self) -> Option<(Vec<(u64, AlignedBuf)>, u64)> {
        let up_to = self.last_appended;
        if self.open_group.is_none() && self.sealed.is_empty() {
            return None;
        }
        let mut writes: Vec<(u64, AlignedBuf)> =
            self.sealed.drain(..).map(|(at, bytes)| (at, to_pages(&bytes))).collect();
        let at = self.place.halves[self.half as usize].0 + self.tail_start as u64;
        writes.push((at, to_pages(&self.tail)));
        let full = self.tail.len() / PAGE_SIZE * PAGE_SIZE;
        self.tail.drain(..full);
        self.tail_start += full;
        self.open_group = None;
        self.eager = false;
        Some((writes, up_to))
    }
}

fn to_pages(bytes: &[u8]) -> AlignedBuf {
    let mut buf = AlignedBuf::zeroed(bytes.len().max(1));
    buf.full_mut()[..bytes.len()].copy_from_slice(bytes);
    buf.set_len(bytes.len().next_multiple_of(PAGE_SIZE).max(PAGE_SIZE));
    buf
}

/// Writes one round and makes it durable. A barrier comes first: what a record points at (chunk
/// data, written and completed before the record was queued) must be durable before the record
/// can be. Between two flushes a disk may persist writes in any order, so without it a power cut
/// could keep a record whose data never reached the medium (found by the fault-injection tests).
async fn write_round(dev: &dyn BlockDevice, writes: Vec<(u64, AlignedBuf)>) -> std::io::Result<()> {
    dev.flush().await?;
    for (at, pages) in writes {
        let (res, _) = dev.write(pages, at).await;
        res.map_err(|e| std::io::Error::new(e.kind(), format!("log write at {at}: {e}")))?;
    }
    dev.flush().await
}

async fn flusher(
    buf: Rc<RefCell<LogBuf>>,
    notify: Rc<Notify>,
    durable: watch::Sender<Durable>,
    dev: Rc<dyn BlockDevice>,
) {
    // When the round open holds only lazy frames: until when they wait for one that is not.
    let mut lazy_until: Option<Instant> = None;
    loop {
        let (queued, eager) = {
            let b = buf.borrow();
            (b.open_group.is_some() || !b.sealed.is_empty(), b.eager || !b.sealed.is_empty())
        };
        let writer_gone = Rc::strong_count(&buf) == 1;
        if queued && !eager && !writer_gone {
            let until = *lazy_until.get_or_insert_with(|| Instant::now() + LAZY_WAIT);
            if Instant::now() < until {
                let _ = tokio::time::timeout_at(until, notify.notified()).await;
                continue;
            }
        }
        lazy_until = None;
        let round = buf.borrow_mut().take_round();
        let Some((writes, up_to)) = round else {
            if writer_gone {
                return; // the writer is gone and everything it queued is written
            }
            notify.notified().await;
            continue;
        };
        if let Err(e) = write_round(dev.as_ref(), writes).await {
            tracing::error!(%e, "metadata log round failed");
            // Nothing after this point can be promised: fail every waiter and every later append.
            durable.send_modify(|d| d.failed = true);
            return;
        }
        durable.send_modify(|d| {
            debug_assert!(up_to >= d.lsn, "durable LSN goes backwards");
            d.lsn = up_to;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    #[test]
    fn frames_parse_back_and_damage_is_detected() {
        let mut half = Vec::new();
        encode_frame(&mut half, 7, 5, b"hello");
        encode_frame(&mut half, 8, 5, b"");
        let f = parse_frame(&half, 0).unwrap();
        assert_eq!((f.lsn, f.group_lsn, f.payload), (7, 5, &b"hello"[..]));
        let g = parse_frame(&half, f.end).unwrap();
        assert_eq!((g.lsn, g.payload.len(), g.end), (8, 0, half.len()));
        for i in 0..f.end {
            let mut bad = half.clone();
            bad[i] ^= 0x40;
            if i < FRAME_HEADER + 5 {
                assert!(parse_frame(&bad, 0).is_none(), "flip at {i} undetected");
            }
        }
    }

    #[test]
    fn header_rejects_other_devices_and_shards() {
        let h = HalfHeader { shard: 1, generation: 3, first_lsn: 10, uuid: [9; 16] };
        let p = h.encode();
        assert_eq!(HalfHeader::decode(&p, 1, &[9; 16]), Some(h));
        assert_eq!(HalfHeader::decode(&p, 0, &[9; 16]), None);
        assert_eq!(HalfHeader::decode(&p, 1, &[8; 16]), None);
        let mut bad = p;
        bad[20] ^= 1;
        assert_eq!(HalfHeader::decode(&bad, 1, &[9; 16]), None);
    }

    /// A lazy frame waits for a round that a client wants and is written in it (one round for
    /// both); alone, it is written once [`LAZY_WAIT`] has passed, and not before.
    #[tokio::test(start_paused = true)]
    async fn a_lazy_frame_joins_the_next_round_or_waits_lazy_wait() {
        use edgeblob_io::fault::{Op, SimDisk};

        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let disk = SimDisk::new(64 * PAGE_SIZE);
                let dev: Rc<dyn BlockDevice> = Rc::new(disk.device());
                let half = 32 * PAGE_SIZE as u64;
                let place = LogPlace { shard: 0, uuid: [7; 16], halves: [(0, half), (half, half)] };
                let resume = Resume {
                    half: 0,
                    first_lsn: 1,
                    generation: 1,
                    next_lsn: 1,
                    end: PAGE_SIZE,
                    partial_page: Vec::new(),
                };
                let mut log = LogWriter::start(place, resume, dev);
                // A round is a barrier, its writes and a flush.
                let rounds = || disk.count(Op::Flush) / 2;

                let counted = log.append_lazy(b"refs").unwrap();
                for _ in 0..50 {
                    tokio::task::yield_now().await;
                }
                assert!(log.durable_lsn() < counted, "a lazy frame alone waits");
                assert_eq!(rounds(), 0);
                let put = log.append(b"put").unwrap();
                log.wait(put).await.unwrap();
                assert_eq!((log.durable_lsn(), rounds()), (put, 1), "the lazy frame went in the put's round");

                let started = Instant::now();
                let alone = log.append_lazy(b"refs").unwrap();
                log.wait(alone).await.unwrap();
                assert_eq!(started.elapsed(), LAZY_WAIT, "written when its wait ends");
                assert_eq!(rounds(), 2);
                drop(log);
                // What was written reads back in order, in the first half after its header page.
                let image = disk.image();
                let mut at = PAGE_SIZE;
                for (lsn, payload) in [(1, &b"refs"[..]), (2, b"put"), (3, b"refs")] {
                    let f = parse_frame(&image[..half as usize], at).expect("a frame");
                    assert_eq!((f.lsn, f.payload), (lsn, payload));
                    at = f.end;
                }
            })
            .await;
    }

    #[test]
    fn record_frames_hold_records() {
        let rec = Record::StagedDropped { key: crate::model::BlobKey::new("a", "b", "c") };
        let mut half = Vec::new();
        encode_frame(&mut half, 1, 1, &rec.encode());
        let f = parse_frame(&half, 0).unwrap();
        assert_eq!(Record::decode(f.payload).unwrap(), rec);
    }
}
