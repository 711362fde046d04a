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
