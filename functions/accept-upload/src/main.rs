//! The accept-upload Lambda: the HTTP API behind API Gateway, and the S3 object-created events
//! (delivered through SQS) that mark inputs as landed. Wiring only.

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use spaceport_aws::FunctionConfig;
use spaceport_core::ports::QueueName;
use spaceport_gradio::{ClientOptions, GradioBackend};
use spaceport_server::{AppState, app};

use accept_upload::handler;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    spaceport_aws::init_tracing();
    let cfg = FunctionConfig::from_env(QueueName::SubmitSpace)?;
    let sdk = spaceport_aws::load_sdk_config().await;
    let options = ClientOptions::with_token(cfg.hf_token.clone());
    // Cancelling a run stops its job at the Space, so the API holds a Space backend too.
    let steps = cfg.steps(&sdk, Arc::new(GradioBackend::new(options)));
    let router = app(AppState {
        steps: steps.clone(),
        signed_blobs: None,
    });
    let (steps, router) = (&steps, &router);
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<serde_json::Value>| {
        handler::handle(steps, router, ev.payload)
    }))
    .await
}
