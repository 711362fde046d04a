//! The event sink on EventBridge: run events as `PutEvents` entries on the deployment's bus
//! (source `spaceport`, detail-type the event type, detail the event with its thin Run), so
//! rules route them to queues, functions or other accounts. A refused entry is an error, which
//! notify-webhook retries on its schedule like a webhook attempt.

use async_trait::async_trait;
use aws_sdk_eventbridge::primitives::DateTime as SdkTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use chrono::{DateTime, Utc};
use spaceport_core::ports::EventSink;
use spaceport_core::{Error, EventType};

use crate::error::sdk;

/// The `source` of every event Spaceport publishes (what a rule's pattern matches).
pub const SOURCE: &str = "spaceport";

/// Publishes run events to one EventBridge bus.
#[derive(Clone)]
pub struct EventBridgeSink {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBridgeSink {
    /// A sink on the bus named (or with the ARN) `bus`.
    pub fn new(client: aws_sdk_eventbridge::Client, bus: &str) -> EventBridgeSink {
        EventBridgeSink {
            client,
            bus: bus.to_owned(),
        }
    }

    /// Creates the bus (tests and emulators; a deployment's template creates it).
    pub async fn create_bus(&self) -> Result<(), Error> {
        self.client
            .create_event_bus()
            .name(&self.bus)
            .send()
            .await
            .map_err(|e| sdk(format!("creating event bus {}", self.bus), e))?;
        Ok(())
    }
}

#[async_trait]
impl EventSink for EventBridgeSink {
    async fn publish(&self, kind: EventType, detail: &str, at: DateTime<Utc>) -> Result<(), Error> {
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(kind.as_str())
            .detail(detail)
            .time(SdkTime::from_millis(at.timestamp_millis()))
            .build();
        let context = || format!("publishing a {kind} event to {}", self.bus);
        let out = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| sdk(context(), e))?;
        if out.failed_entry_count > 0 {
            let why: Vec<String> = out
                .entries()
                .iter()
                .filter_map(|r| {
                    r.error_code()
                        .map(|c| format!("{c}: {}", r.error_message().unwrap_or_default()))
                })
                .collect();
            return Err(Error::Storage {
                context: context(),
                retryable: true,
                source: format!("the bus refused it: {}", why.join("; ")).into(),
            });
        }
        Ok(())
    }
}
