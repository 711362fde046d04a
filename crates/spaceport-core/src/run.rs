//! A run: one job through a pipeline. Transitions are methods that check the status machine and
//! bump `version`; stores write the result only if the stored version is still the previous one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::backend::BackendKind;
use crate::error::{Error, ErrorCode};
use crate::event::{EventType, PendingEvents, RunEvent, TextDelta};
use crate::ids::RunId;
use crate::job::JobState;
use crate::status::Status;

/// How a run leaves `created`: by itself when every input landed, or by `POST /start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartMode {
    #[default]
    Auto,
    Manual,
}

/// Whether a declared input is in the blob store yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputState {
    Pending,
    Landed,
    Deleted,
}

/// One declared input file of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputFile {
    pub filename: String,
    pub content_type: String,
    /// Declared size in bytes (the upload must match it exactly).
    pub size: u64,
    pub sha256: Option<String>,
    pub state: InputState,
    /// Where the bytes live in the blob store.
    pub key: String,
    /// A URL the input is fetched from instead of uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The run and artifact the input was copied from (a run built on a run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_run: Option<InputSource>,
}

/// Another run's artifact an input was copied from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputSource {
    pub run: String,
    pub artifact: String,
}

/// What the backend last reported about the job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub stage: Option<String>,
    pub queue_rank: Option<u64>,
    pub queue_size: Option<u64>,
    pub eta_s: Option<f64>,
    pub fraction: Option<f64>,
    pub message: Option<String>,
    /// When a wait the backend announced ends and the run tries again (a ZeroGPU quota's
    /// "retry in 0:09:48", a `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
    /// How long the run has waited in this stage so far (a sleeping Space waking, a full queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waited_s: Option<f64>,
}

/// Which backend runs the job, and which attempt this is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendInfo {
    pub kind: BackendKind,
    /// The Space (`facebook/vggt`) or model path.
    pub target: String,
    /// 1 for the first submission; each resubmission after the backend lost the job, and each
    /// failover, adds one.
    pub attempt: u32,
    /// The pipeline whose backend runs the job, when a failover moved it off the run's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// Every attempt so far, oldest first: which backend ran it and how it ended.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
}

impl BackendInfo {
    /// The backend of a run not yet submitted.
    pub fn new(kind: BackendKind, target: impl Into<String>) -> BackendInfo {
        BackendInfo {
            kind,
            target: target.into(),
            attempt: 0,
            pipeline: None,
            attempts: vec![],
        }
    }
}

/// One attempt at running a job: on which backend, and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// The attempt's number (`backend.attempt` while it ran).
    pub attempt: u32,
    pub kind: BackendKind,
    /// The Space or model.
    pub target: String,
    /// The pipeline whose backend it ran on (the run's own, or a fallback).
    pub pipeline: String,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    /// How it ended: `succeeded`, an error code, `lost`, `failed_over`, `cancelled`, `expired`.
    #[serde(default)]
    pub outcome: Option<String>,
    /// Why, in words.
    #[serde(default)]
    pub message: Option<String>,
}

/// Why a run did not succeed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunError {
    pub code: ErrorCode,
    pub message: String,
    pub retryable: bool,
}

/// A result file in the blob store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub name: String,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
    pub key: String,
    #[serde(default)]
    pub meta: Map<String, Value>,
}

/// The tenant of every run on a server without API keys.
pub const LOCAL_TENANT: &str = "local";

/// The most log lines a run keeps (the newest), as Replicate keeps a prediction's logs.
pub const MAX_LOG_LINES: usize = 200;
/// The most bytes a run's log lines take together, and one line at most a tenth of it.
pub const MAX_LOG_BYTES: usize = 32 * 1024;

fn yes() -> bool {
    true
}

fn local_tenant() -> String {
    LOCAL_TENANT.into()
}

