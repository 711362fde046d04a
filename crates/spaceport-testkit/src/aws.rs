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

use anyhow::Context;

use crate::MotoServer;
use crate::lambda_rt::{Outcome, RuntimeApi};

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

    /// An environment on resources that already exist on `moto` (a stack moto's CloudFormation
    /// created from the template).
    pub async fn on_resources(moto: MotoServer, aws: AwsConfig) -> AwsEnv {
        let sdk = spaceport_aws::emulator_sdk_config(moto.url(), "testing").await;
        AwsEnv { moto, sdk, aws }
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
        let event: SqsEvent = serde_json::from_value(event).expect("an SQS event");
        let response =
            spaceport_aws::handle_sqs_batch(step, steps.ports.queue.as_ref(), event).await;
        let failed: Vec<String> = response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        self.delete_answered(url, &messages, &failed).await;
        messages.len()
    }

    /// Deletes the messages of a batch whose answer did not list them as failed, as Lambda's
    /// poller does; the failed ones reappear when their visibility ends.
    async fn delete_answered(&self, url: &str, messages: &[Message], failed: &[String]) {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        for m in messages {
            if !failed
                .iter()
                .any(|f| f == m.message_id().unwrap_or_default())
            {
                sqs.delete_message()
                    .queue_url(url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("deleting a handled message");
            }
        }
    }

    /// Starts `binary` as Lambda starts function `name` for these resources (the template's
    /// variables plus `extra`), against its own Runtime API emulator, fed from `queue`'s
    /// messages by `feed`.
    pub async fn start_function(
        &self,
        binary: &std::path::Path,
        name: &str,
        queue: QueueName,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<RunningFunction> {
        let api = RuntimeApi::start().await?;
        let child = KillOnDrop(api.spawn(binary, name, &self.function_env(extra))?);
        Ok(RunningFunction {
            name: name.into(),
            api,
            child,
            queue_url: self.aws.queues[&queue].url.clone(),
            largest_batch: 0,
            invocations: 0,
        })
    }

    /// One pass of Lambda's SQS poller for a running function: what waits on its queue (up to
    /// 10 messages) as one batch event through the Runtime API, then the messages its partial
    /// batch response does not list deleted. Returns how many it handed over.
    pub async fn feed(&self, f: &mut RunningFunction, timeout: Duration) -> anyhow::Result<usize> {
        let Some((event, messages)) = self
            .lambda_batch(&f.queue_url, timeout.as_secs() as i32 * 6, Duration::ZERO)
            .await
        else {
            return Ok(0);
        };
        let answer = match f.api.invoke(event, timeout).await? {
            Outcome::Response(r) => r,
            Outcome::Error(e) => anyhow::bail!("{} failed a batch: {e}", f.name),
        };
        let failed: Vec<String> = answer["batchItemFailures"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["itemIdentifier"].as_str().map(str::to_owned))
            .collect();
        self.delete_answered(&f.queue_url, &messages, &failed).await;
        f.largest_batch = f.largest_batch.max(messages.len());
        f.invocations += 1;
        Ok(messages.len())
    }

    /// The environment Lambda gives a function of this stack: the template's variables, moto's
    /// endpoint and keys, and `extra`.
    fn function_env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self.vars();
        env.extend(self.moto.env().into_iter().map(|(k, v)| (k.to_owned(), v)));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env.push(("RUST_LOG".into(), "warn".into()));
        env
    }
}

/// A function's bootstrap running under a Runtime API emulator, fed from its queue.
pub struct RunningFunction {
    pub name: String,
    api: RuntimeApi,
    child: KillOnDrop,
    queue_url: String,
    /// The most messages one invocation was handed.
    pub largest_batch: usize,
    pub invocations: usize,
}

