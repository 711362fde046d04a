//! `BlobStore` on a directory, with HMAC-SHA256 presigned URLs that the local HTTP server checks
//! the way S3 checks SigV4. Each object is one file, a fixed-size metadata header (type, size,
//! sha256) followed by the bytes, written to a temp file, fsynced and renamed into place: a crash
//! never leaves a half object, nor bytes and metadata that disagree.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spaceport_core::Error;
use spaceport_core::ports::{BlobMeta, BlobStore, ByteStream, UploadTarget};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

type HmacSha256 = Hmac<Sha256>;

/// Bytes before an object's content: magic, JSON metadata, padding.
const HEADER_LEN: usize = 1024;
const MAGIC: &[u8; 8] = b"SPBLOB1\n";
/// Longest key accepted (S3's limit).
pub const MAX_KEY_LEN: usize = 1024;
/// Temp files older than this are leftovers of a crash and are removed on open.
const STALE_TEMP: Duration = Duration::from_secs(3600);
/// Chunk size of `get` streams.
const READ_CHUNK: usize = 64 * 1024;

/// Characters kept as-is in a URL path segment or query value; everything else is %-encoded.
const URL_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// What a verified upload URL allows: one object of exactly this size and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadGrant {
    pub key: String,
    pub size: u64,
    pub content_type: String,
}

/// What a verified download URL allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadGrant {
    pub key: String,
    /// The name to offer in `Content-Disposition`, when the URL carries one.
    pub filename: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    content_type: String,
    size: u64,
    sha256: String,
}

/// Objects under a root directory, with HMAC-signed upload and download URLs.
pub struct DirBlobStore {
    root: PathBuf,
    key: Vec<u8>,
    base_url: RwLock<String>,
}

impl std::fmt::Debug for DirBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirBlobStore")
            .field("root", &self.root)
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

/// Reads the signing key at `path`, or creates one (32 random bytes, hex, mode 0600) if absent.
/// Two processes creating it at once end up with the same key.
pub fn load_or_create_signing_key(path: &Path) -> Result<Vec<u8>, Error> {
    let read = |p: &Path| -> Result<Vec<u8>, Error> {
        let text = std::fs::read_to_string(p)
            .map_err(|e| Error::storage(format!("reading {}", p.display()), e))?;
        let key = hex::decode(text.trim()).map_err(|e| Error::Storage {
            context: format!("{} is not a hex key", p.display()),
            retryable: false,
            source: Box::new(e),
        })?;
        if key.len() < 32 {
            return Err(Error::Internal(format!(
                "{} holds a key shorter than 32 bytes",
                p.display()
            )));
        }
        Ok(key)
    };
    if path.exists() {
        return read(path);
    }
    let dir = path
        .parent()
        .ok_or_else(|| Error::Internal(format!("{} has no parent folder", path.display())))?;
    create_private_dir(dir)?;
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let tmp = dir.join(format!(".{}.tmp", ulid::Ulid::new()));
    let io = |e| Error::storage(format!("creating {}", path.display()), e);
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp).map_err(io)?;
        f.write_all(hex::encode(bytes).as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    // A hard link publishes the complete file and fails if another process won the race.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(dir).map_err(io)?;
            Ok(bytes.to_vec())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(path),
        Err(e) => Err(io(e)),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), Error> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
        .map_err(|e| Error::storage(format!("creating {}", dir.display()), e))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
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