/// One job through a pipeline, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: RunId,
    /// Whose run it is: the tenant of the API key that created it (`local` without keys, and for
    /// runs stored before tenants existed). Other tenants are told it does not exist.
    #[serde(default = "local_tenant")]
    pub tenant: String,
    pub pipeline: String,
    pub status: Status,
    /// Bumped by every change; conditional writes compare it.
    pub version: u64,
    /// Resolved settings (user-facing spellings, defaults filled in).
    pub settings: Map<String, Value>,
    /// Declared inputs per slot, in the order the pipeline hands them to the backend.
    pub inputs: BTreeMap<String, Vec<InputFile>>,
    pub progress: Progress,
    pub backend: BackendInfo,
    /// What the steps keep about the backend job: its handle, outputs, counters and lease.
    #[serde(default)]
    pub job: Option<JobState>,
    pub error: Option<RunError>,
    pub artifacts: Vec<Artifact>,
    /// What the backend returned besides files (a seed, an info text, a log), named by the
    /// pipeline's `[values]`.
    #[serde(default)]
    pub outputs: Map<String, Value>,
    /// The backend's log lines (`gr.Info`, `gr.Warning`, log messages), oldest first; only the
    /// newest `MAX_LOG_LINES` (and `MAX_LOG_BYTES`) are kept.
    #[serde(default)]
    pub logs: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub queued_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub deadline_at: DateTime<Utc>,
    /// When a cancel was asked for; the step that holds the job stops it at the backend.
    #[serde(default)]
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// When `DELETE` removed the inputs and artifacts (the record stays).
    #[serde(default)]
    pub deleted_at: Option<DateTime<Utc>>,
    /// Who removed them: `request` (`DELETE`) or `retention` (kept its days, then swept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_by: Option<String>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub start: StartMode,
    pub retry_of: Option<RunId>,
    /// Webhook target, kept for the notify step.
    #[serde(default)]
    pub webhook: Option<Value>,
    /// The batch that created it (`bat_…`), if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    /// Whether an earlier identical run's results may answer it (`"cache": false` says no).
    #[serde(default = "yes")]
    pub cache: bool,
    /// The result-cache key this run's results are kept under once it succeeds (`cache.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_key: Option<String>,
    /// Whether the results came from an earlier identical run instead of the backend.
    #[serde(default)]
    pub cache_hit: bool,
    /// That earlier run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_from: Option<RunId>,
    /// The sequence number of the run's last event (0 before the first).
    #[serde(default)]
    pub event_seq: u64,
    /// Events this change recorded; the store writes them in the same transaction as the run.
    #[serde(skip)]
    pub new_events: PendingEvents,
    /// Log lines this change appended, for the next event it records.
    #[serde(skip)]
    pub new_logs: Vec<String>,
    /// Streamed text this change carries, for the next event it records.
    #[serde(skip)]
    pub new_text: Option<TextDelta>,
    /// The chain run this run is a stage of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<RunId>,
    /// A chain run's stage runs, in the order they started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ChildRun>,
}

/// A stage run of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildRun {
    pub stage: String,
    pub run: RunId,
}

impl Run {
    /// A fresh `created` run (version 1) of `pipeline` on `backend`, created at `created_at` and
    /// due by `deadline_at`, with no settings, inputs, job or results yet.
    pub fn new(
        id: RunId,
        pipeline: impl Into<String>,
        backend: BackendInfo,
        created_at: DateTime<Utc>,
        deadline_at: DateTime<Utc>,
    ) -> Run {
        Run {
            id,
            tenant: LOCAL_TENANT.into(),
            pipeline: pipeline.into(),
            status: Status::Created,
            version: 1,
            settings: Map::new(),
            inputs: BTreeMap::new(),
            progress: Progress::default(),
            backend,
            job: None,
            error: None,
            artifacts: vec![],
            outputs: Map::new(),
            logs: vec![],
            created_at,
            queued_at: None,
            started_at: None,
            finished_at: None,
            deadline_at,
            cancel_requested_at: None,
            deleted_at: None,
            deleted_by: None,
            metadata: Map::new(),
            start: StartMode::Auto,
            retry_of: None,
            webhook: None,
            batch: None,
            cache: true,
            cache_key: None,
            cache_hit: false,
            cached_from: None,
            event_seq: 0,
            new_events: PendingEvents::default(),
            new_logs: vec![],
            new_text: None,
            parent: None,
            children: vec![],
        }
        .recorded(EventType::Created, created_at)
    }

