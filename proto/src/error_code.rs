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
    InvalidUri,
    InvalidResourceName,
    InvalidQueryParameterValue,
    InvalidHeaderValue,
    InvalidXmlDocument,
    InvalidXmlNodeValue,
    MissingRequiredHeader,
    MissingContentLengthHeader,
    UnsupportedHttpVerb,
    AuthenticationFailed,
    InvalidAuthenticationInfo,
    CorsPreflightFailure,
    AuthorizationFailure,
    AuthorizationPermissionMismatch,
    AuthorizationResourceTypeMismatch,
    AuthorizationServiceMismatch,
    AuthorizationProtocolMismatch,
    AuthorizationSourceIPMismatch,
    ResourceNotFound,
    OperationNotSupported,
    InvalidInput,
    CannotVerifyCopySource,
    Crc64Mismatch,
    MetadataTooLarge,
    InvalidMetadata,
    SourceConditionNotMet,
    ExceedsMaxBatchRequestCount,
    AllBatchSubRequestsShouldBeSameApi,
    OutOfRangeInput,
    MissingRequiredQueryParameter,
    NoPendingCopyOperation,
    CopyIdMismatch,
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
            ErrorCode::InvalidUri => "InvalidUri",
            ErrorCode::InvalidResourceName => "InvalidResourceName",
            ErrorCode::InvalidQueryParameterValue => "InvalidQueryParameterValue",
            ErrorCode::InvalidHeaderValue => "InvalidHeaderValue",
            ErrorCode::InvalidXmlDocument => "InvalidXmlDocument",
            ErrorCode::InvalidXmlNodeValue => "InvalidXmlNodeValue",
            ErrorCode::MissingRequiredHeader => "MissingRequiredHeader",
            ErrorCode::MissingContentLengthHeader => "MissingContentLengthHeader",
            ErrorCode::UnsupportedHttpVerb => "UnsupportedHttpVerb",
            ErrorCode::AuthenticationFailed => "AuthenticationFailed",
            ErrorCode::InvalidAuthenticationInfo => "InvalidAuthenticationInfo",
            ErrorCode::CorsPreflightFailure => "CorsPreflightFailure",
            ErrorCode::AuthorizationFailure => "AuthorizationFailure",
            ErrorCode::AuthorizationPermissionMismatch => "AuthorizationPermissionMismatch",
            ErrorCode::AuthorizationResourceTypeMismatch => "AuthorizationResourceTypeMismatch",
            ErrorCode::AuthorizationServiceMismatch => "AuthorizationServiceMismatch",
            ErrorCode::AuthorizationProtocolMismatch => "AuthorizationProtocolMismatch",
            ErrorCode::AuthorizationSourceIPMismatch => "AuthorizationSourceIPMismatch",
            ErrorCode::ResourceNotFound => "ResourceNotFound",
            ErrorCode::OperationNotSupported => "OperationNotSupported",
            ErrorCode::InvalidInput => "InvalidInput",
            ErrorCode::CannotVerifyCopySource => "CannotVerifyCopySource",
            ErrorCode::Crc64Mismatch => "Crc64Mismatch",
            ErrorCode::MetadataTooLarge => "MetadataTooLarge",
            ErrorCode::InvalidMetadata => "InvalidMetadata",
            ErrorCode::SourceConditionNotMet => "SourceConditionNotMet",
            ErrorCode::ExceedsMaxBatchRequestCount => "ExceedsMaxBatchRequestCount",
            ErrorCode::AllBatchSubRequestsShouldBeSameApi => "AllBatchSubRequestsShouldBeSameApi",
            ErrorCode::OutOfRangeInput => "OutOfRangeInput",
            ErrorCode::MissingRequiredQueryParameter => "MissingRequiredQueryParameter",
            ErrorCode::NoPendingCopyOperation => "NoPendingCopyOperation",
            ErrorCode::CopyIdMismatch => "CopyIdMismatch",
        }
    }

    /// The message Azure gives with the code.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::ContainerNotFound => "The specified container does not exist.",
            ErrorCode::ContainerAlreadyExists => "The specified container already exists.",
            ErrorCode::BlobNotFound => "The specified blob does not exist.",
            ErrorCode::BlobAlreadyExists => "The specified blob already exists.",
            ErrorCode::ConditionNotMet => "The condition specified using HTTP conditional header(s) is not met.",
            ErrorCode::InvalidRange => "The range specified is invalid for the current size of the resource.",
            ErrorCode::InvalidBlockList => "The specified block list is invalid.",
            ErrorCode::InvalidBlobOrBlock => "The specified blob or block content is invalid.",
            ErrorCode::InvalidBlockId => "The specified block ID is invalid. The block ID must be Base64-encoded.",
            ErrorCode::BlockCountExceedsLimit => "The uncommitted block count cannot exceed the maximum limit of 100,000 blocks.",
            ErrorCode::BlockListTooLong => "The block list may not contain more than 50,000 blocks.",
            ErrorCode::RequestBodyTooLarge => "The request body is too large and exceeds the maximum permissible limit.",
            ErrorCode::Md5Mismatch => "The MD5 value specified in the request did not match with the MD5 value calculated by the server.",
            ErrorCode::ServerBusy => "The server is currently unable to receive requests. Please retry your request.",
            ErrorCode::InternalError => "The server encountered an internal error. Please retry the request.",
            ErrorCode::InsufficientAccountPermissions => "The account being accessed does not have sufficient permissions to execute this operation.",
            ErrorCode::InvalidUri => "The requested URI does not represent any resource on the server.",
            ErrorCode::InvalidResourceName => "The specifed resource name contains invalid characters.",
            ErrorCode::InvalidQueryParameterValue => "Value for one of the query parameters specified in the request URI is invalid.",
            ErrorCode::InvalidHeaderValue => "The value for one of the HTTP headers is not in the correct format.",
            ErrorCode::InvalidXmlDocument => "XML specified is not syntactically valid.",
            ErrorCode::InvalidXmlNodeValue => "The value for one of the XML nodes is not in the correct format.",
            ErrorCode::MissingRequiredHeader => "A required HTTP header was not specified.",
            ErrorCode::MissingContentLengthHeader => "The Content-Length header was not specified.",
            ErrorCode::UnsupportedHttpVerb => "The resource doesn't support the specified HTTP verb.",
            ErrorCode::AuthenticationFailed => "Server failed to authenticate the request. Make sure the value of the Authorization header is formed correctly including the signature.",
            ErrorCode::InvalidAuthenticationInfo => "Server failed to authenticate the request. Please refer to the information in the www-authenticate header.",
            ErrorCode::CorsPreflightFailure => "CORS not enabled or no matching rule found for this request.",
            ErrorCode::AuthorizationFailure => "This request is not authorized to perform this operation.",
            ErrorCode::AuthorizationPermissionMismatch => "This request is not authorized to perform this operation using this permission.",
            ErrorCode::AuthorizationResourceTypeMismatch => "This request is not authorized to perform this operation using this resource type.",
            ErrorCode::AuthorizationServiceMismatch => "This request is not authorized to perform this operation using this service.",
            ErrorCode::AuthorizationProtocolMismatch => "This request is not authorized to perform this operation using this protocol.",
            ErrorCode::AuthorizationSourceIPMismatch => "This request is not authorized to perform this operation using this source IP.",
            ErrorCode::ResourceNotFound => "The specified resource does not exist.",
            ErrorCode::OperationNotSupported => "The operation is not supported.",
            ErrorCode::InvalidInput => "One of the request inputs is not valid.",
            ErrorCode::CannotVerifyCopySource => "Could not verify the copy source within the specified time.",
            ErrorCode::Crc64Mismatch => "The CRC64 value specified in the request did not match with the CRC64 value calculated by the server.",
            ErrorCode::MetadataTooLarge => "The size of the specified metadata exceeds the maximum size permitted.",
            ErrorCode::InvalidMetadata => "The metadata specified is invalid. It has characters that are not permitted.",
            ErrorCode::SourceConditionNotMet => "The source condition specified using HTTP conditional header(s) is not met.",
            ErrorCode::ExceedsMaxBatchRequestCount => "The batch operation exceeds maximum number of allowed subrequests.",
            ErrorCode::AllBatchSubRequestsShouldBeSameApi => "All batch subrequests should be the same api.",
            ErrorCode::OutOfRangeInput => "One of the request inputs is out of range.",
            ErrorCode::MissingRequiredQueryParameter => "A required query parameter was not specified for this request.",
            ErrorCode::NoPendingCopyOperation => "There is currently no pending copy operation.",
            ErrorCode::CopyIdMismatch => "The specified copy ID did not match the copy ID for the pending copy operation.",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ErrorCode::ContainerNotFound | ErrorCode::BlobNotFound | ErrorCode::ResourceNotFound => 404,
            ErrorCode::ContainerAlreadyExists
            | ErrorCode::BlobAlreadyExists
            | ErrorCode::BlockCountExceedsLimit
            | ErrorCode::NoPendingCopyOperation
            | ErrorCode::CopyIdMismatch => 409,
            ErrorCode::ConditionNotMet | ErrorCode::SourceConditionNotMet => 412,
            ErrorCode::InvalidRange => 416,
            ErrorCode::RequestBodyTooLarge => 413,
            ErrorCode::InvalidBlockList
            | ErrorCode::InvalidBlobOrBlock
            | ErrorCode::InvalidBlockId
            | ErrorCode::BlockListTooLong
            | ErrorCode::Md5Mismatch
            | ErrorCode::InvalidUri
            | ErrorCode::InvalidResourceName
            | ErrorCode::InvalidQueryParameterValue
            | ErrorCode::InvalidHeaderValue
            | ErrorCode::InvalidXmlDocument
            | ErrorCode::InvalidXmlNodeValue
            | ErrorCode::MissingRequiredHeader
            | ErrorCode::OperationNotSupported
            | ErrorCode::InvalidInput
            | ErrorCode::CannotVerifyCopySource
            | ErrorCode::Crc64Mismatch
            | ErrorCode::MetadataTooLarge
            | ErrorCode::InvalidMetadata
            | ErrorCode::ExceedsMaxBatchRequestCount
            | ErrorCode::AllBatchSubRequestsShouldBeSameApi
            | ErrorCode::OutOfRangeInput
            | ErrorCode::MissingRequiredQueryParameter => 400,
            ErrorCode::UnsupportedHttpVerb => 405,
            ErrorCode::InvalidAuthenticationInfo => 401,
            ErrorCode::MissingContentLengthHeader => 411,
            ErrorCode::InsufficientAccountPermissions
            | ErrorCode::AuthenticationFailed
            | ErrorCode::AuthorizationFailure
            | ErrorCode::AuthorizationPermissionMismatch
            | ErrorCode::AuthorizationResourceTypeMismatch
            | ErrorCode::AuthorizationServiceMismatch
            | ErrorCode::AuthorizationProtocolMismatch
            | ErrorCode::AuthorizationSourceIPMismatch
            | ErrorCode::CorsPreflightFailure => 403,
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
            (AuthenticationFailed, 403),
            (InvalidAuthenticationInfo, 401),
            (AuthorizationPermissionMismatch, 403),
            (SourceConditionNotMet, 412),
            (OutOfRangeInput, 400),
            (MissingRequiredQueryParameter, 400),
            (NoPendingCopyOperation, 409),
            (CopyIdMismatch, 409),
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
