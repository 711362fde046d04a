//! `DirBlobStore`: the `BlobStore` port on a directory (`objects/` by key, `tmp/` for writes in
//! progress), small objects inline in the database file when it is given one (`inline`). It
//! validates keys and content types at the edge, so no key names a path outside `objects/`, and
//! leaves signing to `signing` and the file format to `object_file`.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use spaceport_core::Error;
use spaceport_core::ports::{BlobMeta, BlobStore, ByteStream, UploadTarget};
use tokio::io::AsyncReadExt;

use super::inline::{INLINE_MAX, Inline};
use super::object_file::{self, io_err};
use super::signing::{DownloadGrant, Signer, UploadGrant};

/// Longest key accepted (S3's limit).
pub const MAX_KEY_LEN: usize = 1024;
/// Temp files older than this are leftovers of a crash and are removed on open.
const STALE_TEMP: Duration = Duration::from_secs(3600);
/// Chunk size of `get` streams.
const READ_CHUNK: usize = 64 * 1024;

/// Objects under a root directory, with HMAC-signed upload and download URLs.
pub struct DirBlobStore {
    root: PathBuf,
    signer: Signer,
    base_url: RwLock<String>,
    inline: Option<Inline>,
}

impl std::fmt::Debug for DirBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirBlobStore")
            .field("root", &self.root)
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

/// Checks that `key` is a relative path of plain segments: no `..`, `.`, empty segments,
/// leading `/`, backslashes, NUL or other control characters.
pub fn validate_key(key: &str) -> Result<(), Error> {
    let bad = |why: &str| Err(Error::validation("key", format!("blob key {key:?} {why}")));
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return bad("must be 1 to 1024 bytes long");
    }
    if key.starts_with('/') {
        return bad("must be relative");
    }
    if key.chars().any(|c| c.is_control() || c == '\\') {
        return bad("contains a control character or a backslash");
    }
    for seg in key.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return bad("has an empty, `.` or `..` segment");
        }
    }
    Ok(())
}

fn validate_content_type(ct: &str) -> Result<(), Error> {
    if ct.is_empty() || ct.len() > 255 || ct.chars().any(|c| c.is_control() || !c.is_ascii()) {
        return Err(Error::validation(
            "content_type",
            format!("content type {ct:?} must be 1 to 255 printable ASCII characters"),
        ));
    }
    Ok(())
}

impl DirBlobStore {
    /// A store rooted at `root` (created if needed), signing URLs with `signing_key` and handing
    /// out URLs under `base_url` (e.g. `http://127.0.0.1:8080`). Blocking; call at start-up.
    pub fn open(
        root: impl Into<PathBuf>,
        signing_key: Vec<u8>,
        base_url: &str,
    ) -> Result<DirBlobStore, Error> {
        let root = root.into();
        let signer = Signer::new(signing_key)?;
        for sub in ["objects", "tmp"] {
            let dir = root.join(sub);
            crate::files::private_dir_all(&dir)?;
        }
        let store = DirBlobStore {
            root,
            signer,
            base_url: RwLock::new(String::new()),
            inline: None,
        };
        store.set_base_url(base_url);
        store.remove_stale_temps();
        Ok(store)
    }

    /// Keeps objects of up to 128 KiB in `db` (its `blobs` table) rather than as files: their
    /// writes join the database's group commits. Objects already stored as files stay readable.
    pub fn inline_in(mut self, db: crate::LocalDb) -> DirBlobStore {
        self.inline = Some(Inline::new(db));
        self
    }

