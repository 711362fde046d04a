//! Small objects inline in the database file (the `blobs` table), as MinIO keeps objects under
//! 128 KiB inside their metadata file: a small object then costs one row in the next group
//! commit (`commit.rs`), durable with the run writes beside it, instead of a temp file, the
//! folders of its key and four fsyncs of its own. Larger objects stay files (`object_file`).
//! A key lives in one place or the other; where a crash left both (between a write and its
//! removal of what it replaced), the row is the newer and wins: an inline write removes a file
//! it replaces only after its row committed, and a file write removes the row it replaces only
//! after the file was published.

use std::path::PathBuf;

use bytes::Bytes;
use rusqlite::{OptionalExtension, params};
use spaceport_core::Error;
use spaceport_core::ports::BlobMeta;

use crate::LocalDb;
use crate::db::sql_err;

/// Objects up to this size are kept inline.
pub(super) const INLINE_MAX: usize = 128 * 1024;

/// The `blobs` table of one database file.
#[derive(Clone)]
pub(super) struct Inline {
    db: LocalDb,
}

fn meta_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<BlobMeta> {
    Ok(BlobMeta {
        content_type: r.get(0)?,
        size: r.get::<_, i64>(1)? as u64,
        sha256: r.get(2)?,
    })
}

const INSERT_NEW: &str = "INSERT INTO blobs (key, content_type, size, sha256, body)
    VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (key) DO NOTHING";
const INSERT_OR_REPLACE: &str =
    "INSERT OR REPLACE INTO blobs (key, content_type, size, sha256, body)
    VALUES (?1, ?2, ?3, ?4, ?5)";

/// Writes the row of `key` with `sql` (one of the two above); how many rows it wrote.
fn insert_row(
    conn: &rusqlite::Connection,
    sql: &str,
    key: &str,
    meta: &BlobMeta,
    body: &[u8],
) -> Result<usize, Error> {
    conn.prepare_cached(sql)
        .and_then(|mut s| {
            s.execute(params![
                key,
                meta.content_type,
                meta.size as i64,
                meta.sha256,
                body
            ])
        })
        .map_err(|e| sql_err("storing a blob", e))
}

/// The metadata of the row of `key`. The body column is not read: its pages are not touched.
fn meta_in(conn: &rusqlite::Connection, key: &str) -> Result<Option<BlobMeta>, Error> {
    conn.prepare_cached("SELECT content_type, size, sha256 FROM blobs WHERE key = ?1")
        .and_then(|mut s| s.query_row([key], meta_of).optional())
        .map_err(|e| sql_err("reading a blob's metadata", e))
}

