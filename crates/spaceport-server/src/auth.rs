//! Who may call which route: `Authorization: Bearer sk_…` checked against the configured keys
//! (401 when missing, unknown or revoked; 403 when the key lacks the route's scope). Health,
//! the OpenAPI document and the blob store's signed URLs (which carry their own signature) are
//! open. Without configured keys every caller is the one local tenant (`serve` allows that only
//! on loopback). Then the key's request rate for the scope and the body's declared length are
//! checked (limits.rs). The principal goes on to the handlers in the request's extensions.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use spaceport_core::auth::{Principal, Scope};
use spaceport_core::run_token::{RUN_TOKEN_PREFIX, RunToken};
use spaceport_steps::Accept;

use crate::error::ApiError;
use crate::{AppState, Gate, limits};

/// The API's operations as this caller may use them: confined to its tenant's runs. Handlers
/// reach runs only through it, so no route can see another tenant's run.
pub(crate) struct Caller(pub Accept);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        // Fail closed: a route that reads runs without having been authenticated is a wiring
        // mistake, never the local tenant by default.
        let p = parts
            .extensions
            .get::<Principal>()
            .ok_or_else(|| ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "internal".into(),
                message: "internal error".into(),
                field: None,
            })?;
        Ok(Caller(st.api.for_tenant(&p.tenant)))
    }
}

/// The scope a request needs; `None` for the open routes.
fn scope_of(method: &Method, path: &str) -> Option<Scope> {
    let open = matches!(path, "/healthz" | "/readyz" | "/v1/openapi.json")
        || path.starts_with("/v1/uploads/")
        || path.starts_with("/v1/blobs/");
    if open {
        return None;
    }
    if path == "/v1/deliveries" {
        // The dead-letter list spans runs.
        return Some(Scope::Admin);
    }
    Some(match *method {
        Method::GET | Method::HEAD => Scope::RunsRead,
        _ => Scope::RunsWrite,
    })
}

fn unauthorized(message: &str) -> Response {
    let mut r = ApiError {
        status: StatusCode::UNAUTHORIZED,
        code: "unauthorized".into(),
        message: message.into(),
        field: Some("Authorization".into()),
    }
    .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"spaceport\""),
    );
    r
}

fn forbidden(message: String) -> Response {
    ApiError {
        status: StatusCode::FORBIDDEN,
        code: "forbidden".into(),
        message,
        field: None,
    }
    .into_response()
}

/// The credential presented: `Authorization: Bearer …`, or for a read a run token in the
/// `token` query parameter (a browser's EventSource cannot set headers; API keys never travel
/// in URLs, which end up in logs).
fn presented(req: &Request) -> Option<String> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|v| v.trim().to_owned());
    if header.is_some() || !matches!(*req.method(), Method::GET | Method::HEAD) {
        return header;
    }
    url::form_urlencoded::parse(req.uri().query()?.as_bytes())
        .find(|(k, v)| k == "token" && v.starts_with(RUN_TOKEN_PREFIX))
        .map(|(_, v)| v.into_owned())
}

/// Who is calling: a run token's grant, a key's principal, or the local tenant when no key is
/// configured; else the 401/403 to answer.
fn who(gate: &Gate, req: &Request) -> Result<Principal, Box<Response>> {
    let presented = presented(req);
    if let Some(token) = presented
        .as_deref()
        .filter(|t| t.starts_with(RUN_TOKEN_PREFIX))
    {
        let Some(tokens) = &gate.run_tokens else {
            return Err(Box::new(unauthorized("this server issues no run tokens")));
        };
        let now = chrono::Utc::now().timestamp();
        let grant = RunToken::verify(&tokens.secret, token, now)
            .map_err(|e| Box::new(unauthorized(&e.to_string())))?;
        if !grant.allows(req.method().as_str(), req.uri().path()) {
            return Err(Box::new(forbidden(format!(
                "a run token reads only its own run ({}): its status, events and artifacts",
                grant.run
            ))));
        }
        return Ok(Principal {
            key: format!("run-token:{}", grant.run),
            tenant: grant.tenant,
            scopes: vec![Scope::RunsRead],
            run: Some(grant.run),
        });
    }
    if gate.keys.is_empty() {
        return Ok(Principal::local());
    }
    let Some(presented) = presented else {
        return Err(Box::new(unauthorized(
            "this API needs a key: send Authorization: Bearer sk_…",
        )));
    };
    // Never the key itself in a message or a log.
    gate.keys
        .authenticate(&presented)
        .ok_or_else(|| Box::new(unauthorized("the API key is unknown or revoked")))
}

/// Authenticates the request and checks its route's scope, the caller's rate and the body's
/// declared length.
pub(crate) async fn authenticate(
    State(gate): State<Arc<Gate>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(scope) = scope_of(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let principal = match who(&gate, &req) {
        Ok(p) => p,
        Err(refused) => return *refused,
    };
    if !principal.allows(scope) {
        return forbidden(format!(
            "key {:?} lacks the {scope} scope this request needs",
            principal.key
        ));
    }
    if let Err(wait) = gate.rates.take(&principal, scope) {
        return limits::rate_limited(&principal.key, scope, wait);
    }
    if let Err(e) = limits::check_length(req.headers(), gate.body_bytes) {
        return e.into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_needs_its_scope() {
        assert_eq!(scope_of(&Method::GET, "/healthz"), None);
        assert_eq!(scope_of(&Method::GET, "/v1/openapi.json"), None);
        assert_eq!(scope_of(&Method::PUT, "/v1/uploads/runs/x/in/a.png"), None);
        assert_eq!(scope_of(&Method::GET, "/v1/blobs/runs/x/a.glb"), None);
        assert_eq!(scope_of(&Method::GET, "/v1/runs"), Some(Scope::RunsRead));
        assert_eq!(
            scope_of(&Method::GET, "/v1/pipelines"),
            Some(Scope::RunsRead)
        );
        assert_eq!(scope_of(&Method::POST, "/v1/runs"), Some(Scope::RunsWrite));
        assert_eq!(
            scope_of(&Method::DELETE, "/v1/runs/run_1"),
            Some(Scope::RunsWrite)
        );
        assert_eq!(scope_of(&Method::GET, "/v1/deliveries"), Some(Scope::Admin));
    }
}
