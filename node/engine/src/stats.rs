//! The data-reduction ratio: logical bytes (what clients stored) over stored bytes (the pages the
//! chunks occupy), per node and per container.

use std::collections::HashMap;

use edgeblob_meta::model::ChunkRef;

use super::error::Result;
use super::Node;

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

impl Node {
    /// Node-wide: every committed blob and staged block over every live chunk.
    pub async fn reduction(&self) -> Result<Reduction> {
        let mut r = Reduction::default();
        for i in 0..self.shards() {
            let (logical, stored) = self
                .on(i, |s| async move {
                    let meta = s.meta.borrow();
                    let logical: u64 = meta.state.all_chunk_refs().map(|c| c.len as u64).sum();
                    let stored: u64 = s.refs.borrow().chunks().map(|(c, _)| c.extent().len).sum();
                    (logical, stored)
                })
                .await?;
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
                    let meta = s.meta.borrow();
                    let mut l = 0;
                    let mut chunks = Vec::new();
                    for (k, b) in meta
                        .state
                        .blobs
                        .iter()
                        .filter(|(k, b)| k.account == a && k.container == c && b.container_id == cid)
                    {
                        debug_assert_eq!(k.container, c);
                        l += b.size;
                        chunks.extend(b.chunks().copied());
                    }
                    (l, chunks)
                })
                .await?;
            logical += l;
            distinct.extend(chunks.into_iter().map(|c| (c.offset, c)));
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
    /// One line per chunk that failed to read or verify.
    pub damaged: Vec<String>,
}

impl Node {
    /// Reads and verifies every live chunk (fsck). Reference counts and the allocators were
    /// already rebuilt and cross-checked when the node opened.
    pub async fn check_all(&self) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        for i in 0..self.shards() {
            let part = self
                .on(i, |s| async move {
                    let mut r = CheckReport::default();
                    {
                        let meta = s.meta.borrow();
                        r.blobs = meta.state.blobs.len();
                        r.staged_blocks = meta.state.staged.values().map(|st| st.len()).sum();
                    }
                    let chunks: Vec<ChunkRef> = s.refs.borrow().chunks().map(|(c, _)| *c).collect();
                    for c in chunks {
                        r.chunks += 1;
                        r.stored_bytes += c.extent().len;
                        if c.len == 0 {
                            continue;
                        }
                        if let Err(e) = super::read::read_chunk(&s, &c, 0, c.len).await {
                            r.damaged.push(format!("chunk at offset {} ({} bytes): {e}", c.offset, c.len));
                        }
                    }
                    r
                })
                .await?;
            report.blobs += part.blobs;
            report.staged_blocks += part.staged_blocks;
            report.chunks += part.chunks;
            report.stored_bytes += part.stored_bytes;
            report.damaged.extend(part.damaged);
        }
        Ok(report)
    }
}