/// Whether a file at `path` is there (a stat; an unreadable folder counts as "not there").
fn file_there(path: &std::path::Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

impl Inline {
    pub(super) fn new(db: LocalDb) -> Inline {
        Inline { db }
    }

    /// The metadata of the inline object `key`, if there is one.
    pub(super) async fn head(&self, key: &str) -> Result<Option<BlobMeta>, Error> {
        let key = key.to_owned();
        self.db.call(move |conn| meta_in(conn, &key)).await
    }

    /// The inline object `key` and its bytes, if there is one.
    pub(super) async fn get(&self, key: &str) -> Result<Option<(BlobMeta, Bytes)>, Error> {
        let key = key.to_owned();
        self.db
            .call(move |conn| {
                conn.prepare_cached(
                    "SELECT content_type, size, sha256, body FROM blobs WHERE key = ?1",
                )
                .and_then(|mut s| {
                    s.query_row([&key], |r| {
                        Ok((meta_of(r)?, Bytes::from(r.get::<_, Vec<u8>>(3)?)))
                    })
                    .optional()
                })
                .map_err(|e| sql_err("reading a blob", e))
            })
            .await
    }

    /// Stores `body` as `key`. With `create_only` (an upload under a grant), an object already
    /// there (a row, or the file `file` from before objects were inline) is kept: the write
    /// succeeds when it carried the same bytes and is refused 409 otherwise. Without it, the row
    /// replaces what `key` held, the file `file` included.
    pub(super) async fn put(
        &self,
        key: &str,
        meta: &BlobMeta,
        body: Bytes,
        create_only: bool,
        file: PathBuf,
    ) -> Result<(), Error> {
        let (key, meta) = (key.to_owned(), meta.clone());
        let stale_file = self
            .db
            .write("storing a blob", move |tx| {
                let there = file_there(&file);
                if create_only {
                    let theirs = if there {
                        Some(super::object_file::read_meta(&file)?)
                    } else {
                        if insert_row(tx, INSERT_NEW, &key, &meta, &body)? == 1 {
                            return Ok(None);
                        }
                        meta_in(tx, &key)?
                    };
                    return match theirs {
                        Some(t) if t.sha256 == meta.sha256 && t.size == meta.size => Ok(None),
                        Some(t) => Err(Error::Conflict(format!(
                            "another upload of this input already landed (sha256 {}); nothing was stored",
                            t.sha256
                        ))),
                        None => Err(Error::Internal(format!("blob {key} vanished mid-write"))),
                    };
                }
                insert_row(tx, INSERT_OR_REPLACE, &key, &meta, &body)?;
                Ok(there.then_some(file))
            })
            .await?;
        if let Some(file) = stale_file {
            remove_file(file).await?;
        }
        Ok(())
    }

    /// Copies the inline object `from` to `to` (replacing what `to` held, the file `to_file`
    /// included); `None` when `from` is not inline.
    pub(super) async fn copy(
        &self,
        from: &str,
        to: &str,
        to_file: PathBuf,
    ) -> Result<Option<BlobMeta>, Error> {
        // Most copies are of files: a read, not a write that copies nothing, tells.
        if self.head(from).await?.is_none() {
            return Ok(None);
        }
        let (from, to) = (from.to_owned(), to.to_owned());
        let copied = self
            .db
            .write("copying a blob", move |tx| {
                let n = tx
                    .execute(
                        "INSERT OR REPLACE INTO blobs (key, content_type, size, sha256, body)
                         SELECT ?2, content_type, size, sha256, body FROM blobs WHERE key = ?1",
                        [&from, &to],
                    )
                    .map_err(|e| sql_err("copying a blob", e))?;
                if n == 0 {
                    return Ok(None);
                }
                let meta = meta_in(tx, &to)?
                    .ok_or_else(|| Error::Internal(format!("blob {to} vanished mid-copy")))?;
                Ok(Some((meta, file_there(&to_file).then_some(to_file))))
            })
            .await?;
        let Some((meta, stale_file)) = copied else {
            return Ok(None);
        };
        if let Some(file) = stale_file {
            remove_file(file).await?;
        }
        Ok(Some(meta))
    }

    /// Removes the inline object `key`, if there is one (one read when there is none).
    pub(super) async fn delete(&self, key: &str) -> Result<(), Error> {
        if self.head(key).await?.is_none() {
            return Ok(());
        }
        let key = key.to_owned();
        self.db
            .write("deleting a blob", move |tx| {
                tx.execute("DELETE FROM blobs WHERE key = ?1", [&key])
                    .map(drop)
                    .map_err(|e| sql_err("deleting a blob", e))
            })
            .await
    }

    /// Every inline key, in order.
    pub(super) async fn keys(&self) -> Result<Vec<String>, Error> {
        self.db
            .call(|conn| {
                let mut s = conn
                    .prepare("SELECT key FROM blobs ORDER BY key")
                    .map_err(|e| sql_err("listing blobs", e))?;
                s.query_map([], |r| r.get(0))
                    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
                    .map_err(|e| sql_err("listing blobs", e))
            })
            .await
    }
}

/// Removes the file an inline write replaced (gone already is fine).
async fn remove_file(path: PathBuf) -> Result<(), Error> {
    match tokio::fs::remove_file(&path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(super::object_file::io_err("deleting", &path, e)),
    }
}

#[cfg(test)]
mod tests {
    use spaceport_core::ports::BlobStore;

    use super::INLINE_MAX;
    use crate::blob::testing::{KEY, body, inline_store, object_files, read_all, temps};

    fn big(byte: u8) -> &'static [u8] {
        Box::leak(vec![byte; INLINE_MAX + 1].into_boxed_slice())
    }

    #[tokio::test]
    async fn a_small_object_is_a_row_and_a_large_one_a_file() {
        let (_d, s) = inline_store();
        let small = s
            .put(KEY, "text/plain", body(&[b"hello ", b"world"]))
            .await
            .unwrap();
        assert_eq!(small.size, 11);
        assert_eq!(
            object_files(&s),
            Vec::<std::path::PathBuf>::new(),
            "no file for a small object"
        );
        assert_eq!(temps(&s), 0);
        assert_eq!(read_all(s.get(KEY).await.unwrap()).await, b"hello world");
        assert_eq!(s.head(KEY).await.unwrap(), Some(small.clone()));

        // The same key rewritten large moves to a file, and back again when small.
        let large = s
            .put(KEY, "application/octet-stream", body(&[big(1)]))
            .await
            .unwrap();
        assert_eq!(large.size as usize, INLINE_MAX + 1);
        assert_eq!(object_files(&s).len(), 1);
        assert_eq!(s.head(KEY).await.unwrap(), Some(large));
        assert_eq!(
            s.keys().await.unwrap(),
            vec![KEY.to_string()],
            "one place at a time"
        );
        s.put(KEY, "text/plain", body(&[b"small again"]))
            .await
            .unwrap();
        assert_eq!(
            object_files(&s),
            Vec::<std::path::PathBuf>::new(),
            "the replaced file is gone"
        );
        assert_eq!(read_all(s.get(KEY).await.unwrap()).await, b"small again");

        // A body that outgrows the inline size part-way streams on into a file, whole.
        let (k2, half) = ("runs/r/artifacts/a/b.bin", INLINE_MAX / 2 + 1);
        let part: &'static [u8] = Box::leak(vec![9u8; half].into_boxed_slice());
        let m = s
            .put(k2, "application/octet-stream", body(&[part, part, part]))
            .await
            .unwrap();
        assert_eq!(m.size as usize, 3 * half);
        assert_eq!(
            read_all(s.get(k2).await.unwrap()).await,
            vec![9u8; 3 * half]
        );

        s.delete(KEY).await.unwrap();
        s.delete(k2).await.unwrap();
        assert_eq!(s.head(KEY).await.unwrap(), None);
        assert!(s.keys().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_copy_of_a_row_is_a_row_and_replaces_a_file_there() {
        let (_d, s) = inline_store();
        let to = "runs/r2/inputs/images/0";
        s.put(to, "application/octet-stream", body(&[big(2)]))
            .await
            .unwrap();
        s.put(KEY, "image/png", body(&[b"png bytes"]))
            .await
            .unwrap();
        let meta = s.copy(KEY, to).await.unwrap();
        assert_eq!(meta.size, 9);
        assert_eq!(read_all(s.get(to).await.unwrap()).await, b"png bytes");
        assert_eq!(object_files(&s), Vec::<std::path::PathBuf>::new());
        // And a copy of a file over a row leaves the file only.
        let k3 = "runs/r3/inputs/images/0";
        s.put(k3, "application/octet-stream", body(&[big(3)]))
            .await
            .unwrap();
        s.copy(k3, to).await.unwrap();
        assert_eq!(read_all(s.get(to).await.unwrap()).await, big(3));
        assert_eq!(s.keys().await.unwrap(), {
            let mut v = vec![KEY.to_string(), to.to_string(), k3.to_string()];
            v.sort();
            v
        });
        assert!(matches!(
            s.copy("runs/none/x", to).await,
            Err(spaceport_core::Error::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn an_upload_lands_once_inline_and_respects_a_file_from_before() {
        let (d, s) = inline_store();
        let t = s
            .presign_upload(KEY, "image/png", 5, std::time::Duration::from_secs(60))
            .await
            .unwrap();
        let (_, query) = crate::blob::testing::split(&t.url);
        let grant = s
            .verify_upload(KEY, &query, Some("image/png"), chrono::Utc::now())
            .unwrap();
        s.put_exact(&grant, body(&[b"first"])).await.unwrap();
        // The same bytes again: a retried upload whose answer was lost.
        s.put_exact(&grant, body(&[b"first"])).await.unwrap();
        let err = s.put_exact(&grant, body(&[b"other"])).await.unwrap_err();
        assert!(matches!(err, spaceport_core::Error::Conflict(_)), "{err:?}");
        assert!(matches!(
            s.put_exact(&grant, body(&[b"toolong"])).await,
            Err(spaceport_core::Error::PayloadTooLarge { .. })
        ));
        assert!(matches!(
            s.put_exact(&grant, body(&[b"shor"])).await,
            Err(spaceport_core::Error::Validation { .. })
        ));
        assert_eq!(read_all(s.get(KEY).await.unwrap()).await, b"first");

        // An input stored as a file before objects were inline still takes no other bytes.
        let k2 = "runs/r2/inputs/images/0";
        let plain = store_at(d.path());
        plain.put(k2, "image/png", body(&[b"older"])).await.unwrap();
        let t2 = s
            .presign_upload(k2, "image/png", 5, std::time::Duration::from_secs(60))
            .await
            .unwrap();
        let (_, q2) = crate::blob::testing::split(&t2.url);
        let g2 = s
            .verify_upload(k2, &q2, Some("image/png"), chrono::Utc::now())
            .unwrap();
        assert!(matches!(
            s.put_exact(&g2, body(&[b"newer"])).await,
            Err(spaceport_core::Error::Conflict(_))
        ));
        s.put_exact(&g2, body(&[b"older"])).await.unwrap();
        assert_eq!(read_all(s.get(k2).await.unwrap()).await, b"older");
    }

    /// A second, file-only handle on the same folder (as a build from before inline objects).
    fn store_at(dir: &std::path::Path) -> crate::DirBlobStore {
        let key = crate::load_or_create_signing_key(&dir.join("keys/blob-signing.key")).unwrap();
        crate::DirBlobStore::open(dir.join("blobs"), key, "http://127.0.0.1:9/").unwrap()
    }
}