impl RunningFunction {
    /// The process's peak resident memory so far (KiB).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        crate::lambda_rt::peak_rss_kib(self.child.0.id())
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

/// The run id the payloads under events/ name.
pub const EXAMPLE_RUN: &str = "run_01JD8X5V3W0000000000000000";

/// The API key the API Gateway payloads under events/ carry (an example, not a secret).
pub const EXAMPLE_KEY: &str = "sk_5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

/// `EXAMPLE_KEY`'s tenant.
const EXAMPLE_TENANT: &str = "example";

/// What running a function's bootstrap through the Runtime API emulator showed.
#[derive(Debug)]
pub struct BootstrapReport {
    /// From process start to its first `next` (init done: configuration, clients).
    pub init: Duration,
    /// From process start to the first event's answer.
    pub first_answer: Duration,
    /// Each event file's name and how its invocation ended.
    pub outcomes: Vec<(String, Outcome)>,
    /// Peak RSS (KiB) after a 10-message SQS batch too, when one was sent.
    pub peak_rss_kib: Option<u64>,
}

impl AwsEnv {
    /// Starts `binary` as Lambda would (function `name`, the variables the template gives every
    /// function for these resources plus `extra`) against a Runtime API emulator, invokes it with
    /// every `events/<name>/*.json` in name order, then (when `batch_of_ten`) with a 10-message
    /// SQS batch (its SQS payload's first record ten times), and stops it. The payloads' example
    /// run is replaced by a real, cancelled one. Each invocation must be answered in 60 s.
    pub async fn run_bootstrap(
        &self,
        binary: &std::path::Path,
        name: &str,
        extra: &[(&str, &str)],
        batch_of_ten: bool,
    ) -> anyhow::Result<BootstrapReport> {
        // The payloads name an example run; they are pointed at a real one, finished.
        let run = self.cancelled_run().await;
        let mut api = RuntimeApi::start().await?;
        let env = self.function_env(extra);
        let dir = crate::repo_root().join("events").join(name);
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        anyhow::ensure!(!files.is_empty(), "no events in {}", dir.display());

        let started = Instant::now();
        let mut child = KillOnDrop(api.spawn(binary, name, &env)?);
        let mut outcomes = Vec::new();
        let mut first_answer = None;
        for file in &files {
            let text = std::fs::read_to_string(file)?.replace(EXAMPLE_RUN, &run);
            let event: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let outcome = api.invoke(event, Duration::from_secs(60)).await?;
            first_answer.get_or_insert_with(|| started.elapsed());
            let label = file.file_name().unwrap().to_string_lossy().into_owned();
            outcomes.push((label, outcome));
        }
        let init = api
            .first_next()
            .map(|t| t.duration_since(started))
            .context("the function never asked for an event")?;
        let mut peak_rss_kib = None;
        if batch_of_ten {
            // The function's own SQS payload, its first record ten times over.
            let sqs = files
                .iter()
                .find(|f| f.to_string_lossy().contains("sqs"))
                .context("no SQS payload under events/ for the batch of ten")?;
            let text = std::fs::read_to_string(sqs)?.replace(EXAMPLE_RUN, &run);
            let one: Value = serde_json::from_str(&text)?;
            let records: Vec<Value> = (0..10)
                .map(|i| {
                    let mut r = one["Records"][0].clone();
                    r["messageId"] = json!(format!("00000000-0000-4000-8000-0000000000{i:02}"));
                    r
                })
                .collect();
            let outcome = api
                .invoke(json!({ "Records": records }), Duration::from_secs(60))
                .await?;
            outcomes.push(("a batch of 10 (sqs)".into(), outcome));
            peak_rss_kib = crate::lambda_rt::peak_rss_kib(child.0.id());
        }
        let _ = child.0.kill();
        let _ = child.0.wait();
        Ok(BootstrapReport {
            init,
            first_answer: first_answer.unwrap_or_default(),
            outcomes,
            peak_rss_kib,
        })
    }
}

/// A child process killed when dropped (a failed assertion leaves no function running).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl AwsEnv {
    /// A `vggt` run of `EXAMPLE_KEY`'s tenant created and cancelled on these resources: every
    /// step has nothing left to do for it, so a message about it is answered at once.
    pub async fn cancelled_run(&self) -> String {
        let steps = self.stack(&self.config(&[])).await.steps;
        let new: spaceport_core::CreateRunRequest = serde_json::from_value(json!({
            "pipeline": "vggt",
            "inputs": {"images": [{"filename": "a.png", "content_type": "image/png", "size": 10}]},
        }))
        .expect("a create request");
        let accept = steps.accept().for_tenant(EXAMPLE_TENANT);
        let id = accept
            .create(&new, None)
            .await
            .expect("creating a run on moto")
            .run
            .id;
        accept.cancel(&id).await.expect("cancelling it");
        id.to_string()
    }

    /// Stores `value` as a new secret in Secrets Manager; its ARN.
    pub async fn put_secret(&self, name: &str, value: &str) -> String {
        aws_sdk_secretsmanager::Client::new(&self.sdk)
            .create_secret()
            .name(format!("{}-{name}", self.aws.runs_table))
            .secret_string(value)
            .send()
            .await
            .expect("creating a secret on moto")
            .arn
            .expect("the secret's ARN")
    }

    /// `SPACEPORT_API_KEYS` with one admin key, `EXAMPLE_KEY`.
    pub fn example_api_keys() -> String {
        let hash = spaceport_core::auth::hash_text(&spaceport_core::auth::key_hash(EXAMPLE_KEY));
        json!([{"name": "example", "tenant": EXAMPLE_TENANT, "scopes": ["admin"], "hash": hash}])
            .to_string()
    }
}

impl BootstrapReport {
    /// Asserts that every invocation was answered (none failed) and that every SQS batch was
    /// answered with a partial batch response listing no failure (the step messages here name
    /// runs that do not exist, which a step drops). Prints the timings.
    pub fn assert_answered(&self, name: &str) {
        println!(
            "{name}: init {:.1} ms, first answer {:.1} ms after process start, peak RSS {} KiB",
            self.init.as_secs_f64() * 1e3,
            self.first_answer.as_secs_f64() * 1e3,
            self.peak_rss_kib
                .map_or("not measured".to_owned(), |k| k.to_string())
        );
        for (event, outcome) in &self.outcomes {
            let answer = match outcome {
                Outcome::Response(r) => r,
                Outcome::Error(e) => panic!("{name} failed {event}: {e}"),
            };
            println!("  {event}: {answer}");
            if let Some(status) = answer.get("statusCode") {
                let status = status.as_u64().unwrap_or_default();
                assert!((200..300).contains(&status), "{name} on {event}: {answer}");
            }
            if event.contains("sqs") || event.contains("batch") {
                assert_eq!(
                    answer["batchItemFailures"],
                    json!([]),
                    "{name} on {event}: {answer}"
                );
            }
        }
    }
}