    /// Every stored key, inline or file, in order (for checks and tools; it walks the folder).
    pub async fn keys(&self) -> Result<Vec<String>, Error> {
        let mut keys = match &self.inline {
            Some(inline) => inline.keys().await?,
            None => vec![],
        };
        let objects = self.root.join("objects");
        let files = tokio::task::spawn_blocking(move || {
            let mut out = vec![];
            let mut todo = vec![objects.clone()];
            while let Some(d) = todo.pop() {
                for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        todo.push(p);
                    } else if let Some(k) = p.strip_prefix(&objects).ok().and_then(|k| k.to_str()) {
                        out.push(k.to_owned());
                    }
                }
            }
            out
        })
        .await
        .map_err(|e| Error::Internal(format!("a blob listing task failed: {e}")))?;
        keys.extend(files);
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The URL prefix of presigned URLs.
    pub fn base_url(&self) -> String {
        self.base_url
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Changes the URL prefix (the server knows its address only after binding).
    pub fn set_base_url(&self, base_url: &str) {
        *self.base_url.write().unwrap_or_else(|p| p.into_inner()) =
            base_url.trim_end_matches('/').to_owned();
    }

    fn remove_stale_temps(&self) {
        let Ok(entries) = std::fs::read_dir(self.root.join("tmp")) else {
            return;
        };
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_TEMP);
            if old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    fn object_path(&self, key: &str) -> Result<PathBuf, Error> {
        validate_key(key)?;
        Ok(self.root.join("objects").join(key))
    }

    /// Checks a presigned upload URL's query string against the request's key and Content-Type.
    /// A wrong or tampered field is `UploadSignatureInvalid`; a valid URL past its expiry is
    /// `UploadExpired`.
    pub fn verify_upload(
        &self,
        key: &str,
        query: &str,
        content_type: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<UploadGrant, Error> {
        self.signer.verify_upload(key, query, content_type, now)
    }

    /// Checks a presigned download URL's query string for `key`.
    pub fn verify_download(
        &self,
        key: &str,
        query: &str,
        now: DateTime<Utc>,
    ) -> Result<DownloadGrant, Error> {
        self.signer.verify_download(key, query, now)
    }

    /// Stores the body of a verified upload: exactly `grant.size` bytes of `grant.content_type`.
    /// A longer body fails with `PayloadTooLarge` as soon as it passes the size, a shorter one
    /// with a validation error; either way nothing is left behind.
    pub async fn put_exact(
        &self,
        grant: &UploadGrant,
        body: ByteStream,
    ) -> Result<BlobMeta, Error> {
        self.write(&grant.key, &grant.content_type, body, Some(grant.size))
            .await
    }

    async fn write(
        &self,
        key: &str,
        content_type: &str,
        body: ByteStream,
        exact: Option<u64>,
    ) -> Result<BlobMeta, Error> {
        let dest = self.object_path(key)?;
        validate_content_type(content_type)?;
        let Some(inline) = &self.inline else {
            return object_file::write(&self.root.join("tmp"), dest, content_type, body, exact)
                .await;
        };
        if exact.is_some_and(|n| n > INLINE_MAX as u64) {
            return self.write_file(key, dest, content_type, body, exact).await;
        }
        // Held in memory while it fits inline; a body that outgrows that goes on as a file.
        let mut body = body;
        let mut held = BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Error::storage("reading the upload body", e))?;
            if let Some(limit) = exact.filter(|l| (held.len() + chunk.len()) as u64 > *l) {
                return Err(Error::PayloadTooLarge {
                    field: Some("body".into()),
                    message: format!("the upload is larger than its declared {limit} bytes"),
                });
            }
            if held.len() + chunk.len() > INLINE_MAX {
                let head: Bytes = held.freeze();
                let whole = futures::stream::iter([Ok(head), Ok(chunk)])
                    .chain(body)
                    .boxed();
                return self.write_file(key, dest, content_type, whole, exact).await;
            }
            held.extend_from_slice(&chunk);
        }
        if let Some(limit) = exact.filter(|l| (held.len() as u64) < *l) {
            return Err(Error::validation(
                "body",
                format!(
                    "the upload has {} bytes, not its declared {limit}",
                    held.len()
                ),
            ));
        }
        let meta = BlobMeta {
            size: held.len() as u64,
            sha256: hex::encode(Sha256::digest(&held)),
            content_type: content_type.to_owned(),
        };
        inline
            .put(key, &meta, held.freeze(), exact.is_some(), dest)
            .await?;
        Ok(meta)
    }

    /// Writes `key` as a file, then removes the inline row it replaces, if any.
    async fn write_file(
        &self,
        key: &str,
        dest: PathBuf,
        content_type: &str,
        body: ByteStream,
        exact: Option<u64>,
    ) -> Result<BlobMeta, Error> {
        let meta =
            object_file::write(&self.root.join("tmp"), dest, content_type, body, exact).await?;
        if let Some(inline) = &self.inline {
            inline.delete(key).await?;
        }
        Ok(meta)
    }
}

#[async_trait]
impl BlobStore for DirBlobStore {
    async fn presign_upload(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        ttl: Duration,
    ) -> Result<UploadTarget, Error> {
        validate_key(key)?;
        validate_content_type(content_type)?;
        Ok(self
            .signer
            .upload_target(&self.base_url(), key, content_type, size, ttl))
    }

    async fn presign_download(
        &self,
        key: &str,
        filename: Option<&str>,
        ttl: Duration,
    ) -> Result<(String, DateTime<Utc>), Error> {
        validate_key(key)?;
        Ok(self
            .signer
            .download_url(&self.base_url(), key, filename, ttl))
    }

    async fn put(
        &self,
        key: &str,
        content_type: &str,
        body: ByteStream,
    ) -> Result<BlobMeta, Error> {
        self.write(key, content_type, body, None).await
    }

