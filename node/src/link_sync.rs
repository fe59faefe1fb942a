//! `edgeblob-admin link sync`: the lake's listing of a linked container (under a prefix) kept
//! on the node, so that List Blobs of it is answered without asking the lake (one pass over the
//! lake's listing, instead of a lake page behind every page listed here, by every client, on
//! every epoch of a job; and listings that work while the lake does not answer).
//!
//! What is kept: for each of the lake's blobs, a blob of no bytes of the same name in a
//! container of the node's own (`$synced-<container>`, in the link's account: a name no client
//! can give, never listed), with the lake's ETag, times, content headers, MD5 and metadata, and
//! the lake's ETag string and size in reserved entries (`$lake`, `$lake-size`). A sync walks the
//! lake's listing and that container's side by side in name order: a blob new or changed in the
//! lake is written, one gone is deleted; memory holds a page of each. A sync that ends well
//! records its prefix in the container's reserved entry `$synced` (one line per prefix:
//! `<unix seconds>\t<prefix>`); List Blobs under a prefix recorded there lists from what is
//! kept (`http::linked_listing`) until the next sync refreshes it.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use edgeblob_engine::error::EngineError;
use edgeblob_engine::{ops, Node};
use edgeblob_meta::listing::{ListEntry, ListQuery};
use edgeblob_meta::model::{BlobKey, Metadata, PublicAccess};
use edgeblob_proto::conditions::Conditions;
use futures::StreamExt;

use crate::link::{update, Link};

/// Entries listed per page, on each side.
const PAGE: u32 = 5000;

/// Entries written or deleted at once (spread over the shards).
const AT_ONCE: usize = 64;

/// Prefixes a link's listing container records as synced; a prefix that another covers is not
/// kept apart, so only a careless operator reaches this (the oldest then go).
const PREFIXES_KEPT: usize = 64;

/// The container entry that records the synced prefixes.
pub const SYNCED: &str = "$synced";

/// What a sync counts: entries of the lake listed under its prefix, and those it added,
/// updated and removed here.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Synced {
    pub listed: u64,
    pub added: u64,
    pub updated: u64,
    pub removed: u64,
}

/// The node's container that keeps a link's synced listing.
pub fn container_of(link: &Link) -> String {
    format!("$synced-{}", link.cfg.container)
}

/// The prefixes synced for `link` and when (unix seconds), as its listing container records them.
pub fn synced(node_container: Option<edgeblob_meta::model::Container>) -> Vec<(u64, String)> {
    let Some(c) = node_container else { return Vec::new() };
    let Some((_, v)) = c.metadata.iter().find(|(k, _)| k == SYNCED) else { return Vec::new() };
    v.lines()
        .filter_map(|l| {
            let (at, prefix) = l.split_once('\t')?;
            Some((at.parse().ok()?, prefix.to_owned()))
        })
        .collect()
}

/// Whether List Blobs of `link` under `prefix` is answered from what a sync kept.
pub fn covers(shard: &edgeblob_engine::Shard, link: &Link, prefix: &str) -> bool {
    let c = shard.node.container(&link.cfg.account, &container_of(link));
    synced(c).iter().any(|(_, p)| prefix.starts_with(p.as_str()))
}

/// A listing entry of the link's listing container as the lake listed it: its size the lake's,
/// the node's entries left out.
pub fn as_listed(e: ListEntry) -> ListEntry {
    match e {
        ListEntry::Blob(mut b) => {
            b.size = edgeblob_engine::reserved_metadata::lake_size(&b.props.metadata).unwrap_or(0);
            b.props.metadata = edgeblob_engine::reserved_metadata::client_metadata(&b.props.metadata);
            ListEntry::Blob(b)
        }
        p => p,
    }
}

/// Starts a sync of `link` under `prefix`; `Err` when one is running already.
pub fn start(node: Arc<Node>, link: Arc<Link>, prefix: String) -> Result<(), String> {
    crate::link::begin(&link.sync, &prefix, "sync")?;
    tokio::task::spawn(async move {
        let res = run(&node, &link, &prefix).await;
        crate::link::end(&link.sync, res);
    });
    Ok(())
}

/// What a sync does to one entry here.
enum Change {
    Put(Box<edgeblob_remote::Listed>, bool),
    Delete(String),
}

