//! Recovery of a shard's log: pick the newest half with a complete checkpoint, replay its
//! frames, and tell a torn tail (an unacknowledged round cut short by a crash: truncated) from
//! damage to durable records (an error: the node refuses to start rather than serve wrong data).

use std::io;

use edgeblob_io::{AlignedBuf, BlockDevice, PAGE_SIZE};

use crate::record::Record;
use crate::wal::{encode_frame, parse_frame_in, HalfHeader, LogPlace, Resume, FRAME_ALIGN, FRAME_HEADER};

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("shard {shard}: neither log half has a valid header (log area damaged or not formatted)")]
    NoHeader { shard: u32 },
    #[error(
        "shard {shard}: log half {half} is damaged at offset {offset} (LSN {lsn}) and durable records follow \
         (LSN {later}); refusing to start. `edgeblob-admin fsck` shows the damage"
    )]
    Damaged { shard: u32, half: u8, offset: usize, lsn: u64, later: u64 },
    #[error("shard {shard}: log half {half}, LSN {lsn}: record fails validation: {reason}")]
    BadRecord { shard: u32, half: u8, lsn: u64, reason: String },
    #[error("shard {shard}: no log half holds a complete checkpoint")]
    NoCheckpoint { shard: u32 },
    #[error(
        "shard {shard}: the metadata index covers the log up to LSN {index} but the log holds records only from \
         LSN {from} to {to}; refusing to start"
    )]
    Gap { shard: u32, index: u64, from: u64, to: u64 },
    #[error("shard {shard}: reading the log: {source}")]
    Io { shard: u32, source: io::Error },
}

#[derive(Debug)]
pub struct Recovered {
    /// The records to apply with their LSNs, in order (checkpoint first).
    pub records: Vec<(u64, Record)>,
    pub resume: Resume,
    /// Bytes of a torn round that were dropped, if any: (device offset, length) to clear before
    /// new frames are written, so no stale frame of it can ever be read as a continuation.
    pub torn: Option<(u64, u64)>,
}

/// Reads `len` bytes at `offset` (page multiples) in 4 MiB pieces.
pub async fn read_range(dev: &dyn BlockDevice, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    const PIECE: u64 = 4 << 20;
    let mut out = Vec::with_capacity(len as usize);
    let mut at = 0;
    while at < len {
        let n = PIECE.min(len - at);
        let (res, buf) = dev.read(AlignedBuf::zeroed(n as usize), offset + at).await;
        res?;
        out.extend_from_slice(&buf[..n as usize]);
        at += n;
    }
    Ok(out)
}

/// Writes a fresh log: half 0 with an empty checkpoint, half 1 without a header.
pub async fn format_log(place: &LogPlace, dev: &dyn BlockDevice) -> io::Result<()> {
    let header = HalfHeader { shard: place.shard, generation: 1, first_lsn: 1, uuid: place.uuid };
    let mut bytes = header.encode().to_vec();
    encode_frame(&mut bytes, 1, 1, &Record::CheckpointEnd.encode());
    let mut page = AlignedBuf::zeroed(2 * PAGE_SIZE);
    page[..bytes.len()].copy_from_slice(&bytes);
    let (res, _) = dev.write(page, place.halves[0].0).await;
    res?;
    let (res, _) = dev.write(AlignedBuf::zeroed(PAGE_SIZE), place.halves[1].0).await;
    res?;
    dev.flush().await
}

pub async fn recover(place: &LogPlace, dev: &dyn BlockDevice) -> Result<Recovered, RecoverError> {
    recover_decoding(place, dev, 0).await
}

/// Recovery that decodes a record only if it ends a checkpoint or its LSN is at least
/// `decode_from` (an index holds the others already); every frame is still checked.
async fn recover_decoding(
    place: &LogPlace,
    dev: &dyn BlockDevice,
    decode_from: u64,
) -> Result<Recovered, RecoverError> {
    let shard = place.shard;
    let io_err = |source| RecoverError::Io { shard, source };
    let mut headers = Vec::new();
    for half in 0..2u8 {
        let (res, page) = dev.read(AlignedBuf::zeroed(PAGE_SIZE), place.halves[half as usize].0).await;
        res.map_err(io_err)?;
        if let Some(h) = HalfHeader::decode(&page, shard, &place.uuid) {
            headers.push((half, h));
        }
    }
    if headers.is_empty() {
        return Err(RecoverError::NoHeader { shard });
    }
    let max_generation = headers.iter().map(|(_, h)| h.generation).max().unwrap_or(0);
    headers.sort_by_key(|(_, h)| std::cmp::Reverse(h.generation));
    for (half, header) in headers {
        let (offset, len) = place.halves[half as usize];
        let bytes = read_range(dev, offset, len).await.map_err(io_err)?;
        match replay_half(shard, half, header, &bytes, decode_from)? {
            Some(mut rec) => {
                rec.resume.generation = max_generation;
                rec.torn = rec.torn.map(|(from, to)| (offset + from, to - from));
                return Ok(rec);
            }
            None => tracing::warn!(
                shard,
                half,
                generation = header.generation,
                "checkpoint incomplete; using the older half"
            ),
        }
    }
    Err(RecoverError::NoCheckpoint { shard })
}

