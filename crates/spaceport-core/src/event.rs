//! Run events: every state change and progress update of a run appends one, numbered per run
//! without gaps. A change records its events on the run itself (`Run::record`), and the store
//! writes them in the same transaction as the change, so there is never a change without its
//! event nor an event without its change.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::RunId;
use crate::run::{Progress, RunError};
use crate::status::Status;

/// What happened to a run: an event's `type` (and a webhook's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    /// The run was created (waiting for its inputs, or queued at once).
    #[serde(rename = "run.created")]
    Created,
    /// Every input landed (or `start` was called): the run waits for a worker.
    #[serde(rename = "run.queued")]
    Queued,
    /// A worker took the run for the first time.
    #[serde(rename = "run.started")]
    Started,
    /// The run moved on inside its job (submitted, fetching, a new attempt after the backend
    /// lost the job).
    #[serde(rename = "run.updated")]
    Updated,
    /// The backend reported queue position, ETA, progress or a log line.
    #[serde(rename = "run.progress")]
    Progress,
    #[serde(rename = "run.succeeded")]
    Succeeded,
    #[serde(rename = "run.failed")]
    Failed,
    #[serde(rename = "run.cancelled")]
    Cancelled,
    #[serde(rename = "run.expired")]
    Expired,
}

impl EventType {
    /// Every type.
    pub const ALL: [EventType; 9] = [
        EventType::Created,
        EventType::Queued,
        EventType::Started,
        EventType::Updated,
        EventType::Progress,
        EventType::Succeeded,
        EventType::Failed,
        EventType::Cancelled,
        EventType::Expired,
    ];

    /// The wire spelling (`run.succeeded`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "run.created",
            EventType::Queued => "run.queued",
            EventType::Started => "run.started",
            EventType::Updated => "run.updated",
            EventType::Progress => "run.progress",
            EventType::Succeeded => "run.succeeded",
            EventType::Failed => "run.failed",
            EventType::Cancelled => "run.cancelled",
            EventType::Expired => "run.expired",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The type of moving a run to `status`; `first_start` tells a run's first `submitting` from
    /// a later attempt's.
    pub fn of_move(status: Status, first_start: bool) -> EventType {
        match status {
            Status::Created => EventType::Created,
            Status::Queued => EventType::Queued,
            Status::Submitting if first_start => EventType::Started,
            Status::Submitting | Status::Running | Status::Fetching => EventType::Updated,
            Status::Succeeded => EventType::Succeeded,
            Status::Failed => EventType::Failed,
            Status::Cancelled => EventType::Cancelled,
            Status::Expired => EventType::Expired,
        }
    }

    /// Whether the run ends with this event.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            EventType::Succeeded | EventType::Failed | EventType::Cancelled | EventType::Expired
        )
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event of a run, as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEvent {
    pub run_id: RunId,
    /// 1 for the run's first event; each later one adds one, without gaps.
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub at: DateTime<Utc>,
    /// The run's status once the change was made.
    pub status: Status,
    pub progress: Progress,
    pub error: Option<RunError>,
    /// The backend attempt (1 for the first submission).
    pub attempt: u32,
    /// The backend's log lines this change added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
    /// The run's non-file outputs, once the backend returned them.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub outputs: serde_json::Map<String, serde_json::Value>,
    /// Text a model server streamed since the run's previous event (`http_model` runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextDelta>,
}

/// A piece of a model server's answer, as it streams: which request, batch and try it belongs
/// to, and the text that arrived. In `seq` order, the pieces of one (request, batch, try) make
/// that try's answer; a request tried again (its server failed mid-answer) starts over, so a
/// later try's pieces replace an earlier try's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextDelta {
    /// The pipeline's request (`describe`).
    pub request: String,
    /// 1-based batch number within the request.
    pub batch: u32,
    /// 1-based try of this batch's request.
    #[serde(rename = "try")]
    pub attempt: u32,
    pub text: String,
}

impl RunEvent {
    /// The event's id: `evt_`, the run's ULID and the sequence number (unique, and sorting in
    /// the run's order).
    pub fn id(&self) -> String {
        let ulid = self
            .run_id
            .as_str()
            .strip_prefix("run_")
            .unwrap_or(self.run_id.as_str());
        format!("evt_{ulid}_{:08}", self.seq)
    }
}

/// The events a change recorded, waiting for the store to write them with it. Transient: not part
/// of a run's value (two runs that differ only in what they are about to write are equal).
#[derive(Debug, Clone, Default)]
pub struct PendingEvents(pub Vec<RunEvent>);

impl PartialEq for PendingEvents {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_keep_their_wire_spelling() {
        for t in EventType::ALL {
            let json = serde_json::to_value(t).unwrap();
            assert_eq!(json, t.as_str());
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("run.exploded"), None);
    }

    #[test]
    fn moves_map_to_types() {
        assert_eq!(
            EventType::of_move(Status::Submitting, true),
            EventType::Started
        );
        assert_eq!(
            EventType::of_move(Status::Submitting, false),
            EventType::Updated
        );
        assert_eq!(
            EventType::of_move(Status::Fetching, false),
            EventType::Updated
        );
        for s in Status::ALL.into_iter().filter(|s| s.is_terminal()) {
            assert!(EventType::of_move(s, false).is_terminal(), "{s}");
        }
    }
}
