//! Chunks from the tier, on the tier thread: each downloaded once however many read it at once
//! (flights), kept a moment for readers just behind (recent), and the chunks asked for together
//! from one pack read with one range GET where they lie side by side (runs).
//!
//! Why runs: a reader of a released blob asks for `io_depth` chunks at once, and a blob's chunks
//! were packed in the order they were written, so they usually lie back to back in one pack.
//! One GET for the lot costs one request (Azure bills them, and each pays a round trip) instead
//! of one per chunk. The tier thread takes with a first ask every other already queued (no
//! timer: a lone random read waits for nothing); a run is cut at [`RUN_BYTES`] so that a large
//! read still goes as several GETs in parallel, and bridges gaps of at most [`GAP_BYTES`] (chunks no one asked for, read
//! and dropped), so a 4 KiB range still costs one sealed chunk and not a neighbour's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use edgeblob_remote::Remote;
use edgeblob_tier::{Entry, Header, NodeKey, PackId};
use tokio::sync::oneshot;

use super::remote::{node_prefix, TierPlace};
use super::stats::TierStats;

/// Asks gathered at most into one round.
pub const GATHER_MAX: usize = 256;

/// Bytes past which a run takes no more chunks (one GET reads at most this and a chunk).
const RUN_BYTES: u64 = 4 << 20;

/// The widest gap between two asked chunks that one GET reads through.
const GAP_BYTES: u64 = 64 << 10;

/// Bytes of chunks lately downloaded that the tier thread keeps, node-wide: readers of one blob
/// who are not quite at the same time, or on other shards, download it once, not once each.
const RECENT_BYTES: usize = 64 << 20;

pub type Reply = oneshot::Sender<Result<Bytes, String>>;

type Key = (PackId, u32);

/// Chunks lately downloaded, oldest first out, within [`RECENT_BYTES`].
#[derive(Default)]
struct Recent {
    by_place: HashMap<Key, Bytes>,
    order: std::collections::VecDeque<Key>,
    bytes: usize,
}

impl Recent {
    fn insert(&mut self, k: Key, v: Bytes) {
        if v.len() > RECENT_BYTES / 4 || self.by_place.contains_key(&k) {
            return;
        }
        self.bytes += v.len();
        self.by_place.insert(k, v);
        self.order.push_back(k);
        while self.bytes > RECENT_BYTES {
            let Some(old) = self.order.pop_front() else { break };
            if let Some(v) = self.by_place.remove(&old) {
                self.bytes -= v.len();
            }
        }
    }
}

/// The tier thread's downloads.
#[derive(Default)]
pub struct Fetcher {
    /// Downloads in flight, with everyone waiting for each.
    flights: Mutex<HashMap<Key, Vec<Reply>>>,
    recent: Mutex<Recent>,
}

/// One asked chunk of a run.
struct Wanted {
    place: TierPlace,
    entry: Entry,
}

impl Fetcher {
    /// Forgets what was downloaded (opened with a key that may since have been revoked).
    pub fn forget(&self) {
        *self.recent.lock().unwrap_or_else(|p| p.into_inner()) = Recent::default();
    }

    /// Answers `asks`: from the recent chunks, by joining a download in flight, or by new
    /// downloads, one range GET for each run of chunks side by side in a pack.
    pub fn start(
        self: &Arc<Self>,
        asks: Vec<(TierPlace, Reply)>,
        remote: &Arc<Remote>,
        key: &Arc<NodeKey>,
        stats: &Arc<TierStats>,
    ) {
        let mut by_pack: HashMap<PackId, Vec<Wanted>> = HashMap::new();
        for (place, reply) in asks {
            let id = match Header::parse(&place.header) {
                Ok(h) => h.id,
                Err(e) => {
                    let _ = reply.send(Err(format!("a pack header kept locally: {e}")));
                    continue;
                }
            };
            let k = (id, place.entry);
            if let Some(hit) = self.recent.lock().unwrap_or_else(|p| p.into_inner()).by_place.get(&k) {
                let _ = reply.send(Ok(hit.clone()));
                continue;
            }
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(waiting) = flights.get_mut(&k) {
                waiting.push(reply);
                continue;
            }
            flights.insert(k, vec![reply]);
            let entry = Entry { index: place.entry, chunk: place.chunk, at: place.at };
            by_pack.entry(id).or_default().push(Wanted { place, entry });
        }
        for (id, mut wanted) in by_pack {
            wanted.sort_by_key(|w| w.entry.at);
            for run in runs(wanted) {
                let (this, remote, key, stats) = (self.clone(), remote.clone(), key.clone(), stats.clone());
                tokio::spawn(async move { this.download_run(id, run, &remote, &key, &stats).await });
            }
        }
    }

