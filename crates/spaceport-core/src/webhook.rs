//! Webhooks as data: a run's own target (`webhook: {url, events}`), checked when the run is
//! created; the message each event becomes (a thin Run, never signed URLs, under a size limit,
//! with an id that stays the same across retries and re-dispatch); and the delivery record that
//! keeps every attempt, so a client can see what happened and replay what failed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;

use crate::error::Error;
use crate::event::{EventType, RunEvent};
use crate::ids::RunId;
use crate::outbound::OutboundGuard;
use crate::run::Run;

/// The events a run's webhook receives when it names none: the lifecycle, not progress.
pub const DEFAULT_EVENTS: [EventType; 6] = [
    EventType::Queued,
    EventType::Started,
    EventType::Succeeded,
    EventType::Failed,
    EventType::Cancelled,
    EventType::Expired,
];

/// The largest message body sent; a run's metadata is left out of a message that would pass it.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Where a run's own events go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookTarget {
    pub url: String,
    pub events: Vec<EventType>,
}

impl WebhookTarget {
    /// Checks a create request's `webhook` object: an allowed http(s) `url`, and `events` of
    /// known types (default: `DEFAULT_EVENTS`). Errors name `webhook.url` / `webhook.events[i]`.
    pub fn parse(guard: &OutboundGuard, v: &Value) -> Result<WebhookTarget, Error> {
        let obj = v.as_object().ok_or_else(|| {
            Error::validation("webhook", "webhook must be an object {url, events}")
        })?;
        for k in obj.keys() {
            if k != "url" && k != "events" {
                return Err(Error::validation(
                    format!("webhook.{k}"),
                    format!("webhook has no field {k:?} (it takes url and events)"),
                ));
            }
        }
        let url = obj.get("url").and_then(Value::as_str).unwrap_or("");
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(Error::validation(
                "webhook.url",
                "webhook.url must be an http(s) URL",
            ));
        }
        guard.check_url("webhook.url", url)?;
        let events = match obj.get("events") {
            None | Some(Value::Null) => DEFAULT_EVENTS.to_vec(),
            Some(Value::Array(list)) if !list.is_empty() => {
                let mut out = vec![];
                for (i, e) in list.iter().enumerate() {
                    let field = format!("webhook.events[{i}]");
                    let t = e.as_str().and_then(EventType::parse).ok_or_else(|| {
                        let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                        Error::validation(
                            field.clone(),
                            format!(
                                "{field} = {e} is not an event type (known: {})",
                                known.join(", ")
                            ),
                        )
                    })?;
                    if !out.contains(&t) {
                        out.push(t);
                    }
                }
                out
            }
            Some(_) => {
                return Err(Error::validation(
                    "webhook.events",
                    "webhook.events must be a non-empty list of event types",
                ));
            }
        };
        Ok(WebhookTarget {
            url: url.to_string(),
            events,
        })
    }

    /// Whether this target receives events of type `kind`.
    pub fn wants(&self, kind: EventType) -> bool {
        self.events.contains(&kind)
    }
}

/// The webhook message id (`webhook-id`) of event `seq` of `run` sent to `endpoint`: the same
/// whoever builds it and however often, so a retry or a re-dispatch after a crash is recognisable
/// as the same message.
pub fn message_id(endpoint: &str, run: &RunId, seq: u64) -> String {
    let digest = sha2::Sha256::digest(format!("{endpoint}\n{run}\n{seq}").as_bytes());
    format!("msg_{}", &hex::encode(digest)[..26])
}

/// The body of the message for `event` of `run`: `{"type", "timestamp", "data"}`, `data` a thin
/// Run (no signed URLs, no blob keys), without its metadata when the whole would pass
/// `MAX_BODY_BYTES`.
pub fn message_body(run: &Run, event: &RunEvent) -> String {
    let artifacts: Vec<Value> = run
        .artifacts
        .iter()
        .map(|a| {
            json!({"name": a.name, "filename": a.filename, "content_type": a.content_type,
                   "size": a.size, "sha256": a.sha256, "meta": a.meta})
        })
        .collect();
    let mut data = json!({
        "id": run.id,
        "pipeline": run.pipeline,
        "status": event.status,
        "event_seq": event.seq,
        "progress": event.progress,
        "error": event.error,
        "backend": {"kind": run.backend.kind, "target": run.backend.target, "attempt": event.attempt},
        "artifacts": artifacts,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "metadata": run.metadata,
        "retry_of": run.retry_of,
    });
    let body =
        |data: &Value| json!({"type": event.kind, "timestamp": event.at, "data": data}).to_string();
    let text = body(&data);
    if text.len() <= MAX_BODY_BYTES {
        return text;
    }
    data["metadata"] = json!({});
    data["metadata_omitted"] = json!(true);
    body(&data)
}

