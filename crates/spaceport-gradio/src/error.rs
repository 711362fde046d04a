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

/// A transport failure (connect, timeout, broken body) while `doing` something.
pub fn transport(doing: &str, e: &reqwest::Error) -> Error {
    // reqwest's Display names the URL but never our headers, so the token cannot leak here.
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    Error::upstream(
        ErrorCode::SpaceUnavailable,
        true,
        format!("{doing}: {what}: {}", e.without_url_chain()),
    )
}

/// An HTTP status that is not success, while `doing` something; `body` is the start of the answer.
pub fn status(doing: &str, status: StatusCode, body: &str) -> Error {
    let body: String = body.chars().take(300).collect();
    let message = format!("{doing}: HTTP {status}: {body}");
    if status == StatusCode::TOO_MANY_REQUESTS || is_quota_message(&body) {
        return Error::upstream(ErrorCode::SpaceQuotaExceeded, true, message);
    }
    match status.as_u16() {
        500..=599 | 404 | 408 => Error::upstream(ErrorCode::SpaceUnavailable, true, message),
        401 | 403 => Error::upstream(ErrorCode::SpaceUnavailable, false, message),
        _ => Error::upstream(ErrorCode::SpaceProtocol, false, message),
    }
}

trait WithoutUrlChain {
    fn without_url_chain(&self) -> String;
}

impl WithoutUrlChain for reqwest::Error {
    /// The error and its causes on one line (hyper's "connection refused" sits in the chain).
    fn without_url_chain(&self) -> String {
        let mut out = self.to_string();
        let mut src = std::error::Error::source(self);
        while let Some(s) = src {
            out.push_str(": ");
            out.push_str(&s.to_string());
            src = s.source();
        }
        out
    }
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
    fn quota_messages_are_recognised() {
        assert_eq!(
            classify_message("You have exceeded your GPU quota (60s requested vs. 0s left)."),
            ErrorCode::SpaceQuotaExceeded
        );
        assert_eq!(classify_message("mirror failure: x"), ErrorCode::SpaceError);
    }
}
