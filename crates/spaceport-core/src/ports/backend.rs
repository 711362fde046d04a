//! The backend ports: a Space backend that runs jobs remotely (Gradio), and a model runner
//! that runs them on this machine (ONNX Runtime).

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::ids::RunId;
use crate::pipeline::LayoutSpec;
use crate::run::Progress;

use super::ByteStream;

/// An input file handed to a backend.
pub struct JobInput {
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub body: ByteStream,
}

/// What submit-space asks a Space backend to do.
pub struct SpaceJob {
    pub run_id: RunId,
    /// The Space id (`facebook/vggt`).
    pub space: String,
    /// Base URL of the Space (an override, or derived from the id).
    pub url: String,
    /// The Space's possible call sequences (one for most Spaces): the backend runs the first
    /// whose endpoints the live Space has. In each, every call but the last runs to completion
    /// and the last is joined.
    pub layouts: Vec<LayoutSpec>,
    /// Settings in the backend's spelling, by setting name.
    pub settings: Map<String, Value>,
    /// Input files by slot, in the pipeline's order.
    pub inputs: BTreeMap<String, Vec<JobInput>>,
}

/// A joined job: its persisted handle, and which layout of the pipeline it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub handle: Value,
    /// The layout's name (`default` for a pipeline with plain `calls`).
    pub layout: String,
}

/// What the backend says while a job runs, and how it ends.
#[derive(Debug, Clone, PartialEq)]
pub enum SpaceEvent {
    /// Queue position, ETA or progress.
    Progress(Progress),
    /// A line the Space logged (`gr.Info`, `gr.Warning`, a log message).
    Log { line: String },
    /// The job finished: one value per output of the last call (files as the backend describes them).
    Completed { outputs: Vec<Value> },
    /// The job itself failed: the Space's message, classified (`space_error`, or
    /// `space_quota_exceeded` for a quota message, which is worth retrying later).
    Failed {
        code: crate::error::ErrorCode,
        message: String,
        /// When the Space said the job can be tried again (a ZeroGPU quota's "retry in 0:09:48").
        retry_after: Option<std::time::Duration>,
    },
    /// The job was cancelled at the backend (it answers like a success with no output).
    Cancelled,
    /// The backend no longer knows the job (stream dropped, session not found): submit again.
    Lost { reason: String },
}

/// A model host that runs jobs remotely (a Gradio Space). The job handle is JSON so any process
/// can pick a job up where another left it.
#[async_trait]
pub trait SpaceBackend: Send + Sync {
    /// Uploads the inputs, runs every call but the last to completion and joins the last one.
    /// Returns the persisted job handle and the layout it chose.
    async fn submit(&self, job: SpaceJob) -> Result<Submitted, Error>;

    /// Streams the job's events until one of `Completed`, `Failed`, `Cancelled` or `Lost`.
    async fn watch(
        &self,
        handle: &Value,
    ) -> Result<BoxStream<'static, Result<SpaceEvent, Error>>, Error>;

    /// Streams one output file (as the backend described it in `Completed`).
    async fn download(
        &self,
        handle: &Value,
        file: &Value,
    ) -> Result<(ByteStream, Option<String>), Error>;

    /// Stops the job at the backend, queued or running.
    async fn cancel(&self, handle: &Value) -> Result<(), Error>;

    /// What the Hub says about Space `space` (`owner/name`): `None` when no Hub is configured
    /// or it could not tell.
    async fn runtime(&self, _space: &str) -> Option<SpaceRuntime> {
        None
    }

    /// Asks the sleeping Space served at `url` to wake (a request to it is what wakes one).
    async fn wake(&self, _url: &str) {}

    /// What the Space at `url` runs now, for the result cache: the commit the Hub names, else a
    /// digest of its app's shape; `None` when neither can be read (the run is not cached).
    async fn revision(&self, _space: &str, _url: &str) -> Option<String> {
        None
    }
}

/// A Space's runtime as the Hub reports it (`GET /api/spaces/{id}/runtime`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceRuntime {
    /// The Hub's stage: `RUNNING`, `SLEEPING`, `BUILDING`, `APP_STARTING`, `PAUSED`,
    /// `RUNTIME_ERROR`, …
    pub stage: String,
    /// The commit the Space runs, when the Hub says.
    pub sha: Option<String>,
}

