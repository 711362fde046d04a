//! The steps of a run as plain async functions over the ports, shared by the local runner and
//! the Lambda binaries. Each step is a struct holding only the ports it uses (submit-space,
//! poll-status, fetch-artifact, reconstruct, call-model, the sweeper, and `Accept`, the API's operations);
//! `Steps` builds them all from one process's `Ports`. Every change is a conditional write, so a
//! duplicate or late message changes nothing.

mod accept;
mod artifacts;
pub mod batch;
mod cache;
mod call_model;
mod chain;
pub mod changes;
pub mod convert;
mod fetch;
mod hold;
mod inputs;
mod notify;
mod oneshot;
mod poll;
mod reads;
mod reconstruct;
mod relay;
mod retention;
pub mod runner;
mod runs;
mod slots;
pub mod stash;
mod submit;
mod sweep;
mod trouble;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use spaceport_core::outbound::OutboundGuard;
use spaceport_core::ports::{
    BlobStore, ChatServer, Clock, DeliveryStore, EventSink, InputFetcher, ModelRunner, Queue,
    QueueName, RunStore, SpaceBackend, StepMessage, WebhookSender,
};
use spaceport_core::webhook::BusEvents;
use spaceport_core::{Error, PipelineSet, Run};

pub use accept::{Accept, Created, Landed, Upload};
pub use call_model::CallModel;
pub use fetch::FetchArtifact;
pub use notify::{BUS_ENDPOINT, Endpoint, Notify, RUN_ENDPOINT, WebhookSettings};
pub use oneshot::OneShot;
pub use poll::PollStatus;
pub use reconstruct::Reconstruct;
pub use runs::Runs;
pub use submit::SubmitSpace;
pub use sweep::Sweeper;

/// What a step asks of the runner once it has handled a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Handled (or nothing to do): delete the message.
    Done,
    /// Not yet: make the message visible again after this long.
    RetryAfter(Duration),
}

/// What becomes of a message once its step returned: `None` deletes it, `Some(d)` makes it
/// visible again after `d`. A failed step is retried after a delay that doubles with each
/// receive (2 s … 32 s), so a peer that is down is not hammered; the queue's receive limit
/// dead-letters it in the end. The local runner and the Lambda glue both settle through this.
pub fn settle(result: &Result<Outcome, Error>, receive_count: u32) -> Option<Duration> {
    match result {
        Ok(Outcome::Done) => None,
        Ok(Outcome::RetryAfter(delay)) => Some(*delay),
        Err(_) => Some(Duration::from_secs(1 << receive_count.min(5))),
    }
}

/// One step: the queue it consumes and what it does with the run a message names.
#[async_trait]
pub trait Step: Send + Sync {
    /// The queue whose messages this step handles.
    fn queue(&self) -> QueueName;

    /// Moves the run a message names on as far as this step goes.
    async fn run(&self, msg: &StepMessage) -> Result<Outcome, Error>;

    /// Takes `run` over in the write that hands it to this step in-process (`relay.rs`): marks
    /// what this step's own claim would, besides the lease. False, with nothing changed, where
    /// the step takes no runs that way (the default).
    fn take_over(&self, run: &mut Run) -> bool {
        let _ = run;
        false
    }

    /// Goes on with a run taken over that way: leased by this worker, no message behind it.
    async fn resume(&self, run: Run) -> Result<Outcome, Error> {
        let _ = run;
        Err(relay::cannot_resume(self.queue()))
    }
}

/// Handles one message body of `step`'s queue. A body that is not a step message is logged and
/// dropped (retrying cannot fix it).
pub async fn handle_message(step: &dyn Step, body: &str) -> Result<Outcome, Error> {
    match serde_json::from_str::<StepMessage>(body) {
        Ok(msg) => step.run(&msg).await,
        Err(e) => {
            tracing::error!(queue = step.queue().as_str(), error = %e, "dropping a malformed step message");
            Ok(Outcome::Done)
        }
    }
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
    /// How long a sleeping or building Space is waited for before it counts as down.
    pub wake_timeout: Duration,
    /// How often a waking Space is tried again.
    pub wake_poll: Duration,
    /// The longest wait between tries at a Space whose queue is full.
    pub queue_full_max_delay: Duration,
    /// How often a run waiting for one of its backend's slots asks again.
    pub slot_poll: Duration,
    /// Lifetime of presigned upload URLs.
    pub upload_ttl: Duration,
    /// Lifetime of presigned download URLs.
    pub download_ttl: Duration,
    /// Where outbound requests (webhooks) may go: public addresses, and what `outbound_allow`
    /// names.
    pub outbound: OutboundGuard,
    /// What notify-webhook delivers, and how persistently.
    pub webhook: WebhookSettings,
    /// What each tenant may hold, checked when a run is created.
    pub caps: spaceport_core::limits::TenantCaps,
    /// Days a finished run's inputs and artifacts are kept when its pipeline does not say
    /// (`retain_days`); `None`: kept until deleted.
    pub retention_days: Option<u32>,
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
            wake_timeout: Duration::from_secs(600),
            wake_poll: Duration::from_secs(5),
            queue_full_max_delay: Duration::from_secs(30),
            slot_poll: Duration::from_secs(1),
            upload_ttl: Duration::from_secs(3600),
            download_ttl: Duration::from_secs(3600),
            outbound: OutboundGuard::default(),
            webhook: WebhookSettings::default(),
            caps: Default::default(),
            retention_days: None,
        }
    }
}

