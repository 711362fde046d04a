//! The front door's decision about a request's credentials, as one pure function of the method,
//! path, `Authorization` header, query string and time: which scope the route needs, who is
//! calling (an API key, a run token, or the local tenant of a server without keys), and the
//! refusal to answer otherwise, with its status, code and message. The server, the Lambda and
//! the edge all call it, so they refuse the same requests in the same words.

use sha2::Digest;

use crate::auth::{KeyRing, Principal, Scope};
use crate::error::{Error, ErrorBody};
use crate::run_token::{RUN_TOKEN_PREFIX, RunToken};

/// The scope a request needs; `None` for the open routes (health, the OpenAPI document, the
/// run page's static files, which hold no data and ask for a key themselves, and the blob
/// store's signed URLs, which carry their own signature).
pub fn scope_of(method: &str, path: &str) -> Option<Scope> {
    let open = matches!(path, "/" | "/healthz" | "/readyz" | "/v1/openapi.json")
        || path.starts_with("/assets/")
        || path.starts_with("/v1/uploads/")
        || path.starts_with("/v1/blobs/");
    if open {
        return None;
    }
    if path == "/v1/deliveries" {
        // The dead-letter list spans runs.
        return Some(Scope::Admin);
    }
    Some(match method {
        "GET" | "HEAD" => Scope::RunsRead,
        _ => Scope::RunsWrite,
    })
}

/// The credential presented: `Authorization: Bearer …`, or for a read a run token in the
/// `token` query parameter (a browser's EventSource cannot set headers; API keys never travel
/// in URLs, which end up in logs).
pub fn credential(
    authorization: Option<&str>,
    method: &str,
    query: Option<&str>,
) -> Option<String> {
    let header = authorization
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|v| v.trim().to_owned());
    if header.is_some() || !matches!(method, "GET" | "HEAD") {
        return header;
    }
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, v)| k == "token" && v.starts_with(RUN_TOKEN_PREFIX))
        .map(|(_, v)| v.into_owned())
}

/// Why a request is refused, as the API answers it (status and error body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// `unauthorized`, `forbidden`, `validation_failed`, `payload_too_large`, …
    pub code: &'static str,
    pub message: String,
    /// The field at fault (`Authorization` for a 401).
    pub field: Option<String>,
}

impl Refusal {
    /// A 401 `unauthorized` on `Authorization`.
    pub fn unauthorized(message: impl Into<String>) -> Refusal {
        Refusal {
            status: 401,
            code: "unauthorized",
            message: message.into(),
            field: Some("Authorization".into()),
        }
    }

    /// A 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Refusal {
        Refusal {
            status: 403,
            code: "forbidden",
            message: message.into(),
            field: None,
        }
    }

    /// A 403 for `key`, which lacks `scope`.
    pub fn lacks_scope(key: &str, scope: Scope) -> Refusal {
        Refusal::forbidden(format!(
            "key {key:?} lacks the {scope} scope this request needs"
        ))
    }

    /// A 400 `validation_failed`: the request is malformed.
    pub fn bad_request(field: Option<String>, message: impl Into<String>) -> Refusal {
        Refusal {
            status: 400,
            code: "validation_failed",
            message: message.into(),
            field,
        }
    }

    /// A 413 for a body over `limit` bytes.
    pub fn too_large(limit: usize) -> Refusal {
        Refusal {
            status: 413,
            code: "payload_too_large",
            message: format!("the request body is over {limit} bytes"),
            field: None,
        }
    }

    /// A 429 `rate_limited` for `key` over its `scope` rate, and the whole seconds to wait (at
    /// least one) for `Retry-After`.
    pub fn rate_limited(key: &str, scope: Scope, wait: std::time::Duration) -> (Refusal, u64) {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let r = Refusal {
            status: 429,
            code: "rate_limited",
            message: format!(
                "key {key:?} is over its {scope} request rate; retry in {secs} s (Retry-After)"
            ),
            field: None,
        };
        (r, secs)
    }

    /// A domain error as the API answers it (a 4xx; 5xx are not refusals).
    pub fn of_error(e: &Error) -> Refusal {
        Refusal {
            status: e.http_status(),
            code: e.code(),
            message: e.to_string(),
            field: e.field().map(str::to_owned),
        }
    }

    /// Its body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody::new(self.code, self.message.clone(), self.field.clone())
    }
}

