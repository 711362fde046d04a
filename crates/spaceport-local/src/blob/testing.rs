//! What the blob modules' unit tests share: a store on a temp directory, bodies in chunks, and
//! URL surgery for tampering with signed query strings.

use bytes::Bytes;
use futures::{StreamExt, stream};
use spaceport_core::ports::ByteStream;

use super::{DirBlobStore, load_or_create_signing_key};

pub(super) const KEY: &str = "runs/run_01JD0000000000000000000000/inputs/images/0";

pub(super) fn store() -> (tempfile::TempDir, DirBlobStore) {
    let dir = tempfile::tempdir().unwrap();
    let key = load_or_create_signing_key(&dir.path().join("keys/blob-signing.key")).unwrap();
    let s = DirBlobStore::open(dir.path().join("blobs"), key, "http://127.0.0.1:9/").unwrap();
    (dir, s)
}

/// A store keeping small objects inline in a database file beside it (the embedded stack's way).
pub(super) fn inline_store() -> (tempfile::TempDir, DirBlobStore) {
    let (dir, s) = store();
    let db = crate::LocalDb::open(dir.path().join("spaceport.db")).unwrap();
    (dir, s.inline_in(db))
}

/// The object files under the store's `objects/`.
pub(super) fn object_files(s: &DirBlobStore) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    let mut todo = vec![s.root().join("objects")];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            if e.path().is_dir() {
                todo.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

pub(super) fn body(chunks: &[&'static [u8]]) -> ByteStream {
    stream::iter(
        chunks
            .iter()
            .map(|c| Ok(Bytes::from_static(c)))
            .collect::<Vec<_>>(),
    )
    .boxed()
}

pub(super) async fn read_all(s: ByteStream) -> Vec<u8> {
    s.map(|c| c.unwrap().to_vec()).concat().await
}

pub(super) fn split(url: &str) -> (String, String) {
    let (path, query) = url.split_once('?').unwrap();
    (path.to_owned(), query.to_owned())
}

pub(super) fn temps(s: &DirBlobStore) -> usize {
    std::fs::read_dir(s.root().join("tmp")).unwrap().count()
}

pub(super) fn tamper(query: &str, name: &str, value: &str) -> String {
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
