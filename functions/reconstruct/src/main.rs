//! The reconstruct worker: a Lambda consuming SQS batches when the Lambda runtime starts it
//! (`AWS_LAMBDA_RUNTIME_API` is set), else a long-running worker (the GPU container) holding one
//! ONNX Runtime session for its whole life. Wiring only.

use std::time::Duration;

use lambda_runtime::{LambdaEvent, service_fn};
use reconstruct::handler;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    spaceport_aws::init_tracing();
    let cfg = handler::Config::from_env()?;
    let sdk = match cfg.backend {
        handler::Backend::Aws(_) => Some(spaceport_aws::load_sdk_config().await),
        handler::Backend::Local { .. } => None,
    };
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        let steps = handler::steps(&cfg, sdk.as_ref(), Duration::ZERO).await?;
        let steps = &steps;
        return lambda_runtime::run(service_fn(move |ev: LambdaEvent<_>| async move {
            Ok::<_, std::convert::Infallible>(handler::handle_batch(steps, ev.payload).await)
        }))
        .await;
    }
    let steps = handler::steps(&cfg, sdk.as_ref(), Duration::from_secs(10)).await?;
    tracing::info!(backend = ?cfg.backend, provider = ?cfg.model.provider, max_frames = cfg.model.max_frames, "reconstruct worker serving");
    handler::serve(steps, cfg.concurrency).await?;
    Ok(())
}
