//! Spaceport's HTTP API (API.md): pipelines, runs, uploads, artifacts, health and the generated
//! OpenAPI document. `app(state)` builds the Router; `spaceport serve` and the Lambda front both
//! mount it. Handlers only translate HTTP ⇄ the steps' operations.

mod error;
mod routes;
pub mod views;

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use spaceport_core::Error;
use spaceport_core::ports::{BlobMeta, ByteStream};
use spaceport_steps::Steps;

pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use routes::ApiDoc;

/// The blob endpoints a server without object storage serves itself: uploads and downloads
/// through URLs the blob store signed (what S3 does for presigned URLs).
#[async_trait]
pub trait SignedBlobs: Send + Sync {
    /// Verifies an upload URL (`query` is its query string) and stores `body` if it is exactly
    /// the declared size and type; nothing is stored otherwise.
    async fn accept_upload(
        &self,
        key: &str,
        query: &str,
        content_type: Option<&str>,
        body: ByteStream,
    ) -> Result<BlobMeta, Error>;

    /// Verifies a download URL and streams the object, with its metadata and download filename.
    async fn serve_download(
        &self,
        key: &str,
        query: &str,
    ) -> Result<(ByteStream, BlobMeta, Option<String>), Error>;
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub steps: Steps,
    /// Set when this server also serves the blob store's signed URLs (one machine).
    pub signed_blobs: Option<Arc<dyn SignedBlobs>>,
}

/// The API's Router.
pub fn app(state: AppState) -> Router {
    routes::router(state)
}
