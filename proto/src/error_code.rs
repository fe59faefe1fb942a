//! Azure Blob error codes the node answers with, with their HTTP status.
//! Names and statuses follow Azure's "Blob service error codes" reference.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    ContainerNotFound,
    ContainerAlreadyExists,
    BlobNotFound,
    BlobAlreadyExists,
    ConditionNotMet,
    InvalidRange,
    InvalidBlockList,
    InvalidBlobOrBlock,
    InvalidBlockId,
    BlockCountExceedsLimit,
    BlockListTooLong,
    RequestBodyTooLarge,
    Md5Mismatch,
    ServerBusy,
    InternalError,
    InsufficientAccountPermissions,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ContainerNotFound => "ContainerNotFound",
            ErrorCode::ContainerAlreadyExists => "ContainerAlreadyExists",
            ErrorCode::BlobNotFound => "BlobNotFound",
            ErrorCode::BlobAlreadyExists => "BlobAlreadyExists",
            ErrorCode::ConditionNotMet => "ConditionNotMet",
            ErrorCode::InvalidRange => "InvalidRange",
            ErrorCode::InvalidBlockList => "InvalidBlockList",
            ErrorCode::InvalidBlobOrBlock => "InvalidBlobOrBlock",
            ErrorCode::InvalidBlockId => "InvalidBlockId",
            ErrorCode::BlockCountExceedsLimit => "BlockCountExceedsLimit",
            ErrorCode::BlockListTooLong => "BlockListTooLong",
            ErrorCode::RequestBodyTooLarge => "RequestBodyTooLarge",
            ErrorCode::Md5Mismatch => "Md5Mismatch",
            ErrorCode::ServerBusy => "ServerBusy",
            ErrorCode::InternalError => "InternalError",
            ErrorCode::InsufficientAccountPermissions => "InsufficientAccountPermissions",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ErrorCode::ContainerNotFound | ErrorCode::BlobNotFound => 404,
            ErrorCode::ContainerAlreadyExists | ErrorCode::BlobAlreadyExists | ErrorCode::BlockCountExceedsLimit => 409,
            ErrorCode::ConditionNotMet => 412,
            ErrorCode::InvalidRange => 416,
            ErrorCode::RequestBodyTooLarge => 413,
            ErrorCode::InvalidBlockList
            | ErrorCode::InvalidBlobOrBlock
            | ErrorCode::InvalidBlockId
            | ErrorCode::BlockListTooLong
            | ErrorCode::Md5Mismatch => 400,
            ErrorCode::InsufficientAccountPermissions => 403,
            ErrorCode::ServerBusy => 503,
            ErrorCode::InternalError => 500,
        }
    }
}