/// What an index's recovery replays: the records after the LSN the index covers, with their
/// LSNs, in order; and where the log resumes.
#[derive(Debug)]
pub struct RecoveredAfter {
    pub records: Vec<(u64, Record)>,
    pub resume: Resume,
    pub torn: Option<(u64, u64)>,
}

/// Recovery for a shard whose metadata is in an index that covers the log up to LSN `after`:
/// the records after it, from the older half (when the index has not caught up with it yet)
/// and then the current one. A log is a ring of two halves here: a half is reused only once the
/// index covers it, so the two halves always hold everything after `after`.
pub async fn recover_after(
    place: &LogPlace,
    dev: &dyn BlockDevice,
    after: u64,
) -> Result<RecoveredAfter, RecoverError> {
    let shard = place.shard;
    let current = recover_decoding(place, dev, after + 1).await?;
    let first = current.resume.first_lsn;
    let end = current.resume.next_lsn - 1;
    let mut records = Vec::new();
    if after + 1 < first {
        let other = 1 - current.resume.half;
        let (offset, len) = place.halves[other as usize];
        let bytes = read_range(dev, offset, len).await.map_err(|source| RecoverError::Io { shard, source })?;
        let gap = || RecoverError::Gap { shard, index: after, from: first, to: end };
        let header = HalfHeader::decode(&bytes[..PAGE_SIZE], shard, &place.uuid)
            .filter(|h| h.first_lsn <= after + 1)
            .ok_or_else(gap)?;
        let mut at = PAGE_SIZE;
        let mut expected = header.first_lsn;
        while expected < first {
            let f = parse_frame_in(&bytes, at, expected..expected + 1).ok_or_else(gap)?;
            if f.lsn > after {
                let rec = Record::decode(f.payload).map_err(|reason| RecoverError::BadRecord {
                    shard,
                    half: other,
                    lsn: f.lsn,
                    reason,
                })?;
                records.push((f.lsn, rec));
            }
            at = f.end;
            expected += 1;
        }
    }
    if after > end {
        return Err(RecoverError::Gap { shard, index: after, from: first, to: end });
    }
    records.extend(current.records.into_iter().filter(|(lsn, _)| *lsn > after));
    Ok(RecoveredAfter { records, resume: current.resume, torn: current.torn })
}

/// Replays one half, decoding the records of its checkpoint and those from `decode_from` on.
/// None when its checkpoint is incomplete (a crash during the switch).
fn replay_half(
    shard: u32,
    half: u8,
    header: HalfHeader,
    bytes: &[u8],
    decode_from: u64,
) -> Result<Option<Recovered>, RecoverError> {
    let mut records = Vec::new();
    let mut at = PAGE_SIZE;
    let mut expected = header.first_lsn;
    let mut checkpoint_done = false;
    while let Some(f) = parse_frame_in(bytes, at, expected..expected + 1) {
        // A frame's checksum covers its payload, so a skipped record is still known intact.
        if !checkpoint_done || f.lsn >= decode_from {
            let rec = Record::decode(f.payload).map_err(|reason| RecoverError::BadRecord {
                shard,
                half,
                lsn: f.lsn,
                reason,
            })?;
            checkpoint_done |= rec == Record::CheckpointEnd;
            records.push((f.lsn, rec));
        }
        at = f.end;
        expected += 1;
    }
    // Look past the end for frames of this generation: their LSNs follow the end's, by no more
    // than the frames the half can hold.
    let mut torn_end = None;
    let mut pos = at + FRAME_ALIGN;
    let later = expected..expected + (bytes.len() / FRAME_HEADER) as u64;
    while pos + FRAME_ALIGN <= bytes.len() {
        if let Some(f) = parse_frame_in(bytes, pos, later.clone()) {
            if f.group_lsn > expected {
                return Err(RecoverError::Damaged { shard, half, offset: at, lsn: expected, later: f.lsn });
            }
            torn_end = Some(f.end);
            pos = f.end;
        } else {
            pos += FRAME_ALIGN;
        }
    }
    if !checkpoint_done {
        return Ok(None);
    }
    if torn_end.is_some() {
        tracing::warn!(
            shard,
            half,
            offset = at,
            lsn = expected,
            "log ends in a torn round; its unacknowledged records are dropped"
        );
    }
    let partial = at % PAGE_SIZE;
    Ok(Some(Recovered {
        records,
        resume: Resume {
            half,
            first_lsn: header.first_lsn,
            generation: header.generation,
            next_lsn: expected,
            end: at,
            partial_page: bytes[at - partial..at].to_vec(),
        },
        torn: torn_end.map(|end| ((at - partial) as u64, end.next_multiple_of(PAGE_SIZE) as u64)),
    }))
}