/// Every port one process has. Each step takes the ones it uses from here.
#[derive(Clone)]
pub struct Ports {
    pub store: Arc<dyn RunStore>,
    pub queue: Arc<dyn Queue>,
    pub blobs: Arc<dyn BlobStore>,
    /// Talks to Gradio Spaces (submit, watch, download, cancel).
    pub space: Arc<dyn SpaceBackend>,
    /// Runs local models; `None` where this process has no model runtime.
    pub model: Option<Arc<dyn ModelRunner>>,
    /// Talks to model servers (Ollama, OpenAI-compatible).
    pub chat: Arc<dyn ChatServer>,
    pub clock: Arc<dyn Clock>,
    /// Webhook deliveries and the dispatcher's cursors.
    pub deliveries: Arc<dyn DeliveryStore>,
    /// Makes one signed webhook attempt.
    pub sender: Arc<dyn WebhookSender>,
    /// The event bus run events are published to; `None` where the feed is the bus.
    pub sink: Option<Arc<dyn EventSink>>,
    /// Fetches URL inputs (the API's processes); `None` where none are fetched.
    pub fetcher: Option<Arc<dyn InputFetcher>>,
}

/// The steps of one process, built from its ports: each accessor hands out one step holding
/// only what it needs.
#[derive(Clone)]
pub struct Steps {
    pub ports: Ports,
    runs: Runs,
}

impl Steps {
    /// Wires the steps; one worker id names this process in leases.
    pub fn new(pipelines: Arc<PipelineSet>, ports: Ports, mut config: StepsConfig) -> Steps {
        if ports.sink.is_none() {
            config.webhook.bus = BusEvents::Off;
        }
        let runs = Runs::new(
            pipelines,
            ports.store.clone(),
            ports.queue.clone(),
            ports.clock.clone(),
            ports.blobs.clone(),
            config,
        );
        Steps { ports, runs }
    }

    /// The run-state operations every step shares (store, queue, clock, pipelines, tunables).
    pub fn runs(&self) -> &Runs {
        &self.runs
    }

    /// The API's operations (accept-upload).
    pub fn accept(&self) -> Accept {
        Accept::new(
            self.runs.clone(),
            self.ports.blobs.clone(),
            self.ports.space.clone(),
        )
        .with_fetcher(self.ports.fetcher.clone())
    }

    /// submit-space, falling back to the local model runner when this process has one.
    pub fn submit_space(&self) -> SubmitSpace {
        SubmitSpace::new(
            self.runs.clone(),
            self.ports.blobs.clone(),
            self.ports.space.clone(),
            self.ports.model.clone(),
        )
    }

    /// poll-status.
    pub fn poll_status(&self) -> PollStatus {
        PollStatus::new(
            self.runs.clone(),
            self.ports.space.clone(),
            self.ports.model.clone(),
        )
    }

    /// fetch-artifact.
    pub fn fetch_artifact(&self) -> FetchArtifact {
        FetchArtifact::new(
            self.runs.clone(),
            self.ports.blobs.clone(),
            self.ports.space.clone(),
        )
    }

    /// reconstruct (it hands messages back when this process has no model runner).
    pub fn reconstruct(&self) -> Reconstruct {
        Reconstruct::new(
            self.runs.clone(),
            self.ports.blobs.clone(),
            self.ports.model.clone(),
        )
    }

    /// call-model.
    pub fn call_model(&self) -> CallModel {
        CallModel::new(
            self.runs.clone(),
            self.ports.blobs.clone(),
            self.ports.chat.clone(),
            self.ports.space.clone(),
            self.ports.model.clone(),
        )
    }

    /// notify-webhook (and the delivery log's operations).
    pub fn notify(&self) -> Notify {
        Notify::new(
            self.runs.clone(),
            self.ports.deliveries.clone(),
            self.ports.sender.clone(),
            self.ports.sink.clone(),
        )
    }

    /// The sweeper.
    pub fn sweeper(&self) -> Sweeper {
        Sweeper::new(self.runs.clone(), self.ports.space.clone(), self.notify())
    }

    /// The step that consumes `queue` in this process, if it has one.
    pub fn step(&self, queue: QueueName) -> Option<Arc<dyn Step>> {
        match queue {
            QueueName::SubmitSpace => Some(Arc::new(self.submit_space())),
            QueueName::PollStatus => Some(Arc::new(self.poll_status())),
            QueueName::FetchArtifact => Some(Arc::new(self.fetch_artifact())),
            QueueName::Reconstruct => Some(Arc::new(self.reconstruct())),
            QueueName::CallModel => Some(Arc::new(self.call_model())),
            QueueName::NotifyWebhook => Some(Arc::new(self.notify())),
        }
    }

    /// Handles one message of `queue` with this process's step for it.
    pub async fn handle(&self, queue: QueueName, body: &str) -> Result<Outcome, Error> {
        match self.step(queue) {
            Some(step) => handle_message(step.as_ref(), body).await,
            None => {
                tracing::warn!(
                    queue = queue.as_str(),
                    "no handler for this queue in this build; dropping"
                );
                Ok(Outcome::Done)
            }
        }
    }
}