/// A 413 for a body declared (`Content-Length`) longer than `limit`, refused from the headers
/// alone; a body sent without a length is cut off at the limit as it is read.
pub fn check_declared_length(content_length: Option<&str>, limit: usize) -> Result<(), Refusal> {
    match content_length.and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(n) if n > limit as u64 => Err(Refusal::too_large(limit)),
        _ => Ok(()),
    }
}

/// A 415 unless the request says its body is JSON (`application/json`, any parameters, or a
/// `+json` type). The server also takes multipart forms on create; the caller decides that.
pub fn require_json(content_type: Option<&str>) -> Result<(), Refusal> {
    let ct = content_type.unwrap_or_default();
    let essence = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        return Ok(());
    }
    let got = if ct.is_empty() {
        "no Content-Type".to_owned()
    } else {
        format!("Content-Type {ct:?}")
    };
    Err(Refusal {
        status: 415,
        code: "unsupported_media_type",
        message: format!(
            "the body must be JSON (Content-Type: application/json) or a multipart form; got {got}"
        ),
        field: Some("Content-Type".into()),
    })
}

/// A JSON body read as `T`; a malformed one is a 400 naming the path at fault.
pub fn parse_json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = (path != "." && !path.is_empty()).then_some(path);
        Refusal::bad_request(field, format!("malformed request body: {}", e.inner()))
    })
}

/// The header carrying the secret an edge in front of the API shares with it.
pub const EDGE_SECRET_HEADER: &str = "x-spaceport-edge";
/// The header in which that edge names the principal it authenticated (JSON).
pub const EDGE_PRINCIPAL_HEADER: &str = "x-spaceport-principal";

/// The principal an edge vouches for: `Some` when `presented` is the shared `secret` (compared
/// in constant time) and `principal` is one; `None` otherwise. An edge strips both headers
/// from what clients send, so only it can set them.
pub fn edge_principal(
    secret: &[u8],
    presented: &str,
    principal: Option<&str>,
) -> Option<Principal> {
    use subtle::ConstantTimeEq;
    let a = sha2::Sha256::digest(secret);
    let b = sha2::Sha256::digest(presented.as_bytes());
    if !bool::from(a.ct_eq(&b)) {
        return None;
    }
    serde_json::from_str(principal?).ok()
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// An open route: no credential is read.
    Open,
    /// Let it through as `Principal`, which holds `Scope`.
    Granted(Principal, Scope),
    Refused(Refusal),
}

/// The request as the front door sees it.
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub authorization: Option<&'a str>,
    pub query: Option<&'a str>,
}

