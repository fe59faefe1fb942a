//! The data-reduction ratio: logical bytes (what clients stored) over stored bytes (the pages the
//! chunks occupy), per node and per container.

use std::collections::HashMap;
use std::rc::Rc;

use edgeblob_meta::index::keys;
use edgeblob_meta::model::{Blob, BlobKey, ChunkRef, StagedBlock};
use edgeblob_meta::shard_store;

use super::counts::{counted, each_counted};
use super::error::Result;
use super::shard::Shard;
use super::Node;

/// What is called with each uncommitted block.
type OnStaged<'a> = &'a mut dyn FnMut(&BlobKey, &StagedBlock);

/// Calls `blob` for every committed blob of the shard from `from` (an index key) on until it
/// returns false, and `staged` for every uncommitted block when given: what the shard holds once
/// its changes so far are in its index (changes made meanwhile may or may not be seen).
async fn for_each(
    s: &Rc<Shard>,
    from: Vec<u8>,
    mut blob: impl FnMut(&BlobKey, &Blob) -> bool,
    mut staged: Option<OnStaged<'_>>,
) -> Result<()> {
    s.flush_index().await?;
    let mut at = Some(from);
    while let Some(from) = at.take() {
        let page = shard_store::scan_blobs(&s.meta, from, 4096).await?;
        if !page.items.iter().all(|(k, b)| blob(k, b)) {
            break;
        }
        at = page.next;
    }
    if let Some(f) = staged.as_mut() {
        let mut at = Some(Vec::new());
        while let Some(from) = at.take() {
            let page = shard_store::scan_staged(&s.meta, from, 4096).await?;
            for (k, _, b) in &page.items {
                f(k, b);
            }
            at = page.next;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reduction {
    pub logical_bytes: u64,
    pub stored_bytes: u64,
}

impl Reduction {
    /// logical / stored; 1.0 when nothing is stored.
    pub fn ratio(&self) -> f64 {
        if self.stored_bytes == 0 {
            1.0
        } else {
            self.logical_bytes as f64 / self.stored_bytes as f64
        }
    }
}

/// One shard's part of the device: its region and what of it is free.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardSpace {
    pub region_bytes: u64,
    pub free_bytes: u64,
}

impl ShardSpace {
    /// This shard's region and free space, as its allocator has them now.
    pub fn of(s: &Shard) -> ShardSpace {
        let space = s.space.borrow();
        ShardSpace { region_bytes: space.alloc.area().len, free_bytes: space.alloc.free_bytes() }
    }
}

impl Node {
    /// Each shard's region and free space, as its allocator has them now.
    pub async fn space(&self) -> Result<Vec<ShardSpace>> {
        let mut out = Vec::with_capacity(self.shards());
        for i in 0..self.shards() {
            out.push(self.on(i, |s| async move { ShardSpace::of(&s) }).await?);
        }
        Ok(out)
    }

    /// Node-wide: every committed blob and staged block over every live chunk.
    pub async fn reduction(&self) -> Result<Reduction> {
        let mut r = Reduction::default();
        for i in 0..self.shards() {
            let (logical, stored) = self
                .on(i, |s| async move {
                    let mut logical = 0u64;
                    let mut staged = |_: &BlobKey, b: &StagedBlock| logical += b.block.size;
                    let mut committed = 0u64;
                    let all = |_: &BlobKey, b: &Blob| {
                        committed += b.size;
                        true
                    };
                    for_each(&s, Vec::new(), all, Some(&mut staged)).await?;
                    let mut stored = 0;
                    each_counted(&s, |page| stored += page.iter().map(|c| c.chunk.extent().len).sum::<u64>()).await?;
                    Ok::<_, super::EngineError>((logical + committed, stored))
                })
                .await??;
            r.logical_bytes += logical;
            r.stored_bytes += stored;
        }
        Ok(r)
    }

    /// One container: its committed blobs over the distinct chunks they use (chunks shared with
    /// other containers count in full for each).
    pub async fn container_reduction(&self, account: &str, container: &str) -> Result<Reduction> {
        let cid = self.get_container(account, container)?.id;
        let mut logical = 0;
        let mut distinct: HashMap<u64, ChunkRef> = HashMap::new();
        for i in 0..self.shards() {
            let (a, c) = (account.to_owned(), container.to_owned());
            let (l, chunks) = self
                .on(i, move |s| async move {
                    let mut l = 0;
                    let mut chunks: HashMap<u64, ChunkRef> = HashMap::new();
                    let start = keys::blob(&BlobKey::new(&a, &c, ""));
                    let of_it = |k: &BlobKey, b: &Blob| {
                        if k.account != a || k.container != c {
                            return false;
                        }
                        if b.container_id == cid {
                            l += b.size;
                            chunks.extend(b.refs().iter().map(|(c, _)| (c.offset, *c)));
                        }
                        true
                    };
                    for_each(&s, start, of_it, None).await?;
                    Ok::<_, super::EngineError>((l, chunks))
                })
                .await??;
            logical += l;
            distinct.extend(chunks);
        }
        Ok(Reduction { logical_bytes: logical, stored_bytes: distinct.values().map(|c| c.extent().len).sum() })
    }
}

/// What a full check of the stored data found.
#[derive(Debug, Default, Clone)]
pub struct CheckReport {
    pub blobs: usize,
    pub staged_blocks: usize,
    pub chunks: usize,
    pub stored_bytes: u64,
    /// Chunks released to the tier: not on flash, so not read here.
    pub tiered_chunks: u64,
    /// One line per chunk that failed to read or verify.
    pub damaged: Vec<String>,
}

impl Node {
    /// Reads and verifies every live chunk (fsck). Reference counts and the allocators were
    /// already rebuilt and cross-checked when the node opened.
    pub async fn check_all(&self) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        // What a lost device held is not checked, and is said first: a check of the others
        // alone must not read as a clean node.
        let layout = &self.shared.layout;
        for lost in self.shared.lost.iter().flatten() {
            let on = layout.shards_on(lost.index);
            report.damaged.push(format!("{lost} (shards {}..{} not checked)", on.start, on.end));
        }
        // Counts still on their way to the shards that keep them are delivered first (v2): a
        // chunk a blob acknowledged a moment ago is in no chunk table until then, and would be
        // neither read back nor counted.
        for i in 0..self.shards() {
            self.on(i, |s| async move { super::counts::drained(&s).await }).await?;
        }
        for i in 0..self.shards() {
            let part = self
                .on(i, |s| async move {
                    let mut r = CheckReport::default();
                    let (mut blobs, mut staged_blocks) = (0, 0);
                    let mut staged = |_: &BlobKey, _: &StagedBlock| staged_blocks += 1;
                    let count = |_: &BlobKey, _: &Blob| {
                        blobs += 1;
                        true
                    };
                    if let Err(e) = for_each(&s, Vec::new(), count, Some(&mut staged)).await {
                        r.damaged.push(format!("the metadata could not be read whole: {e}"));
                    }
                    (r.blobs, r.staged_blocks) = (blobs, staged_blocks);
                    let mut page = Some(Vec::new());
                    while let Some(from) = page {
                        let (chunks, next) = match counted(&s, from).await {
                            Ok(p) => p,
                            Err(e) => {
                                r.damaged.push(format!("the chunk table could not be read whole: {e}"));
                                break;
                            }
                        };
                        for counted in chunks {
                            let c = counted.chunk;
                            r.chunks += 1;
                            r.stored_bytes += c.extent().len;
                            // A chunk only in the tier is checked there (`tier verify`), not read
                            // back from it by a check of the flash.
                            if c.len == 0 || !counted.on_flash {
                                r.tiered_chunks += u64::from(!counted.on_flash);
                                continue;
                            }
                            if let Err(e) = super::read::read_chunk(&s, &c, 0, c.len, None).await {
                                r.damaged.push(format!("chunk at offset {} ({} bytes): {e}", c.offset, c.len));
                            }
                        }
                        page = next;
                    }
                    r
                })
                .await?;
            report.blobs += part.blobs;
            report.staged_blocks += part.staged_blocks;
            report.chunks += part.chunks;
            report.stored_bytes += part.stored_bytes;
            report.tiered_chunks += part.tiered_chunks;
            report.damaged.extend(part.damaged);
        }
        Ok(report)
    }
}

/// Every chunk shard `s` counts, with its count (read whole: a view for checks and tools).
pub async fn counted_chunks(s: &Rc<Shard>) -> Result<Vec<(ChunkRef, u32)>> {
    let mut all = Vec::new();
    each_counted(s, |page| all.extend(page.iter().map(|c| (c.chunk, c.refs)))).await?;
    Ok(all)
}
