//! Lambda glue shared by the queue-consuming functions: JSON logs for CloudWatch, and one SQS
//! batch handled concurrently with a partial batch response (`ReportBatchItemFailures`), so one
//! bad message never makes Lambda redeliver its neighbours.

use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::StreamExt;
use spaceport_core::ports::QueueName;
use spaceport_steps::{Outcome, Steps};

/// JSON logs at `RUST_LOG` (default `info`), without timestamps: CloudWatch stamps each line.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_current_span(false)
        .without_time()
        .with_target(false)
        .init();
}

/// How many messages of a batch are handled at once.
pub const BATCH_CONCURRENCY: usize = 10;

/// Handles every message of an SQS batch for `queue`'s step, concurrently. A message the step
/// handled is left to Lambda to delete; one to try later (`RetryAfter`, or a retryable failure
/// with exponential backoff) gets that visibility timeout and is reported as a batch item
/// failure, so SQS hands it out again then (and dead-letters it after `maxReceiveCount`).
pub async fn handle_sqs_batch(
    steps: &Steps,
    queue: QueueName,
    event: SqsEvent,
) -> SqsBatchResponse {
    let failures: Vec<String> = futures::stream::iter(event.records)
        .map(|m| handle_message(steps, queue, m))
        .buffer_unordered(BATCH_CONCURRENCY)
        .filter_map(|failed| async move { failed })
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    for id in failures {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    response
}

/// Handles one message; returns its id when it must come back.
async fn handle_message(steps: &Steps, queue: QueueName, m: SqsMessage) -> Option<String> {
    let id = m.message_id.clone().unwrap_or_default();
    let receive_count: u32 = m
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    let Some(body) = m.body.as_deref() else {
        tracing::warn!(queue = queue.as_str(), message = %id, "a message without a body; dropped");
        return None;
    };
    let delay = match steps.handle(queue, body).await {
        Ok(Outcome::Done) => return None,
        Ok(Outcome::RetryAfter(delay)) => delay,
        Err(e) => {
            let delay = Duration::from_secs(1 << receive_count.min(5));
            tracing::warn!(queue = queue.as_str(), message = %id, error = %e, retry_in_s = delay.as_secs(), "step failed; will retry");
            delay
        }
    };
    if let Some(receipt) = m.receipt_handle.as_deref()
        && let Err(e) = steps.queue.change_visibility(queue, receipt, delay).await
    {
        // The message comes back after the queue's own visibility timeout instead.
        tracing::warn!(queue = queue.as_str(), message = %id, error = %e, "could not set the retry delay");
    }
    Some(id)
}