async fn run(node: &Arc<Node>, link: &Arc<Link>, prefix: &str) -> Result<(), String> {
    let (account, kept) = (link.cfg.account.clone(), container_of(link));
    {
        let (account, kept) = (account.clone(), kept.clone());
        node.on(0, move |s| async move {
            match ops::create_container(&s, account, kept, Metadata::new(), PublicAccess::None).await {
                Ok(_) | Err(EngineError::ContainerAlreadyExists) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
        .map_err(|e| e.to_string())??;
    }
    let mut lake = LakeSide { link, prefix, buf: Default::default(), next: None, done: false };
    let mut here =
        HereSide { node, account: &account, kept: &kept, prefix, buf: Default::default(), last: None, done: false };
    let mut changes = Vec::new();
    loop {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let (order, changed) = match (lake.peek().await?, here.peek().await?) {
            (None, None) => break,
            (Some(_), None) => (Less, true),
            (None, Some(_)) => (Greater, true),
            (Some(l), Some((n, etag))) => {
                let order = l.name.as_str().cmp(n);
                (order, order != Equal || Some(&l.etag) != etag.as_ref())
            }
        };
        let here_entry = if order == Less { None } else { here.buf.pop_front() };
        if order == Greater {
            // Kept here, gone from the lake.
            changes.extend(here_entry.map(|(name, _)| Change::Delete(name)));
        } else if let Some(l) = lake.buf.pop_front() {
            update(&link.sync, |p| p.counts.listed += 1);
            if changed {
                changes.push(Change::Put(Box::new(l), order == Equal));
            }
        }
        if changes.len() >= PAGE as usize {
            apply(node, link, &account, &kept, std::mem::take(&mut changes)).await;
        }
    }
    apply(node, link, &account, &kept, changes).await;
    let failed = link.sync.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map_or(0, |s| s.errors);
    if failed > 0 {
        return Err(format!("{failed} entries could not be kept; the prefix is not recorded as synced"));
    }
    record(node, &account, &kept, prefix).await
}

/// Writes and deletes entries here, a few at once over the shards.
async fn apply(node: &Arc<Node>, link: &Arc<Link>, account: &str, kept: &str, changes: Vec<Change>) {
    let shards = node.shards().max(1);
    let jobs = changes.into_iter().enumerate().map(|(i, change)| {
        let (account, kept) = (account.to_owned(), kept.to_owned());
        let job = node.on(i % shards, move |s| async move {
            match change {
                Change::Put(l, replaces) => {
                    let key = BlobKey::new(&account, &kept, &l.name);
                    let lake =
                        edgeblob_remote::Props { len: l.len, etag: l.etag, content_md5: None, headers: l.headers };
                    let (mut props, stamps) = crate::http::read_through::lake_props(&s, &lake);
                    props.metadata.push((edgeblob_engine::reserved_metadata::LAKE_SIZE.to_owned(), l.len.to_string()));
                    let stored = ops::store(&s, &key, futures::stream::empty(), 0).await?;
                    ops::commit_single(&s, key, stored, props, Conditions::default(), Some(stamps)).await?;
                    Ok(if replaces { (0, 1, 0) } else { (1, 0, 0) })
                }
                Change::Delete(name) => {
                    match ops::delete_blob(&s, BlobKey::new(&account, &kept, &name), Conditions::default()).await {
                        Ok(()) | Err(EngineError::BlobNotFound) => Ok((0, 0, 1)),
                        Err(e) => Err(e),
                    }
                }
            }
        });
        async move { job.await.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e: EngineError| e.to_string())) }
    });
    let mut running = futures::stream::iter(jobs).buffer_unordered(AT_ONCE);
    while let Some(res) = running.next().await {
        match res {
            Ok((a, u, r)) => update(&link.sync, |p| {
                p.counts.added += a;
                p.counts.updated += u;
                p.counts.removed += r;
            }),
            Err(e) => crate::link::failed(&link.sync, e),
        }
    }
}

/// Records `prefix` as synced now (replacing the prefixes it covers).
async fn record(node: &Arc<Node>, account: &str, kept: &str, prefix: &str) -> Result<(), String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut prefixes = synced(node.get_container(account, kept).ok());
    prefixes.retain(|(_, p)| !p.starts_with(prefix));
    prefixes.push((now, prefix.to_owned()));
    while prefixes.len() > PREFIXES_KEPT {
        prefixes.remove(0);
    }
    let value = prefixes.iter().map(|(at, p)| format!("{at}\t{p}")).collect::<Vec<_>>().join("\n");
    let (account, kept) = (account.to_owned(), kept.to_owned());
    node.on(0, move |s| async move {
        ops::set_container_entry(&s, account, kept, SYNCED.to_owned(), Some(value)).await.map(|_| ())
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}

/// The lake's listing under the prefix, a page at a time.
struct LakeSide<'a> {
    link: &'a Link,
    prefix: &'a str,
    buf: std::collections::VecDeque<edgeblob_remote::Listed>,
    next: Option<String>,
    done: bool,
}

impl LakeSide<'_> {
    async fn peek(&mut self) -> Result<Option<&edgeblob_remote::Listed>, String> {
        while self.buf.is_empty() && !self.done {
            let page = self
                .link
                .remote
                .list_in(self.prefix, None, self.next.as_deref(), PAGE, true)
                .await
                .map_err(|e| format!("the lake's listing: {e}"))?;
            let mut blobs = page.blobs;
            blobs.sort_by(|a, b| a.name.cmp(&b.name));
            self.buf.extend(blobs);
            self.done = page.next.is_none();
            self.next = page.next;
        }
        Ok(self.buf.front())
    }
}

/// What is kept here under the prefix: each entry's name and the lake ETag it was kept with.
struct HereSide<'a> {
    node: &'a Arc<Node>,
    account: &'a str,
    kept: &'a str,
    prefix: &'a str,
    buf: std::collections::VecDeque<(String, Option<String>)>,
    /// The last name listed: the next page's marker.
    last: Option<String>,
    done: bool,
}

impl HereSide<'_> {
    async fn peek(&mut self) -> Result<Option<&(String, Option<String>)>, String> {
        if self.buf.is_empty() && !self.done {
            let q = ListQuery {
                prefix: self.prefix.to_owned(),
                delimiter: None,
                marker: self.last.clone(),
                max: PAGE as usize,
                uncommitted: false,
            };
            let page = self.node.list_blobs(self.account, self.kept, q).await.map_err(|e| e.to_string())?;
            self.done = page.next_marker.is_none();
            self.last = page.entries.last().map(|e| e.name().to_owned());
            self.buf.extend(page.entries.into_iter().filter_map(|e| match e {
                ListEntry::Blob(b) => {
                    let etag = edgeblob_engine::reserved_metadata::lake_etag(&b.props.metadata).map(str::to_owned);
                    Some((b.name, etag))
                }
                ListEntry::Prefix(_) => None,
            }));
        }
        Ok(self.buf.front())
    }
}
