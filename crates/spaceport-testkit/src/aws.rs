//! An AWS environment on moto for the suites that run Spaceport on its AWS adapters: a table, a
//! bucket, an event bus and every step queue with its dead-letter queue under a random prefix, and the
//! configuration the template would give a function for them (the same variable names).

use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use serde_json::{Value, json};
use spaceport_aws::{AwsConfig, AwsStack};
use spaceport_core::ports::QueueName;
use spaceport_stack::config::{Config, env_var, queue_vars};
use spaceport_stack::{OpenOptions, Stack};
use spaceport_steps::{Step, Steps};

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
        if let Some(bus) = &self.aws.event_bus {
            v.push((env_var("event_bus"), bus.clone()));
        }
        for q in QueueName::ALL {
            let (url_var, dlq_var) = queue_vars(q);
            if let Some(urls) = self.aws.queues.get(&q) {
                v.push((url_var, urls.url.clone()));
                if let Some(dlq) = &urls.dlq_url {
                    v.push((dlq_var, dlq.clone()));
                }
            }
        }
        v
    }

    /// Creates a plain SQS queue named `<table>-<suffix>` (for S3 notifications or rule
    /// targets); its URL and ARN.
    pub async fn extra_queue(&self, suffix: &str) -> (String, String) {
        use aws_sdk_sqs::types::QueueAttributeName;
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let url = sqs
            .create_queue()
            .queue_name(format!("{}-{suffix}", self.aws.runs_table))
            .send()
            .await
            .expect("creating a queue on moto")
            .queue_url
            .expect("a queue URL");
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("reading a queue's ARN")
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .expect("a queue ARN");
        (url, arn)
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

    /// What Lambda's SQS poller hands a function: up to 10 messages waiting on the queue at
    /// `url`, received hidden for `visibility_s`, as an SQS batch event, with the messages (to
    /// delete those the answer does not list, as the poller does). Waits up to `within` for a
    /// first message (zero: one look); `None` when none came.
    pub async fn lambda_batch(
        &self,
        url: &str,
        visibility_s: i32,
        within: Duration,
    ) -> Option<(Value, Vec<Message>)> {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let until = Instant::now() + within;
        loop {
            let out = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .visibility_timeout(visibility_s)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send()
                .await
                .expect("receiving from moto");
            let messages = out.messages.unwrap_or_default();
            if !messages.is_empty() {
                let records: Vec<Value> = messages.iter().map(lambda_record).collect();
                return Some((json!({ "Records": records }), messages));
            }
            if Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl AwsEnv {
    /// One pass of Lambda's SQS poller for `step` of `steps`: receives what waits on its queue
    /// as one batch, answers it with the function's handler, and deletes the messages the
    /// answer does not list. Returns how many messages it handed over.
    pub async fn lambda_handles(&self, steps: &Steps, step: &dyn Step) -> usize {
        let url = &self.aws.queues[&step.queue()].url;
        let Some((event, messages)) = self.lambda_batch(url, 120, Duration::ZERO).await else {
            return 0;
        };
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let event: SqsEvent = serde_json::from_value(event).expect("an SQS event");
        let response =
            spaceport_aws::handle_sqs_batch(step, steps.ports.queue.as_ref(), event).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        for m in &messages {
            if !failed.contains(&m.message_id().unwrap_or_default()) {
                sqs.delete_message()
                    .queue_url(url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("deleting a handled message");
            }
        }
        messages.len()
    }
}

/// One message as a record of Lambda's SQS event.
fn lambda_record(m: &Message) -> Value {
    let receives = m
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .cloned()
        .unwrap_or_else(|| "1".into());
    json!({
        "messageId": m.message_id(),
        "receiptHandle": m.receipt_handle(),
        "body": m.body(),
        "attributes": {"ApproximateReceiveCount": receives},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "awsRegion": "us-east-1",
    })
}
