//! The reconstruct worker's two lives over one stack (built by `spaceport-stack` from the
//! configuration: the AWS adapters, or the embedded ones of a data dir shared with `spaceport
//! serve`): SQS batches in a Lambda (CPU, small jobs), and a long-running worker loop (the GPU
//! container) that keeps one ONNX Runtime session for its whole life.

use std::time::Duration;

use spaceport_stack::{Config, OpenOptions, Stack};
use spaceport_steps::StepsConfig;
use spaceport_steps::runner::{Runner, RunnerConfig};

/// How long a worker's SQS receive waits for a message (SQS's longest long poll is 20 s).
pub const WORKER_LONG_POLL: Duration = Duration::from_secs(10);

/// How to open the stack: a worker long-polls SQS; Lambda hands a function its messages.
pub fn open_options(cfg: &Config, in_lambda: bool) -> OpenOptions {
    OpenOptions {
        steps: cfg.steps_config(StepsConfig::default()),
        receive_wait: if in_lambda {
            Duration::ZERO
        } else {
            WORKER_LONG_POLL
        },
        ..OpenOptions::default()
    }
}

/// Lambda mode: each SQS batch of the reconstruct queue, answered with the failed message ids.
pub async fn serve_lambda(stack: Stack) -> Result<(), lambda_runtime::Error> {
    let queues = stack.steps.ports.queue.clone();
    spaceport_aws::serve_step(stack.steps.reconstruct(), queues).await
}

/// The worker's runner settings: one run at a time unless `concurrency` says otherwise (one
/// session serves them in turn).
pub fn runner_config(cfg: &Config) -> RunnerConfig {
    cfg.runner_config(RunnerConfig {
        concurrency: 1,
        ..RunnerConfig::default()
    })
}

/// Worker mode: serves the reconstruct queue until SIGINT/SIGTERM.
pub async fn serve_worker(stack: Stack, runner: RunnerConfig) -> std::io::Result<()> {
    let runner = Runner::start(
        stack.steps,
        &[spaceport_core::ports::QueueName::Reconstruct],
        runner,
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping");
    runner.shutdown().await;
    Ok(())
}
