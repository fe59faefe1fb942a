//! Blob operations as the shard that received a request runs them: data work here, metadata work
//! on the owner shard (called directly when that is this shard). The HTTP handlers and `Node`
//! both go through these.

use std::future::Future;
use std::rc::Rc;

use bytes::Bytes;
use edgeblob_meta::listing::{self, BlobSummary, ListPage, ListQuery};
use edgeblob_meta::model::{limits, BlobKey, BlobProps, Block, Container, Metadata, PublicAccess};
use edgeblob_meta::shard_store;
use edgeblob_proto::conditions::Conditions;
use futures::Stream;

use super::blob::{self, BlockList, BlockListItem, PropsChange, Stamps};
use super::error::{EngineError, Result};
use super::read::BlobReader;
use super::shard::{Shard, CATALOG_SHARD};
use super::{container, write};

/// Runs `f` on shard `target`: in place when it is this shard.
pub async fn at<R, F, Fut>(s: &Rc<Shard>, target: usize, f: F) -> Result<R>
where
    R: Send + 'static,
    F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
    Fut: Future<Output = R> + 'static,
{
    // An offline shard holds no metadata: what it owns is unknown, never "not found".
    if let Some(lost) = s.node.offline(target) {
        return Err(EngineError::DeviceLost(lost.clone()));
    }
    if target == s.index {
        Ok(f(s.clone()).await)
    } else {
        Ok(s.peers.call(target, f).await?)
    }
}

fn require_container(s: &Shard, key: &BlobKey) -> Result<()> {
    s.node.container(&key.account, &key.container).map(|_| ()).ok_or(EngineError::ContainerNotFound)
}

/// Stores a body on this shard; the caller holds one reference per chunk until it commits them
/// or gives them back.
pub async fn store<S>(s: &Rc<Shard>, key: &BlobKey, body: S, max_len: u64) -> Result<write::Stored>
where
    S: Stream<Item = std::io::Result<Bytes>> + Unpin,
{
    require_container(s, key)?;
    write::store_body(s, &key.account, s.node.owner_of(key), body, max_len).await
}

/// Commits stored chunks as a Put Blob (the references pass to the blob, or are given back),
/// stamped now or with the stamps it keeps.
pub async fn commit_single(
    s: &Rc<Shard>,
    key: BlobKey,
    stored: write::Stored,
    props: BlobProps,
    cond: Conditions,
    keep: Option<Stamps>,
) -> Result<BlobSummary> {
    let owner = s.node.owner_of(&key);
    at(s, owner, move |o| async move { blob::put_single(&o, key, stored.chunks, stored.len, props, cond, keep).await })
        .await?
}

pub async fn put_blob<S>(
    s: &Rc<Shard>,
    key: BlobKey,
    body: S,
    props: BlobProps,
    cond: Conditions,
) -> Result<BlobSummary>
where
    S: Stream<Item = std::io::Result<Bytes>> + Unpin,
{
    let stored = store(s, &key, body, limits::MAX_PUT_BLOB_SIZE).await?;
    commit_single(s, key, stored, props, cond, None).await
}

/// Stages stored chunks as block `id`.
pub async fn stage(s: &Rc<Shard>, key: BlobKey, id: Vec<u8>, stored: write::Stored) -> Result<u64> {
    let owner = s.node.owner_of(&key);
    let size = stored.len;
    let block = Block { id, size, chunks: stored.chunks.into() };
    at(s, owner, move |o| async move { blob::stage_block(&o, key, block).await }).await??;
    Ok(size)
}

pub fn check_block_id(id: &[u8]) -> Result<()> {
    if id.is_empty() || id.len() > limits::MAX_BLOCK_ID_LEN {
        return Err(EngineError::InvalidBlockId(format!("{} bytes; 1 to 64 allowed", id.len())));
    }
    Ok(())
}

pub async fn put_block<S>(s: &Rc<Shard>, key: BlobKey, id: Vec<u8>, body: S) -> Result<u64>
where
    S: Stream<Item = std::io::Result<Bytes>> + Unpin,
{
    check_block_id(&id)?;
    let stored = store(s, &key, body, limits::MAX_BLOCK_SIZE).await?;
    stage(s, key, id, stored).await
}

pub async fn commit_block_list(
    s: &Rc<Shard>,
    key: BlobKey,
    list: Vec<BlockListItem>,
    props: BlobProps,
    cond: Conditions,
    keep: Option<Stamps>,
) -> Result<BlobSummary> {
    let owner = s.node.owner_of(&key);
    at(s, owner, move |o| async move { blob::commit_block_list(&o, key, list, props, cond, keep).await }).await?
}

