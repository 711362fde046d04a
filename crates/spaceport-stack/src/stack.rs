//! `Stack::from_config`: the one factory that turns a `Config` into ports — the embedded adapters
//! (SQLite + a blob directory) or the AWS ones (DynamoDB, SQS, S3), the Gradio client with the
//! HF token, and the ONNX runner where the binary has one — and the steps over them. The CLI,
//! every Lambda and the reconstruct worker build themselves through it and nothing else.

use std::sync::Arc;
use std::time::Duration;

use spaceport_core::PipelineSet;
use spaceport_core::ports::{
    BlobStore, ChatServer, DeliveryStore, EventSink, InputFetcher, ModelRunner, Queue, RunStore,
    SignedBlobs, SpaceBackend, SystemClock, WebhookSender,
};
use spaceport_server::AppState;
use spaceport_steps::{Ports, Steps, StepsConfig};

use crate::config::{Config, ConfigError, Storage};

/// Why a stack could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store, queue or blob store could not be opened.
    #[error("opening the {what}: {source}")]
    Open {
        what: &'static str,
        #[source]
        source: spaceport_core::Error,
    },
    /// The configuration asks for something this binary was built without.
    #[error("{0}")]
    NotBuilt(String),
}

/// How to open a stack beyond what the configuration says (what a binary decides in code).
#[derive(Clone)]
pub struct OpenOptions {
    /// The steps' tunables (the configuration's lease and poll window applied on top).
    pub steps: StepsConfig,
    /// Where the embedded blob store's signed URLs point (the API server's address).
    pub blob_base_url: String,
    /// How long a queue receive waits for a message (a long-running worker's long poll; zero
    /// where Lambda hands the function its messages).
    pub receive_wait: Duration,
    /// An SDK configuration to use instead of the standard chain (tests, emulators).
    #[cfg(feature = "aws")]
    pub sdk: Option<aws_config::SdkConfig>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            steps: StepsConfig::default(),
            blob_base_url: "http://127.0.0.1".into(),
            receive_wait: Duration::ZERO,
            #[cfg(feature = "aws")]
            sdk: None,
        }
    }
}

/// A binary's ports and steps, built from its configuration.
pub struct Stack {
    pub pipelines: Arc<PipelineSet>,
    /// The steps over the ports (`steps.ports` holds each port).
    pub steps: Steps,
    /// The blob store's own URL endpoints, when the API server serves them (embedded storage).
    pub signed_blobs: Option<Arc<dyn SignedBlobs>>,
    /// The embedded adapters, when storage is embedded.
    pub local: Option<Local>,
    /// The configuration it was opened from (the front door is built per bound address).
    config: Config,
    /// Signs run tokens when the configuration names no secret (embedded storage: one process).
    run_token_secret: [u8; 32],
}

/// The embedded adapters' handle (nothing in a binary built without them).
#[cfg(feature = "embedded")]
pub type Local = spaceport_local::LocalStack;
/// The embedded adapters' handle (nothing in a binary built without them).
#[cfg(not(feature = "embedded"))]
pub type Local = std::convert::Infallible;

type StoragePorts = (
    Arc<dyn RunStore>,
    Arc<dyn Queue>,
    Arc<dyn BlobStore>,
    Option<Arc<dyn SignedBlobs>>,
    Arc<dyn DeliveryStore>,
    Option<Arc<dyn EventSink>>,
);

impl Stack {
    /// The stack the configuration describes, with default options.
    pub async fn from_config(cfg: &Config) -> Result<Stack, StackError> {
        Stack::open(
            cfg,
            OpenOptions {
                steps: cfg.steps_config(StepsConfig::default()),
                ..OpenOptions::default()
            },
        )
        .await
    }

