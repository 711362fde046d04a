//! What the steps keep about a run's backend job, stored on the run and hidden from the API: the
//! backend's job handle, its outputs once complete, retry counters and the lease of the worker
//! that holds the job. Typed, so a record that does not decode is an error naming the run, never
//! a silent default that would drop a live lease.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A worker's time-limited claim on a run; renewed by heartbeats, taken over once it lapses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// The worker holding it (`wrk_…`).
    pub holder: String,
    /// When it lapses unless renewed.
    pub until: DateTime<Utc>,
}

/// The backend job of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    /// The backend's job handle (for a Space: root, session_hash, event_id …); opaque here, the
    /// backend that wrote it reads it.
    #[serde(default)]
    pub handle: Option<Value>,
    /// The last call's outputs once the job completed.
    #[serde(default)]
    pub outputs: Option<Vec<Value>>,
    /// Which of the pipeline's layouts the job runs (absent: `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    #[serde(default)]
    pub lease: Option<Lease>,
    /// Failed tries to reach the backend in this attempt.
    #[serde(default)]
    pub submit_tries: u32,
    /// The run waits for its backend until then (a backoff, a quota that frees, a Space
    /// waking): no step submits it before, and the sweeper does not count it stalled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
    /// A step keeps looking at the run until then (a run waiting for one of its backend's slots
    /// asks again every second): the sweeper does not count it stalled before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watched_until: Option<DateTime<Utc>>,
    /// When the current wait for the backend (a Space waking, a full queue) began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<DateTime<Utc>>,
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
    /// Whether any worker (`me` included) holds a lease that is still live at `now`.
    pub fn leased(&self, now: DateTime<Utc>) -> bool {
        self.lease.as_ref().is_some_and(|l| l.until > now)
    }

    /// Whether a worker other than `me` holds a live lease at `now`.
    pub fn leased_by_other(&self, me: &str, now: DateTime<Utc>) -> bool {
        self.lease
            .as_ref()
            .is_some_and(|l| l.holder != me && l.until > now)
    }

    /// Whether `me` holds the lease (live or lapsed: nobody took it over).
    pub fn held_by(&self, me: &str) -> bool {
        self.lease.as_ref().is_some_and(|l| l.holder == me)
    }
}
