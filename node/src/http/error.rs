//! Errors as a client sees them: which Azure error code, status and headers each failure
//! answers with. The engine's errors say what went wrong; the Azure code is decided here.

use edgeblob_proto::ErrorCode;
use http::StatusCode;

use edgeblob_engine::EngineError;

/// An error answer: the code, a message, and headers it needs (Content-Range on 416).
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub status: Option<StatusCode>,
    pub headers: Vec<(&'static str, String)>,
    /// Azure's `AuthenticationErrorDetail`: what a refused credential got wrong.
    pub detail: Option<String>,
}

pub type Result<T> = std::result::Result<T, ApiError>;

impl ApiError {
    /// `code` with `detail` after its standard message.
    pub fn detailed(code: ErrorCode, detail: impl std::fmt::Display) -> ApiError {
        let mut e = ApiError::from(code);
        e.message = format!("{} {detail}", e.message);
        e
    }

    /// A refused credential: `code` with its standard message, and `detail` in the body's
    /// `AuthenticationErrorDetail`, where Azure says what was wrong (and clients look for it).
    pub fn authentication(code: ErrorCode, detail: impl std::fmt::Display) -> ApiError {
        ApiError { detail: Some(detail.to_string()), ..ApiError::from(code) }
    }

    /// `code` with a message of its own in place of the standard one.
    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { message: message.into(), ..ApiError::from(code) }
    }

    pub fn status(&self) -> StatusCode {
        self.status
            .unwrap_or_else(|| StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
    }

    /// 503 ServerBusy with a short Retry-After: every client retries it (429 is not retried by
    /// the Python SDK, and azcopy gives up on Retry-After above 60 s).
    pub fn server_busy() -> ApiError {
        let mut e = ApiError::from(ErrorCode::ServerBusy);
        e.headers.push(("retry-after", "1".into()));
        e
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        ApiError { code, message: code.message().to_owned(), status: None, headers: Vec::new(), detail: None }
    }
}

/// The Azure code of an engine error.
fn code_of(e: &EngineError) -> ErrorCode {
    use EngineError::*;
    match e {
        ContainerNotFound => ErrorCode::ContainerNotFound,
        ContainerAlreadyExists => ErrorCode::ContainerAlreadyExists,
        BlobNotFound => ErrorCode::BlobNotFound,
        BlobAlreadyExists => ErrorCode::BlobAlreadyExists,
        ConditionNotMet | NotModified => ErrorCode::ConditionNotMet,
        InvalidRange { .. } => ErrorCode::InvalidRange,
        InvalidBlockList(_) => ErrorCode::InvalidBlockList,
        InvalidBlobOrBlock(_) | Body(_) => ErrorCode::InvalidBlobOrBlock,
        InvalidBlockId(_) => ErrorCode::InvalidBlockId,
        BlockCountExceedsLimit => ErrorCode::BlockCountExceedsLimit,
        BlockListTooLong => ErrorCode::BlockListTooLong,
        BodyTooLarge => ErrorCode::RequestBodyTooLarge,
        _ if retry_after(e).is_some() => ErrorCode::ServerBusy,
        OutOfSpace | Corrupt(_) | Io(_) | Log(_) | Index(_) | Busy(_) | Stopped | Tier(_) | DeviceLost(_)
        | ReadOnly(_) => ErrorCode::InternalError,
    }
}