    /// The stack the configuration describes, opened with `opts`.
    pub async fn open(cfg: &Config, opts: OpenOptions) -> Result<Stack, StackError> {
        let pipelines = Arc::new(cfg.pipelines()?);
        let ((store, queue, blobs, signed_blobs, deliveries, sink), local): (
            StoragePorts,
            Option<Local>,
        ) = match cfg.storage {
            #[cfg(feature = "embedded")]
            Storage::Embedded => {
                let (ports, local) = embedded_ports(cfg, &opts).await?;
                (ports, Some(local))
            }
            #[cfg(feature = "aws")]
            Storage::Aws => (aws_ports(cfg, &opts).await?, None),
            #[allow(unreachable_patterns)]
            other => {
                return Err(StackError::NotBuilt(format!(
                    "storage {other:?} is not built into this binary (cargo feature {:?})",
                    match other {
                        Storage::Embedded => "embedded",
                        Storage::Aws => "aws",
                    }
                )));
            }
        };
        let ports = Ports {
            store,
            queue,
            blobs,
            space: space_backend(cfg),
            model: model_runner(cfg),
            chat: chat_server()?,
            clock: Arc::new(SystemClock),
            deliveries,
            sender: webhook_sender(cfg, &opts)?,
            sink,
            fetcher: input_fetcher(cfg)?,
        };
        let steps = Steps::new(pipelines.clone(), ports, opts.steps);
        Ok(Stack {
            pipelines,
            steps,
            signed_blobs,
            local,
            config: cfg.clone(),
            run_token_secret: rand::random(),
        })
    }

    /// The HTTP API over this stack (what `spaceport serve` and the accept-upload Lambda mount),
    /// serving on `bound` (`None` behind a gateway): the front door follows from both.
    pub fn app(&self, bound: Option<std::net::SocketAddr>) -> Result<axum::Router, StackError> {
        let mut gate = self.config.gate()?;
        if gate.run_tokens.is_none() && self.config.storage == Storage::Embedded {
            gate.run_tokens = Some(spaceport_server::RunTokens {
                secret: self.run_token_secret.to_vec(),
                ttl: Duration::from_secs(self.config.run_token_ttl_s.unwrap_or(900)),
            });
        }
        Ok(spaceport_server::app(AppState {
            api: self.steps.accept(),
            webhooks: self.steps.notify(),
            signed_blobs: self.signed_blobs.clone(),
            front: self.config.front_door(bound)?,
            gate: Arc::new(gate),
        }))
    }
}

#[cfg(feature = "embedded")]
async fn embedded_ports(
    cfg: &Config,
    opts: &OpenOptions,
) -> Result<(StoragePorts, spaceport_local::LocalStack), StackError> {
    let data_dir = cfg.data_dir();
    let base = opts.blob_base_url.clone();
    let opened =
        tokio::task::spawn_blocking(move || spaceport_local::LocalStack::open(&data_dir, &base))
            .await
            .map_err(|e| StackError::Open {
                what: "data dir",
                source: spaceport_core::Error::Internal(e.to_string()),
            })?
            .map_err(|source| StackError::Open {
                what: "data dir",
                source,
            })?;
    let queue = Arc::new(opened.queue.as_ref().clone().with_wait(opts.receive_wait));
    let ports: StoragePorts = (
        opened.store.clone(),
        queue,
        opened.blobs.clone(),
        Some(opened.blobs.clone()),
        opened.store.clone(),
        // One machine: the feed is the bus.
        None,
    );
    Ok((ports, opened))
}

#[cfg(feature = "aws")]
async fn aws_ports(cfg: &Config, opts: &OpenOptions) -> Result<StoragePorts, StackError> {
    use spaceport_aws::{AwsConfig, AwsStack, QueueUrls};
    let sdk = match &opts.sdk {
        Some(sdk) => sdk.clone(),
        None => spaceport_aws::load_sdk_config().await,
    };
    let queues = spaceport_core::ports::QueueName::ALL
        .into_iter()
        .filter_map(|q| {
            cfg.queue_urls(q)
                .map(|(url, dlq_url)| (q, QueueUrls { url, dlq_url }))
        })
        .collect();
    let aws = AwsConfig {
        runs_table: cfg.runs_table.clone().unwrap_or_default(),
        blobs_bucket: cfg.blobs_bucket.clone().unwrap_or_default(),
        queues,
        s3_path_style: cfg.s3_force_path_style,
        event_bus: cfg.event_bus.clone().filter(|b| !b.is_empty()),
    };
    let stack = AwsStack::new(&sdk, &aws);
    let queue = Arc::new(stack.queue.as_ref().clone().with_wait(opts.receive_wait));
    let sink = stack.sink.map(|s| s as Arc<dyn EventSink>);
    Ok((
        stack.store.clone(),
        queue,
        stack.blobs,
        None,
        stack.store,
        sink,
    ))
}

