//! `BlobStore` on a directory, with HMAC-SHA256 presigned URLs that the local HTTP server checks
//! the way S3 checks SigV4: `store` (the port), `signing` (keys and URLs), `object_file` (the
//! crash-safe file of one object), `inline` (small objects as rows of the database file).

mod inline;
mod object_file;
mod signing;
mod store;
#[cfg(test)]
mod testing;

pub use signing::{DownloadGrant, UploadGrant, load_or_create_signing_key};
pub use store::{DirBlobStore, MAX_KEY_LEN, validate_key};
