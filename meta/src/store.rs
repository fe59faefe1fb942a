//! A shard's metadata store: the in-memory state and the log that makes it durable. Every change
//! is encoded, appended to the log, then applied; the caller acknowledges it to a client only once
//! [`Commit::durable`] resolves.

use std::future::Future;
use std::rc::Rc;

use edgeblob_io::BlockDevice;

use crate::footprint::Footprint;
use crate::model::BlobKey;
use crate::record::Record;
use crate::refs::RefCounts;
use crate::replay::{self, RecoverError};
use crate::state::ShardMeta;
use crate::wal::{frame_len, AppendError, LogPlace, LogWriter};

pub type MetaError = AppendError;

pub struct MetaStore {
    /// Read it freely; change it only through [`MetaStore::commit`] (and
    /// [`MetaStore::drop_orphans`]), which keep `used` exact.
    pub state: ShardMeta,
    log: LogWriter,
    half_len: usize,
    /// What a checkpoint of `state` takes, without its header page and closing record.
    used: Footprint,
}

/// How much of a log half a shard's state may take. A checkpoint of at most half a half leaves
/// the other half of it for the records that follow: checkpoints come at most once per half a
/// half of appended records, and a change that shrinks the state (a delete) is always admitted
/// and always fits after the next checkpoint. Staged blocks, which a client may leave behind
/// without committing, get an eighth of a half so that they never crowd out commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub total: usize,
    pub staged: usize,
}

impl Limits {
    pub fn of_half(half_len: usize) -> Limits {
        Limits { total: half_len / 2, staged: half_len / 8 }
    }
}

/// A change that is applied in memory and queued in the log.
pub struct Commit {
    pub lsn: u64,
    /// References the change released: give them back once it is durable.
    pub released: RefCounts,
    pub durable: std::pin::Pin<Box<dyn Future<Output = Result<(), AppendError>>>>,
}

/// What recovery found, for the start-up log line.
#[derive(Debug, Clone, Copy)]
pub struct OpenReport {
    pub records: usize,
    pub torn_tail: bool,
    pub half: u8,
    pub generation: u64,
}

impl MetaStore {
    /// Recovers the shard's state from its log and starts the log writer. Must run inside the
    /// shard's `LocalSet`.
    pub async fn open(place: LogPlace, dev: Rc<dyn BlockDevice>) -> Result<(MetaStore, OpenReport), RecoverError> {
        let rec = replay::recover(&place, dev.as_ref()).await?;
        if let Some(torn) = rec.torn {
            replay::clear_torn(dev.as_ref(), torn, &rec.resume.partial_page)
                .await
                .map_err(|source| RecoverError::Io { shard: place.shard, source })?;
        }
        let mut state = ShardMeta::default();
        for (_, r) in &rec.records {
            state.apply(r);
        }
        let report = OpenReport {
            records: rec.records.len(),
            torn_tail: rec.torn.is_some(),
            half: rec.resume.half,
            generation: rec.resume.generation,
        };
        let half_len = place.halves[0].1 as usize;
        let log = LogWriter::start(place, rec.resume, dev);
        let used = state.footprint();
        Ok((MetaStore { state, log, half_len, used }, report))
    }

    pub fn limits(&self) -> Limits {
        Limits::of_half(self.half_len)
    }

    /// What the state takes of its limits now.
    pub fn used(&self) -> Footprint {
        self.used
    }

    /// Drops entries of dead container incarnations (see [`ShardMeta::drop_orphans`]).
    pub fn drop_orphans(&mut self, live: &dyn Fn(&BlobKey, u64) -> bool) -> usize {
        let n = self.state.drop_orphans(live);
        self.used = self.state.footprint();
        n
    }

    /// Appends `rec` to the log and applies it. When the current half has no room, first writes
    /// a checkpoint of the state into the other half. A change that would grow the state past
    /// its [`Limits`] is refused; one that does not grow it never is. On error nothing has
    /// changed.
    pub fn commit(&mut self, rec: Record) -> Result<Commit, AppendError> {
        // v1 counts references in memory only; its checkpoints hold no chunk table.
        debug_assert!(
            !matches!(rec, Record::RefsApplied { .. } | Record::RefsReplaced { .. }),
            "a v1 log holds no reference changes"
        );
        let payload = rec.encode();
        if frame_len(payload.len()) + edgeblob_io::PAGE_SIZE > self.half_len {
            return Err(AppendError::TooLarge(payload.len()));
        }
        let after = self.used.after(&self.state.change_of(&rec, payload.len()));
        self.admit(after)?;
        if self.log.room() < frame_len(payload.len()) {
            let snapshot: Vec<Vec<u8>> = self.state.snapshot().iter().map(|r| r.encode().to_vec()).collect();
            debug_assert_eq!(
                snapshot.iter().map(|p| frame_len(p.len())).sum::<usize>(),
                self.used.total() + frame_len(Record::CheckpointEnd.encode().len()),
                "the running footprint is the checkpoint's size"
            );
            self.log.checkpoint(&snapshot)?;
            if self.log.room() < frame_len(payload.len()) {
                return Err(AppendError::Full);
            }
        }
        let lsn = self.log.append(&payload)?;
        let released = self.state.apply(&rec);
        self.used = after;
        Ok(Commit { lsn, released, durable: Box::pin(self.log.wait(lsn)) })
    }

    fn admit(&self, after: Footprint) -> Result<(), AppendError> {
        let limits = self.limits();
        if after.staged > self.used.staged && after.staged > limits.staged {
            return Err(AppendError::StagedFull);
        }
        if after.total() > self.used.total() && after.total() > limits.total {
            return Err(AppendError::MetadataFull);
        }
        Ok(())
    }

    /// Resolves when a commit is unlikely to be refused as [`AppendError::Busy`]: at once unless
    /// the current half is running out of room while its checkpoint is still being written.
    /// Writers await it before their commit, so that a burst waits for the flush instead of
    /// failing; the commit itself stays synchronous (and may still, rarely, be refused).
    pub fn ready(&self) -> impl Future<Output = Result<(), AppendError>> + 'static {
        let wait = (self.log.room() < self.half_len / 4).then(|| self.log.switch_ready());
        async move {
            match wait {
                Some(w) => w.await,
                None => Ok(()),
            }
        }
    }

    /// Waits until everything committed so far is durable.
    pub fn sync(&self) -> impl Future<Output = Result<(), AppendError>> + 'static {
        self.log.wait(self.log.next_lsn() - 1)
    }

    pub fn generation(&self) -> u64 {
        self.log.generation()
    }
}
