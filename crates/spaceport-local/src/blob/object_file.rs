//! One object is one file: a fixed-size metadata header (type, size, sha256) and then the bytes.
//! A write streams into a temp file, fsyncs and renames it into place, so a crash never leaves a
//! half object, nor bytes and metadata that disagree.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spaceport_core::Error;
use spaceport_core::ports::{BlobMeta, ByteStream};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Bytes before an object's content: magic, JSON metadata, padding.
const HEADER_LEN: usize = 1024;
const MAGIC: &[u8; 8] = b"SPBLOB1\n";

#[derive(Serialize, Deserialize)]
struct Header {
    content_type: String,
    size: u64,
    sha256: String,
}

pub(super) fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
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

/// Streams `body` into a temp file under `tmp_dir` and publishes it as `dest`. With `exact`, a
/// longer body fails with `PayloadTooLarge` as soon as it passes the size and a shorter one with
/// a validation error; a failed or abandoned write leaves `dest` as it was and no temp file.
pub(super) async fn write(
    tmp_dir: &Path,
    dest: PathBuf,
    content_type: &str,
    mut body: ByteStream,
    exact: Option<u64>,
) -> Result<BlobMeta, Error> {
    let mut temp = TempFile {
        path: tmp_dir.join(format!("{}.part", ulid::Ulid::new())),
        committed: false,
    };
    let mut opts = tokio::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(crate::files::FILE_MODE);
    let mut file = opts
        .open(&temp.path)
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
    let landed = meta.clone();
    tokio::task::spawn_blocking(move || match exact {
        // An upload under a grant: its object is written once.
        Some(_) => publish_new(&from, &dest, &landed),
        None => publish(&from, &dest),
    })
    .await
    .map_err(|e| Error::Internal(format!("a blob write task failed: {e}")))??;
    temp.committed = true;
    Ok(meta)
}

/// Links the finished temp file into place only if nothing is there yet, so two uploads racing
/// for one input cannot both land: the second is refused 409, unless it carried the same bytes
/// (a client retrying an upload whose answer it lost). Removes the temp file when it succeeds.
fn publish_new(from: &Path, dest: &Path, meta: &BlobMeta) -> Result<(), Error> {
    let dir = dest.parent().expect("object paths have a parent");
    for attempt in 0..3 {
        crate::files::private_dir_all(dir)?;
        match std::fs::hard_link(from, dest) {
            Ok(()) => {
                let _ = std::fs::remove_file(from);
                return crate::files::sync_dir(dir).map_err(|e| io_err("syncing", dir, e));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < 2 => continue,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let theirs = read_meta(dest)?;
                if theirs.sha256 == meta.sha256 && theirs.size == meta.size {
                    let _ = std::fs::remove_file(from);
                    return Ok(());
                }
                return Err(Error::Conflict(format!(
                    "another upload of this input already landed (sha256 {}); nothing was stored",
                    theirs.sha256
                )));
            }
            Err(e) => return Err(io_err("linking into", dest, e)),
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// Links the object at `from` in as `to` (the same file, no byte copied), replacing what `to`
/// held; `None` when there is nothing at `from`.
pub(super) fn link(tmp_dir: &Path, from: &Path, to: &Path) -> Result<Option<BlobMeta>, Error> {
    let meta = match read_meta(from) {
        Ok(meta) => meta,
        Err(_) if !from.is_file() => return Ok(None),
        Err(e) => return Err(e),
    };
    // Linked under a temp name, then renamed over `to`: a reader sees the old object or the new.
    let temp = tmp_dir.join(format!("{}.link", ulid::Ulid::new()));
    std::fs::hard_link(from, &temp).map_err(|e| io_err("linking", &temp, e))?;
    let published = publish(&temp, to);
    if published.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    published.map(|()| Some(meta))
}

/// The header of the object at `path`.
pub(super) fn read_meta(path: &Path) -> Result<BlobMeta, Error> {
    use std::io::Read;
    let mut header = vec![0u8; HEADER_LEN];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .map_err(|e| io_err("reading", path, e))?;
    decode_header(&header, path)
}

/// Renames the finished temp file into place and fsyncs the folder so the rename is durable.
fn publish(from: &Path, dest: &Path) -> Result<(), Error> {
    let dir = dest.parent().expect("object paths have a parent");
    // A concurrent delete may remove an emptied parent folder between creating and renaming.
    for attempt in 0..3 {
        crate::files::private_dir_all(dir)?;
        match std::fs::rename(from, dest) {
            Ok(()) => return crate::files::sync_dir(dir).map_err(|e| io_err("syncing", dir, e)),
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

/// Opens an object and reads its header, leaving the file at the first content byte; `None` if
/// it does not exist.
pub(super) async fn open(path: &Path) -> Result<Option<(tokio::fs::File, BlobMeta)>, Error> {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use futures::stream;
    use spaceport_core::ports::BlobStore;

    use super::*;
    use crate::blob::UploadGrant;
    use crate::blob::testing::{KEY, body, read_all, store, temps};

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

    fn owned(bytes: Vec<u8>) -> spaceport_core::ports::ByteStream {
        stream::once(async move { Ok(Bytes::from(bytes)) }).boxed()
    }

    #[tokio::test]
    async fn an_upload_lands_once_however_many_race_for_it() {
        let (_d, s) = store();
        let s = std::sync::Arc::new(s);
        let grant = UploadGrant {
            key: KEY.into(),
            size: 4,
            content_type: "image/jpeg".into(),
        };
        // Eight uploads of different bytes at once: one lands, the others are refused whole.
        let racers: Vec<_> = (0..8u8)
            .map(|i| {
                let (s, grant) = (s.clone(), grant.clone());
                tokio::spawn(async move { s.put_exact(&grant, owned(vec![b'a' + i; 4])).await })
            })
            .collect();
        let mut landed = vec![];
        for r in racers {
            match r.await.unwrap() {
                Ok(meta) => landed.push(meta),
                Err(e) => assert!(matches!(e, Error::Conflict(_)), "{e:?}"),
            }
        }
        assert_eq!(landed.len(), 1, "{landed:?}");
        let stored = s.head(KEY).await.unwrap().unwrap();
        assert_eq!(
            stored.sha256, landed[0].sha256,
            "the object is the one that landed"
        );
        assert_eq!(temps(&s), 0);
        // The same bytes again (a retry whose answer was lost) are taken, changing nothing.
        let winner = read_all(s.get(KEY).await.unwrap()).await;
        let again = s.put_exact(&grant, owned(winner)).await.unwrap();
        assert_eq!(again.sha256, stored.sha256);
        let other = s.put_exact(&grant, body(&[b"zzzz"])).await.unwrap_err();
        assert!(other.to_string().contains("already landed"), "{other}");
        assert_eq!(s.head(KEY).await.unwrap().unwrap().sha256, stored.sha256);
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
}
