//! The webhook ports: where deliveries are kept (every attempt, the dead-letter list, the
//! dispatcher's cursors), and the sender that makes one signed attempt.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Error;
use crate::ids::RunId;
use crate::webhook::WebhookDelivery;

/// Durable storage of webhook deliveries. A delivery's id is its message id, derived from the
/// endpoint, run and event, so creating it again (a re-dispatch after a crash) is a no-op.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Stores a new delivery; `false` (and nothing written) when one with its id exists.
    async fn create_delivery(&self, d: &WebhookDelivery) -> Result<bool, Error>;

    /// Reads a delivery.
    async fn delivery(&self, id: &str) -> Result<Option<WebhookDelivery>, Error>;

    /// Writes `d` only if the stored version is still `expected_version`
    /// (`Error::VersionConflict` otherwise).
    async fn update_delivery(
        &self,
        d: &WebhookDelivery,
        expected_version: u64,
    ) -> Result<(), Error>;

    /// A run's deliveries, oldest first.
    async fn deliveries_of_run(&self, run: &RunId) -> Result<Vec<WebhookDelivery>, Error>;

    /// Pending deliveries due at or before `before`, oldest first (the sweeper re-sends their
    /// messages when a crash lost them).
    async fn due_deliveries(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, Error>;

    /// Dead deliveries (every attempt failed), newest first, after `after` (a delivery id).
    async fn dead_deliveries(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, Error>;

    /// A named cursor of the dispatcher (where it is in the event feed, a run's last
    /// dispatched event, an endpoint disabled by a 410).
    async fn cursor(&self, name: &str) -> Result<Option<String>, Error>;

    /// Sets a named cursor.
    async fn set_cursor(&self, name: &str, value: &str) -> Result<(), Error>;
}

/// What one attempt to deliver a message came to.
#[derive(Debug, Clone, PartialEq)]
pub struct SendOutcome {
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// Its `Retry-After`, when it gave one.
    pub retry_after: Option<Duration>,
    pub latency: Duration,
    /// What went wrong, when the request did not complete (timeout, refused address, …).
    pub error: Option<String>,
}

/// Sends one webhook message: the body, signed as Standard Webhooks says, to `url`, with a
/// bounded wait, no redirects followed, and the URL's resolved addresses checked first.
#[async_trait]
pub trait WebhookSender: Send + Sync {
    /// One attempt of message `id` (the `webhook-id`) for `endpoint` (whose secrets sign it).
    async fn send(&self, endpoint: &str, url: &str, id: &str, body: &str) -> SendOutcome;

    /// Whether this sender can sign messages for `endpoint` at all. One that cannot (a function
    /// built without the webhook client, or without the secrets, which only notify-webhook
    /// reads) leaves the tries to the queue instead of recording a failed one.
    fn can_send(&self, _endpoint: &str) -> bool {
        true
    }
}
