//! Containers. The catalog lives on one shard (its log records every container); every shard
//! reads the published copy in `NodeShared::catalog`. A container is published only once its
//! creation is durable, and unpublished before its deletion is logged, so no blob is ever written
//! into a container that a crash could bring back or take away.

use std::rc::Rc;

use edgeblob_meta::model::{Container, Metadata, PublicAccess};
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
        if meta.state.containers.contains_key(&key) {
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

/// What Set Container Metadata or Set Container ACL changes.
pub enum ContainerChange {
    Metadata(Metadata),
    Access(PublicAccess),
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
        let mut c = meta.state.containers.get(&key).cloned().ok_or(EngineError::ContainerNotFound)?;
        match what {
            ContainerChange::Metadata(md) => c.metadata = md,
            ContainerChange::Access(a) => c.public_access = a,
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
    let Some(container) = s.meta.borrow().state.containers.get(&key).cloned() else {
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

async fn purge(s: &Rc<Shard>, account: String, name: String, id: u64) -> Result<()> {
    s.log_ready().await?;
    let commit = s.meta.borrow_mut().commit(Record::ContainerPurge { account, name, id })?;
    let released = commit.released.clone();
    commit.durable.await?;
    s.give_back_refs(released);
    Ok(())
}