pub async fn get_block_list(s: &Rc<Shard>, key: BlobKey) -> Result<BlockList> {
    let owner = s.node.owner_of(&key);
    at(s, owner, move |o| async move { blob::get_block_list(&o, &key).await }).await?
}

pub async fn head_blob(s: &Rc<Shard>, key: BlobKey, cond: Conditions) -> Result<BlobSummary> {
    let owner = s.node.owner_of(&key);
    at(s, owner, move |o| async move { blob::head(&o, &key, &cond).await }).await?
}

/// Get Blob: the blob, the byte range `[start, end)` served, and a reader of it.
pub async fn open_read(
    s: &Rc<Shard>,
    key: BlobKey,
    range: Option<(u64, Option<u64>)>,
    cond: Conditions,
) -> Result<(BlobSummary, (u64, u64), BlobReader)> {
    let owner = s.node.owner_of(&key);
    // Entered before resolving: nothing the plan names can be reused until the reader is done.
    let guard = s.node.epochs.enter();
    let account: Rc<str> = Rc::from(key.account.as_str());
    let plan = at(s, owner, move |o| async move { blob::resolve(&o, &key, range, &cond).await }).await??;
    Ok((plan.blob, plan.range, BlobReader::new(s.clone(), account, plan.segments, guard)))
}

pub async fn delete_blob(s: &Rc<Shard>, key: BlobKey, cond: Conditions) -> Result<()> {
    let owner = s.node.owner_of(&key);
    at(s, owner, move |o| async move { blob::delete_blob(&o, key, cond).await }).await?
}

pub async fn set_blob_props(s: &Rc<Shard>, key: BlobKey, change: PropsChange, cond: Conditions) -> Result<BlobSummary> {
    let owner = s.node.owner_of(&key);
    at(s, owner, move |o| async move { blob::set_props(&o, key, change, cond).await }).await?
}

pub async fn create_container(
    s: &Rc<Shard>,
    account: String,
    name: String,
    md: Metadata,
    access: PublicAccess,
) -> Result<Container> {
    at(s, CATALOG_SHARD, move |c| async move { container::create(&c, account, name, md, access).await }).await?
}

pub async fn set_container_access(
    s: &Rc<Shard>,
    account: String,
    name: String,
    access: PublicAccess,
    policies: Vec<container::AccessPolicy>,
) -> Result<Container> {
    at(s, CATALOG_SHARD, move |c| async move {
        container::change(&c, account, name, container::ContainerChange::Access(access, policies)).await
    })
    .await?
}

pub async fn set_service_properties(s: &Rc<Shard>, account: String, doc: String) -> Result<Container> {
    at(s, CATALOG_SHARD, move |c| async move { container::set_service_properties(&c, account, doc).await }).await?
}

pub async fn delete_container(s: &Rc<Shard>, account: String, name: String) -> Result<()> {
    at(s, CATALOG_SHARD, move |c| async move { container::delete(&c, account, name).await }).await?
}

/// Sets (or removes, `None`) one of the node's own entries of a container's metadata.
pub async fn set_container_entry(
    s: &Rc<Shard>,
    account: String,
    name: String,
    entry: String,
    value: Option<String>,
) -> Result<Container> {
    at(s, CATALOG_SHARD, move |c| async move {
        container::change(&c, account, name, container::ContainerChange::Reserved(entry, value)).await
    })
    .await?
}

pub async fn set_container_metadata(s: &Rc<Shard>, account: String, name: String, md: Metadata) -> Result<Container> {
    at(s, CATALOG_SHARD, move |c| async move { container::set_metadata(&c, account, name, md).await }).await?
}

/// List Blobs: the shards list their parts concurrently, each a share of the page at a time, and
/// the parts merge in name order (`listing::Merge`: a shard is asked again only while the
/// entries known for sure do not fill the page).
pub async fn list_blobs(s: &Rc<Shard>, account: &str, container: &str, q: ListQuery) -> Result<ListPage> {
    let cid = s.node.container(account, container).ok_or(EngineError::ContainerNotFound)?.id;
    let mut merge = listing::Merge::new(s.peers.len(), &q);
    loop {
        let wanted = merge.wanted();
        if wanted.is_empty() {
            return Ok(merge.page());
        }
        let parts: Vec<_> = wanted
            .into_iter()
            .map(|(i, q)| {
                let (a, c) = (account.to_owned(), container.to_owned());
                let part = at(s, i, move |x| async move { shard_store::list_blobs(&x.meta, &a, &c, cid, &q).await });
                async move { (i, part.await) }
            })
            .collect();
        for (i, part) in futures::future::join_all(parts).await {
            let (entries, more) = part??;
            merge.add(i, entries, more);
        }
    }
}
