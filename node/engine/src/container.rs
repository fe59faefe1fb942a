//! Containers. The catalog lives on one shard (its log records every container); every shard
//! reads the published copy in `NodeShared::catalog`. A container is published only once its
//! creation is durable, and unpublished before its deletion is logged, so no blob is ever written
//! into a container that a crash could bring back or take away.

use std::rc::Rc;

use edgeblob_meta::index::keys;
use edgeblob_meta::index::shard::HoldsIndex;
use edgeblob_meta::model::{BlobKey, Container, Metadata, PublicAccess};
use edgeblob_meta::shard_store::{self, Want};
use edgeblob_meta::Record;

use super::error::{EngineError, Result};
use super::shard::{now_ns, Shard, CATALOG_SHARD};

pub async fn create(
    s: &Rc<Shard>,
    account: String,
    name: String,
    metadata: Metadata,
    public_access: PublicAccess,
) -> Result<Container> {
    debug_assert_eq!(s.index, CATALOG_SHARD);
    let key = (account.clone(), name.clone());
    s.log_ready().await?;
    let (commit, container) = {
        let mut meta = s.meta.borrow_mut();
        if meta.state().containers.contains_key(&key) {
            return Err(EngineError::ContainerAlreadyExists);
        }
        let now = now_ns();
        let container = Container {
            id: s.node.stamp(),
            etag: s.node.stamp(),
            created_ns: now,
            modified_ns: now,
            metadata,
            public_access,
        };
        (meta.commit(Record::ContainerPut { account, name, container: container.clone() })?, container)
    };
    commit.durable.await?;
    s.node.catalog.write().unwrap_or_else(|p| p.into_inner()).insert(key, container.clone());
    Ok(container)
}

/// A stored access policy (Set Container ACL's signed identifier): its id, and whichever of the
/// start, expiry (ISO 8601, as set) and permission letters it fixes for the SAS that name it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    pub id: String,
    pub start: Option<String>,
    pub expiry: Option<String>,
    pub permission: Option<String>,
}

/// The metadata name under which a container keeps its stored access policies. No client can
/// write it (metadata names are C# identifiers, which never begin with `$`), and no answer shows
/// it; keeping the policies there keeps every format that carries a container (log records,
/// index, the tier's metadata) unchanged. Its value: one line per policy, its four fields
/// separated by tabs, an absent field empty (format.md, "Containers").
pub const ACL_KEY: &str = "$acl";

/// The container's stored access policies.
pub fn access_policies(c: &Container) -> Vec<AccessPolicy> {
    let Some((_, text)) = c.metadata.iter().find(|(k, _)| k == ACL_KEY) else { return Vec::new() };
    let field = |f: Option<&str>| f.filter(|f| !f.is_empty()).map(str::to_owned);
    text.lines()
        .map(|line| {
            let mut f = line.split('\t');
            AccessPolicy {
                id: f.next().unwrap_or_default().to_owned(),
                start: field(f.next()),
                expiry: field(f.next()),
                permission: field(f.next()),
            }
        })
        .collect()
}

fn encode_policies(policies: &[AccessPolicy]) -> String {
    let line = |p: &AccessPolicy| {
        debug_assert!(!p.id.is_empty(), "a policy without an id");
        let parts = [Some(p.id.as_str()), p.start.as_deref(), p.expiry.as_deref(), p.permission.as_deref()];
        debug_assert!(parts.iter().flatten().all(|f| !f.contains(['\t', '\n', '\r'])), "a field holds a separator");
        parts.map(|f| f.unwrap_or("")).join("\t")
    };
    policies.iter().map(line).collect::<Vec<_>>().join("\n")
}

/// The container's metadata as clients see it: without what the node keeps there.
pub fn client_metadata(c: &Container) -> Metadata {
    crate::reserved_metadata::client_metadata(&c.metadata)
}

/// The catalog entry that keeps an account's Blob service properties (Set Blob Service
/// Properties): a name no client can give a container (valid ones are lower-case letters,
/// digits and dashes, or `$root`, `$logs`, `$web`), never listed; its one metadata entry,
/// [`PROPERTIES_KEY`], holds the properties document (format.md, "Containers").
pub const SERVICE_ENTRY: &str = "$service";
pub const PROPERTIES_KEY: &str = "$properties";

/// The account's stored service properties document, if it was ever set.
pub fn service_properties(c: &Container) -> Option<&str> {
    c.metadata.iter().find(|(k, _)| k == PROPERTIES_KEY).map(|(_, v)| v.as_str())
}

