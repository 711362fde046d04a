//! The ports: capability-sized async traits the steps depend on. Adapters (SQLite, a directory,
//! DynamoDB, SQS, S3, a Gradio client, ONNX Runtime) implement them; the steps never see an SDK.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Error;
use crate::event::{EventType, RunEvent};
use crate::ids::RunId;
use crate::pipeline::CallSpec;
use crate::run::{Progress, Run};
use crate::status::Status;

/// A stream of bytes, read in chunks (files are never held whole in memory).
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// Time, behind a port so tests can move it.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// An Idempotency-Key and the hash of the request body it was first used with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: String,
}

/// What inserting a run under an idempotency key did.
#[derive(Debug)]
pub enum InsertOutcome {
    /// The run was stored.
    Inserted,
    /// The key was used before with the same body: here is that run; nothing was stored.
    Existing(Box<Run>),
}

/// A page of runs, newest first.
#[derive(Debug, Default)]
pub struct RunPage {
    pub runs: Vec<Run>,
    /// Pass back as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Filters of `GET /v1/runs`.
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    pub status: Option<Status>,
    pub pipeline: Option<String>,
    pub limit: usize,
    pub cursor: Option<String>,
}

/// Runs per page when a list names no limit.
pub const DEFAULT_PAGE: usize = 20;
/// The most runs one page holds.
pub const MAX_PAGE: usize = 100;

impl ListQuery {
    /// The page size: the asked limit, `DEFAULT_PAGE` for none, at most `MAX_PAGE`.
    pub fn page_size(&self) -> usize {
        match self.limit {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        }
    }

    /// The run id the cursor points after; a malformed cursor is a validation error on `cursor`.
    pub fn after(&self) -> Result<Option<RunId>, Error> {
        self.cursor.as_deref().map(decode_cursor).transpose()
    }
}

/// An opaque list cursor for the page ending at `id` (base64url, so clients do not parse it).
pub fn encode_cursor(id: &RunId) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_str())
}

fn decode_cursor(cursor: &str) -> Result<RunId, Error> {
    use base64::Engine;
    let bad = || Error::validation("cursor", "the cursor is malformed; pass back a next_cursor");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    RunId::parse(&text).map_err(|_| bad())
}

/// Where a page of stalled runs ended: the last run's stall time and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StallCursor {
    /// `Run::stall_from` of the last run of the page, in Unix milliseconds.
    pub at_ms: i64,
    pub id: RunId,
}

/// A page of stalled runs, oldest stall first.
#[derive(Debug, Default)]
pub struct StalledPage {
    pub runs: Vec<Run>,
    /// Pass back as `after` for the next page; `None` on the last page.
    pub next: Option<StallCursor>,
}

impl StalledPage {
    /// A page of `runs` (sorted by stall time, then id) read with `limit`: the cursor after the
    /// last one when the page is full.
    pub fn of(runs: Vec<Run>, limit: usize) -> StalledPage {
        let next = if runs.len() >= limit.max(1) {
            runs.last().and_then(|r| {
                r.stall_from().map(|t| StallCursor {
                    at_ms: t.timestamp_millis(),
                    id: r.id.clone(),
                })
            })
        } else {
            None
        };
        StalledPage { runs, next }
    }
}

/// Filters of the event feed (`GET /v1/events`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedQuery {
    /// Where the last page ended (`FeedPage::next_cursor`); `None` from the beginning.
    pub after: Option<String>,
    /// Only these types; empty for every type.
    pub types: Vec<EventType>,
    /// Events per page (`ListQuery`'s limits apply).
    pub limit: usize,
}

/// A page of the event feed, in commit order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedPage {
    pub events: Vec<RunEvent>,
    /// The cursor after the last event of this page; `None` when the page is empty (keep the
    /// cursor you have and ask again later).
    pub next_cursor: Option<String>,
    /// Whether more events were waiting when the page was read.
    pub has_more: bool,
}

/// How long an Idempotency-Key is remembered (Stripe keeps keys for 24 h; clients retry within
/// hours, not days).
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// Durable storage of runs. Every write of an existing run is conditional on its version.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Stores a new run. With `idempotency`, a key already used with the same request hash returns
    /// `Existing` and a different hash fails with `Error::Conflict`; nothing is written then.
    async fn insert(
        &self,
        run: &Run,
        idempotency: Option<&Idempotency>,
    ) -> Result<InsertOutcome, Error>;

    /// Reads a run.
    async fn get(&self, id: &RunId) -> Result<Option<Run>, Error>;

    /// Writes `run` only if the stored version is still `expected_version` (and so its status is
    /// still the one the change was decided on); otherwise `Error::VersionConflict`. The events
    /// the change recorded (`Run::events_to_write`) are written in the same transaction: a
    /// change that loses the race leaves no event. `insert` writes a new run's events likewise.
    async fn update(&self, run: &Run, expected_version: u64) -> Result<(), Error>;

    /// Runs newest first, filtered, one page at a time.
    async fn list(&self, query: &ListQuery) -> Result<RunPage, Error>;

    /// Non-terminal runs whose deadline is at or before `now` (for the sweeper).
    async fn overdue(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<RunId>, Error>;

    /// Live runs past `created` whose `Run::stall_from` is before `before` (their lease lapsed
    /// then, or they have had none since they were queued), ordered by that time and then id,
    /// at most `limit`, after `after`. Backed by an index, so the sweeper pages through every
    /// stalled run however many there are.
    async fn stalled(
        &self,
        before: DateTime<Utc>,
        after: Option<&StallCursor>,
        limit: usize,
    ) -> Result<StalledPage, Error>;

    /// The run's events after sequence number `after`, in order, at most `limit`.
    async fn events(&self, id: &RunId, after: u64, limit: usize) -> Result<Vec<RunEvent>, Error>;

    /// Every run's events in the order their changes committed, one page at a time.
    async fn feed(&self, query: &FeedQuery) -> Result<FeedPage, Error>;

    /// Forgets idempotency keys first used before `before` (the runs stay); returns how many.
    /// Stores whose keys expire by themselves (DynamoDB's TTL) keep this default, which does
    /// nothing.
    async fn purge_idempotency_keys(&self, _before: DateTime<Utc>) -> Result<u64, Error> {
        Ok(0)
    }
}