/// For the errors that mean "not now" (503 ServerBusy), the seconds a client should wait. A full
/// node is answered the same way rather than with a 500: room comes back when blobs are deleted
/// (or, with a tier, released), and Azure answers capacity pressure with 503 too. The waits stay
/// under 60 s, past which azcopy stops honouring Retry-After.
fn retry_after(e: &EngineError) -> Option<u32> {
    use edgeblob_meta::MetaError;
    match e {
        EngineError::Busy(_) | EngineError::Log(MetaError::Busy | MetaError::Undelivered) => Some(1),
        // The tier is out of reach (a read of tiered data): it may be back in seconds.
        EngineError::Tier(_) => Some(5),
        // A data device is lost: until it is back, or the node is restored, what it held is
        // out of reach and nothing changes; the node serves the rest meanwhile.
        EngineError::DeviceLost(_) | EngineError::ReadOnly(_) => Some(30),
        EngineError::Io(io) if edgeblob_io::routed::DeviceLost::of(io).is_some() => Some(30),
        EngineError::OutOfSpace
        | EngineError::Log(MetaError::MetadataFull | MetaError::StagedFull | MetaError::TooLarge(_)) => Some(10),
        _ => None,
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let mut a = ApiError::from(code_of(&e));
        match &e {
            EngineError::InvalidRange { size } => a.headers.push(("content-range", format!("bytes */{size}"))),
            EngineError::NotModified => a.status = Some(StatusCode::NOT_MODIFIED),
            _ if retry_after(&e).is_some() => {
                let wait = retry_after(&e).unwrap_or(1);
                a.headers.push(("retry-after", wait.to_string()));
                if wait > 1 {
                    // Say which limit was reached: the standard message would suggest a retry
                    // soon is all it takes.
                    a.message = match e {
                        EngineError::DeviceLost(_) | EngineError::ReadOnly(_) | EngineError::Io(_) => {
                            format!("{} {e}.", a.message)
                        }
                        _ => format!("{} The node cannot take more data now: {e}.", a.message),
                    };
                }
            }
            EngineError::InvalidBlockList(detail)
            | EngineError::InvalidBlobOrBlock(detail)
            | EngineError::InvalidBlockId(detail) => a.message = format!("{} {detail}", a.message),
            EngineError::Corrupt(_) | EngineError::Io(_) | EngineError::Log(_) | EngineError::Index(_) => {
                tracing::error!(%e, "request failed inside the engine")
            }
            _ => {}
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_answer_with_azure_codes_and_their_headers() {
        let range = ApiError::from(EngineError::InvalidRange { size: 10 });
        assert_eq!((range.status(), range.code), (StatusCode::RANGE_NOT_SATISFIABLE, ErrorCode::InvalidRange));
        assert_eq!(range.headers, vec![("content-range", "bytes */10".to_owned())]);
        let not_modified = ApiError::from(EngineError::NotModified);
        assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
        let busy = ApiError::from(EngineError::Log(edgeblob_meta::MetaError::Busy));
        assert_eq!((busy.status(), busy.headers.len()), (StatusCode::SERVICE_UNAVAILABLE, 1));
        let id = ApiError::from(EngineError::InvalidBlockId("65 bytes".into()));
        assert!(id.message.ends_with(" 65 bytes"), "{}", id.message);
        let full = ApiError::from(EngineError::OutOfSpace);
        assert_eq!((full.status(), full.code), (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::ServerBusy));
        assert_eq!(full.headers, vec![("retry-after", "10".to_owned())]);
        assert!(full.message.contains("no space left"), "{}", full.message);
        // Metadata past what a shard holds is capacity, not a fault: the client is told which.
        let huge = ApiError::from(EngineError::Log(edgeblob_meta::MetaError::TooLarge(204 << 20)));
        assert_eq!((huge.status(), huge.code), (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::ServerBusy));
        assert!(huge.message.contains("block list"), "{}", huge.message);
        let log = ApiError::from(EngineError::Log(edgeblob_meta::MetaError::Failed));
        assert_eq!(log.status(), StatusCode::INTERNAL_SERVER_ERROR);
        // A lost device: the client is told which, and that it is not a short wait.
        let l = edgeblob_io::routed::DeviceLost { index: 2, name: "/dev/nvme2n1".into(), reason: "not found".into() };
        for e in [EngineError::DeviceLost(l.clone()), EngineError::Io(l.error())] {
            let lost = ApiError::from(e);
            assert_eq!((lost.status(), lost.code), (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::ServerBusy));
            assert_eq!(lost.headers, vec![("retry-after", "30".to_owned())]);
            assert!(
                lost.message.contains("data device 2 (/dev/nvme2n1) is unavailable: not found"),
                "{}",
                lost.message
            );
        }
        let ro = ApiError::from(EngineError::ReadOnly(l.to_string()));
        assert!(ro.message.contains("read-only: data device 2"), "{}", ro.message);
    }
}