    async fn get(&self, key: &str) -> Result<ByteStream, Error> {
        let path = self.object_path(key)?;
        if let Some(inline) = &self.inline
            && let Some((_, bytes)) = inline.get(key).await?
        {
            return Ok(futures::stream::iter([Ok(bytes)]).boxed());
        }
        let (file, meta) = object_file::open(&path)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "blob",
                id: key.to_owned(),
            })?;
        let body = tokio_util::io::ReaderStream::with_capacity(file.take(meta.size), READ_CHUNK);
        Ok(body.boxed())
    }

    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, Error> {
        let path = self.object_path(key)?;
        if let Some(inline) = &self.inline
            && let Some(meta) = inline.head(key).await?
        {
            return Ok(Some(meta));
        }
        Ok(object_file::open(&path).await?.map(|(_, meta)| meta))
    }

    async fn copy(&self, from: &str, to: &str) -> Result<BlobMeta, Error> {
        let (src, dest) = (self.object_path(from)?, self.object_path(to)?);
        if let Some(inline) = &self.inline
            && let Some(meta) = inline.copy(from, to, dest.clone()).await?
        {
            return Ok(meta);
        }
        let tmp = self.root.join("tmp");
        let linked = tokio::task::spawn_blocking(move || object_file::link(&tmp, &src, &dest))
            .await
            .map_err(|e| Error::Internal(format!("a blob link task failed: {e}")))??;
        if linked.is_some()
            && let Some(inline) = &self.inline
        {
            inline.delete(to).await?;
        }
        linked.ok_or_else(|| Error::NotFound {
            what: "blob",
            id: from.to_owned(),
        })
    }

    async fn delete(&self, key: &str) -> Result<(), Error> {
        let path = self.object_path(key)?;
        if let Some(inline) = &self.inline {
            inline.delete(key).await?;
        }
        let objects = self.root.join("objects");
        tokio::task::spawn_blocking(move || {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_err("deleting", &path, e)),
            }
            // Tidy emptied folders up to the root; a folder still in use refuses, which is fine.
            let mut dir = path.parent();
            while let Some(d) = dir.filter(|d| *d != objects && d.starts_with(&objects)) {
                if std::fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::Internal(format!("a blob delete task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::blob::load_or_create_signing_key;
    use crate::blob::testing::{KEY, body, read_all, split, store, temps};

    #[test]
    fn unsafe_keys_are_rejected() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "a\0b",
            "a\\b",
            "a\nb",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
        for good in [KEY, "runs/r/artifacts/scene/scene one.glb", "a..b/c"] {
            assert!(validate_key(good).is_ok(), "{good:?}");
        }
    }

    #[tokio::test]
    async fn every_operation_refuses_an_unsafe_key() {
        let (_d, s) = store();
        let k = "../escape";
        assert!(s.put(k, "text/plain", body(&[b"x"])).await.is_err());
        assert!(s.get(k).await.is_err());
        assert!(s.head(k).await.is_err());
        assert!(s.delete(k).await.is_err());
        assert!(
            s.presign_upload(k, "text/plain", 1, Duration::from_secs(1))
                .await
                .is_err()
        );
        assert!(
            s.presign_download(k, None, Duration::from_secs(1))
                .await
                .is_err()
        );
        assert!(!s.root().parent().unwrap().join("escape").exists());
    }

    #[tokio::test]
    async fn delete_tidies_emptied_folders_and_writes_leave_no_temp_files() {
        let (_d, s) = store();
        s.put(KEY, "text/plain", body(&[b"hello ", b"world"]))
            .await
            .unwrap();
        s.put(KEY, "image/png", body(&[b"png"])).await.unwrap();
        s.delete(KEY).await.unwrap();
        assert!(
            std::fs::read_dir(s.root().join("objects"))
                .unwrap()
                .next()
                .is_none(),
            "emptied folders are removed"
        );
        assert_eq!(temps(&s), 0);
    }

    #[tokio::test]
    async fn a_large_object_streams_back_in_bounded_chunks() {
        let (_d, s) = store();
        let chunk: &'static [u8] = Box::leak(vec![7u8; 300_000].into_boxed_slice());
        s.put(KEY, "application/octet-stream", body(&[chunk, chunk]))
            .await
            .unwrap();
        let mut stream = s.get(KEY).await.unwrap();
        let mut total = 0;
        while let Some(c) = stream.next().await {
            let c = c.unwrap();
            assert!(c.len() <= READ_CHUNK);
            assert!(c.iter().all(|b| *b == 7));
            total += c.len();
        }
        assert_eq!(total, 600_000);
    }

    #[tokio::test]
    async fn base_url_can_change_after_bind_and_objects_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("keys/blob-signing.key");
        let key = load_or_create_signing_key(&key_path).unwrap();
        let s = DirBlobStore::open(dir.path().join("blobs"), key.clone(), "http://x").unwrap();
        s.set_base_url("http://127.0.0.1:4321/");
        let t = s
            .presign_upload(KEY, "image/jpeg", 1, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(
            t.url.starts_with("http://127.0.0.1:4321/v1/uploads/"),
            "{}",
            t.url
        );
        s.put(KEY, "text/plain", body(&[b"kept"])).await.unwrap();
        drop(s);
        // The key is persisted and reused, so URLs handed out before a restart still verify.
        assert_eq!(load_or_create_signing_key(&key_path).unwrap(), key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let s = DirBlobStore::open(dir.path().join("blobs"), key, "http://x").unwrap();
        let (_, query) = split(&t.url);
        assert!(
            s.verify_upload(KEY, &query, Some("image/jpeg"), Utc::now())
                .is_ok()
        );
        assert_eq!(read_all(s.get(KEY).await.unwrap()).await, b"kept");
    }
}
