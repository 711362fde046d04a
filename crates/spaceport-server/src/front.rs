//! The front door's checks, before any route: the host a request names, the content type of a
//! JSON body, and CORS for the browser origins the configuration names (none by default).
//!
//! Why: a page on any site can make a browser send a "simple" cross-origin request (a form or
//! `text/plain` POST) that no preflight stops, and through DNS rebinding can reach a server bound
//! to 127.0.0.1 under its own host name. Refusing bodies that are not JSON stops the first;
//! refusing host names the server does not answer to stops the second.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::ApiError;

/// Host names every loopback-bound server answers to.
pub const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// What the front door lets in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrontDoor {
    /// Host names (without port) requests may name; `None` checks none (a gateway in front
    /// routes by host already).
    pub hosts: Option<Vec<String>>,
    /// Browser origins allowed to call the API (`https://app.example.com`); none by default.
    pub cors_origins: Vec<String>,
}

/// The host name of a `Host` header value: without its port, IPv6 brackets removed, lowercase.
fn host_name(value: &str) -> String {
    let v = value.trim();
    let name = match v.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => v.rsplit_once(':').map_or(v, |(h, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                v
            }
        }),
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Refuses a request naming a host this server does not answer to (421).
pub(crate) async fn check_host(
    State(front): State<FrontDoor>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(hosts) = &front.hosts {
        let named = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(host_name)
            .or_else(|| req.uri().host().map(host_name));
        let known = named
            .as_deref()
            .is_some_and(|n| hosts.iter().any(|h| h.eq_ignore_ascii_case(n)));
        if !known {
            let shown = named.unwrap_or_else(|| "(none)".into());
            return ApiError {
                status: StatusCode::MISDIRECTED_REQUEST,
                code: "host_not_allowed".into(),
                message: format!(
                    "this server does not answer to host {shown:?}; configure it in public_hosts (SPACEPORT_PUBLIC_HOSTS)"
                ),
                field: Some("Host".into()),
            }
            .into_response();
        }
    }
    next.run(req).await
}

/// A 415 unless the request says its body is JSON (`application/json`, any parameters, or a
/// `+json` type).
/// A form post is what any web page may send to any address without asking (a CORS simple
/// request): one whose `Origin` is neither the API's own nor an allowed browser origin is
/// refused, so a page elsewhere cannot create runs on a server it can reach. (Programs send no
/// `Origin`; browsers send it with every cross-origin POST.)
pub(crate) fn check_form_origin(headers: &HeaderMap, front: &FrontDoor) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let own = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|host| {
            origin
                .split_once("://")
                .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host))
        });
    if own || front.cors_origins.iter().any(|o| o == origin) {
        return Ok(());
    }
    Err(ApiError {
        status: StatusCode::FORBIDDEN,
        code: "forbidden".into(),
        message: format!(
            "a form posted from {origin:?} is refused: that origin is not in cors_origins"
        ),
        field: Some("Origin".into()),
    })
}

pub(crate) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    Ok(spaceport_core::access::require_json(ct)?)
}

/// The CORS layer for the configured origins; `None` when there are none (no CORS headers: a
/// browser on another origin can send simple requests but never read an answer).
pub(crate) fn cors(front: &FrontDoor) -> Option<CorsLayer> {
    if front.cors_origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = front
        .cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                header::HeaderName::from_static("idempotency-key"),
                header::HeaderName::from_static("last-event-id"),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_lose_their_port_and_brackets() {
        assert_eq!(host_name("127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(host_name("[::1]:8080"), "::1");
        assert_eq!(host_name("[::1]"), "::1");
        assert_eq!(host_name("API.Example.com."), "api.example.com");
        assert_eq!(host_name("localhost"), "localhost");
    }

    #[test]
    fn only_json_bodies_pass() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            require_json(&h).is_ok()
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(!with("multipart/form-data; boundary=x"));
        assert!(require_json(&HeaderMap::new()).is_err());
    }
}
