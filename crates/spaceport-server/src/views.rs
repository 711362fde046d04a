//! The wire shapes of the API (and so of `/v1/openapi.json`): requests as clients send them and
//! runs as clients see them. Internal fields of a stored run (job handle, leases, blob keys) never
//! appear here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use spaceport_core::webhook::WebhookDelivery;
use spaceport_core::{InputState, Progress, Run, RunError, RunEvent};
use spaceport_steps::Upload;
use utoipa::ToSchema;

pub use spaceport_core::create::{CreateRunRequest, DeclaredInput};

/// Where to send one declared file.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UploadView {
    pub slot: String,
    pub index: usize,
    /// `PUT` (or `POST` with `fields`).
    pub method: String,
    pub url: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    pub expires_at: DateTime<Utc>,
}

impl From<Upload> for UploadView {
    fn from(u: Upload) -> Self {
        UploadView {
            slot: u.slot,
            index: u.index,
            method: u.method,
            url: u.url,
            fields: u.fields,
            headers: u.headers,
            expires_at: u.expires_at,
        }
    }
}

/// An input as the run shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InputView {
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: Option<String>,
    /// `pending`, `landed` or `deleted`.
    pub state: String,
    /// The run and artifact it was copied from (`{"run": "run_…", "artifact": "scene"}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_run: Option<InputSourceView>,
}

/// Another run's artifact an input was copied from.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InputSourceView {
    pub run: String,
    pub artifact: String,
}

/// Queue position and progress as the backend last reported them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProgressView {
    pub stage: Option<String>,
    pub queue_rank: Option<u64>,
    pub queue_size: Option<u64>,
    pub eta_s: Option<f64>,
    pub fraction: Option<f64>,
    pub message: Option<String>,
    /// When a wait the backend announced ends and the run tries again (a quota, a full queue,
    /// a Space waking).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
    /// How long the run has waited in this stage so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waited_s: Option<f64>,
}

/// Which backend runs the job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BackendView {
    /// `space` or `onnx`.
    pub kind: String,
    pub target: String,
    /// 1 for the first submission; each resubmission after the backend lost the job, and each
    /// failover, adds one.
    pub attempt: u32,
    /// The pipeline whose backend runs the job (the run's own, or the fallback it moved to).
    pub pipeline: String,
    /// Every attempt, oldest first: which backend ran it and how it ended.
    pub attempts: Vec<BackendAttemptView>,
}

/// One attempt at running the job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BackendAttemptView {
    pub attempt: u32,
    /// `space` or `onnx`.
    pub kind: String,
    pub target: String,
    pub pipeline: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// `succeeded`, an error code, `lost`, `failed_over`, `cancelled`, `expired`; null while it runs.
    pub outcome: Option<String>,
    pub message: Option<String>,
}

/// Why a run did not succeed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunErrorView {
    pub code: String,
    pub message: String,
    pub retryable: bool,
}

/// A result file.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ArtifactView {
    pub name: String,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
    /// A signed, short-lived download URL.
    pub url: String,
    pub url_expires_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub meta: Map<String, Value>,
}

/// A stage run of a chain.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChildRunView {
    pub stage: String,
    pub run: String,
}

/// A run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunView {
    pub id: String,
    pub pipeline: String,
    /// `created`, `queued`, `submitting`, `running`, `fetching`, `succeeded`, `failed`, `cancelled`, `expired`.
    pub status: String,
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
    pub inputs: BTreeMap<String, Vec<InputView>>,
    pub progress: ProgressView,
    pub backend: BackendView,
    pub error: Option<RunErrorView>,
    pub artifacts: Vec<ArtifactView>,
    /// What the backend returned besides files, named by the pipeline (`seed`, `info`, `log`).
    #[schema(value_type = Object)]
    pub outputs: Map<String, Value>,
    /// The backend's log lines, oldest first (the newest 200 are kept).
    pub logs: Vec<String>,
    /// Where to upload inputs that have not landed (while `created`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uploads: Vec<UploadView>,
    pub created_at: DateTime<Utc>,
    pub queued_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub deadline_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// Who deleted the inputs and artifacts: `request` (`DELETE`) or `retention`.
    pub deleted_by: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub retry_of: Option<String>,
    /// The chain run this run is a stage of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// A chain run's stage runs, in the order they started (`{"stage", "run"}`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ChildRunView>,
    /// The batch that created it (`bat_…`).
    pub batch: Option<String>,
    /// Whether the results came from an earlier identical run (same pipeline, Space revision,
    /// settings and input files) instead of a call to the backend.
    pub cache_hit: bool,
    /// That earlier run.
    pub cached_from: Option<String>,
    /// In the answer to a create: a token good only for reading this run (status, events,
    /// artifacts) until `run_token_expires_at`, for a browser that holds no key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_token_expires_at: Option<DateTime<Utc>>,
}

