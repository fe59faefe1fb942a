//! A fetch of a lake blob in flight, as the readers who wait on it see it. The reader who asked
//! first leads the fetch (`Link::flight`); the others join it and learn its outcome. A whole Get
//! Blob also follows its bytes as they arrive: the fetch shows the blob it fetches and keeps the
//! last few ranges it fetched, so a first read of a large blob starts when the lake's first
//! range is here, not when the whole is stored. A reader that falls behind those few ranges
//! reads the rest from flash once the fetch has stored it.

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use edgeblob_engine::{ops, Shard};
use edgeblob_meta::listing::BlobSummary;
use edgeblob_meta::model::BlobKey;
use edgeblob_proto::conditions::{Conditions, ETagMatch};
use futures::{Stream, StreamExt};
use tokio::sync::watch;

/// Ranges kept for the readers that follow a fetch. Each is one fetched range (4 MiB): with the
/// ranges in flight, a link's fetches hold at most `max_fetches × (2 + KEPT)` ranges in memory.
const KEPT: usize = 2;

/// What a fetch ended with, for the readers that waited on it: `Err` says why in words a
/// client may see.
pub type Outcome = Result<Refreshed, String>;

/// What a check or fetch of a linked blob left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    /// The blob here is the lake's current one, a blob written here, or absent as in the lake.
    Current,
    /// A write here or in the lake came between: look again.
    Raced,
}

/// What a fetch in flight shows the readers that wait on it.
#[derive(Default)]
pub struct FlightState {
    /// The blob fetched, as it will be here: shown only where it will keep the lake's ETag, so a
    /// follower's answer names the version it later finds here.
    pub blob: Option<BlobSummary>,
    /// The last ranges fetched, by offset in the blob, oldest first; kept only while a reader
    /// besides the flight's own entry waits on it.
    ranges: VecDeque<(u64, Bytes)>,
    /// Bytes below this may be sent: every range fetched but the blob's last, which waits for
    /// the whole to be checked and stored, so an answer that ends is one whose blob is here (a
    /// read, a Get Block List or a status after it finds it) and never one with bytes unchecked.
    sendable_to: u64,
    /// Bytes shown were not the blob's (the whole did not match its MD5): a follower that sent
    /// any must cut its answer.
    void: bool,
    pub outcome: Option<Outcome>,
}

/// The fetch's side of a flight: what it shows its followers.
#[derive(Clone)]
pub struct Feed(pub(crate) Arc<watch::Sender<FlightState>>);

impl Feed {
    pub fn new() -> (Feed, watch::Receiver<FlightState>) {
        let (tx, rx) = watch::channel(FlightState::default());
        (Feed(Arc::new(tx)), rx)
    }

    /// Shows the blob being fetched (once its ETag is known to be the one it keeps here).
    pub fn show(&self, blob: BlobSummary) {
        self.0.send_modify(|st| st.blob = Some(blob));
    }

    /// A range fetched at `off` of the blob shown.
    pub fn range(&self, off: u64, bytes: &Bytes) {
        // The flight's own entry is one receiver: ranges are kept only for a reader beyond it.
        let followed = self.0.receiver_count() > 1;
        self.0.send_if_modified(|st| {
            let Some(size) = st.blob.as_ref().map(|b| b.size).filter(|_| followed && !st.void) else {
                return false;
            };
            let end = off + bytes.len() as u64;
            debug_assert!(end <= size, "a range within the blob shown");
            st.ranges.retain(|(o, _)| *o != off);
            st.ranges.push_back((off, bytes.clone()));
            while st.ranges.len() > KEPT {
                st.ranges.pop_front();
            }
            st.sendable_to = st.sendable_to.max(if end < size { end } else { off });
            true
        });
    }

    /// What was shown was not the blob: followers that sent any of it cut their answers, and
    /// nothing more is kept for them (later readers read from flash).
    pub fn void(&self) {
        self.0.send_modify(|st| {
            st.void = true;
            st.ranges.clear();
        });
    }

    pub fn end(&self, outcome: Outcome) {
        self.0.send_modify(|st| {
            match (&outcome, &st.blob) {
                // Checked and stored: the last range too may go.
                (Ok(Refreshed::Current), Some(b)) => st.sendable_to = b.size,
                _ => st.ranges.clear(),
            }
            st.outcome = Some(outcome);
        });
    }
}

