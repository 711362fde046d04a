//! The accept-upload Lambda: the HTTP API behind API Gateway, the S3 object-created events
//! (delivered through SQS) that mark inputs as landed, and the sweeper's schedule. Wiring only.

use accept_upload::handler::{self, AcceptUpload};
use lambda_runtime::{LambdaEvent, service_fn};
use spaceport_core::ports::QueueName;
use spaceport_stack::{Config, Stack};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    spaceport_aws::init_tracing();
    // A run whose inputs landed goes to submit-space; cancelling also stops the job at its Space.
    // Behind the gateway every caller is on the network: no keys, no API.
    let cfg = Config::load_with_secrets(None)
        .await?
        .require_queue(QueueName::SubmitSpace)?
        .require_api_keys()?;
    let stack = Stack::from_config(&cfg).await?;
    let function = &AcceptUpload {
        api: stack.steps.accept(),
        sweeper: stack.steps.sweeper(),
        router: stack.app(None)?,
    };
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<serde_json::Value>| {
        handler::handle(function, ev.payload)
    }))
    .await
}
