//! The step queue port (SQS semantics: delays, visibility timeouts, receive counts, dead
//! letters) and the message a step sends another.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::RunId;

/// The step queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueName {
    SubmitSpace,
    PollStatus,
    FetchArtifact,
    NotifyWebhook,
    Reconstruct,
    CallModel,
}

impl QueueName {
    /// Every queue.
    pub const ALL: [QueueName; 6] = [
        QueueName::SubmitSpace,
        QueueName::PollStatus,
        QueueName::FetchArtifact,
        QueueName::NotifyWebhook,
        QueueName::Reconstruct,
        QueueName::CallModel,
    ];

    /// The queue's name, which is also its step's function name.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::SubmitSpace => "submit-space",
            QueueName::PollStatus => "poll-status",
            QueueName::FetchArtifact => "fetch-artifact",
            QueueName::NotifyWebhook => "notify-webhook",
            QueueName::Reconstruct => "reconstruct",
            QueueName::CallModel => "call-model",
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
    /// For notify-webhook: the delivery to attempt (without it, dispatch the run's new events);
    /// `version` is then the due time (Unix ms) it was sent for, so a message made stale by a
    /// later schedule (a claim, a retry, a redelivery) is dropped and each delivery has one
    /// live message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
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

    /// Whether a message for `run` waits in `queue`, not yet received: the run is merely in a
    /// backlog, and the sweeper does not send it another. `None` when the queue cannot tell
    /// (SQS cannot look inside a queue): the sweeper then re-sends as for a lost message.
    async fn waiting(&self, _queue: QueueName, _run: &RunId) -> Result<Option<bool>, Error> {
        Ok(None)
    }
}
