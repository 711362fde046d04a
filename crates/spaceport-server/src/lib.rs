//! Spaceport's HTTP API (API.md): pipelines, runs, uploads, artifacts, events, webhook
//! deliveries, health and the generated OpenAPI document. `app(state)` builds the Router;
//! `spaceport serve` and the Lambda front both mount it. Handlers only translate HTTP ⇄ the steps' operations.

mod auth;
mod batches;
mod contract;
mod create;
mod error;
mod events;
mod front;
pub mod guard;
mod limits;
mod page;
mod routes;
pub mod views;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use spaceport_core::auth::KeyRing;
pub use spaceport_core::ports::SignedBlobs;
use spaceport_steps::{Accept, Notify};

pub use contract::document;
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use front::{FrontDoor, LOOPBACK_HOSTS};
pub use limits::{DEFAULT_BODY_BYTES, RateLimiter, UPLOAD_IDLE};
pub use routes::ApiDoc;
pub use spaceport_core::run_token::RunToken;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The API's operations (accept-upload).
    pub api: Accept,
    /// Webhook delivery logs, redelivery and the dead-letter list.
    pub webhooks: Notify,
    /// Set when this server also serves the blob store's signed URLs (one machine).
    pub signed_blobs: Option<Arc<dyn SignedBlobs>>,
    /// Which hosts and browser origins the API answers.
    pub front: FrontDoor,
    /// Who may call, and how much.
    pub gate: Arc<Gate>,
}

/// Who may call the API and how much: the keys (none: every caller is the one local tenant),
/// each key's request rates, the most bytes a request body may have.
pub struct Gate {
    pub keys: KeyRing,
    pub rates: RateLimiter,
    pub body_bytes: usize,
    /// How long an upload's body may go without a byte before it is abandoned (408).
    pub upload_idle: std::time::Duration,
    /// Set: creating a run returns a run token, and run tokens are accepted.
    pub run_tokens: Option<RunTokens>,
    /// Set: an edge in front that sends this secret vouches for the principal it names.
    pub edge_secret: Option<Vec<u8>>,
}

/// How run tokens are signed and how long they last. (No `Debug`: the secret is never printed.)
pub struct RunTokens {
    pub secret: Vec<u8>,
    pub ttl: std::time::Duration,
}

/// The API's Router.
pub fn app(state: AppState) -> Router {
    let (front, gate) = (state.front.clone(), state.gate.clone());
    let body_bytes = gate.body_bytes;
    let mut router = routes::router(state)
        .layer(axum::extract::DefaultBodyLimit::max(body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            gate,
            auth::authenticate,
        ));
    if let Some(cors) = front::cors(&front) {
        router = router.layer(cors);
    }
    // Limits on every request, before the keys are looked at.
    router = router.layer(axum::middleware::from_fn_with_state(
        Arc::new(guard::Guard::default()),
        guard::guard,
    ));
    // Outermost: a request naming a foreign host gets no further, not even a CORS answer.
    router.layer(axum::middleware::from_fn_with_state(
        front,
        front::check_host,
    ))
}
