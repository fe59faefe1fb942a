//! A shard's metadata store: the in-memory state and the log that makes it durable. Every change
//! is encoded, appended to the log, then applied; the caller acknowledges it to a client only once
//! [`Commit::durable`] resolves.

use std::future::Future;
use std::rc::Rc;

use edgeblob_io::BlockDevice;

use crate::model::ChunkRef;
use crate::record::Record;
use crate::replay::{self, RecoverError};
use crate::state::ShardMeta;
use crate::wal::{frame_len, AppendError, LogPlace, LogWriter};

pub type MetaError = AppendError;

pub struct MetaStore {
    pub state: ShardMeta,
    log: LogWriter,
    half_len: usize,
}

/// A change that is applied in memory and queued in the log.
pub struct Commit {
    pub lsn: u64,
    /// References the change released: give them back once it is durable.
    pub released: Vec<ChunkRef>,
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
        for r in &rec.records {
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
        Ok((MetaStore { state, log, half_len }, report))
    }

    /// Appends `rec` to the log and applies it. When the current half has no room, first writes
    /// a checkpoint of the state into the other half. On error nothing has changed.
    pub fn commit(&mut self, rec: Record) -> Result<Commit, AppendError> {
        let payload = rec.encode();
        if self.log.room() < frame_len(payload.len()) {
            if frame_len(payload.len()) + edgeblob_io::PAGE_SIZE > self.half_len {
                return Err(AppendError::TooLarge(payload.len()));
            }
            let snapshot: Vec<Vec<u8>> = self.state.snapshot().iter().map(|r| r.encode().to_vec()).collect();
            self.log.checkpoint(&snapshot)?;
            if self.log.room() < frame_len(payload.len()) {
                return Err(AppendError::Full);
            }
            if self.log.room() < self.half_len / 8 {
                tracing::warn!(room = self.log.room(), "metadata log nearly full after a checkpoint");
            }
        }
        let lsn = self.log.append(&payload)?;
        let released = self.state.apply(&rec);
        Ok(Commit { lsn, released, durable: Box::pin(self.log.wait(lsn)) })
    }

    /// Waits until everything committed so far is durable.
    pub fn sync(&self) -> impl Future<Output = Result<(), AppendError>> + 'static {
        self.log.wait(self.log.next_lsn() - 1)
    }

    pub fn generation(&self) -> u64 {
        self.log.generation()
    }
}
