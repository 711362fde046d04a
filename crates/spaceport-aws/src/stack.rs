//! The AWS adapters wired from the environment the template sets (`RUNS_TABLE`, `BLOBS_BUCKET`,
//! `*_QUEUE_URL`, `*_DLQ_URL`). Endpoints and credentials come from the SDK's own chain, so an
//! emulator is only `AWS_ENDPOINT_URL` away, never an `if local` branch.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_config::SdkConfig;
use spaceport_core::Error;
use spaceport_core::ports::QueueName;

use crate::dynamo::DynamoRunStore;
use crate::s3::S3BlobStore;
use crate::sqs::{QueueUrls, SqsQueue};

/// Where the deployment's resources are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    /// `RUNS_TABLE`.
    pub runs_table: String,
    /// `BLOBS_BUCKET`.
    pub blobs_bucket: String,
    /// The `*_QUEUE_URL` / `*_DLQ_URL` that are set.
    pub queues: BTreeMap<QueueName, QueueUrls>,
    /// `S3_FORCE_PATH_STYLE=true` for S3-compatible stores that do not route by host name.
    pub s3_path_style: bool,
}

impl AwsConfig {
    /// Reads the environment; `Ok(None)` when `RUNS_TABLE` is unset (not deployed on AWS).
    pub fn from_env() -> Result<Option<AwsConfig>, Error> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// Reads the settings from `var`; `Ok(None)` when `RUNS_TABLE` is unset.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<AwsConfig>, Error> {
        let var = |k: &str| var(k).filter(|v| !v.is_empty());
        let Some(runs_table) = var("RUNS_TABLE") else {
            return Ok(None);
        };
        let blobs_bucket = var("BLOBS_BUCKET").ok_or_else(|| {
            Error::validation("BLOBS_BUCKET", "BLOBS_BUCKET is required with RUNS_TABLE")
        })?;
        let s3_path_style = match var("S3_FORCE_PATH_STYLE").as_deref() {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => {
                return Err(Error::validation(
                    "S3_FORCE_PATH_STYLE",
                    format!("S3_FORCE_PATH_STYLE={other:?} is not true or false"),
                ));
            }
        };
        Ok(Some(AwsConfig {
            runs_table,
            blobs_bucket,
            queues: SqsQueue::urls_from_vars(var),
            s3_path_style,
        }))
    }

    /// Fails naming the variable when `queue`'s URL is not set.
    pub fn require_queue(&self, queue: QueueName) -> Result<(), Error> {
        if self.queues.contains_key(&queue) {
            return Ok(());
        }
        let var = crate::sqs::queue_url_var(queue);
        Err(Error::validation(var, format!("{var} is required")))
    }
}

/// The AWS adapters of the three storage ports.
#[derive(Clone)]
pub struct AwsStack {
    pub store: Arc<DynamoRunStore>,
    pub queue: Arc<SqsQueue>,
    pub blobs: Arc<S3BlobStore>,
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
        }
    }
}

/// The SDK configuration from the standard chain (env, profile, container or Lambda role).
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// An SDK configuration for an emulator at `endpoint` (moto, SeaweedFS) with a static key whose
/// id and secret are both `key`, in us-east-1: what tests and local tooling point the adapters at.
pub async fn emulator_sdk_config(endpoint: &str, key: &str) -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            key, key, None, None, "static",
        ))
        .load()
        .await
}

impl AwsStack {
    /// Creates a table, a bucket and every step queue with its dead-letter queue (redrive after
    /// `max_receives`), all named after `prefix`, and returns their config. For tests and
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
        };
        let stack = AwsStack::new(sdk, &cfg);
        stack.store.create_table().await?;
        stack.blobs.create_bucket().await?;
        Ok(cfg)
    }
}
