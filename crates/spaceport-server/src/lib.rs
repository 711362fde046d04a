//! Spaceport's HTTP API (API.md): pipelines, runs, uploads, artifacts, events, webhook
//! deliveries, health and the generated OpenAPI document. `app(state)` builds the Router;
//! `spaceport serve` and the Lambda front both mount it. Handlers only translate HTTP ⇄ the steps' operations.

mod error;
mod events;
mod front;
mod routes;
pub mod views;
mod webhooks;

use std::sync::Arc;

use axum::Router;
pub use spaceport_core::ports::SignedBlobs;
use spaceport_steps::{Accept, Notify};

pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use front::{FrontDoor, LOOPBACK_HOSTS};
pub use routes::ApiDoc;

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
}

/// The API's Router.
pub fn app(state: AppState) -> Router {
    let front = state.front.clone();
    let mut router = routes::router(state);
    if let Some(cors) = front::cors(&front) {
        router = router.layer(cors);
    }
    // Outermost: a request naming a foreign host gets no further, not even a CORS answer.
    router.layer(axum::middleware::from_fn_with_state(
        front,
        front::check_host,
    ))
}