/// Clears a torn round's pages (see [`Recovered::torn`]), keeping the intact partial page.
pub async fn clear_torn(dev: &dyn BlockDevice, torn: (u64, u64), partial_page: &[u8]) -> io::Result<()> {
    let (offset, len) = torn;
    let mut buf = AlignedBuf::zeroed(len as usize);
    buf[..partial_page.len()].copy_from_slice(partial_page);
    let (res, _) = dev.write(buf, offset).await;
    res?;
    dev.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BlobKey;

    const UUID: [u8; 16] = [5; 16];

    fn rec(n: u32) -> Vec<u8> {
        Record::StagedDropped { key: BlobKey::new("a", "c", &n.to_string()) }.encode().to_vec()
    }

    /// A half: header, checkpoint (lsn 1), then frames `lsns` with their round's first lsn.
    fn half(rounds: &[&[u64]]) -> (HalfHeader, Vec<u8>, Vec<usize>) {
        let header = HalfHeader { shard: 0, generation: 1, first_lsn: 1, uuid: UUID };
        let mut b = header.encode().to_vec();
        encode_frame(&mut b, 1, 1, &Record::CheckpointEnd.encode());
        let mut starts = Vec::new();
        for round in rounds {
            for &lsn in round.iter() {
                starts.push(b.len());
                encode_frame(&mut b, lsn, round[0], &rec(lsn as u32));
            }
        }
        b.resize(1 << 20, 0);
        (header, b, starts)
    }

    #[test]
    fn intact_log_replays_everything() {
        let (h, b, _) = half(&[&[2, 3], &[4]]);
        let r = replay_half(0, 0, h, &b, 0).unwrap().unwrap();
        assert_eq!(r.records.len(), 4);
        assert_eq!(r.resume.next_lsn, 5);
        assert!(r.torn.is_none());
    }

    #[test]
    fn damage_in_the_last_round_is_a_torn_tail() {
        let (h, mut b, starts) = half(&[&[2, 3], &[4, 5, 6]]);
        b[starts[2] + 40] ^= 1; // LSN 4, first frame of the last round
        let r = replay_half(0, 0, h, &b, 0).unwrap().unwrap();
        assert_eq!(r.resume.next_lsn, 4, "records up to 3 survive");
        let (from, to) = r.torn.unwrap();
        assert!(from as usize <= starts[2] && to as usize >= starts[4], "the rest of the round is cleared");
    }

    #[test]
    fn damage_followed_by_a_later_round_is_an_error() {
        let (h, mut b, starts) = half(&[&[2, 3], &[4, 5], &[6]]);
        b[starts[1] + 40] ^= 1; // LSN 3: durable, since round 4.. was written after its flush
        let err = replay_half(0, 0, h, &b, 0).unwrap_err();
        assert!(matches!(err, RecoverError::Damaged { lsn: 3, later: 4, .. }), "{err}");
    }

    #[test]
    fn incomplete_checkpoint_is_skipped() {
        let header = HalfHeader { shard: 0, generation: 2, first_lsn: 10, uuid: UUID };
        let mut b = header.encode().to_vec();
        encode_frame(&mut b, 10, 10, &rec(1));
        b.resize(1 << 20, 0);
        assert!(replay_half(0, 1, header, &b, 0).unwrap().is_none());
    }

    #[test]
    fn stale_frames_of_older_generations_are_ignored() {
        let (h, mut b, _) = half(&[&[2]]);
        let mut stale = Vec::new();
        encode_frame(&mut stale, 0, 0, &rec(9)); // LSN below the half's first LSN
        let at = 64 * 1024;
        b[at..at + stale.len()].copy_from_slice(&stale);
        let r = replay_half(0, 0, h, &b, 0).unwrap().unwrap();
        assert_eq!(r.records.len(), 2);
        assert!(r.torn.is_none());
    }
}