/// Waits until the flight shows its blob or ends; the blob where it shows one still being
/// fetched that `cond` lets this read have (the other cases are the ordinary read's).
pub async fn shown(rx: &mut watch::Receiver<FlightState>, cond: &Conditions) -> Option<BlobSummary> {
    let st = rx.wait_for(|st| st.outcome.is_some() || st.blob.is_some()).await.ok()?;
    let b = st.blob.as_ref().filter(|_| st.outcome.is_none())?;
    let passes = cond.check(Some((b.etag, b.modified_ns)), false) == edgeblob_proto::conditions::ConditionOutcome::Pass;
    passes.then(|| b.clone())
}

/// Waits for the flight's outcome.
pub async fn outcome(rx: &mut watch::Receiver<FlightState>) -> Outcome {
    match rx.wait_for(|st| st.outcome.is_some()).await {
        Ok(st) => st.outcome.clone().unwrap_or(Err(ENDED_EARLY.into())),
        Err(_) => Err(ENDED_EARLY.into()),
    }
}

pub const ENDED_EARLY: &str = "the fetch from the lake ended early";

/// The bytes of `blob` (shown by the flight `rx`) for a reader on shard `s`: the kept ranges
/// while it keeps up, and from flash once stored where it fell behind. An error cuts the answer
/// short: its head is sent, and the bytes it would have had were not the blob's or not here.
pub fn follow(
    s: Rc<Shard>,
    key: BlobKey,
    blob: &BlobSummary,
    rx: watch::Receiver<FlightState>,
) -> impl Stream<Item = std::io::Result<Bytes>> + 'static {
    let f = Follower { s, key, etag: blob.etag, len: blob.size, pos: 0, rx, flash: None };
    futures::stream::unfold(f, |mut f| async move {
        let piece = f.next().await?;
        Some((piece, f))
    })
}

struct Follower {
    s: Rc<Shard>,
    key: BlobKey,
    etag: u64,
    len: u64,
    /// Bytes sent so far.
    pos: u64,
    rx: watch::Receiver<FlightState>,
    flash: Option<futures::stream::LocalBoxStream<'static, std::io::Result<Bytes>>>,
}

enum Step {
    Send(Bytes),
    Flash,
    Wait,
    Fail(String),
}

impl Follower {
    async fn next(&mut self) -> Option<std::io::Result<Bytes>> {
        if let Some(flash) = &mut self.flash {
            return flash.next().await;
        }
        if self.pos >= self.len {
            return None;
        }
        let mut ended = false;
        loop {
            let step = step(self.pos, &self.rx.borrow_and_update());
            match step {
                Step::Send(b) => {
                    self.pos += b.len() as u64;
                    debug_assert!(self.pos <= self.len, "a follower sends no byte past the blob");
                    return Some(Ok(b));
                }
                Step::Flash => return self.read_flash().await,
                Step::Fail(why) => {
                    self.pos = self.len;
                    return Some(Err(std::io::Error::other(why)));
                }
                Step::Wait if ended => {
                    self.pos = self.len;
                    return Some(Err(std::io::Error::other(ENDED_EARLY)));
                }
                // The fetch's end sets its outcome before the sender goes: one more look.
                Step::Wait => ended = self.rx.changed().await.is_err(),
            }
        }
    }

    /// The rest, from flash: the version shown, or the answer is cut.
    async fn read_flash(&mut self) -> Option<std::io::Result<Bytes>> {
        let cond = Conditions {
            if_match: Some(ETagMatch::Tags(vec![edgeblob_proto::etag_string(self.etag)])),
            ..Conditions::default()
        };
        let opened = ops::open_read(&self.s, self.key.clone(), Some((self.pos, None)), cond).await;
        let (_, _, reader) = match opened {
            Ok(r) => r,
            Err(e) => {
                self.pos = self.len;
                return Some(Err(std::io::Error::other(format!("the blob fetched is gone: {e}"))));
            }
        };
        let flash = self.flash.insert(reader.into_stream().boxed_local());
        flash.next().await
    }
}

