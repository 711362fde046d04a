//! The fetch-artifact Lambda: streams a finished job's files into S3 and marks the run succeeded. Wiring only.

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use spaceport_aws::FunctionConfig;
use spaceport_core::ports::QueueName;
use spaceport_gradio::{ClientOptions, GradioBackend, Token};

mod handler;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    spaceport_aws::init_tracing();
    let cfg = FunctionConfig::from_env(QueueName::FetchArtifact)?;
    let sdk = spaceport_aws::load_sdk_config().await;
    let options = ClientOptions {
        token: cfg.hf_token.clone().map(Token::new),
        ..ClientOptions::default()
    };
    let steps = cfg.steps(&sdk, Arc::new(GradioBackend::new(options)));
    let steps = &steps;
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<_>| {
        handler::handle(steps, ev)
    }))
    .await
}