    fn recorded(mut self, kind: EventType, at: DateTime<Utc>) -> Run {
        self.record(kind, at);
        self
    }

    /// Records an event of this change (numbered after the run's last); the store writes it
    /// with the change.
    pub fn record(&mut self, kind: EventType, at: DateTime<Utc>) {
        self.event_seq += 1;
        self.new_events.0.push(RunEvent {
            run_id: self.id.clone(),
            seq: self.event_seq,
            kind,
            at,
            status: self.status,
            progress: self.progress.clone(),
            error: self.error.clone(),
            attempt: self.backend.attempt,
            logs: std::mem::take(&mut self.new_logs),
            outputs: self.outputs.clone(),
            text: self.new_text.take(),
        });
    }

    /// The events this change recorded, as the store writes them: the last one carries the
    /// run's final progress, error and attempt (a move records its event before its reason is
    /// set).
    pub fn events_to_write(&self) -> Vec<RunEvent> {
        let mut events = self.new_events.0.clone();
        if let Some(last) = events.last_mut() {
            last.status = self.status;
            last.progress = self.progress.clone();
            last.error = self.error.clone();
            last.attempt = self.backend.attempt;
        }
        events
    }

    /// Forgets the recorded events once the store wrote them.
    pub fn clear_new_events(&mut self) {
        self.new_events.0.clear();
    }

    /// Appends the backend's log lines, keeping the newest within the bounds.
    pub fn append_logs(&mut self, lines: impl IntoIterator<Item = String>) {
        for mut line in lines {
            if line.len() > MAX_LOG_BYTES / 10 {
                let mut end = MAX_LOG_BYTES / 10;
                while !line.is_char_boundary(end) {
                    end -= 1;
                }
                line.truncate(end);
                line.push('…');
            }
            self.new_logs.push(line.clone());
            self.logs.push(line);
        }
        let mut total: usize = self.logs.iter().map(String::len).sum();
        let mut drop = self.logs.len().saturating_sub(MAX_LOG_LINES);
        for line in &self.logs[..drop] {
            total -= line.len();
        }
        while total > MAX_LOG_BYTES && drop < self.logs.len() {
            total -= self.logs[drop].len();
            drop += 1;
        }
        self.logs.drain(..drop);
    }

    /// Replaces the reported progress; a change that records no other event records a
    /// `run.progress` one.
    pub fn set_progress(&mut self, progress: Progress, at: DateTime<Utc>) {
        self.progress = progress;
        if self.new_events.0.is_empty() {
            self.record(EventType::Progress, at);
        }
    }

    /// Records a `run.progress` event carrying text a model server streamed.
    pub fn stream_text(&mut self, text: TextDelta, progress: Progress, at: DateTime<Utc>) {
        self.progress = progress;
        self.new_text = Some(text);
        self.record(EventType::Progress, at);
    }

    /// Moves the run to `to` at `now`, filling the timestamps the move implies.
    pub fn transition(&mut self, to: Status, now: DateTime<Utc>) -> Result<(), Error> {
        if !self.status.can_move_to(to) {
            return Err(Error::InvalidTransition {
                from: self.status,
                to,
            });
        }
        let first_start = to == Status::Submitting && self.started_at.is_none();
        match to {
            Status::Queued => self.queued_at = Some(now),
            Status::Submitting if self.started_at.is_none() => self.started_at = Some(now),
            _ => {}
        }
        if to.is_terminal() {
            self.finished_at = Some(now);
            self.end_attempt(to.as_str(), None, now);
        }
        self.status = to;
        self.version += 1;
        self.record(EventType::of_move(to, first_start), now);
        Ok(())
    }

