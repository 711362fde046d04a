//! The blob store port: objects streamed in and out, presigned upload and download URLs, and
//! the endpoints a server serves for a store that cannot serve its own URLs.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;

use super::ByteStream;

/// Where and how a client uploads one declared file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadTarget {
    /// `PUT` or `POST`.
    pub method: String,
    pub url: String,
    /// Form fields for a `POST` policy upload.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
    /// Headers the client must send (`Content-Type`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    pub expires_at: DateTime<Utc>,
}

/// What the blob store knows of an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobMeta {
    pub size: u64,
    pub sha256: String,
    pub content_type: String,
}

/// Object storage with presigned URLs.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// A URL that accepts exactly one upload of `key` with this size and content type, until `ttl`.
    async fn presign_upload(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        ttl: Duration,
    ) -> Result<UploadTarget, Error>;

    /// A short-lived URL that downloads `key` (as `filename` when given).
    async fn presign_download(
        &self,
        key: &str,
        filename: Option<&str>,
        ttl: Duration,
    ) -> Result<(String, DateTime<Utc>), Error>;

    /// Streams `body` into `key`, returning its size and sha256.
    async fn put(&self, key: &str, content_type: &str, body: ByteStream)
    -> Result<BlobMeta, Error>;

    /// Streams the object's bytes; `Error::NotFound` if absent.
    async fn get(&self, key: &str) -> Result<ByteStream, Error>;

    /// The object's size, sha256 and type, if it exists.
    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, Error>;

    /// Deletes the object (absent is fine).
    async fn delete(&self, key: &str) -> Result<(), Error>;

    /// Copies the object at `from` to `to` (the same bytes, type and sha256). Stores that can
    /// copy inside themselves do (a hard link on disk, `CopyObject` on S3), so no byte passes
    /// through us; this default streams it through `get` and `put`.
    async fn copy(&self, from: &str, to: &str) -> Result<BlobMeta, Error> {
        let meta = self.head(from).await?.ok_or_else(|| Error::NotFound {
            what: "blob",
            id: from.to_string(),
        })?;
        let body = self.get(from).await?;
        self.put(to, &meta.content_type, body).await
    }
}

/// A blob store whose presigned URLs are served by the API server itself (one machine; on AWS
/// S3 serves them): the server hands `/v1/uploads/…` and `/v1/blobs/…` requests to it.
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
