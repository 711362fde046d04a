//! The reconstruct worker: a Lambda consuming SQS batches when the Lambda runtime starts it
//! (`AWS_LAMBDA_RUNTIME_API` is set), else a long-running worker (the GPU container) holding one
//! ONNX Runtime session for its whole life. Wiring only.

use reconstruct::handler;
use spaceport_core::ports::QueueName;
use spaceport_stack::{Config, Stack};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    spaceport_aws::init_tracing();
    let cfg = Config::load_with_secrets(None)
        .await?
        .require_queue(QueueName::Reconstruct)?;
    let in_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let stack = Stack::open(&cfg, handler::open_options(&cfg, in_lambda)).await?;
    if in_lambda {
        return handler::serve_lambda(stack).await;
    }
    tracing::info!(storage = ?cfg.storage, provider = ?cfg.model_provider, max_frames = ?cfg.max_frames, "reconstruct worker serving");
    handler::serve_worker(stack, handler::runner_config(&cfg)).await?;
    Ok(())
}