impl RunView {
    /// The view of `run` with its upload targets and artifact URLs.
    pub fn new(run: &Run, uploads: Vec<Upload>, artifacts: Vec<ArtifactView>) -> Self {
        RunView {
            id: run.id.to_string(),
            pipeline: run.pipeline.clone(),
            status: run.status.to_string(),
            settings: run.settings.clone(),
            inputs: run
                .inputs
                .iter()
                .map(|(slot, files)| {
                    let list = files
                        .iter()
                        .map(|f| InputView {
                            filename: f.filename.clone(),
                            content_type: f.content_type.clone(),
                            size: f.size,
                            sha256: f.sha256.clone(),
                            state: match f.state {
                                InputState::Pending => "pending",
                                InputState::Landed => "landed",
                                InputState::Deleted => "deleted",
                            }
                            .into(),
                            from_run: f.from_run.as_ref().map(|s| InputSourceView {
                                run: s.run.clone(),
                                artifact: s.artifact.clone(),
                            }),
                        })
                        .collect();
                    (slot.clone(), list)
                })
                .collect(),
            progress: ProgressView::from(&run.progress),
            backend: BackendView {
                kind: run.backend.kind.to_string(),
                target: run.backend.target.clone(),
                attempt: run.backend.attempt,
                pipeline: run.backend_pipeline().to_string(),
                attempts: run
                    .backend
                    .attempts
                    .iter()
                    .map(|a| BackendAttemptView {
                        attempt: a.attempt,
                        kind: a.kind.to_string(),
                        target: a.target.clone(),
                        pipeline: a.pipeline.clone(),
                        started_at: a.started_at,
                        ended_at: a.ended_at,
                        outcome: a.outcome.clone(),
                        message: a.message.clone(),
                    })
                    .collect(),
            },
            error: run.error.as_ref().map(RunErrorView::from),
            artifacts,
            outputs: run.outputs.clone(),
            logs: run.logs.clone(),
            uploads: uploads.into_iter().map(UploadView::from).collect(),
            created_at: run.created_at,
            queued_at: run.queued_at,
            started_at: run.started_at,
            finished_at: run.finished_at,
            deadline_at: run.deadline_at,
            deleted_at: run.deleted_at,
            deleted_by: run.deleted_by.clone(),
            metadata: run.metadata.clone(),
            retry_of: run.retry_of.as_ref().map(|r| r.to_string()),
            parent: run.parent.as_ref().map(|r| r.to_string()),
            children: run
                .children
                .iter()
                .map(|c| ChildRunView {
                    stage: c.stage.clone(),
                    run: c.run.to_string(),
                })
                .collect(),
            batch: run.batch.clone(),
            cache_hit: run.cache_hit,
            cached_from: run.cached_from.as_ref().map(|r| r.to_string()),
            run_token: None,
            run_token_expires_at: None,
        }
    }
}

impl From<&Progress> for ProgressView {
    fn from(p: &Progress) -> Self {
        ProgressView {
            stage: p.stage.clone(),
            queue_rank: p.queue_rank,
            queue_size: p.queue_size,
            eta_s: p.eta_s,
            fraction: p.fraction,
            message: p.message.clone(),
            retry_at: p.retry_at,
            waited_s: p.waited_s,
        }
    }
}

impl From<&RunError> for RunErrorView {
    fn from(e: &RunError) -> Self {
        RunErrorView {
            code: e.code.to_string(),
            message: e.message.clone(),
            retryable: e.retryable,
        }
    }
}

