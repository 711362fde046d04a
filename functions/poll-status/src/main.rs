//! The poll-status Lambda: holds a Space job's event stream to its end, storing queue rank, ETA and progress.
//! Each SQS batch goes to the step, answered with a partial batch response. Wiring only.

use spaceport_core::ports::QueueName;
use spaceport_stack::{Config, Stack};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    spaceport_aws::init_tracing();
    let cfg = Config::load_with_secrets(None)
        .await?
        .require_queue(QueueName::PollStatus)?;
    let stack = Stack::from_config(&cfg).await?;
    let queues = stack.steps.ports.queue.clone();
    spaceport_aws::serve_step(stack.steps.poll_status(), queues).await
}
