//! The event-sink port: where run events are published for event-driven integrations (an event
//! bus). On one machine the feed (`GET /v1/events`) is that bus and no sink is wired.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Error;
use crate::event::EventType;

/// Publishes run events. notify-webhook hands each event over as a delivery to the `bus`
/// endpoint, so publishing is claimed, retried and logged like a webhook: at least once, a
/// repeat (after a crash) under the same event id (`evt_…` in the detail).
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Publishes one event: its type, its detail (`webhook::event_detail`) and its time.
    async fn publish(&self, kind: EventType, detail: &str, at: DateTime<Utc>) -> Result<(), Error>;
}
