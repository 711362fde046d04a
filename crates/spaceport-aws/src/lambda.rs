//! Lambda glue shared by the functions: JSON logs for CloudWatch, one SQS batch handled
//! concurrently with a partial batch response (`ReportBatchItemFailures`), so one bad message
//! never makes Lambda redeliver its neighbours, and the whole life of a queue-consuming function.

use std::future::Future;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::StreamExt;
use lambda_runtime::{LambdaEvent, service_fn};
use spaceport_core::ports::Queue;
use spaceport_steps::{Step, handle_message, settle};

/// JSON logs at `RUST_LOG` (default `info`), without timestamps: CloudWatch stamps each line.
/// `RUST_LOG` is read as a list of `target=level` and bare levels (`Targets`), not EnvFilter's
/// fuller syntax: EnvFilter's span and field matching links a regex engine into every function.
pub fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing_subscriber::filter::Targets>().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO)
        });
    let fmt = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(false)
        .without_time()
        .with_target(false);
    tracing_subscriber::registry()
        .with(fmt)
        .with(targets)
        .init();
}

/// How many messages of a batch are handled at once.
pub const BATCH_CONCURRENCY: usize = 10;

/// Handles a batch's messages with `handle`, `BATCH_CONCURRENCY` at a time; `handle` returns
/// whether a message must come back. The answer lists only those (a partial batch response).
pub async fn batch_response<F, Fut>(records: Vec<SqsMessage>, handle: F) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = bool>,
{
    let failed: Vec<String> = futures::stream::iter(records)
        .map(|m| {
            let id = m.message_id.clone().unwrap_or_default();
            let done = handle(m);
            async move { (!done.await).then_some(id) }
        })
        .buffer_unordered(BATCH_CONCURRENCY)
        .filter_map(|failed| async move { failed })
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    for id in failed {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    response
}

/// Handles every message of an SQS batch with `step`, concurrently. A message the step handled
/// is left to Lambda to delete; one to try later (`RetryAfter`, or a failure with exponential
/// backoff) gets that visibility timeout on `queues` and is reported as a batch item failure, so
/// SQS hands it out again then (and dead-letters it after `maxReceiveCount`).
pub async fn handle_sqs_batch(
    step: &dyn Step,
    queues: &dyn Queue,
    event: SqsEvent,
) -> SqsBatchResponse {
    batch_response(event.records, |m| handle_one(step, queues, m)).await
}

/// Handles one message; false when it must come back.
async fn handle_one(step: &dyn Step, queues: &dyn Queue, m: SqsMessage) -> bool {
    let queue = step.queue();
    let id = m.message_id.clone().unwrap_or_default();
    let receive_count: u32 = m
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    let Some(body) = m.body.as_deref() else {
        tracing::warn!(queue = queue.as_str(), message = %id, "a message without a body; dropped");
        return true;
    };
    let result = handle_message(step, body).await;
    if let Err(e) = &result {
        tracing::warn!(queue = queue.as_str(), message = %id, error = %e, "step failed; will retry");
    }
    let Some(delay) = settle(&result, receive_count) else {
        return true;
    };
    if let Some(receipt) = m.receipt_handle.as_deref()
        && let Err(e) = queues.change_visibility(queue, receipt, delay).await
    {
        // The message comes back after the queue's own visibility timeout instead.
        tracing::warn!(queue = queue.as_str(), message = %id, error = %e, "could not set the retry delay");
    }
    false
}

/// A queue-consuming function's life: Lambda's loop answering each SQS batch with `step`.
pub async fn serve_step(
    step: impl Step + 'static,
    queues: Arc<dyn Queue>,
) -> Result<(), lambda_runtime::Error> {
    let (step, queues) = (&step, queues.as_ref());
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<SqsEvent>| async move {
        Ok::<_, std::convert::Infallible>(handle_sqs_batch(step, queues, ev.payload).await)
    }))
    .await
}
