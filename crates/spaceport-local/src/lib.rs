//! Spaceport's embedded adapters for one machine: the run store and the step queues in one SQLite
//! file (WAL, usable by the CLI and the server at once) and a directory blob store whose presigned
//! URLs are HMAC-signed and checked by the local HTTP server.

mod blob;
mod commit;
mod db;
mod deliveries;
mod events;
pub mod files;
mod queue;
mod signed;
mod slots;
mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use spaceport_core::Error;

pub use blob::{
    DirBlobStore, DownloadGrant, MAX_KEY_LEN, UploadGrant, load_or_create_signing_key, validate_key,
};
pub use db::{BUSY_TIMEOUT, LocalDb, SCHEMA_VERSION};
pub use queue::{DEFAULT_MAX_RECEIVES, DEFAULT_POLL_INTERVAL, DeadLetter, MAX_BATCH, SqliteQueue};
pub use store::{DEFAULT_PAGE, MAX_PAGE, SqliteStore};

/// The embedded stack opened from a data directory:
/// `<data>/spaceport.db` (runs and queues), `<data>/blobs/` (objects) and
/// `<data>/keys/blob-signing.key` (the URL signing key, created on first open, mode 0600).
#[derive(Debug, Clone)]
pub struct LocalStack {
    /// The SQLite handle behind `store` and `queue` (for `ping`).
    pub db: LocalDb,
    /// Runs and idempotency keys.
    pub store: Arc<SqliteStore>,
    /// The step queues, in the same file.
    pub queue: Arc<SqliteQueue>,
    /// Objects and signed URLs; the server also calls its `verify_*` and `put_exact`.
    pub blobs: Arc<DirBlobStore>,
    /// The data directory it was opened from.
    pub data_dir: PathBuf,
}

impl LocalStack {
    /// Opens (creating if needed) the stack under `data_dir`, handing out blob URLs under
    /// `base_url` (change it with `blobs.set_base_url` once the server has bound its port).
    /// Blocking; call it at start-up.
    pub fn open(data_dir: impl AsRef<Path>, base_url: &str) -> Result<LocalStack, Error> {
        let data_dir = data_dir.as_ref().to_path_buf();
        for warning in files::loose_modes(&data_dir) {
            tracing::warn!("{warning}");
        }
        let db = LocalDb::open(data_dir.join("spaceport.db"))?;
        let key = load_or_create_signing_key(&data_dir.join("keys").join("blob-signing.key"))?;
        let blobs =
            DirBlobStore::open(data_dir.join("blobs"), key, base_url)?.inline_in(db.clone());
        Ok(LocalStack {
            store: Arc::new(db.store().with_outbox()),
            queue: Arc::new(db.queue()),
            blobs: Arc::new(blobs),
            db,
            data_dir,
        })
    }
}

pub use commit::WriterStats;