/// The step queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueName {
    SubmitSpace,
    PollStatus,
    FetchArtifact,
    NotifyWebhook,
    Reconstruct,
}

impl QueueName {
    /// Every queue.
    pub const ALL: [QueueName; 5] = [
        QueueName::SubmitSpace,
        QueueName::PollStatus,
        QueueName::FetchArtifact,
        QueueName::NotifyWebhook,
        QueueName::Reconstruct,
    ];

    /// The queue's name, which is also its step's function name.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::SubmitSpace => "submit-space",
            QueueName::PollStatus => "poll-status",
            QueueName::FetchArtifact => "fetch-artifact",
            QueueName::NotifyWebhook => "notify-webhook",
            QueueName::Reconstruct => "reconstruct",
        }
    }
}

/// The body of a step message: which run, and the run version it was sent for (diagnostics only;
/// handlers decide from the stored run, so duplicates are harmless).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepMessage {
    pub run_id: RunId,
    #[serde(default)]
    pub version: u64,
}

/// A received message. It stays invisible to other receivers until its visibility timeout ends;
/// delete it when handled.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message_id: String,
    /// The handle for `delete` / `change_visibility` of this receipt.
    pub receipt: String,
    pub body: String,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
}

/// Depth and age of a queue, for `/readyz`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Messages waiting (visible or delayed).
    pub depth: u64,
    /// Messages received and not yet deleted.
    pub in_flight: u64,
    /// Messages moved to the dead-letter list.
    pub dead: u64,
    /// Age of the oldest waiting message, in seconds.
    pub oldest_age_s: Option<f64>,
}

/// A durable at-least-once queue per step (SQS semantics: delay, visibility timeout, receive count,
/// dead-letter after too many receives).
#[async_trait]
pub trait Queue: Send + Sync {
    /// Enqueues `body`, visible after `delay`. Returns the message id.
    async fn send(&self, queue: QueueName, body: &str, delay: Duration) -> Result<String, Error>;

    /// Receives up to `max` visible messages, hiding each for `visibility`. Messages received more
    /// than the queue's limit are moved to its dead-letter list instead of being returned.
    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, Error>;

    /// Deletes a handled message.
    async fn delete(&self, queue: QueueName, receipt: &str) -> Result<(), Error>;

    /// Changes how long a received message stays hidden (zero makes it visible again at once).
    async fn change_visibility(
        &self,
        queue: QueueName,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), Error>;

    /// Depth, in-flight count, dead letters and oldest age.
    async fn stats(&self, queue: QueueName) -> Result<QueueStats, Error>;
}

/// Where and how a client uploads one declared file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadTarget {
    /// `PUT` or `POST`.
    pub method: String,
    pub url: String,
    /// Form fields for a `POST` policy upload.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
    /// Headers the client must send (`Content-Type`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    pub expires_at: DateTime<Utc>,
}

/// What the blob store knows of an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobMeta {
    pub size: u64,
    pub sha256: String,
    pub content_type: String,
}

/// Object storage with presigned URLs.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// A URL that accepts exactly one upload of `key` with this size and content type, until `ttl`.
    async fn presign_upload(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        ttl: Duration,
    ) -> Result<UploadTarget, Error>;

    /// A short-lived URL that downloads `key` (as `filename` when given).
    async fn presign_download(
        &self,
        key: &str,
        filename: Option<&str>,
        ttl: Duration,
    ) -> Result<(String, DateTime<Utc>), Error>;

    /// Streams `body` into `key`, returning its size and sha256.
    async fn put(&self, key: &str, content_type: &str, body: ByteStream)
    -> Result<BlobMeta, Error>;

    /// Streams the object's bytes; `Error::NotFound` if absent.
    async fn get(&self, key: &str) -> Result<ByteStream, Error>;

    /// The object's size, sha256 and type, if it exists.
    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, Error>;

    /// Deletes the object (absent is fine).
    async fn delete(&self, key: &str) -> Result<(), Error>;
}

