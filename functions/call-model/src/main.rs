//! The call-model Lambda: asks an `http_model` pipeline's model server its requests, batch by
//! batch, and stores the answers. A run longer than one invocation's window goes on in the next
//! (its answers so far are kept on the run). Each SQS batch goes to the step, answered with a
//! partial batch response. Wiring only.

use spaceport_core::ports::QueueName;
use spaceport_stack::{Config, Stack};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    spaceport_aws::init_tracing();
    let cfg = Config::load_with_secrets(None)
        .await?
        .require_queue(QueueName::CallModel)?;
    let stack = Stack::from_config(&cfg).await?;
    let queues = stack.steps.ports.queue.clone();
    spaceport_aws::serve_step(stack.steps.call_model(), queues).await
}