    /// Ends the run as `failed` with a reason.
    pub fn fail(
        &mut self,
        code: ErrorCode,
        message: impl Into<String>,
        retryable: bool,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        self.transition(Status::Failed, now)?;
        let message = message.into();
        if let Some(last) = self.backend.attempts.last_mut()
            && last.ended_at == Some(now)
        {
            last.outcome = Some(code.as_str().into());
            last.message = Some(message.clone());
        }
        self.error = Some(RunError {
            code,
            message,
            retryable,
        });
        Ok(())
    }

    /// The pipeline whose backend runs the job: the run's own unless a failover moved it.
    pub fn backend_pipeline(&self) -> &str {
        self.backend.pipeline.as_deref().unwrap_or(&self.pipeline)
    }

    /// Starts a new attempt on the run's current backend (ending any still open).
    pub fn begin_attempt(&mut self, now: DateTime<Utc>) {
        self.end_attempt("replaced", None, now);
        self.backend.attempt += 1;
        self.backend.attempts.push(Attempt {
            attempt: self.backend.attempt,
            kind: self.backend.kind,
            target: self.backend.target.clone(),
            pipeline: self.backend_pipeline().to_string(),
            started_at: now,
            ended_at: None,
            outcome: None,
            message: None,
        });
    }

    /// Ends the open attempt, if any, with `outcome` (and why).
    pub fn end_attempt(&mut self, outcome: &str, message: Option<String>, now: DateTime<Utc>) {
        if let Some(last) = self.backend.attempts.last_mut()
            && last.ended_at.is_none()
        {
            last.ended_at = Some(now);
            last.outcome = Some(outcome.to_string());
            last.message = message;
        }
    }

    /// How many attempts ran on the backend of pipeline `pipeline`.
    pub fn attempts_on(&self, pipeline: &str) -> u32 {
        self.backend
            .attempts
            .iter()
            .filter(|a| a.pipeline == pipeline)
            .count() as u32
    }

    /// Ends the run as `expired` because its deadline passed.
    pub fn expire(&mut self, now: DateTime<Utc>) -> Result<(), Error> {
        self.transition(Status::Expired, now)?;
        self.error = Some(RunError {
            code: ErrorCode::DeadlineExceeded,
            message: format!(
                "the run did not finish before its deadline {}",
                self.deadline_at.to_rfc3339()
            ),
            retryable: true,
        });
        Ok(())
    }

    /// Records a change that is not a status move (progress, a landed input, the job handle).
    pub fn touch(&mut self) {
        self.version += 1;
    }

    /// The bytes the run holds in the blob store, or has reserved there: its inputs not deleted
    /// (at their declared size, landed or not) and its artifacts. What a tenant's storage cap
    /// counts.
    pub fn stored_bytes(&self) -> u64 {
        let inputs: u64 = self
            .inputs
            .values()
            .flatten()
            .filter(|f| f.state != InputState::Deleted)
            .map(|f| f.size)
            .sum();
        inputs + self.artifacts.iter().map(|a| a.size).sum::<u64>()
    }

    /// Whether every declared input is in the blob store.
    pub fn all_inputs_landed(&self) -> bool {
        self.inputs
            .values()
            .flatten()
            .all(|f| f.state == InputState::Landed)
    }

    /// Whether the deadline has passed at `now`.
    pub fn past_deadline(&self, now: DateTime<Utc>) -> bool {
        now >= self.deadline_at
    }

