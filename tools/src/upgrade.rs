//! `edgeblob-admin upgrade`: carries a format v1 device's containers and blobs into a new format
//! v2 device, through both nodes' own operations (so the new device is written exactly as a
//! running node writes it, and every byte read back is verified by its chunk checksums on the
//! way). Kept: container names, metadata and public access; blob names, bytes, properties,
//! metadata, Content-MD5, copy status, ETags, creation and last-modified times, and block ids and
//! sizes of blobs made by Put Block List. Not kept: container ETags and times, and uncommitted
//! blocks (staged blocks are a client's unfinished upload; Azure drops them after a week too).
//! Memory: one block (or one Put Blob body) at a time. A block listed more than once is read and
//! staged once.

use edgeblob_engine::blob::Stamps;
use edgeblob_engine::{ops, BlockListItem, Node, CATALOG_SHARD};
use edgeblob_meta::listing::{ListEntry, ListQuery};
use edgeblob_meta::model::BlobKey;
use edgeblob_proto::conditions::Conditions;

/// What an upgrade carried over.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub containers: usize,
    pub blobs: usize,
    pub bytes: u64,
}

pub async fn copy_all(from: &Node, to: &Node) -> Result<Report, String> {
    let mut report = Report::default();
    let containers: Vec<_> = {
        let cat = from.shared().catalog.read().unwrap_or_else(|p| p.into_inner());
        cat.iter().map(|((a, n), c)| (a.clone(), n.clone(), c.clone())).collect()
    };
    for (account, name, c) in containers {
        let (a, n, md, access) = (account.clone(), name.clone(), c.metadata.clone(), c.public_access);
        to.on(CATALOG_SHARD, move |s| async move { ops::create_container(&s, a, n, md, access).await })
            .await
            .and_then(|r| r)
            .map_err(|e| format!("container {account}/{name}: {e}"))?;
        report.containers += 1;
        let mut marker = None;
        loop {
            let q = ListQuery { marker: marker.take(), max: 1000, ..Default::default() };
            let page = from.list_blobs(&account, &name, q).await.map_err(|e| format!("listing {name}: {e}"))?;
            for entry in &page.entries {
                if let ListEntry::Blob(b) = entry {
                    let key = BlobKey::new(&account, &name, &b.name);
                    let via = report.blobs % to.shards();
                    let keep = Stamps { etag: b.etag, created_ns: b.created_ns, modified_ns: b.modified_ns };
                    report.bytes += copy_blob(from, to, via, key, b.props.clone(), keep)
                        .await
                        .map_err(|e| format!("{name}/{}: {e}", b.name))?;
                    report.blobs += 1;
                }
            }
            match page.next_marker {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
    }
    Ok(report)
}

/// Copies one blob; its size.
async fn copy_blob(
    from: &Node,
    to: &Node,
    via: usize,
    key: BlobKey,
    props: edgeblob_meta::model::BlobProps,
    keep: Stamps,
) -> edgeblob_engine::Result<u64> {
    let list = from.get_block_list(key.clone()).await?;
    let blocks = list.committed.unwrap_or_default();
    let any = Conditions::default();
    if blocks.is_empty() {
        // Put Blob (or an empty block list): one body, no block ids.
        let bytes = match list.blob_size {
            0 => bytes::Bytes::new(),
            _ => from.read_blob(via, key.clone(), None, any.clone()).await?.2,
        };
        let size = bytes.len() as u64;
        to.import_blob(via, key, vec![bytes], props, keep).await?;
        return Ok(size);
    }
    let mut at = 0u64;
    let mut ids = Vec::with_capacity(blocks.len());
    let mut staged = std::collections::HashSet::new();
    for (id, size) in blocks {
        // An id listed again is the same block (a list names blocks by id): staged once.
        if staged.insert(id.clone()) {
            let bytes = if size == 0 {
                bytes::Bytes::new()
            } else {
                from.read_blob(via, key.clone(), Some((at, Some(at + size - 1))), any.clone()).await?.2
            };
            debug_assert_eq!(bytes.len() as u64, size);
            to.put_block(via, key.clone(), id.clone(), vec![bytes]).await?;
        }
        ids.push(BlockListItem::Uncommitted(id));
        at += size;
    }
    to.import_block_list(key, ids, props, keep).await?;
    Ok(at)
}
