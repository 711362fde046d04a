//! The poll-status Lambda: holds a Space job's event stream to its end, storing queue rank, ETA and progress. Each SQS batch goes to the step through
//! `spaceport_aws::handle_sqs_batch` (a partial batch response). Wiring only.

use std::sync::Arc;

use spaceport_core::ports::QueueName;
use spaceport_gradio::{ClientOptions, GradioBackend};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    spaceport_aws::function::serve_queue(QueueName::PollStatus, |cfg| {
        Arc::new(GradioBackend::new(ClientOptions::with_token(
            cfg.hf_token.clone(),
        )))
    })
    .await
}
