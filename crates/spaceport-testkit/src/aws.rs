//! An AWS environment on moto for the suites that run Spaceport on its AWS adapters: a table, a
//! bucket and every step queue with its dead-letter queue under a random prefix, and the
//! configuration the template would give a function for them (the same variable names).

use aws_config::SdkConfig;
use spaceport_aws::{AwsConfig, AwsStack};
use spaceport_core::ports::QueueName;
use spaceport_stack::config::{Config, env_var, queue_keys};
use spaceport_stack::{OpenOptions, Stack};

use crate::MotoServer;

/// A moto server with Spaceport's resources provisioned on it.
pub struct AwsEnv {
    pub moto: MotoServer,
    /// An SDK configuration pointing at moto with its dummy credentials.
    pub sdk: SdkConfig,
    /// Where the provisioned resources are.
    pub aws: AwsConfig,
}

impl AwsEnv {
    /// Starts moto and provisions the resources named `<prefix><random>-…`, with queues that
    /// dead-letter after `max_receives` receives.
    pub async fn start(prefix: &str, max_receives: u32) -> anyhow::Result<AwsEnv> {
        let moto = MotoServer::start()?;
        let sdk = spaceport_aws::emulator_sdk_config(moto.url(), "testing").await;
        let prefix = format!("{prefix}{:08x}", rand::random::<u32>());
        let aws = AwsStack::provision(&sdk, &prefix, max_receives, true).await?;
        Ok(AwsEnv { moto, sdk, aws })
    }

    /// The variables the template sets on every function, for these resources.
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut v = vec![
            (env_var("storage"), "aws".to_owned()),
            (env_var("runs_table"), self.aws.runs_table.clone()),
            (env_var("blobs_bucket"), self.aws.blobs_bucket.clone()),
            // moto answers on 127.0.0.1, which has no bucket subdomains.
            (env_var("s3_force_path_style"), "true".to_owned()),
        ];
        for q in QueueName::ALL {
            let (url_key, dlq_key) = queue_keys(q);
            if let Some(urls) = self.aws.queues.get(&q) {
                v.push((env_var(url_key), urls.url.clone()));
                if let Some(dlq) = &urls.dlq_url {
                    v.push((env_var(dlq_key), dlq.clone()));
                }
            }
        }
        v
    }

    /// The configuration a function reads here, with `extra` variables on top.
    pub fn config(&self, extra: &[(&str, &str)]) -> Config {
        let mut vars = self.vars();
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Config::from_sources(None, vars).expect("the environment's configuration")
    }

    /// The stack `cfg` describes, on moto.
    pub async fn stack(&self, cfg: &Config) -> Stack {
        Stack::open(
            cfg,
            OpenOptions {
                steps: cfg.steps_config(Default::default()),
                sdk: Some(self.sdk.clone()),
                ..OpenOptions::default()
            },
        )
        .await
        .expect("a stack on moto")
    }
}