fn encode_key(key: &str) -> String {
    key.split('/')
        .map(|s| utf8_percent_encode(s, URL_SAFE).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

fn enc(v: &str) -> String {
    utf8_percent_encode(v, URL_SAFE).to_string()
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::storage(format!("{what} {}", path.display()), e)
}

/// Removes the temp file unless the write was committed, also when the future is dropped
/// (a client that disconnects mid-upload).
struct TempFile {
    path: PathBuf,
    committed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
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
        if signing_key.len() < 32 {
            return Err(Error::Internal(
                "the blob signing key must be at least 32 bytes".into(),
            ));
        }
        for sub in ["objects", "tmp"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| io_err("creating", &dir, e))?;
        }
        let store = DirBlobStore {
            root,
            key: signing_key,
            base_url: RwLock::new(String::new()),
        };
        store.set_base_url(base_url);
        store.remove_stale_temps();
        Ok(store)
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

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        // Length-prefixed, so no two different field lists sign the same bytes.
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        mac
    }

    fn upload_mac(&self, key: &str, size: u64, content_type: &str, exp: i64) -> HmacSha256 {
        self.mac(&[
            b"spaceport-upload-v1",
            b"PUT",
            key.as_bytes(),
            size.to_string().as_bytes(),
            content_type.as_bytes(),
            exp.to_string().as_bytes(),
        ])
    }

    fn download_mac(&self, key: &str, filename: Option<&str>, exp: i64) -> HmacSha256 {
        let (has, name) = match filename {
            Some(f) => (&b"1"[..], f.as_bytes()),
            None => (&b"0"[..], &b""[..]),
        };
        self.mac(&[
            b"spaceport-download-v1",
            b"GET",
            key.as_bytes(),
            has,
            name,
            exp.to_string().as_bytes(),
        ])
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
        let q = Query::parse(query);
        let invalid = |m: &str| Error::UploadSignatureInvalid(m.to_owned());
        let (Some(size), Some(signed_ct), Some(exp), Some(sig)) = (
            q.get("size"),
            q.get("content_type"),
            q.get("exp"),
            q.get("sig"),
        ) else {
            return Err(invalid(
                "the upload URL lacks size, content_type, exp or sig",
            ));
        };
        let size: u64 = size
            .parse()
            .map_err(|_| invalid("the upload URL's size is not a number"))?;
        let exp: i64 = exp
            .parse()
            .map_err(|_| invalid("the upload URL's exp is not a number"))?;
        let sig = hex::decode(sig).map_err(|_| invalid("the upload URL's sig is not hex"))?;
        self.upload_mac(key, size, signed_ct, exp)
            .verify_slice(&sig)
            .map_err(|_| {
                invalid("the upload signature does not match this key, size, type and expiry")
            })?;
        match content_type.map(str::trim) {
            Some(ct) if ct.eq_ignore_ascii_case(signed_ct) => {}
            other => {
                return Err(Error::UploadSignatureInvalid(format!(
                    "the upload was signed for Content-Type {signed_ct:?}, the request sent {other:?}"
                )));
            }
        }
        if now.timestamp() > exp {
            return Err(Error::UploadExpired(format!(
                "the upload URL expired at {}",
                DateTime::from_timestamp(exp, 0)
                    .unwrap_or_default()
                    .to_rfc3339()
            )));
        }
        Ok(UploadGrant {
            key: key.to_owned(),
            size,
            content_type: signed_ct.to_owned(),
        })
    }

    /// Checks a presigned download URL's query string for `key`.
    pub fn verify_download(
        &self,
        key: &str,
        query: &str,
        now: DateTime<Utc>,
    ) -> Result<DownloadGrant, Error> {
        let q = Query::parse(query);
        let invalid = |m: &str| Error::UploadSignatureInvalid(m.to_owned());
        let (Some(exp), Some(sig)) = (q.get("exp"), q.get("sig")) else {
            return Err(invalid("the download URL lacks exp or sig"));
        };
        let exp: i64 = exp
            .parse()
            .map_err(|_| invalid("the download URL's exp is not a number"))?;
        let sig = hex::decode(sig).map_err(|_| invalid("the download URL's sig is not hex"))?;
        let filename = q.get("filename");
        self.download_mac(key, filename, exp)
            .verify_slice(&sig)
            .map_err(|_| invalid("the download signature does not match this key and expiry"))?;
        if now.timestamp() > exp {
            return Err(Error::UploadExpired(format!(
                "the download URL expired at {}",
                DateTime::from_timestamp(exp, 0)
                    .unwrap_or_default()
                    .to_rfc3339()
            )));
        }
        Ok(DownloadGrant {
            key: key.to_owned(),
            filename: filename.map(str::to_owned),
        })
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
        mut body: ByteStream,
        exact: Option<u64>,
    ) -> Result<BlobMeta, Error> {
        let dest = self.object_path(key)?;
        validate_content_type(content_type)?;
        let mut temp = TempFile {
            path: self
                .root
                .join("tmp")
                .join(format!("{}.part", ulid::Ulid::new())),
            committed: false,
        };
        let mut file = tokio::fs::File::create(&temp.path)
            .await
            .map_err(|e| io_err("creating", &temp.path, e))?;
        let werr = |e| io_err("writing", &temp.path, e);
        file.write_all(&[b' '; HEADER_LEN]).await.map_err(werr)?;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Error::storage("reading the upload body", e))?;
            size += chunk.len() as u64;
            if let Some(limit) = exact.filter(|l| size > *l) {
                return Err(Error::PayloadTooLarge {
                    field: Some("body".into()),
                    message: format!("the upload is larger than its declared {limit} bytes"),
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(werr)?;
        }
        if let Some(limit) = exact.filter(|l| size < *l) {
            return Err(Error::validation(
                "body",
                format!("the upload has {size} bytes, not its declared {limit}"),
            ));
        }
        let meta = BlobMeta {
            size,
            sha256: hex::encode(hasher.finalize()),
            content_type: content_type.to_owned(),
        };
        let header = encode_header(&meta)?;
        file.seek(SeekFrom::Start(0)).await.map_err(werr)?;
        file.write_all(&header).await.map_err(werr)?;
        file.sync_all().await.map_err(werr)?;
        drop(file);
        let from = temp.path.clone();
        tokio::task::spawn_blocking(move || publish(&from, &dest))
            .await
            .map_err(|e| Error::Internal(format!("a blob write task failed: {e}")))??;
        temp.committed = true;
        Ok(meta)
    }
}

/// Renames the finished temp file into place and fsyncs the folder so the rename is durable.
fn publish(from: &Path, dest: &Path) -> Result<(), Error> {
    let dir = dest.parent().expect("object paths have a parent");
    // A concurrent delete may remove an emptied parent folder between creating and renaming.
    for attempt in 0..3 {
        std::fs::create_dir_all(dir).map_err(|e| io_err("creating", dir, e))?;
        match std::fs::rename(from, dest) {
            Ok(()) => return sync_dir(dir).map_err(|e| io_err("syncing", dir, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < 2 => continue,
            Err(e) => return Err(io_err("renaming into", dest, e)),
        }
    }
    unreachable!("the loop returns on its last attempt")
}

fn encode_header(meta: &BlobMeta) -> Result<Vec<u8>, Error> {
    let json = serde_json::to_vec(&Header {
        content_type: meta.content_type.clone(),
        size: meta.size,
        sha256: meta.sha256.clone(),
    })
    .map_err(|e| Error::Internal(format!("encoding a blob header: {e}")))?;
    if MAGIC.len() + json.len() + 1 > HEADER_LEN {
        return Err(Error::Internal("a blob header does not fit".into()));
    }
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&json);
    out.resize(HEADER_LEN - 1, b' ');
    out.push(b'\n');
    Ok(out)
}

fn decode_header(bytes: &[u8], path: &Path) -> Result<BlobMeta, Error> {
    let corrupt = || Error::Storage {
        context: format!("{} is not a blob file", path.display()),
        retryable: false,
        source: "bad header".into(),
    };
    let rest = bytes.strip_prefix(&MAGIC[..]).ok_or_else(corrupt)?;
    let h: Header = serde_json::from_slice(rest.trim_ascii_end()).map_err(|_| corrupt())?;
    Ok(BlobMeta {
        size: h.size,
        sha256: h.sha256,
        content_type: h.content_type,
    })
}

/// Opens an object and reads its header; `None` if it does not exist.
async fn open_object(path: &Path) -> Result<Option<(tokio::fs::File, BlobMeta)>, Error> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(io_err("opening", path, e)),
    };
    if file
        .metadata()
        .await
        .map_err(|e| io_err("reading", path, e))?
        .is_dir()
    {
        return Ok(None);
    }
    let mut header = vec![0u8; HEADER_LEN];
    file.read_exact(&mut header)
        .await
        .map_err(|e| io_err("reading", path, e))?;
    let meta = decode_header(&header, path)?;
    Ok(Some((file, meta)))
}

