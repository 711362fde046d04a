//! Three kinds of event reach accept-upload: API Gateway requests (HTTP API or REST, and ALB),
//! served by the same axum router as `spaceport serve`; SQS batches of S3 object-created
//! notifications, each recording a landed input (which queues the run once all are there); and
//! EventBridge's schedule, which runs the sweeper (expires overdue runs, re-sends stalled ones,
//! forgets day-old idempotency keys).

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use lambda_runtime::Diagnostic;
use serde_json::{Map, Value, json};
use spaceport_core::Error;
use spaceport_steps::{Accept, Sweeper};
use tower::ServiceExt;

/// The largest response body the API produces (a page of 100 runs is far below it).
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// An event this function cannot read; Lambda reports it with this `errorType`.
#[derive(Debug)]
pub struct InvalidEvent(pub String);

impl From<InvalidEvent> for Diagnostic {
    fn from(e: InvalidEvent) -> Diagnostic {
        Diagnostic {
            error_type: "InvalidEvent".into(),
            error_message: e.0,
        }
    }
}

/// A run whose worker's lease lapsed this long ago is re-sent by the sweeper.
pub const STALL_AFTER: Duration = Duration::from_secs(60);

/// What the function serves events with: the API's operations, the sweeper and the API's router.
pub struct AcceptUpload {
    pub api: Accept,
    pub sweeper: Sweeper,
    pub router: axum::Router,
}

/// Handles one invocation: an SQS batch of S3 notifications, the sweeper's schedule, or an
/// HTTP request.
pub async fn handle(f: &AcceptUpload, event: Value) -> Result<Value, InvalidEvent> {
    if event["source"] == "aws.events" && event["detail-type"] == "Scheduled Event" {
        return match f.sweeper.sweep(STALL_AFTER).await {
            Ok(touched) => Ok(json!({ "swept": touched })),
            // The next tick tries again; an error here only shows in the function's metrics.
            Err(e) => Err(InvalidEvent(format!("the sweep failed: {e}"))),
        };
    }
    if event.get("Records").is_some() {
        let batch: SqsEvent = serde_json::from_value(event)
            .map_err(|e| InvalidEvent(format!("an SQS batch that does not parse: {e}")))?;
        let response = uploads_landed(&f.api, batch).await;
        return serde_json::to_value(response).map_err(|e| InvalidEvent(e.to_string()));
    }
    http(&f.router, event).await
}

/// Serves an API Gateway / ALB request with the API's router; the answer has the fields of both
/// payload formats (HTTP API 2.0 ignores `multiValueHeaders`, REST reads it).
async fn http(router: &axum::Router, event: Value) -> Result<Value, InvalidEvent> {
    let request: lambda_http::request::LambdaRequest = serde_json::from_value(event)
        .map_err(|e| InvalidEvent(format!("not an API Gateway or ALB request: {e}")))?;
    let request: lambda_http::http::Request<lambda_http::Body> = request.into();
    let (parts, body) = request.into_parts();
    let body = axum::body::Body::from(body.as_ref().to_vec());
    let response = router
        .clone()
        .oneshot(axum::http::Request::from_parts(parts, body))
        .await
        .unwrap_or_else(|never| match never {});
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_RESPONSE_BYTES)
        .await
        .map_err(|e| InvalidEvent(format!("reading the response body: {e}")))?;
    let mut headers = Map::new();
    let mut multi = Map::new();
    for name in parts.headers.keys() {
        let values: Vec<String> = parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        headers.insert(name.as_str().to_owned(), json!(values.join(", ")));
        multi.insert(name.as_str().to_owned(), json!(values));
    }
    let textual = parts
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|t| t.starts_with("application/json") || t.starts_with("text/"));
    let (body, base64) = match (textual, std::str::from_utf8(&bytes)) {
        (true, Ok(text)) => (text.to_owned(), false),
        _ => (STANDARD.encode(&bytes), true),
    };
    Ok(json!({
        "statusCode": parts.status.as_u16(),
        "headers": headers,
        "multiValueHeaders": multi,
        "body": body,
        "isBase64Encoded": base64,
    }))
}

/// Records each created object named in a batch of S3 notifications; a message whose inputs
/// could not be recorded comes back (partial batch response).
pub async fn uploads_landed(api: &Accept, batch: SqsEvent) -> SqsBatchResponse {
    spaceport_aws::batch_response(batch.records, |m| async move {
        match notification(api, &m).await {
            Ok(()) => true,
            Err(e) => {
                let id = m.message_id.as_deref().unwrap_or_default();
                tracing::warn!(message = %id, error = %e, "could not record an upload; will retry");
                false
            }
        }
    })
    .await
}

/// One S3 notification: every `ObjectCreated:*` record's key is recorded as landed. S3's test
/// event and other kinds are ignored; keys that name no run's input are ignored by the step.
async fn notification(api: &Accept, m: &SqsMessage) -> Result<(), Error> {
    let Some(body) = m.body.as_deref() else {
        return Ok(());
    };
    let Ok(note) = serde_json::from_str::<Value>(body) else {
        tracing::warn!("dropping a message that is not an S3 notification");
        return Ok(());
    };
    let records = note["Records"].as_array().cloned().unwrap_or_default();
    for r in records {
        let created = r["eventName"]
            .as_str()
            .is_some_and(|n| n.starts_with("ObjectCreated:"));
        let Some(key) = r["s3"]["object"]["key"].as_str().filter(|_| created) else {
            continue;
        };
        let key = decode_key(key);
        // The object may be gone again (a retried run deleted it): nothing to record then.
        let Some(meta) = api.blobs().head(&key).await? else {
            continue;
        };
        api.input_landed(&key, &meta).await?;
    }
    Ok(())
}

/// S3 notifications carry keys form-encoded (`+` for a space, `%XX` for the rest).
fn decode_key(key: &str) -> String {
    let plus = key.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_keys_are_form_decoded() {
        assert_eq!(
            decode_key("runs/run_1/inputs/images/0"),
            "runs/run_1/inputs/images/0"
        );
        assert_eq!(decode_key("a+b%2Bc%C3%A9"), "a b+cé");
    }
}
