//! The blob store on S3: presigned PUT uploads bound to the object's key, exact size and content
//! type (both are signed headers, so S3 refuses any other), presigned downloads with a filename,
//! and streaming puts that hash as they go (one PutObject under 8 MiB, multipart above, never the
//! whole object in memory).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use spaceport_core::Error;
use spaceport_core::ports::{BlobMeta, BlobStore, ByteStream, UploadTarget};

use crate::error::{code_of, sdk};

/// Size of a multipart part, and the largest object sent in one PutObject.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// User metadata holding an object's sha256 when we wrote it.
const SHA256_META: &str = "sha256";

/// Objects in one S3 bucket (`BLOBS_BUCKET`).
#[derive(Debug, Clone)]
pub struct S3BlobStore {
    client: Client,
    bucket: String,
}

fn presign_config(ttl: Duration) -> Result<PresigningConfig, Error> {
    // SigV4 presigned URLs live at most 7 days.
    PresigningConfig::expires_in(ttl.min(Duration::from_secs(7 * 24 * 3600)))
        .map_err(|e| Error::Internal(format!("presigning: {e}")))
}

fn expiry(ttl: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(7))
}

/// A `Content-Disposition` that survives any filename: ASCII fallback plus RFC 5987 UTF-8.
fn attachment(filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = filename
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

impl S3BlobStore {
    /// The store on `bucket`.
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        S3BlobStore {
            client,
            bucket: bucket.into(),
        }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Creates the bucket (tests and emulators; the deployment creates it from the template).
    pub async fn create_bucket(&self) -> Result<(), Error> {
        self.client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| sdk(format!("creating bucket {}", self.bucket), e))?;
        Ok(())
    }

    async fn put_multipart(
        &self,
        key: &str,
        content_type: &str,
        first: Bytes,
        mut body: ByteStream,
        mut hasher: Sha256,
        mut size: u64,
    ) -> Result<BlobMeta, Error> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| sdk(format!("starting a multipart upload of {key}"), e))?;
        let upload_id = created
            .upload_id
            .ok_or_else(|| Error::Internal("S3 started a multipart upload without an id".into()))?;
        let result = async {
            let mut parts = Vec::new();
            let mut pending = Some(first);
            let mut buf = BytesMut::new();
            loop {
                let part = match pending.take() {
                    Some(p) => Some(p),
                    None => {
                        while buf.len() < PART_SIZE {
                            match body.next().await {
                                Some(chunk) => {
                                    let chunk = chunk.map_err(|e| {
                                        Error::storage(format!("reading the body of {key}"), e)
                                    })?;
                                    hasher.update(&chunk);
                                    size += chunk.len() as u64;
                                    buf.extend_from_slice(&chunk);
                                }
                                None => break,
                            }
                        }
                        (!buf.is_empty()).then(|| buf.split().freeze())
                    }
                };
                let Some(part) = part else { break };
                let number = parts.len() as i32 + 1;
                let out = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(S3Body::from(part))
                    .send()
                    .await
                    .map_err(|e| sdk(format!("uploading part {number} of {key}"), e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag)
                        .build(),
                );
            }
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| sdk(format!("completing the upload of {key}"), e))?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = result {
            // Leave no parts behind to pay for.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
            return Err(e);
        }
        let sha256 = hex::encode(hasher.finalize());
        // The hash is known only at the end: keep it as a tag (metadata would need a copy).
        self.client
            .put_object_tagging()
            .bucket(&self.bucket)
            .key(key)
            .tagging(
                aws_sdk_s3::types::Tagging::builder()
                    .tag_set(
                        aws_sdk_s3::types::Tag::builder()
                            .key(SHA256_META)
                            .value(&sha256)
                            .build()
                            .map_err(|e| Error::Internal(format!("tagging: {e}")))?,
                    )
                    .build()
                    .map_err(|e| Error::Internal(format!("tagging: {e}")))?,
            )
            .send()
            .await
            .map_err(|e| sdk(format!("tagging {key} with its sha256"), e))?;
        Ok(BlobMeta {
            size,
            sha256,
            content_type: content_type.to_owned(),
        })
    }

    /// The sha256 of an object without one recorded (a client's upload): read it once.
    async fn hash_object(&self, key: &str) -> Result<String, Error> {
        let mut body = self.get(key).await?;
        let mut hasher = Sha256::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Error::storage(format!("reading {key}"), e))?;
            hasher.update(&chunk);
        }
        Ok(hex::encode(hasher.finalize()))
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn presign_upload(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        ttl: Duration,
    ) -> Result<UploadTarget, Error> {
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_length(size as i64)
            // Create-only: a URL replayed after its input landed is refused 412 by S3 itself,
            // so the bytes a backend reads are the bytes whose hash the run recorded.
            .if_none_match("*")
            .presigned(presign_config(ttl)?)
            .await
            .map_err(|e| sdk(format!("presigning an upload of {key}"), e))?;
        let headers: BTreeMap<String, String> = req
            .headers()
            .filter(|(name, _)| !name.eq_ignore_ascii_case("host"))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        Ok(UploadTarget {
            method: req.method().to_owned(),
            url: req.uri().to_owned(),
            fields: BTreeMap::new(),
            headers,
            expires_at: expiry(ttl),
        })
    }

    async fn presign_download(
        &self,
        key: &str,
        filename: Option<&str>,
        ttl: Duration,
    ) -> Result<(String, DateTime<Utc>), Error> {
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_response_content_disposition(filename.map(attachment))
            .presigned(presign_config(ttl)?)
            .await
            .map_err(|e| sdk(format!("presigning a download of {key}"), e))?;
        Ok((req.uri().to_owned(), expiry(ttl)))
    }

    async fn put(
        &self,
        key: &str,
        content_type: &str,
        mut body: ByteStream,
    ) -> Result<BlobMeta, Error> {
        let mut hasher = Sha256::new();
        let mut buf = BytesMut::new();
        let mut size = 0u64;
        while buf.len() < PART_SIZE {
            match body.next().await {
                Some(chunk) => {
                    let chunk = chunk
                        .map_err(|e| Error::storage(format!("reading the body of {key}"), e))?;
                    hasher.update(&chunk);
                    size += chunk.len() as u64;
                    buf.extend_from_slice(&chunk);
                }
                None => {
                    let sha256 = hex::encode(hasher.finalize());
                    self.client
                        .put_object()
                        .bucket(&self.bucket)
                        .key(key)
                        .content_type(content_type)
                        .metadata(SHA256_META, &sha256)
                        .body(S3Body::from(buf.freeze()))
                        .send()
                        .await
                        .map_err(|e| sdk(format!("storing {key}"), e))?;
                    return Ok(BlobMeta {
                        size,
                        sha256,
                        content_type: content_type.to_owned(),
                    });
                }
            }
        }
        self.put_multipart(key, content_type, buf.freeze(), body, hasher, size)
            .await
    }

    async fn get(&self, key: &str) -> Result<ByteStream, Error> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if matches!(code_of(&e), Some("NoSuchKey" | "NotFound")) => {
                return Err(Error::NotFound {
                    what: "object",
                    id: key.to_owned(),
                });
            }
            Err(e) => return Err(sdk(format!("reading {key}"), e)),
        };
        let stream = futures::stream::unfold(out.body, |mut body| async move {
            match body.try_next().await {
                Ok(Some(chunk)) => Some((Ok(chunk), body)),
                Ok(None) => None,
                Err(e) => Some((Err(std::io::Error::other(e)), body)),
            }
        });
        Ok(stream.boxed())
    }

    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, Error> {
        let out = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e)
                if e.as_service_error().is_some_and(|se| se.is_not_found())
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(sdk(format!("reading the metadata of {key}"), e)),
        };
        let size = out.content_length.unwrap_or(0).max(0) as u64;
        let content_type = out
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into());
        let mut sha256 = out
            .metadata
            .as_ref()
            .and_then(|m| m.get(SHA256_META))
            .cloned();
        if sha256.is_none() {
            let tags = self
                .client
                .get_object_tagging()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| sdk(format!("reading the tags of {key}"), e))?;
            sha256 = tags
                .tag_set()
                .iter()
                .find(|t| t.key() == SHA256_META)
                .map(|t| t.value().to_owned());
        }
        let sha256 = match sha256 {
            Some(h) => h,
            None => self.hash_object(key).await?,
        };
        Ok(Some(BlobMeta {
            size,
            sha256,
            content_type,
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), Error> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| sdk(format!("deleting {key}"), e))?;
        Ok(())
    }

    async fn copy(&self, from: &str, to: &str) -> Result<BlobMeta, Error> {
        let meta = self.head(from).await?.ok_or_else(|| Error::NotFound {
            what: "blob",
            id: from.to_string(),
        })?;
        // One CopyObject takes up to 5 GB; larger objects stream through us.
        if meta.size > 5_000_000_000 {
            let body = self.get(from).await?;
            return self.put(to, &meta.content_type, body).await;
        }
        // Keys are of the store's own safe characters (validate_key), so the source needs no
        // escaping; the object's metadata and tags (its sha256) are copied with it.
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .copy_source(format!("{}/{from}", self.bucket))
            .key(to)
            .send()
            .await
            .map_err(|e| sdk(format!("copying {from} to {to}"), e))?;
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_quotes_safely_and_keeps_utf8() {
        assert_eq!(
            attachment("scene.glb"),
            "attachment; filename=\"scene.glb\"; filename*=UTF-8''scene.glb"
        );
        assert_eq!(
            attachment("a\"b é.glb"),
            "attachment; filename=\"a_b _.glb\"; filename*=UTF-8''a%22b%20%C3%A9.glb"
        );
    }
}