/// Query parameters, %-decoded; the first of a repeated name wins.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: &str) -> Query {
        Query(
            url::form_urlencoded::parse(query.trim_start_matches('?').as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn expiry(ttl: Duration) -> (i64, DateTime<Utc>) {
    let exp = Utc::now().timestamp() + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 4);
    (exp, DateTime::from_timestamp(exp, 0).unwrap_or_default())
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
        let (exp, expires_at) = expiry(ttl);
        let sig = hex::encode(
            self.upload_mac(key, size, content_type, exp)
                .finalize()
                .into_bytes(),
        );
        let url = format!(
            "{}/v1/uploads/{}?size={size}&content_type={}&exp={exp}&sig={sig}",
            self.base_url(),
            encode_key(key),
            enc(content_type),
        );
        Ok(UploadTarget {
            method: "PUT".into(),
            url,
            fields: Default::default(),
            headers: [("Content-Type".to_owned(), content_type.to_owned())].into(),
            expires_at,
        })
    }

    async fn presign_download(
        &self,
        key: &str,
        filename: Option<&str>,
        ttl: Duration,
    ) -> Result<(String, DateTime<Utc>), Error> {
        validate_key(key)?;
        let (exp, expires_at) = expiry(ttl);
        let sig = hex::encode(
            self.download_mac(key, filename, exp)
                .finalize()
                .into_bytes(),
        );
        let name = filename
            .map(|f| format!("&filename={}", enc(f)))
            .unwrap_or_default();
        let url = format!(
            "{}/v1/blobs/{}?exp={exp}{name}&sig={sig}",
            self.base_url(),
            encode_key(key),
        );
        Ok((url, expires_at))
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
        let (file, meta) = open_object(&path).await?.ok_or_else(|| Error::NotFound {
            what: "blob",
            id: key.to_owned(),
        })?;
        let body = tokio_util::io::ReaderStream::with_capacity(file.take(meta.size), READ_CHUNK);
        Ok(body.boxed())
    }

    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, Error> {
        let path = self.object_path(key)?;
        Ok(open_object(&path).await?.map(|(_, meta)| meta))
    }

    async fn delete(&self, key: &str) -> Result<(), Error> {
        let path = self.object_path(key)?;
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
    use super::*;
    use bytes::Bytes;
    use futures::stream;

    const KEY: &str = "runs/run_01JD0000000000000000000000/inputs/images/0";

    fn store() -> (tempfile::TempDir, DirBlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let key = load_or_create_signing_key(&dir.path().join("keys/blob-signing.key")).unwrap();
        let s = DirBlobStore::open(dir.path().join("blobs"), key, "http://127.0.0.1:9/").unwrap();
        (dir, s)
    }

    fn body(chunks: &[&'static [u8]]) -> ByteStream {
        stream::iter(
            chunks
                .iter()
                .map(|c| Ok(Bytes::from_static(c)))
                .collect::<Vec<_>>(),
        )
        .boxed()
    }

    async fn read_all(s: ByteStream) -> Vec<u8> {
        s.map(|c| c.unwrap().to_vec()).concat().await
    }

    fn split(url: &str) -> (String, String) {
        let (path, query) = url.split_once('?').unwrap();
        (path.to_owned(), query.to_owned())
    }

    fn temps(s: &DirBlobStore) -> usize {
        std::fs::read_dir(s.root().join("tmp")).unwrap().count()
    }

    fn tamper(query: &str, name: &str, value: &str) -> String {
        query
            .split('&')
            .map(|kv| {
                if kv.split('=').next() == Some(name) {
                    format!("{name}={value}")
                } else {
                    kv.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("&")
    }

    #[tokio::test]
    async fn an_upload_url_verifies_for_exactly_what_it_was_signed_for() {
        let (_d, s) = store();
        let t = s
            .presign_upload(KEY, "image/jpeg", 5, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(t.method, "PUT");
        assert_eq!(t.headers["Content-Type"], "image/jpeg");
        let (path, query) = split(&t.url);
        assert_eq!(
            path,
            "http://127.0.0.1:9/v1/uploads/runs/run_01JD0000000000000000000000/inputs/images/0"
        );
        let now = Utc::now();
        let grant = s
            .verify_upload(KEY, &query, Some("image/jpeg"), now)
            .unwrap();
        assert_eq!(
            grant,
            UploadGrant {
                key: KEY.into(),
                size: 5,
                content_type: "image/jpeg".into()
            }
        );

        let invalid = |r: Result<UploadGrant, Error>| {
            assert!(matches!(r, Err(Error::UploadSignatureInvalid(_))), "{r:?}")
        };
        invalid(s.verify_upload(
            "runs/other/inputs/images/0",
            &query,
            Some("image/jpeg"),
            now,
        ));
        invalid(s.verify_upload(KEY, &tamper(&query, "size", "6"), Some("image/jpeg"), now));
        invalid(s.verify_upload(
            KEY,
            &tamper(&query, "content_type", "image%2Fpng"),
            Some("image/png"),
            now,
        ));
        invalid(s.verify_upload(KEY, &query, Some("image/png"), now));
        invalid(s.verify_upload(KEY, &query, None, now));
        let later = (now + chrono::Duration::hours(1)).timestamp().to_string();
        invalid(s.verify_upload(KEY, &tamper(&query, "exp", &later), Some("image/jpeg"), now));
        invalid(s.verify_upload(KEY, &tamper(&query, "sig", "00ff"), Some("image/jpeg"), now));
        invalid(s.verify_upload(KEY, "size=5", Some("image/jpeg"), now));

        // Another store's key signs different URLs.
        let (_d2, other) = store();
        invalid(other.verify_upload(KEY, &query, Some("image/jpeg"), now));
    }

    #[tokio::test]
    async fn a_valid_upload_url_past_its_expiry_is_expired() {
        let (_d, s) = store();
        let t = s
            .presign_upload(KEY, "image/jpeg", 5, Duration::from_secs(60))
            .await
            .unwrap();
        let (_, query) = split(&t.url);
        let after = t.expires_at + chrono::Duration::seconds(1);
        let err = s
            .verify_upload(KEY, &query, Some("image/jpeg"), after)
            .unwrap_err();
        assert!(matches!(err, Error::UploadExpired(_)), "{err:?}");
        assert!(
            s.verify_upload(KEY, &query, Some("image/jpeg"), t.expires_at)
                .is_ok()
        );
    }

    #[tokio::test]
    async fn download_urls_bind_key_filename_and_expiry() {
        let (_d, s) = store();
        let (url, expires_at) = s
            .presign_download(KEY, Some("scene one.glb"), Duration::from_secs(60))
            .await
            .unwrap();
        let (path, query) = split(&url);
        assert!(path.ends_with("/v1/blobs/runs/run_01JD0000000000000000000000/inputs/images/0"));
        assert!(query.contains("filename=scene%20one.glb"), "{query}");
        let now = Utc::now();
        let g = s.verify_download(KEY, &query, now).unwrap();
        assert_eq!(g.filename.as_deref(), Some("scene one.glb"));
        for bad in [
            tamper(&query, "filename", "x.glb"),
            tamper(&query, "exp", "99999999999"),
            query.replace("&filename=scene%20one.glb", ""),
        ] {
            let err = s.verify_download(KEY, &bad, now).unwrap_err();
            assert!(
                matches!(err, Error::UploadSignatureInvalid(_)),
                "{bad}: {err:?}"
            );
        }
        assert!(s.verify_download("runs/x", &query, now).is_err());
        let err = s
            .verify_download(KEY, &query, expires_at + chrono::Duration::seconds(1))
            .unwrap_err();
        assert!(matches!(err, Error::UploadExpired(_)), "{err:?}");
    }

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
    async fn put_get_head_delete_round_trip_in_chunks() {
        let (_d, s) = store();
        let meta = s
            .put(KEY, "text/plain", body(&[b"hello ", b"world"]))
            .await
            .unwrap();
        assert_eq!(meta.size, 11);
        assert_eq!(
            meta.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(s.head(KEY).await.unwrap(), Some(meta.clone()));
        assert_eq!(read_all(s.get(KEY).await.unwrap()).await, b"hello world");
        // Overwrite replaces bytes and metadata together.
        let meta2 = s.put(KEY, "image/png", body(&[b"png"])).await.unwrap();
        assert_eq!(s.head(KEY).await.unwrap(), Some(meta2));
        assert_eq!(read_all(s.get(KEY).await.unwrap()).await, b"png");
        s.delete(KEY).await.unwrap();
        s.delete(KEY).await.unwrap();
        assert_eq!(s.head(KEY).await.unwrap(), None);
        assert!(matches!(s.get(KEY).await, Err(Error::NotFound { .. })));
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
    async fn put_exact_refuses_a_longer_body_as_soon_as_it_passes_the_size() {
        let (_d, s) = store();
        let grant = UploadGrant {
            key: KEY.into(),
            size: 4,
            content_type: "image/jpeg".into(),
        };
        // The stream would fail if read past the first two chunks: the store must stop before.
        let chunks = stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Ok(Bytes::from_static(b"de")),
        ])
        .chain(stream::once(async {
            panic!("read past the declared size");
        }))
        .boxed();
        let err = s.put_exact(&grant, chunks).await.unwrap_err();
        assert!(matches!(err, Error::PayloadTooLarge { .. }), "{err:?}");
        assert_eq!(s.head(KEY).await.unwrap(), None);
        assert_eq!(temps(&s), 0, "the temp file is removed");
    }

    #[tokio::test]
    async fn put_exact_refuses_a_shorter_body_and_accepts_the_exact_size() {
        let (_d, s) = store();
        let grant = UploadGrant {
            key: KEY.into(),
            size: 4,
            content_type: "image/jpeg".into(),
        };
        let err = s.put_exact(&grant, body(&[b"abc"])).await.unwrap_err();
        assert!(matches!(err, Error::Validation { .. }), "{err:?}");
        assert_eq!(s.head(KEY).await.unwrap(), None);
        assert_eq!(temps(&s), 0);
        let meta = s.put_exact(&grant, body(&[b"ab", b"cd"])).await.unwrap();
        assert_eq!((meta.size, meta.content_type.as_str()), (4, "image/jpeg"));
    }

    #[tokio::test]
    async fn a_failed_or_abandoned_write_leaves_the_old_object_whole() {
        let (_d, s) = store();
        s.put(KEY, "text/plain", body(&[b"old"])).await.unwrap();
        let failing = stream::iter(vec![
            Ok(Bytes::from_static(b"new new new")),
            Err(std::io::Error::other("client went away")),
        ])
        .boxed();
        assert!(s.put(KEY, "text/plain", failing).await.is_err());
        // A write whose future is dropped half way (a dropped connection) also leaves nothing.
        let pending = stream::iter(vec![Ok(Bytes::from_static(b"partial"))])
            .chain(stream::pending())
            .boxed();
        let abandoned = tokio::time::timeout(
            Duration::from_millis(100),
            s.put(KEY, "text/plain", pending),
        )
        .await;
        assert!(abandoned.is_err());
        assert_eq!(read_all(s.get(KEY).await.unwrap()).await, b"old");
        assert_eq!(s.head(KEY).await.unwrap().unwrap().size, 3);
        assert_eq!(temps(&s), 0);
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
