//! What the steps keep about a run's backend job, stored in `Run::job` (hidden from the API):
//! the Space's job handle, its outputs once complete, retry counters and the lease of the worker
//! that currently holds the job.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use spaceport_core::{Error, Run};

/// A worker's time-limited claim on a run; renewed by heartbeats, taken over once it lapses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub holder: String,
    pub until: DateTime<Utc>,
}

/// The backend job of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    /// The backend's job handle (for a Space: root, session_hash, event_id …).
    #[serde(default)]
    pub handle: Option<Value>,
    /// The last call's outputs once the job completed.
    #[serde(default)]
    pub outputs: Option<Vec<Value>>,
    #[serde(default)]
    pub lease: Option<Lease>,
    /// Failed tries to reach the backend in this attempt.
    #[serde(default)]
    pub submit_tries: u32,
    /// Failed artifact downloads.
    #[serde(default)]
    pub fetch_tries: u32,
    /// Whether a poller has opened the job's event stream. Gradio discards the result of a job
    /// whose stream was dropped (and a reopened stream may then carry only heartbeats), so a
    /// stream opened by a worker that is gone means the job is lost.
    #[serde(default)]
    pub stream_opened: bool,
}

impl JobState {
    /// The job state stored on `run` (empty when none).
    pub fn of(run: &Run) -> JobState {
        run.job
            .as_ref()
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }

    /// Stores this job state on `run`.
    pub fn store(&self, run: &mut Run) -> Result<(), Error> {
        run.job = Some(serde_json::to_value(self).map_err(|e| Error::Internal(e.to_string()))?);
        Ok(())
    }

    /// Whether a worker other than `me` holds a live lease at `now`.
    pub fn leased_by_other(&self, me: &str, now: DateTime<Utc>) -> bool {
        self.lease
            .as_ref()
            .is_some_and(|l| l.holder != me && l.until > now)
    }
}
