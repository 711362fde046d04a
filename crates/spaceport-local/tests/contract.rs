//! The port contract suites against the embedded adapters, each on its own temp directory.

use std::time::Duration;

use async_trait::async_trait;
use spaceport_contract::{
    QueueContractOptions, blob_store_contract, queue_contract_with, run_store_contract,
};
use spaceport_core::Error;
use spaceport_core::ports::{Delivery, Queue, QueueName, QueueStats};
use spaceport_local::{DirBlobStore, LocalDb, SqliteQueue, load_or_create_signing_key};

/// Finer timers than SQS's whole seconds keep the suite quick; the semantics are the same.
fn fast() -> QueueContractOptions {
    QueueContractOptions {
        unit: Duration::from_millis(300),
        patience: Duration::from_secs(5),
        ..Default::default()
    }
}

#[tokio::test]
async fn sqlite_store_meets_the_run_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalDb::open(dir.path().join("spaceport.db"))
        .unwrap()
        .store();
    run_store_contract(&store).await;
}

#[tokio::test]
async fn sqlite_store_meets_the_delivery_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalDb::open(dir.path().join("spaceport.db"))
        .unwrap()
        .store();
    spaceport_contract::delivery_store_contract(&store).await;
}

#[tokio::test]
async fn sqlite_queue_meets_the_queue_contract() {
    let dir = tempfile::tempdir().unwrap();
    let queue = LocalDb::open(dir.path().join("spaceport.db"))
        .unwrap()
        .queue();
    queue_contract_with(&queue, &fast()).await;
}

/// The port alone; its presigned URLs are checked over HTTP against the local server (tests/it).
#[tokio::test]
async fn dir_blob_store_meets_the_blob_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let key = load_or_create_signing_key(&dir.path().join("keys/blob-signing.key")).unwrap();
    let blobs = DirBlobStore::open(dir.path().join("blobs"), key, "http://127.0.0.1:9").unwrap();
    blob_store_contract(&blobs).await;
}

/// The same with small objects inline in the database file (the embedded stack's wiring).
#[tokio::test]
async fn dir_blob_store_with_inline_objects_meets_the_blob_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let key = load_or_create_signing_key(&dir.path().join("keys/blob-signing.key")).unwrap();
    let db = LocalDb::open(dir.path().join("spaceport.db")).unwrap();
    let blobs = DirBlobStore::open(dir.path().join("blobs"), key, "http://127.0.0.1:9")
        .unwrap()
        .inline_in(db);
    blob_store_contract(&blobs).await;
}

/// Sends through one connection and does everything else through another, as the CLI and the
/// server (two processes) would on one file.
struct TwoHandles {
    sender: SqliteQueue,
    receiver: SqliteQueue,
}

#[async_trait]
impl Queue for TwoHandles {
    async fn send(&self, q: QueueName, body: &str, delay: Duration) -> Result<String, Error> {
        self.sender.send(q, body, delay).await
    }
    async fn receive(
        &self,
        q: QueueName,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, Error> {
        self.receiver.receive(q, max, visibility).await
    }
    async fn delete(&self, q: QueueName, receipt: &str) -> Result<(), Error> {
        self.sender.delete(q, receipt).await
    }
    async fn change_visibility(
        &self,
        q: QueueName,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), Error> {
        self.sender.change_visibility(q, receipt, visibility).await
    }
    async fn stats(&self, q: QueueName) -> Result<QueueStats, Error> {
        self.receiver.stats(q).await
    }
    async fn waiting(
        &self,
        q: QueueName,
        run: &spaceport_core::RunId,
    ) -> Result<Option<bool>, Error> {
        self.receiver.waiting(q, run).await
    }
}

#[tokio::test]
async fn the_queue_contract_holds_across_two_connections_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spaceport.db");
    let queue = TwoHandles {
        sender: LocalDb::open(&path).unwrap().queue(),
        receiver: LocalDb::open(&path).unwrap().queue(),
    };
    queue_contract_with(&queue, &fast()).await;
}
