//! Fakes of the ports for benchmarks and tests that measure the engine itself: a Space backend
//! that does no work (`InstantSpace`), and counting decorators around the real adapters that
//! count every write (each a SQLite commit or a blob fsync) and signal each run that ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use spaceport_core::ports::{
    BlobMeta, BlobStore, ByteStream, Delivery, FeedPage, FeedQuery, Idempotency, InsertOutcome,
    ListQuery, Queue, QueueName, QueueStats, RunPage, RunStore, SlotBook, SpaceBackend, SpaceEvent,
    SpaceJob, StallCursor, StalledPage, Submitted, UploadTarget,
};
use spaceport_core::{Error, Run, RunEvent, RunId, Status};
use tokio::sync::Notify;

/// Benchmark harness: a `SpaceBackend` that does no work. `submit` reads the inputs and returns a
/// handle at once; `watch` completes at once with one file; `download` streams a fixed small GLB.
pub struct InstantSpace {
    glb: Bytes,
}

impl InstantSpace {
    /// The backend, with its small valid GLB ready.
    pub fn new() -> InstantSpace {
        // A minimal valid glTF binary: the 12-byte header and one JSON chunk padded to 4 bytes.
        let mut json = br#"{"asset":{"version":"2.0","generator":"spaceport e2e bench"}}"#.to_vec();
        while !json.len().is_multiple_of(4) {
            json.push(b' ');
        }
        let total = 12 + 8 + json.len();
        let mut glb = Vec::with_capacity(total);
        glb.extend_from_slice(b"glTF");
        glb.extend_from_slice(&2u32.to_le_bytes());
        glb.extend_from_slice(&(total as u32).to_le_bytes());
        glb.extend_from_slice(&(json.len() as u32).to_le_bytes());
        glb.extend_from_slice(b"JSON");
        glb.extend_from_slice(&json);
        InstantSpace { glb: glb.into() }
    }
}

#[async_trait]
impl SpaceBackend for InstantSpace {
    async fn submit(&self, job: SpaceJob) -> Result<Submitted, Error> {
        let mut read = 0u64;
        for files in job.inputs.into_values() {
            for mut f in files {
                while let Some(chunk) = f.body.next().await {
                    read += chunk
                        .map_err(|e| Error::storage("reading an input", e))?
                        .len() as u64;
                }
            }
        }
        Ok(Submitted {
            handle: json!({"instant": job.run_id.as_str(), "read": read}),
            layout: job
                .layouts
                .first()
                .map_or_else(|| "default".into(), |l| l.name.clone()),
        })
    }

    async fn watch(
        &self,
        _handle: &Value,
    ) -> Result<BoxStream<'static, Result<SpaceEvent, Error>>, Error> {
        let done = SpaceEvent::Completed {
            // The shape of vggt's /gradio_demo: the GLB, the log text, the frame filter.
            outputs: vec![
                json!({"path": "scene.glb", "mime_type": "model/gltf-binary"}),
                json!("instant: reconstructed"),
                Value::Null,
            ],
        };
        Ok(futures::stream::iter([Ok(done)]).boxed())
    }

    async fn download(
        &self,
        _handle: &Value,
        _file: &Value,
    ) -> Result<(ByteStream, Option<String>), Error> {
        let glb = self.glb.clone();
        Ok((
            futures::stream::iter([Ok(glb)]).boxed(),
            Some("model/gltf-binary".into()),
        ))
    }

    async fn cancel(&self, _handle: &Value) -> Result<(), Error> {
        Ok(())
    }
}