/// Decides a request: its route's scope, then who is calling — a run token (verified with
/// `run_token_secret`, good for its own run only), a configured key, or the local tenant when
/// `keys` is empty — and whether that caller holds the scope. `now_s` is Unix seconds.
pub fn authorize(
    keys: &KeyRing,
    run_token_secret: Option<&[u8]>,
    req: Presented<'_>,
    now_s: i64,
) -> Access {
    let Some(scope) = scope_of(req.method, req.path) else {
        return Access::Open;
    };
    let presented = credential(req.authorization, req.method, req.query);
    let principal = if let Some(token) = presented
        .as_deref()
        .filter(|t| t.starts_with(RUN_TOKEN_PREFIX))
    {
        let Some(secret) = run_token_secret else {
            return Access::Refused(Refusal::unauthorized("this server issues no run tokens"));
        };
        let grant = match RunToken::verify(secret, token, now_s) {
            Ok(g) => g,
            Err(e) => return Access::Refused(Refusal::unauthorized(e.to_string())),
        };
        if !grant.allows(req.method, req.path) {
            return Access::Refused(Refusal::forbidden(format!(
                "a run token reads only its own run ({}): its status, events and artifacts",
                grant.run
            )));
        }
        Principal {
            key: format!("run-token:{}", grant.run),
            tenant: grant.tenant,
            scopes: vec![Scope::RunsRead],
            run: Some(grant.run),
        }
    } else if keys.is_empty() {
        Principal::local()
    } else {
        let Some(presented) = presented else {
            return Access::Refused(Refusal::unauthorized(
                "this API needs a key: send Authorization: Bearer sk_…",
            ));
        };
        // Never the key itself in a message or a log.
        match keys.authenticate(&presented) {
            Some(p) => p,
            None => {
                return Access::Refused(Refusal::unauthorized("the API key is unknown or revoked"));
            }
        }
    };
    if !principal.allows(scope) {
        return Access::Refused(Refusal::lacks_scope(&principal.key, scope));
    }
    Access::Granted(principal, scope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RunId;
    use crate::auth::{ApiKey, key_hash};

    #[test]
    fn each_route_needs_its_scope() {
        assert_eq!(scope_of("GET", "/healthz"), None);
        assert_eq!(scope_of("GET", "/"), None);
        assert_eq!(scope_of("GET", "/assets/main.js"), None);
        assert_eq!(scope_of("GET", "/v1/runs"), Some(Scope::RunsRead));
        assert_eq!(scope_of("GET", "/v1/openapi.json"), None);
        assert_eq!(scope_of("PUT", "/v1/uploads/runs/x/in/a.png"), None);
        assert_eq!(scope_of("GET", "/v1/blobs/runs/x/a.glb"), None);
        assert_eq!(scope_of("GET", "/v1/runs"), Some(Scope::RunsRead));
        assert_eq!(scope_of("GET", "/v1/pipelines"), Some(Scope::RunsRead));
        assert_eq!(scope_of("POST", "/v1/runs"), Some(Scope::RunsWrite));
        assert_eq!(scope_of("DELETE", "/v1/runs/run_1"), Some(Scope::RunsWrite));
        assert_eq!(scope_of("GET", "/v1/deliveries"), Some(Scope::Admin));
    }

    #[test]
    fn keys_tokens_and_the_local_tenant_are_decided_alike_everywhere() {
        let keys = KeyRing::new(vec![ApiKey {
            name: "reader".into(),
            tenant: "acme".into(),
            scopes: vec![Scope::RunsRead],
            hash: key_hash("sk_r"),
            revoked: false,
        }]);
        let req = |method, path, auth, query| Presented {
            method,
            path,
            authorization: auth,
            query,
        };
        let status = |a: Access| match a {
            Access::Open => 0,
            Access::Granted(..) => 200,
            Access::Refused(r) => r.status,
        };
        assert_eq!(
            status(authorize(
                &keys,
                None,
                req("GET", "/healthz", None, None),
                0
            )),
            0
        );
        assert_eq!(
            status(authorize(
                &keys,
                None,
                req("GET", "/v1/runs", None, None),
                0
            )),
            401
        );
        let ok = req("GET", "/v1/runs", Some("Bearer sk_r"), None);
        assert_eq!(status(authorize(&keys, None, ok, 0)), 200);
        let write = req("POST", "/v1/runs", Some("Bearer sk_r"), None);
        assert_eq!(status(authorize(&keys, None, write, 0)), 403);
        // No keys: the local tenant, whatever is sent.
        let none = KeyRing::default();
        match authorize(&none, None, req("POST", "/v1/runs", None, None), 0) {
            Access::Granted(p, s) => assert_eq!((p, s), (Principal::local(), Scope::RunsWrite)),
            other => panic!("{other:?}"),
        }
        // A run token, in the header or the query, for its run only, until it expires.
        let run = RunId::new(1_700_000_000_000, 5);
        let token = RunToken {
            run: run.clone(),
            tenant: "acme".into(),
            exp: 100,
        }
        .mint(b"s");
        let path = format!("/v1/runs/{run}");
        let query = format!("token={token}");
        let bearer = format!("Bearer {token}");
        let by_query = req("GET", &path, None, Some(&query));
        assert_eq!(status(authorize(&keys, Some(b"s"), by_query, 99)), 200);
        assert_eq!(status(authorize(&keys, Some(b"s"), by_query, 100)), 401);
        assert_eq!(status(authorize(&keys, None, by_query, 99)), 401);
        let other = req("GET", "/v1/runs", Some(&bearer), None);
        assert_eq!(status(authorize(&keys, Some(b"s"), other, 99)), 403);
        // A key never comes from the query.
        let key_in_query = req("GET", "/v1/runs", None, Some("token=sk_r"));
        assert_eq!(status(authorize(&keys, None, key_in_query, 0)), 401);
    }
}