/// A blob store whose presigned URLs are served by the API server itself (one machine; on AWS
/// S3 serves them): the server hands `/v1/uploads/…` and `/v1/blobs/…` requests to it.
#[async_trait]
pub trait SignedBlobs: Send + Sync {
    /// Verifies an upload URL (`query` is its query string) and stores `body` if it is exactly
    /// the declared size and type; nothing is stored otherwise.
    async fn accept_upload(
        &self,
        key: &str,
        query: &str,
        content_type: Option<&str>,
        body: ByteStream,
    ) -> Result<BlobMeta, Error>;

    /// Verifies a download URL and streams the object, with its metadata and download filename.
    async fn serve_download(
        &self,
        key: &str,
        query: &str,
    ) -> Result<(ByteStream, BlobMeta, Option<String>), Error>;
}

/// An input file handed to a backend.
pub struct JobInput {
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub body: ByteStream,
}

/// What submit-space asks a Space backend to do.
pub struct SpaceJob {
    pub run_id: RunId,
    /// The Space id (`facebook/vggt`).
    pub space: String,
    /// Base URL of the Space (an override, or derived from the id).
    pub url: String,
    /// The ordered calls; every call but the last runs to completion, the last is joined.
    pub calls: Vec<CallSpec>,
    /// Settings in the backend's spelling, by setting name.
    pub settings: Map<String, Value>,
    /// Input files by slot, in the pipeline's order.
    pub inputs: BTreeMap<String, Vec<JobInput>>,
}

/// What the backend says while a job runs, and how it ends.
#[derive(Debug, Clone, PartialEq)]
pub enum SpaceEvent {
    /// Queue position, ETA, progress or a log line.
    Progress(Progress),
    /// The job finished: one value per output of the last call (files as the backend describes them).
    Completed { outputs: Vec<Value> },
    /// The job itself failed: the Space's message, classified (`space_error`, or
    /// `space_quota_exceeded` for a quota message, which is worth retrying later).
    Failed {
        code: crate::error::ErrorCode,
        message: String,
    },
    /// The job was cancelled at the backend (it answers like a success with no output).
    Cancelled,
    /// The backend no longer knows the job (stream dropped, session not found): submit again.
    Lost { reason: String },
}

/// A model host that runs jobs remotely (a Gradio Space). The job handle is JSON so any process
/// can pick a job up where another left it.
#[async_trait]
pub trait SpaceBackend: Send + Sync {
    /// Uploads the inputs, runs every call but the last to completion and joins the last one.
    /// Returns the persisted job handle.
    async fn submit(&self, job: SpaceJob) -> Result<Value, Error>;

    /// Streams the job's events until one of `Completed`, `Failed`, `Cancelled` or `Lost`.
    async fn watch(
        &self,
        handle: &Value,
    ) -> Result<BoxStream<'static, Result<SpaceEvent, Error>>, Error>;

    /// Streams one output file (as the backend described it in `Completed`).
    async fn download(
        &self,
        handle: &Value,
        file: &Value,
    ) -> Result<(ByteStream, Option<String>), Error>;

    /// Stops the job at the backend, queued or running.
    async fn cancel(&self, handle: &Value) -> Result<(), Error>;
}

/// An input image handed to a local model.
#[derive(Debug, Clone)]
pub struct ModelInput {
    pub filename: String,
    pub bytes: Bytes,
}

/// What the `reconstruct` step asks a local model runner to do.
#[derive(Debug, Clone)]
pub struct ModelJob {
    pub run_id: RunId,
    /// Path of the `.onnx` file.
    pub model: String,
    /// Model I/O names that differ from the defaults.
    pub io: BTreeMap<String, String>,
    /// Pre-processing mode (`pad` or `crop`).
    pub preprocess: Option<String>,
    /// Resolved settings (user-facing spellings).
    pub settings: Map<String, Value>,
    /// The images, in the pipeline's order.
    pub inputs: Vec<ModelInput>,
    /// A fresh directory the runner writes its files into.
    pub out_dir: std::path::PathBuf,
}

/// A file a model runner wrote, named after a pipeline output.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelArtifact {
    /// The pipeline output it fills (`scene`, `predictions`).
    pub name: String,
    pub path: std::path::PathBuf,
    /// Facts about it (`points`, `cameras`).
    pub meta: Map<String, Value>,
}

/// Receives progress while a model runs (stage and fraction).
pub type ProgressSink = Box<dyn Fn(Progress) + Send + Sync>;

/// Runs a local model (ONNX Runtime on a CPU or GPU). Input problems fail with
/// `Error::Upstream{code: InputInvalid}`, model problems with `ModelError`.
#[async_trait]
pub trait ModelRunner: Send + Sync {
    /// Runs `job`, reporting progress, and returns the files it wrote.
    async fn run(&self, job: ModelJob, progress: ProgressSink)
    -> Result<Vec<ModelArtifact>, Error>;

    /// Whether the model at `model` can be run here (its file is present); a Space pipeline falls
    /// back to a local model only when it can.
    fn available(&self, _model: &str) -> bool {
        true
    }
}
