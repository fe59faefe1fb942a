//! Which local copies the tier releases first, and which never (docs/architecture.md, "What is
//! released first, and what never is").
//!
//! Two facts about a chunk decide, both kept in memory only, by the place its id names (where
//! it was first written, which a release keeps):
//! - when it was last read or written (the access clock, to a minute): the watermarks release
//!   the coldest first, and none touched within `release_idle_secs`. The stamps are slots of a
//!   table about as long as the device holds chunks of `chunk_size`, a chunk's slot picked by a
//!   hash of its place: two chunks that share a slot both look as warm as the warmer (a
//!   collision keeps a copy longer, never releases one sooner). Not one stamp per MiB of the
//!   device: space a release gives back is written again at once, and every copy still local
//!   in that MiB would look new. A start forgets the clock: a chunk not touched since counts as
//!   the coldest.
//! - whether a blob under a `keep` rule (a container's opt-out, a pin) holds it, one bit per MiB
//!   of the device: such a chunk is never released, by the watermarks or by an operator's
//!   `tier now`. A blob is marked when it is committed, and at start every blob under a rule is
//!   (until then nothing is released). Marks stay when the blob goes, and cover the MiB around
//!   a kept chunk: kept too long costs space, never a byte. A restart clears them.
//!
//! Both are approximations that err one way only: they choose *which* tiered copies go, and
//! every copy released is in the tier and in a restore point whatever they say.

use edgeblob_io::volume::NodeLayout;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use edgeblob_meta::listing::{ListEntry, ListQuery};
use edgeblob_meta::model::{BlobKey, ChunkRef};

use crate::config::KeepRule;
use crate::error::{EngineError, Result};
use crate::ops::at;
use crate::shard::Shard;

/// Bytes of the device one keep bit stands for.
pub const GRANULE: u64 = 1 << 20;

/// Blobs listed per round of the start's marking.
const PAGE: usize = 1000;

pub struct Policy {
    layout: NodeLayout,
    start: Instant,
    tick: Duration,
    /// Per slot: the access clock's tick at its chunks' last touch, plus one (0: not since
    /// start). A power of two long.
    heat: Vec<AtomicU16>,
    /// Per granule: a chunk of a kept blob was first written there.
    kept: Vec<AtomicU64>,
    rules: Vec<KeepRule>,
    idle: Duration,
    /// Whether every blob under a rule has been marked since this start.
    kept_ready: AtomicBool,
}

