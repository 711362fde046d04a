//! How Gradio and transport failures become core `Error::Upstream` codes, so the steps can tell
//! "try later" (`space_unavailable`, `space_quota_exceeded`) from "this will not work"
//! (`space_protocol`). A job that raised is not an error here: it is a `Failed` event.

use reqwest::StatusCode;
use spaceport_core::{Error, ErrorCode};

/// Whether a Space's message says a quota (ZeroGPU minutes, rate limit) ran out.
pub fn is_quota_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("quota") || m.contains("rate limit") || m.contains("too many requests")
}

/// The code a failure message of the Space maps to when it has to be an error.
pub fn classify_message(message: &str) -> ErrorCode {
    if is_quota_message(message) {
        ErrorCode::SpaceQuotaExceeded
    } else {
        ErrorCode::SpaceError
    }
}

/// A request to the Space that failed, kept typed (status included) until a caller has decided
/// what it means; it becomes core's [`Error`] through `From`. Holds no request headers, so the
/// token cannot show in its Display or Debug.
#[derive(Debug)]
pub enum HttpError {
    /// No usable answer: could not connect, timed out, or the body broke off.
    Transport {
        doing: &'static str,
        source: reqwest::Error,
    },
    /// An answer whose status is not a success; `body` is its first 300 characters.
    Status {
        doing: &'static str,
        status: StatusCode,
        body: String,
    },
}

impl HttpError {
    /// A transport failure while `doing` something.
    pub fn transport(doing: &'static str, source: reqwest::Error) -> HttpError {
        HttpError::Transport { doing, source }
    }

    /// A non-success `status` while `doing` something; keeps only the start of `body`.
    pub fn status(doing: &'static str, status: StatusCode, body: &str) -> HttpError {
        HttpError::Status {
            doing,
            status,
            body: body.chars().take(300).collect(),
        }
    }

    /// The HTTP status the Space answered with, if it answered.
    pub fn status_code(&self) -> Option<StatusCode> {
        match self {
            HttpError::Transport { .. } => None,
            HttpError::Status { status, .. } => Some(*status),
        }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Transport { doing, source } => {
                let what = if source.is_timeout() {
                    "timed out"
                } else if source.is_connect() {
                    "could not connect"
                } else {
                    "failed"
                };
                // reqwest's Display names the URL but never our headers, so the token cannot leak.
                write!(f, "{doing}: {what}: {}", with_causes(source))
            }
            HttpError::Status {
                doing,
                status,
                body,
            } => write!(f, "{doing}: HTTP {status}: {body}"),
        }
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HttpError::Transport { source, .. } => Some(source),
            HttpError::Status { .. } => None,
        }
    }
}

impl From<HttpError> for Error {
    /// Transport failures and 5xx/404/408 may pass (retryable); 429 or a quota message is a
    /// quota; 401/403 will not pass without a new token; anything else is a protocol mismatch.
    fn from(e: HttpError) -> Error {
        let message = e.to_string();
        let (code, retryable) = match &e {
            HttpError::Transport { .. } => (ErrorCode::SpaceUnavailable, true),
            HttpError::Status { status, body, .. }
                if *status == StatusCode::TOO_MANY_REQUESTS || is_quota_message(body) =>
            {
                (ErrorCode::SpaceQuotaExceeded, true)
            }
            HttpError::Status { status, .. } => match status.as_u16() {
                500..=599 | 404 | 408 => (ErrorCode::SpaceUnavailable, true),
                401 | 403 => (ErrorCode::SpaceUnavailable, false),
                _ => (ErrorCode::SpaceProtocol, false),
            },
        };
        Error::upstream(code, retryable, message)
    }
}

/// A failed result-file download: `artifact_download_failed`, retryable unless the Space said
/// 404 (its cache was cleaned: the file will not come back). Quota errors keep their own code.
pub fn download_error(e: HttpError) -> Error {
    let gone = e.status_code() == Some(StatusCode::NOT_FOUND);
    match Error::from(e) {
        Error::Upstream {
            code: ErrorCode::SpaceProtocol | ErrorCode::SpaceUnavailable,
            retryable,
            message,
        } => Error::upstream(
            ErrorCode::ArtifactDownloadFailed,
            retryable && !gone,
            message,
        ),
        other => other,
    }
}

/// The error and its causes on one line (hyper's "connection refused" sits in the chain).
fn with_causes(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: &Error) -> (ErrorCode, bool) {
        match e {
            Error::Upstream {
                code, retryable, ..
            } => (*code, *retryable),
            other => panic!("{other:?}"),
        }
    }

    fn status(doing: &'static str, status: StatusCode, body: &str) -> Error {
        HttpError::status(doing, status, body).into()
    }

    #[test]
    fn statuses_map_to_codes() {
        let s = |n: u16| code(&status("x", StatusCode::from_u16(n).unwrap(), ""));
        assert_eq!(s(503), (ErrorCode::SpaceUnavailable, true));
        assert_eq!(s(404), (ErrorCode::SpaceUnavailable, true));
        assert_eq!(s(429), (ErrorCode::SpaceQuotaExceeded, true));
        assert_eq!(s(422), (ErrorCode::SpaceProtocol, false));
        assert_eq!(s(401), (ErrorCode::SpaceUnavailable, false));
        assert_eq!(
            code(&status(
                "x",
                StatusCode::BAD_REQUEST,
                "You have exceeded your GPU quota"
            )),
            (ErrorCode::SpaceQuotaExceeded, true)
        );
    }

    #[test]
    fn a_status_error_keeps_its_message_and_the_start_of_the_body() {
        let e = HttpError::status("reading x", StatusCode::BAD_GATEWAY, &"b".repeat(500));
        assert_eq!(e.status_code(), Some(StatusCode::BAD_GATEWAY));
        assert_eq!(
            Error::from(e).to_string(),
            Error::upstream(
                ErrorCode::SpaceUnavailable,
                true,
                format!("reading x: HTTP 502 Bad Gateway: {}", "b".repeat(300))
            )
            .to_string()
        );
    }

    #[test]
    fn a_file_gone_from_the_space_is_decided_by_the_status_not_the_text() {
        let download = |n: u16, body: &str| {
            code(&download_error(HttpError::status(
                "downloading",
                StatusCode::from_u16(n).unwrap(),
                body,
            )))
        };
        assert_eq!(
            download(404, ""),
            (ErrorCode::ArtifactDownloadFailed, false)
        );
        // The text "HTTP 404" in a 503's body does not make the file gone.
        assert_eq!(
            download(503, "upstream said HTTP 404"),
            (ErrorCode::ArtifactDownloadFailed, true)
        );
        assert_eq!(
            download(403, ""),
            (ErrorCode::ArtifactDownloadFailed, false)
        );
        assert_eq!(download(429, ""), (ErrorCode::SpaceQuotaExceeded, true));
    }

    #[test]
    fn quota_messages_are_recognised() {
        assert_eq!(
            classify_message("You have exceeded your GPU quota (60s requested vs. 0s left)."),
            ErrorCode::SpaceQuotaExceeded
        );
        assert_eq!(classify_message("mirror failure: x"), ErrorCode::SpaceError);
    }
}