    /// The run's own webhook, if it has one (stored as `{url, events}` when created).
    pub fn webhook_target(&self) -> Option<crate::webhook::WebhookTarget> {
        self.webhook
            .as_ref()
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// The job record (an empty one when the run has none yet).
    pub fn job(&self) -> JobState {
        self.job.clone().unwrap_or_default()
    }

    /// The backend's job handle, once the job was submitted.
    pub fn job_handle(&self) -> Option<&Value> {
        self.job.as_ref().and_then(|j| j.handle.as_ref())
    }

    /// When the run counts as stalled if nothing moved it since: a live run past `created` is
    /// stalled once its worker's lease lapsed, or, without a lease, once it was queued (a message
    /// lost between a write and its send). `None` for created and terminal runs, which no step
    /// is due to move. Stores index this so the sweeper asks only for stalled runs.
    pub fn stall_from(&self) -> Option<DateTime<Utc>> {
        if self.status.is_terminal() || self.status == Status::Created {
            return None;
        }
        let job = self.job.as_ref();
        Some(match job.and_then(|j| j.lease.as_ref()) {
            Some(lease) => lease.until,
            // A run waiting for its backend is due when the wait ends, not stalled before.
            None => job
                .and_then(|j| j.not_before)
                .into_iter()
                .chain(job.and_then(|j| j.watched_until))
                .chain(Some(self.queued_at.unwrap_or(self.created_at)))
                .max()
                .unwrap_or(self.created_at),
        })
    }

    /// Blob key of input `index` of `slot`.
    pub fn input_key(id: &RunId, slot: &str, index: usize) -> String {
        format!("runs/{id}/inputs/{slot}/{index}")
    }

    /// Blob key of an artifact.
    pub fn artifact_key(id: &RunId, name: &str, filename: &str) -> String {
        format!("runs/{id}/artifacts/{name}/{filename}")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(now: DateTime<Utc>) -> Run {
        Run::new(
            RunId::new(1, 1),
            "vggt",
            BackendInfo::new(BackendKind::Space, "facebook/vggt"),
            now,
            now + chrono::Duration::seconds(60),
        )
    }

    #[test]
    fn logs_keep_the_newest_lines_within_both_bounds() {
        let mut run = sample(Utc::now());
        run.append_logs((0..MAX_LOG_LINES + 5).map(|i| format!("line {i}")));
        assert_eq!(run.logs.len(), MAX_LOG_LINES);
        assert_eq!(run.logs[0], "line 5");
        assert_eq!(
            run.logs.last().unwrap(),
            &format!("line {}", MAX_LOG_LINES + 4)
        );
        run.append_logs(["x".repeat(MAX_LOG_BYTES)]);
        let last = run.logs.last().unwrap();
        assert!(last.len() <= MAX_LOG_BYTES / 10 + 4 && last.ends_with('…'));
        run.append_logs((0..20).map(|_| "y".repeat(MAX_LOG_BYTES / 10)));
        assert!(run.logs.iter().map(String::len).sum::<usize>() <= MAX_LOG_BYTES);
        assert!(run.logs.last().unwrap().starts_with('y'));
    }

    #[test]
    fn transitions_bump_version_and_stamp_times() {
        let now = Utc::now();
        let mut run = sample(now);
        run.transition(Status::Queued, now).unwrap();
        assert_eq!(run.version, 2);
        assert_eq!(run.queued_at, Some(now));
        run.transition(Status::Submitting, now).unwrap();
        assert_eq!(run.started_at, Some(now));
        let err = run.transition(Status::Succeeded, now).unwrap_err();
        assert!(matches!(err, Error::InvalidTransition { .. }));
        assert_eq!(run.version, 3, "a refused move changes nothing");
    }

    #[test]
    fn fail_records_reason_and_finish_time() {
        let now = Utc::now();
        let mut run = sample(now);
        run.fail(ErrorCode::SpaceError, "boom", false, now).unwrap();
        assert_eq!(run.status, Status::Failed);
        assert_eq!(run.finished_at, Some(now));
        assert_eq!(run.error.as_ref().unwrap().code, ErrorCode::SpaceError);
        assert!(
            run.fail(ErrorCode::SpaceError, "again", false, now)
                .is_err()
        );
    }

    #[test]
    fn expire_sets_deadline_exceeded() {
        let now = Utc::now();
        let mut run = sample(now);
        run.expire(now).unwrap();
        assert_eq!(run.error.unwrap().code, ErrorCode::DeadlineExceeded);
    }
}