/// Stores an account's service properties document (whole: the caller merged it).
pub async fn set_service_properties(s: &Rc<Shard>, account: String, doc: String) -> Result<Container> {
    debug_assert_eq!(s.index, CATALOG_SHARD);
    let key = (account.clone(), SERVICE_ENTRY.to_owned());
    s.log_ready().await?;
    let (commit, container) = {
        let mut meta = s.meta.borrow_mut();
        let now = now_ns();
        let mut c = meta.state().containers.get(&key).cloned().unwrap_or_else(|| Container {
            id: s.node.stamp(),
            etag: 0,
            created_ns: now,
            modified_ns: now,
            metadata: Vec::new(),
            public_access: PublicAccess::None,
        });
        c.metadata = vec![(PROPERTIES_KEY.to_owned(), doc)];
        c.etag = s.node.stamp();
        c.modified_ns = now;
        let record = Record::ContainerPut { account, name: SERVICE_ENTRY.to_owned(), container: c.clone() };
        (meta.commit(record)?, c)
    };
    commit.durable.await?;
    s.node.catalog.write().unwrap_or_else(|p| p.into_inner()).insert(key, container.clone());
    Ok(container)
}

/// What Set Container Metadata or Set Container ACL changes, or the node itself.
pub enum ContainerChange {
    Metadata(Metadata),
    /// Set Container ACL sets both, replacing the stored policies whole.
    Access(PublicAccess, Vec<AccessPolicy>),
    /// One of the node's own entries (a reserved name) set to a value, or removed.
    Reserved(String, Option<String>),
}

/// Whether a container name is the node's own: one no client can give (valid ones are
/// lower-case letters, digits and dashes, or `$root`, `$logs`, `$web`), never listed.
pub fn is_node_private(name: &str) -> bool {
    name.starts_with('$') && !matches!(name, "$root" | "$logs" | "$web")
}

pub async fn set_metadata(s: &Rc<Shard>, account: String, name: String, metadata: Metadata) -> Result<Container> {
    change(s, account, name, ContainerChange::Metadata(metadata)).await
}

pub async fn change(s: &Rc<Shard>, account: String, name: String, what: ContainerChange) -> Result<Container> {
    debug_assert_eq!(s.index, CATALOG_SHARD);
    let key = (account.clone(), name.clone());
    s.log_ready().await?;
    let (commit, container) = {
        let mut meta = s.meta.borrow_mut();
        let mut c = meta.state().containers.get(&key).cloned().ok_or(EngineError::ContainerNotFound)?;
        match what {
            ContainerChange::Metadata(md) => {
                // New metadata replaces the client's, never what the node keeps there.
                c.metadata = crate::reserved_metadata::keep_reserved(&c.metadata, md);
            }
            ContainerChange::Access(a, policies) => {
                c.public_access = a;
                c.metadata.retain(|(k, _)| k != ACL_KEY);
                if !policies.is_empty() {
                    c.metadata.push((ACL_KEY.to_owned(), encode_policies(&policies)));
                }
            }
            ContainerChange::Reserved(k, v) => {
                debug_assert!(
                    edgeblob_proto::headers::is_reserved_metadata_name(&k),
                    "the node's entries are named apart from clients'"
                );
                c.metadata.retain(|(n, _)| *n != k);
                c.metadata.extend(v.map(|v| (k, v)));
            }
        }
        c.etag = s.node.stamp();
        c.modified_ns = now_ns();
        (meta.commit(Record::ContainerPut { account, name, container: c.clone() })?, c)
    };
    commit.durable.await?;
    s.node.catalog.write().unwrap_or_else(|p| p.into_inner()).insert(key, container.clone());
    Ok(container)
}

