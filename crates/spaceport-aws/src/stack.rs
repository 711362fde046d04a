//! The AWS adapters of the storage ports and the event sink, built from where the deployment's resources are
//! (`spaceport-stack` reads that from the configuration). Endpoints and credentials come from the
//! SDK's own chain, so an emulator is only `AWS_ENDPOINT_URL` away, never an `if local` branch.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_config::SdkConfig;
use spaceport_core::Error;
use spaceport_core::ports::QueueName;

use crate::bus::EventBridgeSink;
use crate::dynamo::DynamoRunStore;
use crate::s3::S3BlobStore;
use crate::sqs::{QueueUrls, SqsQueue};

/// Where the deployment's resources are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    /// The DynamoDB table of runs.
    pub runs_table: String,
    /// The S3 bucket of inputs and artifacts.
    pub blobs_bucket: String,
    /// Each step queue's URL and its dead-letter queue's.
    pub queues: BTreeMap<QueueName, QueueUrls>,
    /// Path-style S3 URLs, for S3-compatible stores that do not route by host name.
    pub s3_path_style: bool,
    /// The EventBridge bus run events are published to, if any.
    pub event_bus: Option<String>,
}

/// The AWS adapters of the storage ports and the event sink.
#[derive(Clone)]
pub struct AwsStack {
    pub store: Arc<DynamoRunStore>,
    pub queue: Arc<SqsQueue>,
    pub blobs: Arc<S3BlobStore>,
    /// Set when the configuration names an event bus.
    pub sink: Option<Arc<EventBridgeSink>>,
}

impl AwsStack {
    /// Builds the clients from `sdk` (see `aws_config::load_defaults`).
    pub fn new(sdk: &SdkConfig, cfg: &AwsConfig) -> AwsStack {
        let s3 = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(cfg.s3_path_style)
            .build();
        AwsStack {
            store: Arc::new(DynamoRunStore::new(
                aws_sdk_dynamodb::Client::new(sdk),
                &cfg.runs_table,
            )),
            queue: Arc::new(SqsQueue::new(
                aws_sdk_sqs::Client::new(sdk),
                cfg.queues.clone(),
            )),
            blobs: Arc::new(S3BlobStore::new(
                aws_sdk_s3::Client::from_conf(s3),
                &cfg.blobs_bucket,
            )),
            sink: cfg.event_bus.as_deref().map(|bus| {
                Arc::new(EventBridgeSink::new(
                    aws_sdk_eventbridge::Client::new(sdk),
                    bus,
                ))
            }),
        }
    }
}

/// The SDK configuration from the standard chain (env, profile, container or Lambda role).
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}

/// The one HTTP client every SDK configuration gets (the credential providers' calls included):
/// rustls on ring, the crypto reqwest already links, with the system's root certificates.
/// The SDK's own default would link a second TLS stack (see the workspace Cargo.toml).
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// An SDK configuration for an emulator at `endpoint` (moto, SeaweedFS) with a static key whose
/// id and secret are both `key`, in us-east-1: what tests and local tooling point the adapters at.
pub async fn emulator_sdk_config(endpoint: &str, key: &str) -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https_client())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            key, key, None, None, "static",
        ))
        .load()
        .await
}

impl AwsStack {
    /// Creates a table, a bucket, an event bus and every step queue with its dead-letter queue
    /// (redrive after `max_receives`), all named after `prefix`, and returns their config. For tests and
    /// emulators; a deployment creates them from `infra/template.yaml`.
    pub async fn provision(
        sdk: &SdkConfig,
        prefix: &str,
        max_receives: u32,
        s3_path_style: bool,
    ) -> Result<AwsConfig, Error> {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let mut queues = BTreeMap::new();
        for q in QueueName::ALL {
            queues.insert(q, SqsQueue::create(&sqs, prefix, q, max_receives).await?);
        }
        let cfg = AwsConfig {
            runs_table: format!("{prefix}-runs"),
            blobs_bucket: format!("{prefix}-blobs"),
            queues,
            s3_path_style,
            event_bus: Some(format!("{prefix}-events")),
        };
        let stack = AwsStack::new(sdk, &cfg);
        stack.store.create_table().await?;
        stack.blobs.create_bucket().await?;
        if let Some(sink) = &stack.sink {
            sink.create_bus().await?;
        }
        Ok(cfg)
    }
}
