//! HTTP errors: every 4xx/5xx body is `{"error": {"code", "message", "field"?}}`. Internal
//! details (storage errors, upstream texts) are logged, not sent.

use axum::Json;
use axum::extract::{FromRequestParts, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use spaceport_core::Error;
use spaceport_core::access::Refusal;

pub use spaceport_core::error::{ErrorBody, ErrorDetail};

/// An error answered over HTTP.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    /// A 400 `validation_failed` naming `field`.
    pub fn bad_request(field: Option<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "validation_failed".into(),
            message: message.into(),
            field,
        }
    }

    /// A mistake the domain found in a query string (a page limit, a filter, a cursor): a 400
    /// naming the parameter, since the request itself is malformed (not a 422).
    pub fn malformed(e: Error) -> Self {
        ApiError::bad_request(e.field().map(str::to_string), e.to_string())
    }

    /// A 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found".into(),
            message: message.into(),
            field: None,
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        ApiError {
            status: StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST),
            code: r.code.into(),
            message: r.message,
            field: r.field,
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
            match e {
                Error::Storage { .. } => "storage is unavailable; try again".to_string(),
                _ => "internal error".to_string(),
            }
        } else {
            e.to_string()
        };
        ApiError {
            status,
            code: e.code().to_string(),
            message,
            field: e.field().map(str::to_string),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody::new(self.code, self.message, self.field);
        (self.status, Json(body)).into_response()
    }
}

/// `Query<T>`, whose rejection (a value of the wrong type, a parameter given twice) is a 400 in
/// the API's error shape rather than axum's plain text.
pub(crate) struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| ApiQuery(t))
            .map_err(|e| ApiError::bad_request(None, e.body_text()))
    }
}
