//! Config from the environment (fails fast at start), the steps wired to the embedded adapters
//! of a data dir shared with `spaceport serve`, and the worker loop on the `reconstruct` queue.
//! The SQS/Lambda mode comes with the AWS adapters.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use spaceport_core::PipelineSet;
use spaceport_core::ports::{QueueName, SystemClock};
use spaceport_gradio::{ClientOptions, GradioBackend};
use spaceport_local::LocalStack;
use spaceport_onnx::{ModelConfig, OnnxRunner, Provider};
use spaceport_steps::runner::{Runner, RunnerConfig};
use spaceport_steps::{Steps, StepsConfig};

/// The worker's settings: `DATA_DIR`, `PIPELINES_DIR`, `MODEL_PROVIDER` (cpu|cuda|tensorrt),
/// `MAX_FRAMES`, `ORT_DYLIB_PATH`, `CONCURRENCY` (runs at once; one session serves them in turn).
#[derive(Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub pipelines_dir: PathBuf,
    pub model: ModelConfig,
    pub concurrency: usize,
}

impl Config {
    /// Reads and checks the environment.
    pub fn from_env() -> Result<Config> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let data_dir = PathBuf::from(
            var("DATA_DIR")
                .context("DATA_DIR is required (the data dir shared with spaceport serve)")?,
        );
        let pipelines_dir = var("PIPELINES_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("pipelines"));
        let mut model = ModelConfig::new("");
        model.provider = match var("MODEL_PROVIDER").as_deref() {
            None | Some("cpu") => Provider::Cpu,
            Some("cuda") => Provider::Cuda,
            Some("tensorrt") => Provider::TensorRt,
            Some(other) => bail!("MODEL_PROVIDER={other:?} is not cpu, cuda or tensorrt"),
        };
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
            data_dir,
            pipelines_dir,
            model,
            concurrency,
        })
    }
}

/// The steps on the data dir's embedded adapters, with the ONNX model runner.
pub async fn steps(cfg: &Config) -> Result<Steps> {
    let pipelines = PipelineSet::load_dir(&cfg.pipelines_dir)
        .with_context(|| format!("loading pipelines from {}", cfg.pipelines_dir.display()))?;
    let data = cfg.data_dir.clone();
    // Download URLs are handed out by the API server, not by this worker.
    let local =
        tokio::task::spawn_blocking(move || LocalStack::open(&data, "http://127.0.0.1")).await??;
    let runner = Arc::new(OnnxRunner::new(cfg.model.clone(), cfg.data_dir.clone()));
    Ok(Steps::new(
        Arc::new(pipelines),
        local.store.clone(),
        local.queue.clone(),
        local.blobs.clone(),
        Arc::new(GradioBackend::new(ClientOptions::default())),
        Arc::new(SystemClock),
        StepsConfig::default(),
    )
    .with_model_runner(runner))
}

/// Serves the reconstruct queue until SIGINT/SIGTERM.
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
