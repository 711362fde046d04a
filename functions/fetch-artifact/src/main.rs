//! The fetch-artifact Lambda: streams a finished job's files into S3 and marks the run succeeded.
//! Each SQS batch goes to the step, answered with a partial batch response. Wiring only.

use spaceport_core::ports::QueueName;
use spaceport_stack::{Config, Stack};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    spaceport_aws::init_tracing();
    let cfg = Config::load_with_secrets(None)
        .await?
        .require_queue(QueueName::FetchArtifact)?;
    let stack = Stack::from_config(&cfg).await?;
    let queues = stack.steps.ports.queue.clone();
    spaceport_aws::serve_step(stack.steps.fetch_artifact(), queues).await
}