/// What a follower that sent `pos` bytes does next, given what the flight shows.
fn step(pos: u64, st: &FlightState) -> Step {
    if st.void && pos > 0 {
        return Step::Fail("the lake's blob did not match its MD5".into());
    }
    if pos < st.sendable_to {
        if let Some((off, b)) = st.ranges.iter().find(|(off, b)| *off <= pos && pos < off + b.len() as u64) {
            let end = (off + b.len() as u64).min(st.sendable_to);
            return Step::Send(b.slice((pos - off) as usize..(end - off) as usize));
        }
    }
    match &st.outcome {
        None => Step::Wait,
        Some(Ok(Refreshed::Current)) => Step::Flash,
        Some(Ok(Refreshed::Raced)) => Step::Fail("the blob changed while it was fetched".into()),
        Some(Err(why)) => Step::Fail(why.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(size: u64) -> BlobSummary {
        BlobSummary {
            name: "b".into(),
            etag: 7,
            created_ns: 0,
            modified_ns: 0,
            size,
            props: edgeblob_meta::model::BlobProps::default(),
        }
    }

    fn sent(step: Step) -> Vec<u8> {
        match step {
            Step::Send(b) => b.to_vec(),
            _ => panic!("expected bytes to send"),
        }
    }

    #[test]
    fn a_follower_gets_every_range_but_the_last_until_the_blob_is_stored() {
        let (feed, _own) = Feed::new();
        let follower = feed.0.subscribe();
        let bytes = |n: u8| Bytes::from(vec![n; 4]);
        // Nothing shown: nothing kept.
        feed.range(0, &bytes(1));
        assert!(matches!(step(0, &follower.borrow()), Step::Wait));
        feed.show(blob(10));
        feed.range(0, &bytes(1));
        feed.range(4, &bytes(2));
        assert_eq!(sent(step(0, &follower.borrow())), [1; 4]);
        assert_eq!(sent(step(5, &follower.borrow())), [2; 3], "from the middle of a range");
        feed.range(8, &Bytes::from_static(&[3, 3]));
        assert!(matches!(step(8, &follower.borrow()), Step::Wait), "the last range waits for the store");
        assert!(matches!(step(0, &follower.borrow()), Step::Wait), "fell behind the kept ranges: waits");
        feed.end(Ok(Refreshed::Current));
        assert_eq!(sent(step(8, &follower.borrow())), [3, 3], "stored: the last range goes");
        assert!(matches!(step(0, &follower.borrow()), Step::Flash), "behind: the rest from flash");
    }

    #[test]
    fn followers_of_a_fetch_that_did_not_store_its_blob_are_cut() {
        for end in [Ok(Refreshed::Raced), Err("lake down".to_owned())] {
            let (feed, _own) = Feed::new();
            let follower = feed.0.subscribe();
            feed.show(blob(8));
            feed.range(0, &Bytes::from(vec![1; 4]));
            feed.range(4, &Bytes::from(vec![2; 4]));
            feed.end(end.clone());
            assert!(matches!(step(4, &follower.borrow()), Step::Fail(_)), "{end:?}: the last range never goes");
            assert!(matches!(step(0, &follower.borrow()), Step::Fail(_)), "{end:?}");
        }
    }

    #[test]
    fn bytes_found_wrong_cut_the_followers_that_sent_any() {
        let (feed, _own) = Feed::new();
        let follower = feed.0.subscribe();
        feed.show(blob(8));
        feed.range(0, &Bytes::from(vec![1; 4]));
        feed.void();
        feed.range(0, &Bytes::from(vec![9; 4]));
        assert!(matches!(step(4, &follower.borrow()), Step::Fail(_)), "sent unchecked bytes: cut");
        assert!(matches!(step(0, &follower.borrow()), Step::Wait), "sent none: waits for the store");
        feed.end(Ok(Refreshed::Current));
        assert!(matches!(step(0, &follower.borrow()), Step::Flash), "and reads it from flash");
    }

    #[test]
    fn ranges_are_kept_only_for_followers_and_only_a_few() {
        let (feed, own) = Feed::new();
        feed.show(blob(100));
        feed.range(0, &Bytes::from(vec![1; 10]));
        assert!(own.borrow().ranges.is_empty(), "no follower: nothing kept");
        let _follower = feed.0.subscribe();
        for i in 0..5 {
            feed.range(i * 10, &Bytes::from(vec![i as u8; 10]));
        }
        let offsets: Vec<u64> = own.borrow().ranges.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets.len(), KEPT);
        assert_eq!(offsets.last(), Some(&40), "the latest kept");
    }
}
