//! The submit-space Lambda: uploads a run's inputs to its Space and joins the job (or hands an ONNX run to reconstruct). Each SQS batch goes to the step through
//! `spaceport_aws::handle_sqs_batch` (a partial batch response). Wiring only.

use std::sync::Arc;

use spaceport_core::ports::QueueName;
use spaceport_gradio::{ClientOptions, GradioBackend};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    spaceport_aws::function::serve_queue(QueueName::SubmitSpace, |cfg| {
        Arc::new(GradioBackend::new(ClientOptions::with_token(
            cfg.hf_token.clone(),
        )))
    })
    .await
}