/// The Gradio client with the HF token, in binaries built with `spaces`.
fn space_backend(cfg: &Config) -> Arc<dyn SpaceBackend> {
    #[cfg(feature = "spaces")]
    return Arc::new(spaceport_gradio::GradioBackend::new(
        cfg.space_client_options(),
    ));
    #[cfg(not(feature = "spaces"))]
    {
        let _ = cfg;
        Arc::new(crate::unbuilt::Unbuilt("spaces"))
    }
}

/// The model server client, in binaries built with `model-servers`.
fn chat_server() -> Result<Arc<dyn ChatServer>, StackError> {
    #[cfg(feature = "model-servers")]
    return Ok(Arc::new(spaceport_chat::HttpChat::new().map_err(
        |source| StackError::Open {
            what: "model server client",
            source,
        },
    )?));
    #[cfg(not(feature = "model-servers"))]
    Ok(Arc::new(crate::unbuilt::Unbuilt("model-servers")))
}

/// The webhook sender with the configured signing secrets (and each endpoint's own), in
/// binaries built with `webhooks`.
fn webhook_sender(cfg: &Config, opts: &OpenOptions) -> Result<Arc<dyn WebhookSender>, StackError> {
    #[cfg(feature = "webhooks")]
    {
        use spaceport_webhooks::{HttpSender, SigningSecret};
        let mut sender = HttpSender::new(
            cfg.outbound_guard()?,
            opts.steps.webhook.timeout,
            cfg.signing_secrets()?,
        );
        for e in &cfg.webhooks {
            if let Some(own) = e.secrets.as_deref().filter(|s| !s.is_empty()) {
                let own = own
                    .iter()
                    .map(|s| SigningSecret::parse(s.expose()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|x| ConfigError(format!("webhooks: endpoint {}: {x}", e.name)))?;
                sender = sender.with_endpoint_secrets(&e.name, own);
            }
        }
        Ok(Arc::new(sender))
    }
    #[cfg(not(feature = "webhooks"))]
    {
        let _ = (cfg, opts);
        Ok(Arc::new(crate::unbuilt::Unbuilt("webhooks")))
    }
}

/// The URL input fetcher, in binaries built with `url-inputs` (none elsewhere: the API refuses
/// URL inputs then).
fn input_fetcher(cfg: &Config) -> Result<Option<Arc<dyn InputFetcher>>, StackError> {
    #[cfg(feature = "url-inputs")]
    {
        /// How long a URL input's server has to answer (and as long again to send the body).
        const URL_INPUT_TIMEOUT: Duration = Duration::from_secs(20);
        Ok(Some(Arc::new(spaceport_webhooks::HttpFetcher::new(
            cfg.outbound_guard()?,
            URL_INPUT_TIMEOUT,
        ))))
    }
    #[cfg(not(feature = "url-inputs"))]
    {
        let _ = cfg;
        Ok(None)
    }
}

/// The ONNX runner, in binaries built with local models.
#[cfg(feature = "ort")]
fn model_runner(cfg: &Config) -> Option<Arc<dyn ModelRunner>> {
    use crate::config::ModelProvider;
    use spaceport_onnx::{ModelConfig, OnnxRunner, Provider};
    // The model path itself comes from each pipeline.
    let mut m = ModelConfig::new("");
    m.provider = match cfg.model_provider {
        ModelProvider::Cpu => Provider::Cpu,
        ModelProvider::Cuda => Provider::Cuda,
        ModelProvider::TensorRt => Provider::TensorRt,
    };
    if let Some(n) = cfg.max_frames {
        m.max_frames = n;
    }
    m.ort_dylib_path = cfg.ort_dylib_path.clone();
    Some(Arc::new(OnnxRunner::new(m, cfg.model_dir())))
}

/// No runner in binaries built without local models.
#[cfg(not(feature = "ort"))]
fn model_runner(_cfg: &Config) -> Option<Arc<dyn ModelRunner>> {
    None
}