/// Counts of the port calls that write (each a SQLite commit or a blob fsync) and the rest.
#[derive(Default)]
pub struct Counts {
    pub inserts: AtomicU64,
    pub updates: AtomicU64,
    pub update_conflicts: AtomicU64,
    pub gets: AtomicU64,
    pub other_reads: AtomicU64,
    pub sends: AtomicU64,
    pub receives_empty: AtomicU64,
    pub receives_nonempty: AtomicU64,
    pub received: AtomicU64,
    pub deletes: AtomicU64,
    pub visibility: AtomicU64,
    pub blob_puts: AtomicU64,
    pub succeeded: AtomicU64,
    pub ended_otherwise: AtomicU64,
    pub ended: Notify,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counts {
    /// Every counter, in declaration order (`ended` aside).
    pub fn snapshot(&self) -> [u64; 14] {
        [
            &self.inserts,
            &self.updates,
            &self.update_conflicts,
            &self.gets,
            &self.other_reads,
            &self.sends,
            &self.receives_empty,
            &self.receives_nonempty,
            &self.received,
            &self.deletes,
            &self.visibility,
            &self.blob_puts,
            &self.succeeded,
            &self.ended_otherwise,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}

/// Counting decorator over the real run store; also signals each run that ends.
pub struct CountingStore {
    pub inner: Arc<dyn RunStore>,
    pub counts: Arc<Counts>,
}

impl CountingStore {
    /// Counts an update's outcome: `Ok(sent)` when it was written (with a message, if `sent`).
    fn count_update(&self, run: &Run, outcome: Result<bool, &Error>) {
        match outcome {
            Ok(sent) => {
                bump(&self.counts.updates);
                if sent {
                    bump(&self.counts.sends);
                }
                if run.status.is_terminal() {
                    if run.status == Status::Succeeded {
                        bump(&self.counts.succeeded);
                    } else {
                        bump(&self.counts.ended_otherwise);
                    }
                    self.counts.ended.notify_waiters();
                }
            }
            Err(_) => bump(&self.counts.update_conflicts),
        }
    }
}

#[async_trait]
impl RunStore for CountingStore {
    async fn insert(
        &self,
        run: &Run,
        idempotency: Option<&Idempotency>,
    ) -> Result<InsertOutcome, Error> {
        bump(&self.counts.inserts);
        self.inner.insert(run, idempotency).await
    }

    async fn get(&self, id: &RunId) -> Result<Option<Run>, Error> {
        bump(&self.counts.gets);
        self.inner.get(id).await
    }

    async fn update(&self, run: &Run, expected_version: u64) -> Result<(), Error> {
        let r = self.inner.update(run, expected_version).await;
        self.count_update(run, r.as_ref().map(|_| false));
        r
    }

    async fn update_and_send(
        &self,
        run: &Run,
        expected_version: u64,
        queue: QueueName,
        body: &str,
    ) -> Result<bool, Error> {
        let r = self
            .inner
            .update_and_send(run, expected_version, queue, body)
            .await;
        self.count_update(run, r.as_ref().copied());
        r
    }

    async fn list(&self, query: &ListQuery) -> Result<RunPage, Error> {
        bump(&self.counts.other_reads);
        self.inner.list(query).await
    }

    async fn overdue(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<RunId>, Error> {
        bump(&self.counts.other_reads);
        self.inner.overdue(now, limit).await
    }

    async fn slots(&self, key: &str) -> Result<(SlotBook, u64), Error> {
        bump(&self.counts.other_reads);
        self.inner.slots(key).await
    }

    async fn put_slots(&self, key: &str, book: &SlotBook, expected: u64) -> Result<(), Error> {
        self.inner.put_slots(key, book, expected).await
    }

    async fn all_slots(&self) -> Result<Vec<(String, SlotBook)>, Error> {
        self.inner.all_slots().await
    }

    async fn stalled(
        &self,
        before: DateTime<Utc>,
        after: Option<&StallCursor>,
        limit: usize,
    ) -> Result<StalledPage, Error> {
        bump(&self.counts.other_reads);
        self.inner.stalled(before, after, limit).await
    }

    async fn retained(
        &self,
        before: DateTime<Utc>,
        after: Option<&StallCursor>,
        limit: usize,
    ) -> Result<Option<StalledPage>, Error> {
        bump(&self.counts.other_reads);
        self.inner.retained(before, after, limit).await
    }

    async fn events(&self, id: &RunId, after: u64, limit: usize) -> Result<Vec<RunEvent>, Error> {
        bump(&self.counts.other_reads);
        self.inner.events(id, after, limit).await
    }

    async fn feed(&self, query: &FeedQuery) -> Result<FeedPage, Error> {
        bump(&self.counts.other_reads);
        self.inner.feed(query).await
    }

    async fn usage(&self, tenant: &str) -> Result<spaceport_core::limits::Usage, Error> {
        bump(&self.counts.other_reads);
        self.inner.usage(tenant).await
    }

    async fn purge_idempotency_keys(&self, before: DateTime<Utc>) -> Result<u64, Error> {
        self.inner.purge_idempotency_keys(before).await
    }
}

/// Counting decorator over the real queues.
pub struct CountingQueue {
    pub inner: Arc<dyn Queue>,
    pub counts: Arc<Counts>,
}

#[async_trait]
impl Queue for CountingQueue {
    async fn send(&self, queue: QueueName, body: &str, delay: Duration) -> Result<String, Error> {
        bump(&self.counts.sends);
        self.inner.send(queue, body, delay).await
    }

    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, Error> {
        let got = self.inner.receive(queue, max, visibility).await?;
        if got.is_empty() {
            bump(&self.counts.receives_empty);
        } else {
            bump(&self.counts.receives_nonempty);
            self.counts
                .received
                .fetch_add(got.len() as u64, Ordering::Relaxed);
        }
        Ok(got)
    }

    async fn delete(&self, queue: QueueName, receipt: &str) -> Result<(), Error> {
        bump(&self.counts.deletes);
        self.inner.delete(queue, receipt).await
    }

    async fn change_visibility(
        &self,
        queue: QueueName,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), Error> {
        bump(&self.counts.visibility);
        self.inner
            .change_visibility(queue, receipt, visibility)
            .await
    }

    async fn waiting(&self, queue: QueueName, run: &RunId) -> Result<Option<bool>, Error> {
        self.inner.waiting(queue, run).await
    }

    async fn stats(&self, queue: QueueName) -> Result<QueueStats, Error> {
        self.inner.stats(queue).await
    }
}

/// Counting decorator over the real blob store (each put is a file fsync and a folder fsync).
pub struct CountingBlobs {
    pub inner: Arc<dyn BlobStore>,
    pub counts: Arc<Counts>,
}

#[async_trait]
impl BlobStore for CountingBlobs {
    async fn presign_upload(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        ttl: Duration,
    ) -> Result<UploadTarget, Error> {
        self.inner
            .presign_upload(key, content_type, size, ttl)
            .await
    }

    async fn presign_download(
        &self,
        key: &str,
        filename: Option<&str>,
        ttl: Duration,
    ) -> Result<(String, DateTime<Utc>), Error> {
        self.inner.presign_download(key, filename, ttl).await
    }

    async fn put(
        &self,
        key: &str,
        content_type: &str,
        body: ByteStream,
    ) -> Result<BlobMeta, Error> {
        bump(&self.counts.blob_puts);
        self.inner.put(key, content_type, body).await
    }

    async fn get(&self, key: &str) -> Result<ByteStream, Error> {
        self.inner.get(key).await
    }

    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, Error> {
        self.inner.head(key).await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<BlobMeta, Error> {
        self.inner.copy(from, to).await
    }

    async fn delete(&self, key: &str) -> Result<(), Error> {
        self.inner.delete(key).await
    }
}

impl Default for InstantSpace {
    fn default() -> Self {
        InstantSpace::new()
    }
}

/// A webhook sender for engine tests and benchmarks that configure no webhook: every attempt
/// fails saying so (a delivery reaching it is a bug the delivery log shows).
pub struct NoWebhooks;

#[async_trait]
impl spaceport_core::ports::WebhookSender for NoWebhooks {
    async fn send(
        &self,
        _endpoint: &str,
        _url: &str,
        _id: &str,
        _body: &str,
    ) -> spaceport_core::ports::SendOutcome {
        spaceport_core::ports::SendOutcome {
            status: None,
            retry_after: None,
            latency: Duration::ZERO,
            error: Some("this process sends no webhooks".into()),
        }
    }
}
