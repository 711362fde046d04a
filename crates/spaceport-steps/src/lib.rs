//! The steps of a run as plain async functions over the ports, shared by the local runner and
//! the Lambda binaries: accept-upload (the service operations), submit-space, poll-status,
//! fetch-artifact and the deadline sweeper. Every change is a conditional write, so a duplicate or
//! late message changes nothing.

mod fetch;
mod job;
mod poll;
mod reconstruct;
pub mod runner;
mod service;
mod submit;
mod sweep;

use std::sync::Arc;
use std::time::Duration;

use spaceport_core::ports::{
    BlobStore, Clock, ModelRunner, Queue, QueueName, RunStore, SpaceBackend, StepMessage,
};
use spaceport_core::{Error, ErrorCode, PipelineSet, Run, RunId};

pub use job::{JobState, Lease};
pub use service::{Created, NewRun, Upload};

/// What a step asks of the runner once it has handled a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Handled (or nothing to do): delete the message.
    Done,
    /// Not yet: make the message visible again after this long.
    RetryAfter(Duration),
}

/// Tunables of the steps.
#[derive(Debug, Clone)]
pub struct StepsConfig {
    /// How long a worker's claim on a run lasts without renewal; a crashed worker's claim
    /// expires after this, and another picks the run up.
    pub lease: Duration,
    /// How often a holder renews its lease (and stores progress).
    pub heartbeat: Duration,
    /// How long one poll-status invocation may hold a Space's stream (a Lambda's 15 minutes;
    /// locally, until the run's deadline).
    pub poll_window: Duration,
    /// Tries to reach a Space that does not answer before the run fails `space_unavailable`.
    pub submit_tries: u32,
    /// Tries to download an artifact before the run fails `artifact_download_failed`.
    pub fetch_tries: u32,
    /// First retry delay; doubles each try.
    pub backoff: Duration,
    /// Lifetime of presigned upload URLs.
    pub upload_ttl: Duration,
    /// Lifetime of presigned download URLs.
    pub download_ttl: Duration,
}

impl Default for StepsConfig {
    fn default() -> Self {
        StepsConfig {
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            poll_window: Duration::from_secs(24 * 3600),
            submit_tries: 4,
            fetch_tries: 4,
            backoff: Duration::from_secs(1),
            upload_ttl: Duration::from_secs(3600),
            download_ttl: Duration::from_secs(3600),
        }
    }
}

/// The steps, wired to their ports.
#[derive(Clone)]
pub struct Steps {
    pub pipelines: Arc<PipelineSet>,
    pub store: Arc<dyn RunStore>,
    pub queue: Arc<dyn Queue>,
    pub blobs: Arc<dyn BlobStore>,
    pub space: Arc<dyn SpaceBackend>,
    pub clock: Arc<dyn Clock>,
    pub config: StepsConfig,
    /// Runs local models for ONNX pipelines (the `reconstruct` step); `None` where this process
    /// has no model runtime.
    pub model: Option<Arc<dyn ModelRunner>>,
    /// Names this worker in leases.
    pub worker_id: String,
}

/// A run after a change: whether it was changed now, or was already as wanted.
pub(crate) enum Mutated {
    Changed(Run),
    Unchanged(Run),
}

impl Steps {
    /// Wires the steps.
    pub fn new(
        pipelines: Arc<PipelineSet>,
        store: Arc<dyn RunStore>,
        queue: Arc<dyn Queue>,
        blobs: Arc<dyn BlobStore>,
        space: Arc<dyn SpaceBackend>,
        clock: Arc<dyn Clock>,
        config: StepsConfig,
    ) -> Self {
        let worker_id = format!("wrk_{:016x}", rand::random::<u64>());
        Steps {
            pipelines,
            store,
            queue,
            blobs,
            space,
            clock,
            config,
            model: None,
            worker_id,
        }
    }

    /// The same steps with a local model runner (for `reconstruct`).
    pub fn with_model_runner(mut self, runner: Arc<dyn ModelRunner>) -> Self {
        self.model = Some(runner);
        self
    }

    /// Handles one message of `queue`.
    pub async fn handle(&self, queue: QueueName, body: &str) -> Result<Outcome, Error> {
        let msg: StepMessage = match serde_json::from_str(body) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(queue = queue.as_str(), error = %e, "dropping a malformed step message");
                return Ok(Outcome::Done);
            }
        };
        match queue {
            QueueName::SubmitSpace => self.submit_space(&msg.run_id).await,
            QueueName::PollStatus => self.poll_status(&msg.run_id).await,
            QueueName::FetchArtifact => self.fetch_artifact(&msg.run_id).await,
            QueueName::Reconstruct => self.reconstruct(&msg.run_id).await,
            QueueName::NotifyWebhook => {
                tracing::warn!(
                    queue = queue.as_str(),
                    "no handler for this queue in this build; dropping"
                );
                Ok(Outcome::Done)
            }
        }
    }

    /// Sends a step message for `run`.
    pub(crate) async fn enqueue(
        &self,
        queue: QueueName,
        run: &Run,
        delay: Duration,
    ) -> Result<(), Error> {
        let body = serde_json::to_string(&StepMessage {
            run_id: run.id.clone(),
            version: run.version,
        })
        .map_err(|e| Error::Internal(e.to_string()))?;
        self.queue.send(queue, &body, delay).await?;
        Ok(())
    }

    /// Reads a run or fails `NotFound`.
    pub(crate) async fn load(&self, id: &RunId) -> Result<Run, Error> {
        self.store.get(id).await?.ok_or_else(|| Error::NotFound {
            what: "run",
            id: id.to_string(),
        })
    }

    /// Applies `f` to the stored run with a conditional write, re-reading and re-deciding on a
    /// conflict. `f` returns `Ok(false)` to leave the run as it is.
    pub(crate) async fn mutate<F>(&self, id: &RunId, mut f: F) -> Result<Mutated, Error>
    where
        F: FnMut(&mut Run) -> Result<bool, Error>,
    {
        for _ in 0..32 {
            let mut run = self.load(id).await?;
            let prev = run.version;
            if !f(&mut run)? {
                return Ok(Mutated::Unchanged(run));
            }
            run.version = prev + 1;
            match self.store.update(&run, prev).await {
                Ok(()) => return Ok(Mutated::Changed(run)),
                Err(Error::VersionConflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Internal(format!(
            "run {id} kept changing under a write"
        )))
    }

    /// What a run records of a step's failure: `(code, retryable, message)`. Storage trouble is
    /// not the run's: our lease is released (a live lease of ours would turn the retry away) and
    /// the error goes back to the runner to retry. Anything else unexpected is `other_code`.
    pub(crate) async fn classify(
        &self,
        id: &RunId,
        err: Error,
        other_code: ErrorCode,
    ) -> Result<(ErrorCode, bool, String), Error> {
        match err {
            Error::Upstream {
                code,
                retryable,
                message,
            } => Ok((code, retryable, message)),
            e @ Error::Storage { .. } => {
                self.release(id).await?;
                Err(e)
            }
            other => Ok((other_code, false, other.to_string())),
        }
    }

    fn backoff(&self, tries: u32) -> Duration {
        let factor = 1u32 << tries.min(6);
        self.config.backoff * factor
    }
}

impl Mutated {
    pub(crate) fn run(&self) -> &Run {
        match self {
            Mutated::Changed(r) | Mutated::Unchanged(r) => r,
        }
    }
}