impl Policy {
    /// A policy for a node laid out as `layout`, cut in chunks of up to `chunk_size`;
    /// without a tier, one that tracks nothing.
    pub fn new(layout: &NodeLayout, chunk_size: u64, tier: Option<&crate::config::TierConfig>) -> Policy {
        let device_len = layout.total_len();
        let (granules, slots) = match tier {
            Some(_) => {
                let chunks = device_len.div_ceil(chunk_size.max(edgeblob_io::PAGE_SIZE as u64));
                (device_len.div_ceil(GRANULE) as usize, chunks.next_power_of_two().max(1024) as usize)
            }
            None => (0, 0),
        };
        let rules = tier.map(|t| t.keep.clone()).unwrap_or_default();
        Policy {
            layout: layout.clone(),
            start: Instant::now(),
            tick: tier.map_or(Duration::from_secs(60), |t| t.access_tick.max(Duration::from_millis(1))),
            heat: (0..slots).map(|_| AtomicU16::new(0)).collect(),
            kept: (0..granules.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            kept_ready: AtomicBool::new(rules.is_empty()),
            rules,
            idle: Duration::from_secs(tier.map_or(0, |t| t.release_idle_secs)),
        }
    }

    /// The access clock now: ticks since start, plus one (so that 0 means "not touched").
    pub fn now(&self) -> u16 {
        let ticks = self.start.elapsed().as_nanos() / self.tick.as_nanos();
        (ticks + 1).min(u16::MAX as u128) as u16
    }

    /// The stamp slot of the chunk first written at `offset` (Fibonacci hashing of its page:
    /// neighbours land far apart).
    fn slot(&self, offset: u64) -> Option<&AtomicU16> {
        let page = offset / edgeblob_io::PAGE_SIZE as u64;
        let mixed = page.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16;
        self.heat.get((mixed & (self.heat.len() as u64).wrapping_sub(1)) as usize)
    }

    /// A read or a write of the chunk first written at `offset`.
    pub fn touch(&self, offset: u64) {
        if let Some(cell) = self.slot(offset) {
            let now = self.now();
            // Most touches find the stamp current: no write, no cache line taken from others.
            if cell.load(Ordering::Relaxed) != now {
                cell.store(now, Ordering::Relaxed);
            }
        }
    }

    /// The stamp of the chunk first written at `offset` (0: not touched since start).
    pub fn stamp(&self, offset: u64) -> u16 {
        self.slot(offset).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The newest stamp the watermarks may release: older than `release_idle_secs`.
    pub fn idle_below(&self) -> u16 {
        let idle_ticks = self.idle.as_nanos().div_ceil(self.tick.as_nanos());
        (self.now() as u128).saturating_sub(idle_ticks).min(u16::MAX as u128) as u16
    }

    /// Whether a rule keeps blob `key` on flash.
    pub fn keeps(&self, key: &BlobKey) -> bool {
        self.rules.iter().any(|r| r.covers(&key.account, &key.container, &key.name))
    }

    /// Before blob `key` is committed with `chunks`: marks them kept when a rule covers it.
    pub fn on_commit<'a>(&self, key: &BlobKey, chunks: impl IntoIterator<Item = &'a ChunkRef>) {
        if self.keeps(key) {
            chunks.into_iter().for_each(|c| self.keep(c.offset));
        }
    }

    fn keep(&self, offset: u64) {
        let Some(g) = self.layout.linear(offset).map(|at| at / GRANULE) else { return };
        if let Some(word) = self.kept.get((g / 64) as usize) {
            word.fetch_or(1 << (g % 64), Ordering::SeqCst);
        }
    }

    /// Whether the chunk first written at `offset` may be released: every kept blob is marked
    /// and none holds it.
    pub fn may_release(&self, offset: u64) -> bool {
        let g = self.layout.linear(offset).unwrap_or(u64::MAX) / GRANULE;
        self.kept_ready.load(Ordering::SeqCst)
            && self.kept.get((g / 64) as usize).is_none_or(|w| w.load(Ordering::SeqCst) & (1 << (g % 64)) == 0)
    }

    pub fn kept_ready(&self) -> bool {
        self.kept_ready.load(Ordering::SeqCst)
    }
}

/// At start, on the catalog shard: marks the chunks of every blob under a keep rule, then lets
/// releases begin. A failed listing is tried again (until then nothing is released).
pub async fn mark_at_start(s: Rc<Shard>) {
    let policy = &s.node.policy;
    if policy.kept_ready() {
        return;
    }
    let mut backoff = Duration::from_secs(1);
    loop {
        match mark_all(&s).await {
            Ok(()) => return policy.kept_ready.store(true, Ordering::SeqCst),
            Err(e) => {
                tracing::warn!(%e, retry_in = ?backoff, "the blobs of the tier's keep rules could not be marked; nothing is released until they are");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

async fn mark_all(s: &Rc<Shard>) -> Result<()> {
    for rule in &s.node.policy.rules {
        let mut marker = None;
        loop {
            let q = ListQuery { prefix: rule.prefix.clone(), delimiter: None, marker, max: PAGE, uncommitted: false };
            let page = match crate::ops::list_blobs(s, &rule.account, &rule.container, q).await {
                Ok(p) => p,
                // Not there (yet): its blobs are marked as they are committed.
                Err(EngineError::ContainerNotFound) => break,
                Err(e) => return Err(e),
            };
            for entry in page.entries {
                let ListEntry::Blob(b) = entry else { continue };
                let key = BlobKey::new(&rule.account, &rule.container, &b.name);
                let owner = s.node.owner_of(&key);
                match at(s, owner, move |o| async move { crate::blob::chunks(&o, &key).await }).await? {
                    Ok(chunks) => chunks.iter().for_each(|c| s.node.policy.keep(c.offset)),
                    Err(EngineError::BlobNotFound) => {}
                    Err(e) => return Err(e),
                }
            }
            match page.next_marker {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TierConfig;

    /// A node on one device of 1 GiB.
    fn gib() -> NodeLayout {
        let sbs = edgeblob_io::superblock::Superblock::new_node(&[1 << 30], 2, 2).unwrap();
        NodeLayout::of(&sbs).unwrap()
    }

    fn policy(keep: Vec<KeepRule>, idle_secs: u64, tick: Duration) -> Policy {
        let t = TierConfig { keep, release_idle_secs: idle_secs, access_tick: tick, ..TierConfig::default() };
        Policy::new(&gib(), 1 << 20, Some(&t))
    }

    #[test]
    fn a_touch_stamps_its_chunk_and_the_clock_starts_at_one() {
        let p = policy(Vec::new(), 0, Duration::from_secs(60));
        assert_eq!(p.heat.len(), 1024, "a 1 GiB device of 1 MiB chunks");
        assert_eq!(p.stamp(5 << 20), 0, "untouched since start");
        p.touch(5 << 20);
        assert_eq!(p.stamp(5 << 20), 1);
        // A chunk's neighbours (the pages after it, where freed space is written again) keep
        // their own stamps.
        let warm = (1..256u64).filter(|i| p.stamp((5 << 20) + i * 4096) != 0).count();
        assert_eq!(warm, 0, "a touch warmed {warm} neighbours");
        assert_eq!(p.idle_below(), 1, "with no idle time, everything up to now may go");
    }

    #[test]
    fn idle_time_holds_back_what_was_touched_within_it() {
        let p = policy(Vec::new(), 3600, Duration::from_millis(5));
        std::thread::sleep(Duration::from_millis(20));
        p.touch(0);
        assert!(p.stamp(0) > p.idle_below(), "touched within the idle time");
        assert_eq!(p.idle_below(), 0, "only what was not touched since start may go");
        let q = policy(Vec::new(), 0, Duration::from_millis(5));
        q.touch(0);
        std::thread::sleep(Duration::from_millis(20));
        assert!(q.stamp(0) <= q.idle_below());
    }

    #[test]
    fn a_rule_keeps_what_it_covers_once_marking_is_done() {
        let rule = |c: &str, p: &str| KeepRule { account: "a".into(), container: c.into(), prefix: p.into() };
        let p = policy(vec![rule("pinned", ""), rule("c", "keep/")], 0, Duration::from_secs(60));
        assert!(!p.may_release(0), "nothing goes before the start's marking");
        p.kept_ready.store(true, Ordering::SeqCst);
        let chunk = |offset| ChunkRef { hash: [1; 16], offset, stored_len: 4096, len: 4096, flags: 0 };
        p.on_commit(&BlobKey::new("a", "c", "go/x"), [&chunk(0)]);
        p.on_commit(&BlobKey::new("b", "pinned", "x"), [&chunk(GRANULE)]);
        assert!(p.may_release(0) && p.may_release(GRANULE), "not covered: another prefix, another account");
        p.on_commit(&BlobKey::new("a", "c", "keep/x"), [&chunk(3 * GRANULE + 8192)]);
        p.on_commit(&BlobKey::new("a", "pinned", "y"), [&chunk(70 * GRANULE)]);
        assert!(!p.may_release(3 * GRANULE) && !p.may_release(70 * GRANULE + 4096));
        assert!(p.may_release(2 * GRANULE) && p.may_release(4 * GRANULE) && p.may_release(69 * GRANULE));
        let none = Policy::new(&gib(), 1 << 20, None);
        none.touch(0);
        assert!(none.may_release(0) && none.stamp(0) == 0, "no tier: nothing tracked");
    }
}
