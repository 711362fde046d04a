//! Config from the environment (fails fast at start), the steps wired to the adapters it names
//! (the AWS ones when `RUNS_TABLE` is set, else the embedded ones of a data dir shared with
//! `spaceport serve`), and the two ways to consume the `reconstruct` queue: SQS batches in a
//! Lambda (CPU, small jobs) and a long-running worker loop (the GPU container).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use spaceport_aws::{AwsConfig, AwsStack};
use spaceport_core::PipelineSet;
use spaceport_core::ports::{QueueName, SystemClock};
use spaceport_gradio::{ClientOptions, GradioBackend};
use spaceport_local::LocalStack;
use spaceport_onnx::{ModelConfig, OnnxRunner, Provider};
use spaceport_steps::runner::{Runner, RunnerConfig};
use spaceport_steps::{Steps, StepsConfig};

/// Where runs, queues and blobs live.
#[derive(Debug)]
pub enum Backend {
    /// `DATA_DIR`: the embedded adapters of a data dir shared with `spaceport serve`.
    Local { data_dir: PathBuf },
    /// `RUNS_TABLE`, `BLOBS_BUCKET`, `RECONSTRUCT_QUEUE_URL` …: DynamoDB, S3 and SQS.
    Aws(AwsConfig),
}

/// The worker's settings: the backend's variables, `PIPELINES_DIR`, `MODEL_DIR` (what relative
/// model paths in pipeline files resolve against; the data dir by default), `MODEL_PROVIDER`
/// (cpu|cuda|tensorrt), `MAX_FRAMES`, `ORT_DYLIB_PATH`, `CONCURRENCY` (runs at once in worker
/// mode; one session serves them in turn).
#[derive(Debug)]
pub struct Config {
    pub backend: Backend,
    pub pipelines_dir: PathBuf,
    pub model_dir: PathBuf,
    pub model: ModelConfig,
    pub concurrency: usize,
}

impl Config {
    /// Reads and checks the environment.
    pub fn from_env() -> Result<Config> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// Reads and checks the settings from `var` (the environment, or a test's map).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let var = |k: &str| var(k).filter(|v| !v.is_empty());
        let aws = AwsConfig::from_vars(var)?;
        let (backend, default_model_dir) = match aws {
            Some(aws) => {
                aws.require_queue(QueueName::Reconstruct)?;
                (Backend::Aws(aws), PathBuf::from("."))
            }
            None => {
                let data_dir = PathBuf::from(var("DATA_DIR").context(
                    "DATA_DIR (the data dir shared with spaceport serve) or RUNS_TABLE (on AWS) is required",
                )?);
                (
                    Backend::Local {
                        data_dir: data_dir.clone(),
                    },
                    data_dir,
                )
            }
        };
        let pipelines_dir = var("PIPELINES_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("pipelines"));
        let model_dir = var("MODEL_DIR")
            .map(PathBuf::from)
            .unwrap_or(default_model_dir);
        let mut model = ModelConfig::new("");
        model.provider = match var("MODEL_PROVIDER").as_deref() {
            None | Some("cpu") => Provider::Cpu,
            Some("cuda") => Provider::Cuda,
            Some("tensorrt") => Provider::TensorRt,
            Some(other) => bail!("MODEL_PROVIDER={other:?} is not cpu, cuda or tensorrt"),
        };
        model.ort_dylib_path = var("ORT_DYLIB_PATH").map(PathBuf::from);
        if let Some(n) = var("MAX_FRAMES") {
            model.max_frames = n
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| format!("MAX_FRAMES={n:?}"))?;
        }
        let concurrency = match var("CONCURRENCY") {
            Some(n) => n
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| format!("CONCURRENCY={n:?}"))?,
            None => 1,
        };
        Ok(Config {
            backend,
            pipelines_dir,
            model_dir,
            model,
            concurrency,
        })
    }
}

/// The steps on the configured adapters, with the ONNX model runner (`sdk` is needed for the AWS
/// backend). `long_poll` is how long a worker's SQS receive waits for a message (zero in a Lambda, which is handed its messages).
pub async fn steps(
    cfg: &Config,
    sdk: Option<&aws_config::SdkConfig>,
    long_poll: Duration,
) -> Result<Steps> {
    let pipelines = PipelineSet::load_dir(&cfg.pipelines_dir)
        .with_context(|| format!("loading pipelines from {}", cfg.pipelines_dir.display()))?;
    let runner = Arc::new(OnnxRunner::new(cfg.model.clone(), cfg.model_dir.clone()));
    let (store, queue, blobs): (
        Arc<dyn spaceport_core::ports::RunStore>,
        Arc<dyn spaceport_core::ports::Queue>,
        Arc<dyn spaceport_core::ports::BlobStore>,
    ) = match &cfg.backend {
        Backend::Local { data_dir } => {
            let data = data_dir.clone();
            // Download URLs are handed out by the API server, not by this worker.
            let local =
                tokio::task::spawn_blocking(move || LocalStack::open(&data, "http://127.0.0.1"))
                    .await??;
            (
                local.store.clone(),
                local.queue.clone(),
                local.blobs.clone(),
            )
        }
        Backend::Aws(aws) => {
            let sdk = sdk.context("the AWS backend needs an SDK config")?;
            let stack = AwsStack::new(sdk, aws);
            let queue = Arc::new(stack.queue.as_ref().clone().with_wait(long_poll));
            (stack.store, queue, stack.blobs)
        }
    };
    Ok(Steps::new(
        Arc::new(pipelines),
        store,
        queue,
        blobs,
        Arc::new(GradioBackend::new(ClientOptions::default())),
        Arc::new(SystemClock),
        StepsConfig::default(),
    )
    .with_model_runner(runner))
}

/// Lambda mode: one SQS batch of the reconstruct queue, answered with the failed message ids.
pub async fn handle_batch(steps: &Steps, event: SqsEvent) -> SqsBatchResponse {
    spaceport_aws::handle_sqs_batch(steps, QueueName::Reconstruct, event).await
}

/// Worker mode: serves the reconstruct queue until SIGINT/SIGTERM.
pub async fn serve(steps: Steps, concurrency: usize) -> Result<()> {
    let runner = Runner::start(
        steps,
        &[QueueName::Reconstruct],
        RunnerConfig {
            concurrency,
            ..RunnerConfig::default()
        },
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
