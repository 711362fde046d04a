//! The one error type of the domain. Every variant knows its stable API `code`, its HTTP status
//! and whether retrying can help, so each edge (HTTP, Lambda, CLI) maps it without guessing.

use serde::{Deserialize, Serialize};

use crate::status::Status;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a run did not succeed: the `error.code` of a failed or expired run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    UploadMissing,
    InputInvalid,
    SpaceUnavailable,
    SpaceQuotaExceeded,
    /// The Space's queue stayed full (HTTP 503 "Queue is full", `queue_full`) until the run gave up.
    SpaceQueueFull,
    SpaceError,
    SpaceProtocol,
    ModelError,
    /// A model server (`http_model`) did not answer, or answered 5xx or 429, on every try.
    ModelUnavailable,
    ArtifactDownloadFailed,
    DeadlineExceeded,
    Internal,
}

impl ErrorCode {
    /// The snake_case spelling used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::UploadMissing => "upload_missing",
            ErrorCode::InputInvalid => "input_invalid",
            ErrorCode::SpaceUnavailable => "space_unavailable",
            ErrorCode::SpaceQuotaExceeded => "space_quota_exceeded",
            ErrorCode::SpaceQueueFull => "space_queue_full",
            ErrorCode::SpaceError => "space_error",
            ErrorCode::SpaceProtocol => "space_protocol",
            ErrorCode::ModelError => "model_error",
            ErrorCode::ModelUnavailable => "model_unavailable",
            ErrorCode::ArtifactDownloadFailed => "artifact_download_failed",
            ErrorCode::DeadlineExceeded => "deadline_exceeded",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of the domain and its ports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or breaks a pipeline's rules (HTTP 400/422).
    #[error("{message}")]
    Validation {
        field: Option<String>,
        message: String,
    },
    /// A declared or uploaded size is over its limit (HTTP 413).
    #[error("{message}")]
    PayloadTooLarge {
        field: Option<String>,
        message: String,
    },
    /// A content type the pipeline does not take (HTTP 415).
    #[error("{message}")]
    UnsupportedMediaType {
        field: Option<String>,
        message: String,
    },
    /// No such run, pipeline, artifact… (HTTP 404).
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    /// The request conflicts with what is stored: an Idempotency-Key reused with another body (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// A conditional write lost: the run changed since it was read. Re-read and decide again.
    #[error("run {id} changed concurrently (expected version {expected})")]
    VersionConflict { id: String, expected: u64 },
    /// The status machine does not allow this move.
    #[error("cannot move a run from {from} to {to}")]
    InvalidTransition { from: Status, to: Status },
    /// A tenant is at one of its caps (runs in flight, stored bytes): nothing is created until
    /// it holds less (HTTP 429).
    #[error("{0}")]
    LimitExceeded(String),
    /// The action does not fit the run's state, e.g. cancelling a finished run (HTTP 409).
    #[error("{0}")]
    InvalidState(String),
    /// A presigned URL whose signature does not verify (HTTP 403).
    #[error("{0}")]
    UploadSignatureInvalid(String),
    /// A presigned URL past its expiry (HTTP 403).
    #[error("{0}")]
    UploadExpired(String),
    /// A peer (a Space, a model, object storage) failed; `code` is what the run records.
    #[error("{message}")]
    Upstream {
        code: ErrorCode,
        retryable: bool,
        message: String,
        /// When the peer said it can be tried again (HTTP `Retry-After`, a ZeroGPU "retry in
        /// 0:09:48"), counted from when the error was made.
        retry_after: Option<std::time::Duration>,
    },
    /// Storage or another local resource failed.
    #[error("{context}: {source}")]
    Storage {
        context: String,
        retryable: bool,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A bug or an impossible state.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// A validation error naming the offending field.
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Validation {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// A storage error with what we were doing.
    pub fn storage(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Storage {
            context: context.into(),
            retryable: true,
            source: Box::new(source),
        }
    }

    /// An upstream failure recorded on the run with `code`.
    pub fn upstream(code: ErrorCode, retryable: bool, message: impl Into<String>) -> Self {
        Error::Upstream {
            code,
            retryable,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A retryable upstream failure whose peer said when to try again.
    pub fn upstream_after(
        code: ErrorCode,
        message: impl Into<String>,
        retry_after: Option<std::time::Duration>,
    ) -> Self {
        Error::Upstream {
            code,
            retryable: true,
            message: message.into(),
            retry_after,
        }
    }

    /// When the peer said the failed call can be tried again, if it said.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Error::Upstream { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The stable snake_case `code` of the HTTP error body.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Validation { .. } => "validation_failed",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::UnsupportedMediaType { .. } => "unsupported_media_type",
            Error::NotFound { .. } => "not_found",
            Error::Conflict(_) | Error::VersionConflict { .. } => "conflict",
            Error::InvalidTransition { .. } | Error::InvalidState(_) => "invalid_state",
            Error::LimitExceeded(_) => "limit_exceeded",
            Error::UploadSignatureInvalid(_) => "upload_signature_invalid",
            Error::UploadExpired(_) => "upload_expired",
            Error::Upstream { .. } | Error::Storage { .. } | Error::Internal(_) => "internal",
        }
    }

    /// The HTTP status this error answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::Validation { .. } => 422,
            Error::PayloadTooLarge { .. } => 413,
            Error::UnsupportedMediaType { .. } => 415,
            Error::NotFound { .. } => 404,
            Error::Conflict(_) | Error::VersionConflict { .. } => 409,
            Error::InvalidTransition { .. } | Error::InvalidState(_) => 409,
            Error::LimitExceeded(_) => 429,
            Error::UploadSignatureInvalid(_) | Error::UploadExpired(_) => 403,
            Error::Upstream { .. } => 502,
            Error::Storage { .. } => 503,
            Error::Internal(_) => 500,
        }
    }

    /// The request field the error is about, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Validation { field, .. }
            | Error::PayloadTooLarge { field, .. }
            | Error::UnsupportedMediaType { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// Whether trying the same thing again later can succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Upstream { retryable, .. } | Error::Storage { retryable, .. } => *retryable,
            Error::VersionConflict { .. } => true,
            _ => false,
        }
    }
}

/// The API's error body, `{"error": {"code", "message", "field"?}}`: one type, so the server,
/// the Lambda and the edge answer the same refusal byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// A stable snake_case word (`validation_failed`, `not_found`, `conflict`, …).
    pub code: String,
    pub message: String,
    /// The request field at fault (`settings.conf_thres`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>, field: Option<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
                field,
            },
        }
    }

    /// The body as sent.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}
