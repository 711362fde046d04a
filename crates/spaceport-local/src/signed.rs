//! The directory store's own URL endpoints: what S3 does for presigned URLs, the local API server
//! does by handing `/v1/uploads/…` and `/v1/blobs/…` to these, which verify the HMAC signature
//! before a byte is stored or served.

use async_trait::async_trait;
use spaceport_core::Error;
use spaceport_core::ports::{BlobMeta, BlobStore, ByteStream, Clock, SignedBlobs, SystemClock};

use crate::DirBlobStore;

#[async_trait]
impl SignedBlobs for DirBlobStore {
    async fn accept_upload(
        &self,
        key: &str,
        query: &str,
        content_type: Option<&str>,
        body: ByteStream,
    ) -> Result<BlobMeta, Error> {
        let grant = self.verify_upload(key, query, content_type, SystemClock.now())?;
        self.put_exact(&grant, body).await
    }

    async fn serve_download(
        &self,
        key: &str,
        query: &str,
    ) -> Result<(ByteStream, BlobMeta, Option<String>), Error> {
        let grant = self.verify_download(key, query, SystemClock.now())?;
        let meta = self.head(key).await?.ok_or_else(|| Error::NotFound {
            what: "object",
            id: key.to_string(),
        })?;
        let body = self.get(key).await?;
        Ok((body, meta, grant.filename))
    }
}
