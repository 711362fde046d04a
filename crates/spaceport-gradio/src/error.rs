//! How Gradio and transport failures become core `Error::Upstream` codes, so the steps can tell
//! "try later" (`space_unavailable`, `space_quota_exceeded`) from "this will not work"
//! (`space_protocol`). A job that raised is not an error here: it is a `Failed` event.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use spaceport_core::{Error, ErrorCode};

/// Whether a Space's message says a quota (ZeroGPU minutes, rate limit) ran out.
pub fn is_quota_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("quota") || m.contains("rate limit") || m.contains("too many requests")
}

/// When a quota message says the quota frees: ZeroGPU ends its messages with "Try again in
/// 0:09:48" (hours:minutes:seconds; some releases say "retry in", some drop the hours).
pub fn quota_retry_in(message: &str) -> Option<Duration> {
    let m = message.to_ascii_lowercase();
    let at = ["try again in", "retry in"]
        .iter()
        .filter_map(|p| m.find(p).map(|i| i + p.len()))
        .min()?;
    let clock: String = m[at..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ':')
        .collect();
    let parts: Vec<u64> = clock
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let secs = match parts.as_slice() {
        [h, m, s] if *m < 60 && *s < 60 => h * 3600 + m * 60 + s,
        [m, s] if *s < 60 => m * 60 + s,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// Whether an answer says Gradio's queue is full (`503 {"detail": "Queue is full. Max size is
/// 20 and size is 20."}`).
pub fn is_queue_full(status: StatusCode, body: &str) -> bool {
    status == StatusCode::SERVICE_UNAVAILABLE && body.contains("Queue is full")
}

/// A `Retry-After` header in seconds (the HTTP-date form is rare from Spaces and the Hub; it
/// is read as absent, and the caller's backoff applies).
pub fn retry_after_header(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The error a quota message of the Space makes: retryable, at the time it names if it names one.
pub fn quota_error(message: String) -> Error {
    let after = quota_retry_in(&message);
    Error::upstream_after(ErrorCode::SpaceQuotaExceeded, message, after)
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
        /// The answer's `Retry-After`, if it had one.
        retry_after: Option<Duration>,
    },
    /// A request we would not send: its URL left the Space's origin.
    OffOrigin { doing: &'static str, origin: String },
}

impl HttpError {
    /// A transport failure while `doing` something.
    pub fn transport(doing: &'static str, source: reqwest::Error) -> HttpError {
        HttpError::Transport { doing, source }
    }

    /// A request to `url`, off the Space's origin, that was not sent.
    pub fn off_origin(doing: &'static str, url: &url::Url) -> HttpError {
        HttpError::OffOrigin {
            doing,
            origin: url.origin().ascii_serialization(),
        }
    }

    /// Whether the Space sent us off its origin (a redirect elsewhere): it will not pass.
    pub fn is_off_origin(&self) -> bool {
        match self {
            HttpError::Transport { source, .. } => source.is_redirect(),
            HttpError::OffOrigin { .. } => true,
            HttpError::Status { .. } => false,
        }
    }

    /// A non-success `status` while `doing` something; keeps only the start of `body`.
    pub fn status(doing: &'static str, status: StatusCode, body: &str) -> HttpError {
        HttpError::Status {
            doing,
            status,
            body: body.chars().take(300).collect(),
            retry_after: None,
        }
    }

    /// The same error with the answer's `Retry-After`.
    pub fn with_retry_after(mut self, after: Option<Duration>) -> HttpError {
        if let HttpError::Status { retry_after, .. } = &mut self {
            *retry_after = after;
        }
        self
    }

    /// The HTTP status the Space answered with, if it answered.
    pub fn status_code(&self) -> Option<StatusCode> {
        match self {
            HttpError::Transport { .. } | HttpError::OffOrigin { .. } => None,
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
                ..
            } => write!(f, "{doing}: HTTP {status}: {body}"),
            HttpError::OffOrigin { doing, origin } => write!(
                f,
                "{doing}: not sent: the URL leads off the Space's origin, to {origin}"
            ),
        }
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HttpError::Transport { source, .. } => Some(source),
            HttpError::Status { .. } | HttpError::OffOrigin { .. } => None,
        }
    }
}

impl From<HttpError> for Error {
    /// Transport failures and 5xx/404/408 may pass (retryable); 429 or a quota message is a
    /// quota; 401/403 will not pass without a new token; a redirect off the Space's origin and
    /// anything else is a protocol mismatch.
    fn from(e: HttpError) -> Error {
        let message = e.to_string();
        let (code, retryable, after) = match &e {
            e if e.is_off_origin() => (ErrorCode::SpaceProtocol, false, None),
            HttpError::Transport { .. } | HttpError::OffOrigin { .. } => {
                (ErrorCode::SpaceUnavailable, true, None)
            }
            HttpError::Status {
                status,
                body,
                retry_after,
                ..
            } if *status == StatusCode::TOO_MANY_REQUESTS || is_quota_message(body) => (
                ErrorCode::SpaceQuotaExceeded,
                true,
                retry_after.or_else(|| quota_retry_in(body)),
            ),
            HttpError::Status {
                status,
                body,
                retry_after,
                ..
            } if is_queue_full(*status, body) => (ErrorCode::SpaceQueueFull, true, *retry_after),
            HttpError::Status {
                status,
                retry_after,
                ..
            } => match status.as_u16() {
                500..=599 | 404 | 408 => (ErrorCode::SpaceUnavailable, true, *retry_after),
                401 | 403 => (ErrorCode::SpaceUnavailable, false, None),
                _ => (ErrorCode::SpaceProtocol, false, None),
            },
        };
        Error::Upstream {
            code,
            retryable,
            message,
            retry_after: after,
        }
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
            ..
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
    fn quota_waits_are_read_from_zerogpu_messages() {
        let secs = |m: &str| quota_retry_in(m).map(|d| d.as_secs());
        assert_eq!(
            secs(
                "You have exceeded your GPU quota (60s requested vs. 45s left). Try again in 0:09:48"
            ),
            Some(588)
        );
        assert_eq!(
            secs("ZeroGPU quota exceeded: retry in 1:00:05."),
            Some(3605)
        );
        assert_eq!(secs("quota exceeded, retry in 02:30"), Some(150));
        assert_eq!(secs("You have exceeded your free GPU quota. Sign up"), None);
        assert_eq!(secs("retry in 0:61:00"), None);
        let e = code(&status(
            "x",
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"detail\":\"Queue is full. Max size is 1 and size is 1.\"}",
        ));
        assert_eq!(e, (ErrorCode::SpaceQueueFull, true));
        let q = Error::from(
            HttpError::status("x", StatusCode::TOO_MANY_REQUESTS, "slow down")
                .with_retry_after(Some(Duration::from_secs(7))),
        );
        assert_eq!(q.retry_after(), Some(Duration::from_secs(7)));
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