/// One event of a run: what changed, when, and the run's state after it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventView {
    /// `evt_…`, unique and sorting in the run's order.
    pub id: String,
    pub run_id: String,
    /// The run's event number: 1, 2, 3 … without gaps (the SSE `id:`).
    pub seq: u64,
    /// `run.created`, `run.queued`, `run.started`, `run.updated`, `run.progress`,
    /// `run.succeeded`, `run.failed`, `run.cancelled` or `run.expired`.
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: DateTime<Utc>,
    /// The run's status after the change.
    pub status: String,
    pub progress: ProgressView,
    pub error: Option<RunErrorView>,
    /// The backend attempt (1 for the first submission).
    pub attempt: u32,
    /// The backend's log lines this change added.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
    /// The run's non-file outputs, once the backend returned them.
    #[serde(skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub outputs: Map<String, Value>,
    /// Text a model server streamed since the previous event (`http_model` runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<TextView>,
}

/// A piece of a model server's answer. In `seq` order, the pieces of one (`request`, `batch`,
/// `try`) make that try's answer; a later try of the same batch starts over.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TextView {
    /// The pipeline's request (`describe`).
    pub request: String,
    /// 1-based batch of images within the request.
    pub batch: u32,
    /// 1-based try of that batch's request.
    #[serde(rename = "try")]
    pub attempt: u32,
    pub text: String,
}

impl From<&RunEvent> for EventView {
    fn from(e: &RunEvent) -> Self {
        EventView {
            id: e.id(),
            run_id: e.run_id.to_string(),
            seq: e.seq,
            kind: e.kind.to_string(),
            created_at: e.at,
            status: e.status.to_string(),
            progress: ProgressView::from(&e.progress),
            error: e.error.as_ref().map(RunErrorView::from),
            attempt: e.attempt,
            logs: e.logs.clone(),
            outputs: e.outputs.clone(),
            text: e.text.as_ref().map(|t| TextView {
                request: t.request.clone(),
                batch: t.batch,
                attempt: t.attempt,
                text: t.text.clone(),
            }),
        }
    }
}

/// `GET /v1/runs/{id}/events?format=json`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventList {
    pub events: Vec<EventView>,
    /// Pass back as `after` (the last event's `seq`, or the `after` you sent when none came).
    pub next_after: u64,
}

/// `GET /v1/events`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FeedView {
    pub events: Vec<EventView>,
    /// Pass back as `after`; null when this page is empty (keep your cursor and ask again).
    pub next_cursor: Option<String>,
    /// Whether more events were waiting.
    pub has_more: bool,
}

/// `GET /v1/runs`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<RunView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /v1/pipelines`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PipelineList {
    #[schema(value_type = Vec<Object>)]
    pub pipelines: Vec<Value>,
}

/// One try to deliver a webhook message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttemptView {
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status; null when none came back.
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// What went wrong (a timeout, a refused connection, a redirect not followed).
    pub error: Option<String>,
}

/// One webhook message to one endpoint, with every attempt (`GET /v1/runs/{id}/deliveries`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryView {
    /// `msg_…`: the `webhook-id` header, the same on every attempt and redelivery.
    pub id: String,
    pub run_id: String,
    /// The run event it carries.
    pub event_seq: u64,
    #[serde(rename = "type")]
    pub kind: String,
    /// `run` for the run's own webhook, else the configured endpoint's name.
    pub endpoint: String,
    /// Where it goes, without its query string (which may carry a receiver's token).
    pub url: String,
    /// `pending`, `delivered`, `dead` (every try failed) or `disabled` (the receiver said 410).
    pub state: String,
    pub attempts: Vec<AttemptView>,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<&WebhookDelivery> for DeliveryView {
    fn from(d: &WebhookDelivery) -> Self {
        let url = d
            .url
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .to_owned();
        DeliveryView {
            id: d.id.clone(),
            run_id: d.run_id.to_string(),
            event_seq: d.event_seq,
            kind: d.kind.to_string(),
            endpoint: d.endpoint.clone(),
            url,
            state: serde_json::to_value(d.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            attempts: d
                .attempts
                .iter()
                .map(|a| AttemptView {
                    at: a.at,
                    status: a.status,
                    latency_ms: a.latency_ms,
                    error: a.error.clone(),
                })
                .collect(),
            next_attempt_at: d.next_at,
            created_at: d.created_at,
        }
    }
}

/// `GET /v1/runs/{id}/deliveries` and `GET /v1/deliveries`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryView>,
    /// For the dead-letter list: pass back as `after` for the next page; null on the last.
    pub next_cursor: Option<String>,
}
