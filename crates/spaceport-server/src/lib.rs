//! Spaceport's HTTP API (API.md): pipelines, runs, uploads, artifacts, events, webhook
//! deliveries, health and the generated OpenAPI document. `app(state)` builds the Router;
//! `spaceport serve` and the Lambda front both mount it. Handlers only translate HTTP ⇄ the steps' operations.

mod error;
mod events;
mod routes;
pub mod views;
mod webhooks;

use std::sync::Arc;

use axum::Router;
pub use spaceport_core::ports::SignedBlobs;
use spaceport_steps::{Accept, Notify};

pub use error::{ApiError, ErrorBody, ErrorDetail};
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
}

/// The API's Router.
pub fn app(state: AppState) -> Router {
    routes::router(state)
}
