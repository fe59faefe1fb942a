//! Engine errors: what went wrong, in the engine's terms. Which Azure error code a client sees
//! for each is decided by the HTTP layer.

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the specified container does not exist")]
    ContainerNotFound,
    #[error("the specified container already exists")]
    ContainerAlreadyExists,
    #[error("the specified blob does not exist")]
    BlobNotFound,
    #[error("the specified blob already exists")]
    BlobAlreadyExists,
    #[error("the condition specified using HTTP conditional header(s) is not met")]
    ConditionNotMet,
    #[error("not modified")]
    NotModified,
    #[error("the range specified is invalid for the current size of the resource ({size} bytes)")]
    InvalidRange { size: u64 },
    #[error("the specified block list is invalid: {0}")]
    InvalidBlockList(String),
    #[error("the specified blob or block content is invalid: {0}")]
    InvalidBlobOrBlock(String),
    #[error("the specified block id is invalid: {0}")]
    InvalidBlockId(String),
    #[error("the uncommitted block count cannot exceed the maximum limit of 100,000 blocks")]
    BlockCountExceedsLimit,
    #[error("the block list may not contain more than 50,000 blocks")]
    BlockListTooLong,
    #[error("the request body is too large and exceeds the maximum permissible limit")]
    BodyTooLarge,
    #[error("no space left in this shard's region")]
    OutOfSpace,
    #[error("stored data failed its checksum: {0}")]
    Corrupt(String),
    #[error("the node is busy: {0}")]
    Busy(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("metadata log: {0}")]
    Log(#[from] edgeblob_meta::MetaError),
    #[error("{0}")]
    Index(#[from] edgeblob_meta::index::shard::IndexError),
    #[error("request body: {0}")]
    Body(String),
    #[error("the node is stopping")]
    Stopped,
    #[error("the tier: {0}")]
    Tier(String),
    /// What was asked for lies on a device of the node that is lost.
    #[error("{0}")]
    DeviceLost(edgeblob_io::routed::DeviceLost),
    /// The node runs without some of its devices: it serves what the others hold, and changes
    /// nothing until they are back (or the node is restored).
    #[error("the node is read-only: {0}")]
    ReadOnly(String),
}

impl From<edgeblob_io::executor::ShardGone> for EngineError {
    fn from(_: edgeblob_io::executor::ShardGone) -> Self {
        EngineError::Stopped
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