/// An event as an event bus carries it: the webhook message body with the event's id, by which
/// a consumer tells a republished event from a new one.
pub fn event_detail(run: &Run, event: &RunEvent) -> String {
    let body = message_body(run, event);
    match serde_json::from_str::<Value>(&body) {
        Ok(Value::Object(mut m)) => {
            m.insert("id".into(), Value::from(event.id()));
            Value::Object(m).to_string()
        }
        _ => body,
    }
}

/// Which run events are published to the event bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusEvents {
    /// None.
    Off,
    /// `run.succeeded`, `run.failed`, `run.cancelled`, `run.expired`.
    #[default]
    Terminal,
    /// Every event, progress included.
    All,
}

impl BusEvents {
    /// Whether events of `kind` are published.
    pub fn wants(self, kind: EventType) -> bool {
        match self {
            BusEvents::Off => false,
            BusEvents::Terminal => kind.is_terminal(),
            BusEvents::All => true,
        }
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// A 2xx came back.
    Delivered,
    /// Every attempt of the schedule failed: in the dead-letter list until redelivered.
    Dead,
    /// The receiver answered 410 Gone: nothing more goes to that URL for this delivery.
    Disabled,
}

/// One try to deliver a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    /// The HTTP status, when one came back.
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// What went wrong, when something did (a timeout, a refused connection, a redirect).
    pub error: Option<String>,
}

/// One message to one endpoint, with every attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// `msg_…`: the `webhook-id` header, the same on every attempt.
    pub id: String,
    pub run_id: RunId,
    pub event_seq: u64,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// `run` for the run's own webhook, else the configured endpoint's name.
    pub endpoint: String,
    pub url: String,
    /// The body, fixed when the delivery was made, so every attempt sends the same bytes.
    pub body: String,
    pub state: DeliveryState,
    pub attempts: Vec<Attempt>,
    /// When the next attempt is due (pending deliveries).
    pub next_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Bumped by every change; stores write conditionally on it.
    pub version: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_checked_and_default_to_the_lifecycle() {
        let g = OutboundGuard::default();
        let t = WebhookTarget::parse(&g, &json!({"url": "https://app.example.com/h"})).unwrap();
        assert_eq!(t.events, DEFAULT_EVENTS);
        let t = WebhookTarget::parse(
            &g,
            &json!({"url": "https://app.example.com/h", "events": ["run.succeeded", "run.succeeded", "run.progress"]}),
        )
        .unwrap();
        assert_eq!(t.events, [EventType::Succeeded, EventType::Progress]);
        let field = |v: Value| {
            WebhookTarget::parse(&g, &v)
                .unwrap_err()
                .field()
                .map(str::to_owned)
        };
        assert_eq!(
            field(json!({"url": "ftp://x"})).as_deref(),
            Some("webhook.url")
        );
        assert_eq!(
            field(json!({"url": "http://10.0.0.1/h"})).as_deref(),
            Some("webhook.url")
        );
        assert_eq!(
            field(json!({"url": "https://a.example/h", "events": ["run.exploded"]})).as_deref(),
            Some("webhook.events[0]")
        );
        assert_eq!(
            field(json!({"url": "https://a.example/h", "events": []})).as_deref(),
            Some("webhook.events")
        );
        assert_eq!(
            field(json!({"url": "https://a.example/h", "secret": "x"})).as_deref(),
            Some("webhook.secret")
        );
        assert_eq!(
            field(json!("https://a.example/h")).as_deref(),
            Some("webhook")
        );
    }

    #[test]
    fn the_bus_takes_terminal_events_by_default() {
        let terminal: Vec<EventType> = EventType::ALL
            .into_iter()
            .filter(|t| BusEvents::default().wants(*t))
            .collect();
        assert_eq!(
            terminal,
            [
                EventType::Succeeded,
                EventType::Failed,
                EventType::Cancelled,
                EventType::Expired
            ]
        );
        assert!(EventType::ALL.into_iter().all(|t| BusEvents::All.wants(t)));
        assert!(!EventType::ALL.into_iter().any(|t| BusEvents::Off.wants(t)));
    }

    #[test]
    fn message_ids_are_stable_and_distinct() {
        let run = RunId::new(1, 2);
        assert_eq!(message_id("run", &run, 3), message_id("run", &run, 3));
        assert_ne!(message_id("run", &run, 3), message_id("run", &run, 4));
        assert_ne!(message_id("run", &run, 3), message_id("billing", &run, 3));
        assert!(message_id("run", &run, 3).starts_with("msg_"));
    }
}
