//! Who may call which route, as core's `access::authorize` decides it (the scope each route
//! needs; `Authorization: Bearer sk_…` against the configured keys, 401 when missing, unknown or
//! revoked, 403 without the scope; run tokens for one run; the one local tenant on a server
//! without keys), answered in the API's error shape. Then the caller's request rate for the
//! scope and the body's declared length are checked (limits.rs). The principal goes on to the
//! handlers in the request's extensions, where `Caller` confines them to its tenant.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use spaceport_core::access::{
    Access, EDGE_PRINCIPAL_HEADER, EDGE_SECRET_HEADER, Presented, Refusal, authorize,
    edge_principal, scope_of,
};
use spaceport_core::auth::Principal;
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

fn refused(r: Refusal) -> Response {
    let unauthorized = r.status == 401;
    let mut resp = ApiError::from(r).into_response();
    if unauthorized {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"spaceport\""),
        );
    }
    resp
}

/// The principal an edge in front vouches for, when the request comes through one: `None`
/// when it names no edge, a 401 when it names one with the wrong secret.
fn vouched(gate: &Gate, req: &Request) -> Option<Result<Principal, Refusal>> {
    let secret = gate.edge_secret.as_deref()?;
    let presented = req
        .headers()
        .get(EDGE_SECRET_HEADER)?
        .to_str()
        .unwrap_or_default();
    let principal = req
        .headers()
        .get(EDGE_PRINCIPAL_HEADER)
        .and_then(|v| v.to_str().ok());
    Some(
        edge_principal(secret, presented, principal).ok_or_else(|| Refusal {
            field: Some(EDGE_SECRET_HEADER.into()),
            ..Refusal::unauthorized("the edge's secret or principal does not check out")
        }),
    )
}

/// Authenticates the request (core's `authorize`: the route's scope, the key or run token, the
/// local tenant without keys), then checks the caller's rate and the body's declared length.
pub(crate) async fn authenticate(
    State(gate): State<Arc<Gate>>,
    mut req: Request,
    next: Next,
) -> Response {
    let access = authorize(
        &gate.keys,
        gate.run_tokens.as_ref().map(|t| t.secret.as_slice()),
        Presented {
            method: req.method().as_str(),
            path: req.uri().path(),
            authorization: req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
            query: req.uri().query(),
        },
        chrono::Utc::now().timestamp(),
    );
    let (principal, scope) = match (access, vouched(&gate, &req)) {
        (Access::Open, _) => return next.run(req).await,
        // The edge authenticated the caller (and refused what it had to); the run token or
        // key it checked is not sent on.
        (_, Some(Ok(p))) => match scope_of(req.method().as_str(), req.uri().path()) {
            Some(s) if p.allows(s) => (p, s),
            Some(s) => {
                return refused(Refusal::lacks_scope(&p.key, s));
            }
            None => return next.run(req).await,
        },
        (_, Some(Err(r))) => return refused(r),
        (Access::Refused(r), None) => return refused(r),
        (Access::Granted(p, s), None) => (p, s),
    };
    if let Err(wait) = gate.rates.take(&principal, scope) {
        return limits::rate_limited(&principal.key, scope, wait);
    }
    if let Err(e) = limits::check_length(req.headers(), gate.body_bytes) {
        return e.into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}