    /// Downloads one run and answers everyone waiting for each of its chunks.
    async fn download_run(&self, id: PackId, run: Vec<Wanted>, remote: &Remote, key: &NodeKey, stats: &TierStats) {
        let began = Instant::now();
        let results = read_run(&run, remote, key, stats).await;
        for (w, res) in run.iter().zip(results) {
            let k = (id, w.entry.index);
            match &res {
                Ok(bytes) => {
                    stats.fetch.observe(began.elapsed());
                    self.recent.lock().unwrap_or_else(|p| p.into_inner()).insert(k, bytes.clone());
                }
                Err(_) => TierStats::bump(&stats.fetch_errors, 1),
            }
            let waiting = self.flights.lock().unwrap_or_else(|p| p.into_inner()).remove(&k).unwrap_or_default();
            for reply in waiting {
                let _ = reply.send(res.clone());
            }
        }
    }
}

/// Cuts chunks of one pack, in place order, into runs one GET each reads.
fn runs(wanted: Vec<Wanted>) -> Vec<Vec<Wanted>> {
    let mut out: Vec<Vec<Wanted>> = Vec::new();
    for w in wanted {
        let r = w.entry.range();
        let joins = out.last().is_some_and(|run| {
            let (first, last) = (&run[0].entry, &run[run.len() - 1].entry);
            r.start >= last.range().end
                && r.start - last.range().end <= GAP_BYTES
                && last.range().end - first.at < RUN_BYTES
        });
        match joins {
            true => out.last_mut().expect("joins only a run there is").push(w),
            false => out.push(vec![w]),
        }
    }
    out
}

/// The chunks of a run, opened: one range GET for all of them; a chunk whose seal fails is read
/// once more on its own (the damage may have been on the way), then fails alone.
async fn read_run(run: &[Wanted], remote: &Remote, key: &NodeKey, stats: &TierStats) -> Vec<Result<Bytes, String>> {
    let opened = async {
        let header = Header::parse(&run[0].place.header).map_err(|e| e.to_string())?;
        let data_key = header.data_key(key).map_err(|e| e.to_string())?;
        let name = format!("{}/{}", node_prefix(&header.id.node), header.id.name());
        let (start, end) = (run[0].entry.at, run[run.len() - 1].entry.range().end);
        let bytes = remote.get_sealed_range(&name, start, end - start).await.map_err(|e| e.to_string())?;
        Ok::<_, String>((header, data_key, name, bytes, start))
    }
    .await;
    let (header, data_key, name, bytes, start) = match opened {
        Ok(o) => o,
        Err(e) => return run.iter().map(|_| Err(e.clone())).collect(),
    };
    let mut out = Vec::with_capacity(run.len());
    for w in run {
        let r = w.entry.range();
        let sealed = &bytes[(r.start - start) as usize..(r.end - start) as usize];
        let res = match w.entry.open(&header.id, &data_key, sealed) {
            Ok(stored) => Ok(Bytes::from(stored)),
            Err(first) => match remote.get_sealed_range(&name, r.start, r.end - r.start).await {
                Ok(again) => w.entry.open(&header.id, &data_key, &again).map(Bytes::from).map_err(|e| {
                    TierStats::bump(&stats.integrity_errors, 1);
                    format!("{name}: {e} (and before: {first})")
                }),
                Err(e) => Err(e.to_string()),
            },
        };
        out.push(res);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeblob_tier::ChunkInfo;

    fn wanted(index: u32, at: u64, stored_len: u32) -> Wanted {
        let chunk = ChunkInfo { offset: 0, hash: [0; 16], len: stored_len, stored_len, flags: 0 };
        Wanted { place: TierPlace { header: Vec::new(), entry: index, at, chunk }, entry: Entry { index, chunk, at } }
    }

    fn shape(runs: &[Vec<Wanted>]) -> Vec<Vec<u32>> {
        runs.iter().map(|r| r.iter().map(|w| w.entry.index).collect()).collect()
    }

    #[test]
    fn side_by_side_chunks_share_a_get_and_far_ones_do_not() {
        let len = 1 << 20;
        let step = wanted(0, 0, len).entry.sealed_len();
        // Back to back; then a gap of one 64 KiB chunk (bridged); then a gap of a MiB (not).
        let gap = (64 << 10) as u64;
        let w = vec![
            wanted(0, 100, len),
            wanted(1, 100 + step, len),
            wanted(3, 100 + 2 * step + gap, len),
            wanted(9, 100 + 4 * step + gap, len),
        ];
        assert_eq!(shape(&runs(w)), vec![vec![0, 1, 3], vec![9]]);
        // A run takes chunks until it holds 4 MiB: ten 1 MiB chunks back to back take three.
        let w: Vec<Wanted> = (0..10).map(|i| wanted(i, 100 + i as u64 * step, len)).collect();
        let cut = runs(w);
        assert_eq!(cut.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2]);
    }
}