/// Deletes a container and, on every shard, its blobs. Returns once all of it is durable.
pub async fn delete(s: &Rc<Shard>, account: String, name: String) -> Result<()> {
    debug_assert_eq!(s.index, CATALOG_SHARD);
    let key = (account.clone(), name.clone());
    s.log_ready().await?;
    let Some(container) = s.meta.borrow().state().containers.get(&key).cloned() else {
        return Err(EngineError::ContainerNotFound);
    };
    let id = container.id;
    // Unpublish first: from here on no shard stages or commits into it. If the deletion cannot
    // be logged, the container is published again: it still exists.
    let catalog = || s.node.catalog.write().unwrap_or_else(|p| p.into_inner());
    catalog().remove(&key);
    let commit =
        s.meta.borrow_mut().commit(Record::ContainerDelete { account: account.clone(), name: name.clone(), id });
    let commit = match commit {
        Ok(c) => c,
        Err(e) => {
            catalog().insert(key, container);
            return Err(e.into());
        }
    };
    commit.durable.await?;
    for shard in 0..s.peers.len() {
        let (account, name) = (account.clone(), name.clone());
        s.peers.call(shard, move |s| async move { purge(&s, account, name, id).await }).await??;
    }
    Ok(())
}

/// Deletes, on this shard, every blob and uncommitted block of container incarnation `id`. The
/// purge record drops what is in memory at once; in format v2 the rest is in the index, which is
/// walked a page at a time: each page's entries of the incarnation are made resident and purged
/// by one more record. Entries of a newer incarnation of the same name are kept.
pub async fn purge(s: &Rc<Shard>, account: String, name: String, id: u64) -> Result<()> {
    purge_resident(s, &account, &name, id).await?;
    if s.meta.borrow().index().is_none() {
        return Ok(());
    }
    let start = keys::blob(&BlobKey::new(&account, &name, ""));
    let of_it = |k: &BlobKey| k.account == account && k.container == name;
    let mut from = start.clone();
    loop {
        let page = shard_store::scan_blobs(&s.meta, from, PURGE_PAGE).await?;
        let in_range = page.items.iter().take_while(|(k, _)| of_it(k)).count();
        let done = in_range < page.items.len() || page.next.is_none();
        let wants: Vec<Want> = page.items[..in_range]
            .iter()
            .filter(|(_, b)| b.container_id == id)
            .map(|(k, _)| Want::Blob(k.clone()))
            .collect();
        purge_these(s, &account, &name, id, wants).await?;
        match page.next {
            Some(next) if !done => from = next,
            _ => break,
        }
    }
    let mut from = start;
    loop {
        let page = shard_store::scan_staged(&s.meta, from, PURGE_PAGE).await?;
        let in_range = page.items.iter().take_while(|(k, _, _)| of_it(k)).count();
        let done = in_range < page.items.len() || page.next.is_none();
        let mut wants: Vec<Want> = page.items[..in_range]
            .iter()
            .filter(|(_, cid, _)| *cid == id)
            .map(|(k, _, _)| Want::Staged(k.clone()))
            .collect();
        wants.dedup();
        purge_these(s, &account, &name, id, wants).await?;
        match page.next {
            Some(next) if !done => from = next,
            _ => break,
        }
    }
    Ok(())
}

/// Index entries a purge makes resident and drops at a time.
const PURGE_PAGE: usize = 256;

async fn purge_these(s: &Rc<Shard>, account: &str, name: &str, id: u64, wants: Vec<Want>) -> Result<()> {
    if wants.is_empty() {
        return Ok(());
    }
    s.log_ready().await?;
    shard_store::ensure(&s.meta, &wants).await?;
    commit_purge(s, account, name, id).await
}

async fn purge_resident(s: &Rc<Shard>, account: &str, name: &str, id: u64) -> Result<()> {
    s.log_ready().await?;
    commit_purge(s, account, name, id).await
}

/// Purges the resident entries of the incarnation; no await before the commit.
async fn commit_purge(s: &Rc<Shard>, account: &str, name: &str, id: u64) -> Result<()> {
    let rec = Record::ContainerPurge { account: account.to_owned(), name: name.to_owned(), id };
    let commit = s.meta.borrow_mut().commit(rec)?;
    let released = commit.released.clone();
    commit.durable.await?;
    // v2: the outbox carries the drops to the shards that count them.
    if !s.node.counts_kept() {
        s.give_back_refs(released);
    }
    Ok(())
}

/// Purges, in the background, containers found deleted at start with entries left (a purge that
/// a crash interrupted). Until it ends, their entries are invisible and keep their space.
pub fn spawn_purges(s: &Rc<Shard>, dead: Vec<(String, String, u64)>) {
    let purges = {
        let s = s.clone();
        async move {
            for (account, name, id) in dead {
                if let Err(e) = purge(&s, account, name.clone(), id).await {
                    tracing::error!(shard = s.index, container = name, %e, "purge of a deleted container failed");
                }
            }
        }
    };
    super::background::spawn(s, "purge", purges, || {});
}
