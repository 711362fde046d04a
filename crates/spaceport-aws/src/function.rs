//! What every step function shares: its settings from the environment (failing fast at cold
//! start, naming the variable), the steps wired to the AWS adapters, and, for the functions that
//! only consume a step queue, their whole life (`serve_queue`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use spaceport_core::ports::{QueueName, SpaceBackend, SystemClock};
use spaceport_core::{Error, PipelineSet};
use spaceport_steps::{Steps, StepsConfig};

use crate::stack::{AwsConfig, AwsStack};

/// How long poll-status holds a Space's stream in one invocation by default: under Lambda's
/// 15-minute limit, with room to store the result.
pub const DEFAULT_POLL_WINDOW: Duration = Duration::from_secs(14 * 60);

/// A step function's settings: the AWS resources (`RUNS_TABLE`, `BLOBS_BUCKET`, `*_QUEUE_URL`),
/// `PIPELINES_DIR`, `SPACE_URL_<PIPELINE>` overrides, `HF_TOKEN` and `POLL_WINDOW_S`.
pub struct FunctionConfig {
    pub aws: AwsConfig,
    pub pipelines: PipelineSet,
    /// Sent to Spaces as a bearer token; never logged.
    pub hf_token: Option<String>,
    pub steps: StepsConfig,
}

impl std::fmt::Debug for FunctionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionConfig")
            .field("aws", &self.aws)
            .field("hf_token", &self.hf_token.as_ref().map(|_| "<redacted>"))
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

/// The variable that overrides a pipeline's Space URL: `SPACE_URL_` and the name in capitals
/// with `_` for `-` (`SPACE_URL_VGGT`, `SPACE_URL_KOLORS_TRYON`).
pub fn space_url_var(pipeline: &str) -> String {
    format!(
        "SPACE_URL_{}",
        pipeline.to_ascii_uppercase().replace('-', "_")
    )
}

impl FunctionConfig {
    /// Reads the environment for the function consuming `queue`.
    pub fn from_env(queue: QueueName) -> Result<FunctionConfig, Error> {
        Self::from_vars(|k| std::env::var(k).ok(), queue)
    }

    /// Reads the settings from `var` for the function consuming `queue`.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        queue: QueueName,
    ) -> Result<FunctionConfig, Error> {
        let var = |k: &str| var(k).filter(|v| !v.is_empty());
        let aws = AwsConfig::from_vars(var)?
            .ok_or_else(|| Error::validation("RUNS_TABLE", "RUNS_TABLE is required"))?;
        aws.require_queue(queue)?;
        let dir = var("PIPELINES_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("pipelines"));
        let mut pipelines = PipelineSet::load_dir(&dir).map_err(|e| {
            Error::validation("PIPELINES_DIR", format!("loading {}: {e}", dir.display()))
        })?;
        let names: Vec<String> = pipelines.iter().map(|p| p.name.clone()).collect();
        for name in names {
            if let Some(url) = var(&space_url_var(&name)) {
                pipelines.set_space_url(&name, &url)?;
            }
        }
        let mut steps = StepsConfig {
            poll_window: DEFAULT_POLL_WINDOW,
            ..StepsConfig::default()
        };
        if let Some(s) = var("POLL_WINDOW_S") {
            let secs: u64 = s.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                Error::validation(
                    "POLL_WINDOW_S",
                    format!("POLL_WINDOW_S={s:?} is not a positive number of seconds"),
                )
            })?;
            steps.poll_window = Duration::from_secs(secs);
        }
        Ok(FunctionConfig {
            aws,
            pipelines,
            hf_token: var("HF_TOKEN"),
            steps,
        })
    }

    /// The steps on the AWS adapters, with `space` as the Space backend.
    pub fn steps(&self, sdk: &SdkConfig, space: Arc<dyn SpaceBackend>) -> Steps {
        let stack = AwsStack::new(sdk, &self.aws);
        Steps::new(
            Arc::new(self.pipelines.clone()),
            stack.store,
            stack.queue,
            stack.blobs,
            space,
            Arc::new(SystemClock),
            self.steps.clone(),
        )
    }
}

/// A queue-consuming step function from start to end: JSON logs, its config from the
/// environment, the steps on the AWS adapters with the Space backend `space` makes, and Lambda's
/// loop answering each SQS batch of `queue` with a partial batch response.
pub async fn serve_queue(
    queue: QueueName,
    space: impl FnOnce(&FunctionConfig) -> Arc<dyn SpaceBackend>,
) -> Result<(), lambda_runtime::Error> {
    crate::init_tracing();
    let cfg = FunctionConfig::from_env(queue)?;
    let sdk = crate::load_sdk_config().await;
    let steps = cfg.steps(&sdk, space(&cfg));
    let steps = &steps;
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<SqsEvent>| async move {
        Ok::<_, std::convert::Infallible>(crate::handle_sqs_batch(steps, queue, ev.payload).await)
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_url_variables_are_the_pipeline_name_in_capitals() {
        assert_eq!(space_url_var("vggt"), "SPACE_URL_VGGT");
        assert_eq!(space_url_var("kolors-tryon"), "SPACE_URL_KOLORS_TRYON");
    }

    #[test]
    fn a_missing_table_or_queue_is_named() {
        let err = FunctionConfig::from_vars(|_| None, QueueName::PollStatus).unwrap_err();
        assert_eq!(err.field(), Some("RUNS_TABLE"), "{err}");
        let vars = |k: &str| match k {
            "RUNS_TABLE" => Some("t".to_owned()),
            "BLOBS_BUCKET" => Some("b".to_owned()),
            _ => None,
        };
        let err = FunctionConfig::from_vars(vars, QueueName::PollStatus).unwrap_err();
        assert_eq!(err.field(), Some("POLL_QUEUE_URL"), "{err}");
    }
}
