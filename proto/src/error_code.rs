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

#[cfg(test)]
mod tests {
    use super::ErrorCode::*;

    #[test]
    fn statuses_follow_azure_reference() {
        // From Azure's "Blob service error codes" table.
        let cases = [
            (ContainerNotFound, 404),
            (BlobNotFound, 404),
            (ContainerAlreadyExists, 409),
            (BlobAlreadyExists, 409),
            (BlockCountExceedsLimit, 409),
            (ConditionNotMet, 412),
            (InvalidRange, 416),
            (InvalidBlockList, 400),
            (InvalidBlobOrBlock, 400),
            (InvalidBlockId, 400),
            (BlockListTooLong, 400),
            (Md5Mismatch, 400),
            (RequestBodyTooLarge, 413),
            (ServerBusy, 503),
            (InternalError, 500),
        ];
        for (code, status) in cases {
            assert_eq!(code.status(), status, "{}", code.as_str());
        }
    }

    #[test]
    fn names_are_the_azure_names() {
        assert_eq!(BlobNotFound.as_str(), "BlobNotFound");
        assert_eq!(Md5Mismatch.as_str(), "Md5Mismatch");
        assert_eq!(ServerBusy.as_str(), "ServerBusy");
    }
}
