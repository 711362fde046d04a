//! The fetch-artifact Lambda: streams a finished job's files into S3 and marks the run succeeded. Each SQS batch goes to the step through
//! `spaceport_aws::handle_sqs_batch` (a partial batch response). Wiring only.

use std::sync::Arc;

use spaceport_core::ports::QueueName;
use spaceport_gradio::{ClientOptions, GradioBackend};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    spaceport_aws::function::serve_queue(QueueName::FetchArtifact, |cfg| {
        Arc::new(GradioBackend::new(ClientOptions::with_token(
            cfg.hf_token.clone(),
        )))
    })
    .await
}