/// What a Space's Hub stage means for a run that wants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceReadiness {
    /// Up (or the Hub could not say otherwise): failures are the Space's own.
    Running,
    /// Asleep, building or starting: it will answer after a wait.
    Waking,
    /// Paused by its owner, broken or being deleted: it will not answer without a person.
    Down,
}

impl SpaceRuntime {
    /// What the stage means; stages the Hub adds later count as running, so a run keeps its
    /// ordinary retries rather than waiting on a stage nobody knows.
    pub fn readiness(&self) -> SpaceReadiness {
        match self.stage.as_str() {
            "SLEEPING" | "STOPPED" | "BUILDING" | "APP_STARTING" | "RUNNING_APP_STARTING" => {
                SpaceReadiness::Waking
            }
            "PAUSED" | "NO_APP_FILE" | "CONFIG_ERROR" | "BUILD_ERROR" | "RUNTIME_ERROR"
            | "DELETING" => SpaceReadiness::Down,
            _ => SpaceReadiness::Running,
        }
    }

    /// Whether the Space sleeps until a request wakes it.
    pub fn asleep(&self) -> bool {
        matches!(self.stage.as_str(), "SLEEPING" | "STOPPED")
    }
}

/// An input image handed to a local model.
#[derive(Debug, Clone)]
pub struct ModelInput {
    pub filename: String,
    pub bytes: Bytes,
}

/// What the `reconstruct` step asks a local model runner to do.
#[derive(Debug, Clone)]
pub struct ModelJob {
    pub run_id: RunId,
    /// Path of the `.onnx` file.
    pub model: String,
    /// Model I/O names that differ from the defaults.
    pub io: BTreeMap<String, String>,
    /// Pre-processing mode (`pad` or `crop`).
    pub preprocess: Option<String>,
    /// Resolved settings (user-facing spellings).
    pub settings: Map<String, Value>,
    /// The images, in the pipeline's order.
    pub inputs: Vec<ModelInput>,
    /// A fresh directory the runner writes its files into.
    pub out_dir: std::path::PathBuf,
}

/// A file a model runner wrote, named after a pipeline output.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelArtifact {
    /// The pipeline output it fills (`scene`, `predictions`).
    pub name: String,
    pub path: std::path::PathBuf,
    /// Facts about it (`points`, `cameras`).
    pub meta: Map<String, Value>,
}

/// What the `reconstruct` step asks a runner to do for a `local` pipeline: `function` over the
/// run's input files, no model.
#[derive(Debug, Clone)]
pub struct LocalJob {
    pub run_id: RunId,
    pub function: crate::pipeline::LocalFunction,
    /// Resolved settings (user-facing spellings).
    pub settings: Map<String, Value>,
    /// The input files, slot by slot in the pipeline's order.
    pub inputs: Vec<ModelInput>,
    /// A fresh directory the runner writes its files into.
    pub out_dir: std::path::PathBuf,
}

/// Receives progress while a model runs (stage and fraction).
pub type ProgressSink = Box<dyn Fn(Progress) + Send + Sync>;

/// Runs a local model (ONNX Runtime on a CPU or GPU). Input problems fail with
/// `Error::Upstream{code: InputInvalid}`, model problems with `ModelError`.
#[async_trait]
pub trait ModelRunner: Send + Sync {
    /// Runs `job`, reporting progress, and returns the files it wrote.
    async fn run(&self, job: ModelJob, progress: ProgressSink)
    -> Result<Vec<ModelArtifact>, Error>;

    /// Runs a local function (`local` pipelines) and returns the files it wrote. A runner
    /// without any refuses.
    async fn local(&self, job: LocalJob) -> Result<Vec<ModelArtifact>, Error> {
        Err(Error::Internal(format!(
            "this worker runs no local function {}",
            job.function.as_str()
        )))
    }

    /// Whether the model at `model` can be run here (its file is present); a Space pipeline falls
    /// back to a local model only when it can.
    fn available(&self, _model: &str) -> bool {
        true
    }
}
