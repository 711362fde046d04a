//! The submit-space Lambda: uploads a run's inputs to its Space and joins the job (or hands a run on another kind of backend to its step).
//! Each SQS batch goes to the step, answered with a partial batch response. Wiring only.

use spaceport_core::ports::QueueName;
use spaceport_stack::{Config, Stack};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    spaceport_aws::init_tracing();
    let cfg = Config::load_with_secrets(None)
        .await?
        .require_queue(QueueName::SubmitSpace)?;
    let stack = Stack::from_config(&cfg).await?;
    let queues = stack.steps.ports.queue.clone();
    spaceport_aws::serve_step(stack.steps.submit_space(), queues).await
}
