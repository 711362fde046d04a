//! The embedded stack: the API and the step workers in one process on the embedded defaults
//! (SQLite file + blob directory under a data dir), talking to Spaces with the Gradio client.
//! `spaceport serve` runs it until stopped; `spaceport run` without `--server` runs it in-process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use async_trait::async_trait;
use spaceport_core::Error;
use spaceport_core::ports::{BlobMeta, BlobStore, ByteStream, Clock, QueueName, SystemClock};
use spaceport_gradio::{ClientOptions, GradioBackend};
use spaceport_local::{DirBlobStore, LocalStack};
use spaceport_onnx::{ModelConfig, OnnxRunner, Provider};
use spaceport_server::{AppState, SignedBlobs};
use spaceport_steps::runner::{LOCAL_QUEUES, Runner, RunnerConfig};
use spaceport_steps::{Steps, StepsConfig};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Serves the blob store's signed URLs from the API server (what S3 does for presigned URLs).
struct LocalBlobEndpoint(Arc<DirBlobStore>);

#[async_trait]
impl SignedBlobs for LocalBlobEndpoint {
    async fn accept_upload(
        &self,
        key: &str,
        query: &str,
        content_type: Option<&str>,
        body: ByteStream,
    ) -> Result<BlobMeta, Error> {
        let grant = self
            .0
            .verify_upload(key, query, content_type, SystemClock.now())?;
        self.0.put_exact(&grant, body).await
    }

    async fn serve_download(
        &self,
        key: &str,
        query: &str,
    ) -> Result<(ByteStream, BlobMeta, Option<String>), Error> {
        let grant = self.0.verify_download(key, query, SystemClock.now())?;
        let meta = self.0.head(key).await?.ok_or_else(|| Error::NotFound {
            what: "object",
            id: key.to_string(),
        })?;
        let body = self.0.get(key).await?;
        Ok((body, meta, grant.filename))
    }
}

/// The local model runner's settings: provider and frame limit from the config, the ONNX
/// Runtime library from `ORT_DYLIB_PATH`. The model path itself comes from each pipeline.
fn model_config(cfg: &Config) -> Result<ModelConfig> {
    let mut m = ModelConfig::new("");
    m.provider = match cfg.model_provider.as_deref() {
        None | Some("cpu") => Provider::Cpu,
        Some("cuda") => Provider::Cuda,
        Some("tensorrt") => Provider::TensorRt,
        Some(other) => anyhow::bail!("model_provider {other:?} is not cpu, cuda or tensorrt"),
    };
    if let Some(n) = cfg.max_frames {
        m.max_frames = n;
    }
    m.ort_dylib_path = cfg.ort_dylib_path.clone();
    Ok(m)
}

/// Options of an embedded stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Where to listen (`127.0.0.1:0` picks a free port).
    pub bind: String,
    /// Step tunables.
    pub steps: StepsConfig,
    /// Worker tunables.
    pub runner: RunnerConfig,
    /// The step queues this process works on (empty: API only).
    pub queues: Vec<QueueName>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            bind: "127.0.0.1:8080".into(),
            steps: StepsConfig::default(),
            runner: RunnerConfig::default(),
            queues: LOCAL_QUEUES.to_vec(),
        }
    }
}

/// A running embedded stack.
pub struct EmbeddedStack {
    /// The API's base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    pub addr: SocketAddr,
    /// The wired steps (tests read the store through them).
    pub steps: Steps,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    runner: Option<Runner>,
}

impl EmbeddedStack {
    /// Opens the data dir, binds the API and starts the step workers.
    pub async fn start(cfg: &Config, mut opts: StackOptions) -> Result<EmbeddedStack> {
        if let Some(s) = cfg.lease_s {
            opts.steps.lease = Duration::from_secs(s);
            opts.steps.heartbeat = opts.steps.heartbeat.min(Duration::from_secs(s) / 3);
            opts.runner.stall_after = opts.runner.stall_after.min(Duration::from_secs(s));
        }
        if let Some(s) = cfg.visibility_s {
            opts.runner.visibility = Duration::from_secs(s);
        }
        let pipelines = Arc::new(cfg.pipelines()?);
        let listener = tokio::net::TcpListener::bind(&opts.bind)
            .await
            .with_context(|| format!("binding {}", opts.bind))?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let data_dir = cfg.data_dir();
        let local = {
            let (d, u) = (data_dir.clone(), url.clone());
            tokio::task::spawn_blocking(move || LocalStack::open(&d, &u)).await?
        }
        .with_context(|| format!("opening the data dir {}", data_dir.display()))?;
        let space = Arc::new(GradioBackend::new(ClientOptions::with_token(
            cfg.hf_token.clone(),
        )));
        let model = Arc::new(OnnxRunner::new(model_config(cfg)?, data_dir.clone()));
        let steps = Steps::new(
            pipelines,
            local.store.clone(),
            local.queue.clone(),
            local.blobs.clone(),
            space,
            Arc::new(SystemClock),
            opts.steps.clone(),
        );
        let steps = steps.with_model_runner(model);
        let state = AppState {
            steps: steps.clone(),
            signed_blobs: Some(Arc::new(LocalBlobEndpoint(local.blobs.clone()))),
        };
        let app = spaceport_server::app(state);
        let stop = CancellationToken::new();
        let server = {
            let stop = stop.clone();
            tokio::spawn(async move {
                // Small JSON answers must not wait for Nagle's algorithm.
                let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                let serve = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await });
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, "the API server stopped");
                }
            })
        };
        let runner = (!opts.queues.is_empty())
            .then(|| Runner::start(steps.clone(), &opts.queues, opts.runner.clone()));
        Ok(EmbeddedStack {
            url,
            addr,
            steps,
            stop,
            server,
            runner,
        })
    }

    /// Stops the server and the workers.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(r) = self.runner.take() {
            r.shutdown().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.server).await;
    }
}
