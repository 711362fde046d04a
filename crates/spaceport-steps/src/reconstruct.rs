//! reconstruct: runs an ONNX pipeline's model on the run's images with the local model runner
//! (one session per worker), or a `local` pipeline's function over its input files (no model),
//! reporting stages as progress, then streams the files it wrote into the blob store. Artifacts go to fixed keys, so a run taken over after a crash is simply redone.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use spaceport_core::pipeline::BackendSpec;
use spaceport_core::ports::{
    BlobStore, LocalJob, ModelInput, ModelJob, ModelRunner, QueueName, StepMessage,
};
use spaceport_core::{Artifact, Error, ErrorCode, Progress, Run, RunId, Status};

use crate::runs::Runs;
use crate::{Outcome, Step, artifacts, inputs};

/// The reconstruct step.
pub struct Reconstruct {
    runs: Runs,
    blobs: Arc<dyn BlobStore>,
    /// `None` in a process without a model runtime: it hands messages back for one that has.
    model: Option<Arc<dyn ModelRunner>>,
}

#[async_trait]
impl Step for Reconstruct {
    fn queue(&self) -> QueueName {
        QueueName::Reconstruct
    }

    async fn run(&self, msg: &StepMessage) -> Result<Outcome, Error> {
        self.reconstruct(&msg.run_id).await
    }
}

impl Reconstruct {
    /// The step over its ports.
    pub fn new(
        runs: Runs,
        blobs: Arc<dyn BlobStore>,
        model: Option<Arc<dyn ModelRunner>>,
    ) -> Reconstruct {
        Reconstruct { runs, blobs, model }
    }

    /// Handles a reconstruct message.
    pub async fn reconstruct(&self, id: &RunId) -> Result<Outcome, Error> {
        let Some(runner) = self.model.clone() else {
            // Not this process's job: another worker with a model runtime takes it.
            return Ok(Outcome::RetryAfter(Duration::from_secs(5)));
        };
        let runs = &self.runs;
        // One job per model at a time (or the pipeline's limit), across every worker.
        let progress = Progress {
            stage: Some("preprocessing".into()),
            fraction: Some(0.0),
            ..Progress::default()
        };
        let run = match runs
            .claim_whole_job(QueueName::Reconstruct, id, Some(progress))
            .await?
        {
            Ok(Some(run)) => run,
            Ok(None) => return Ok(Outcome::Done),
            Err(held) => return Ok(held),
        };

        match self.run_model(&run, runner).await {
            Ok(stored) => {
                let now = runs.clock.now();
                let me = runs.worker_id().to_string();
                runs.mutate(id, |run| {
                    if run.status.is_terminal() || !run.job().held_by(&me) {
                        return Ok(false);
                    }
                    if run.status == Status::Running {
                        run.transition(Status::Fetching, now)?;
                    }
                    artifacts::record_success(run, &stored, now)?;
                    Ok(true)
                })
                .await?;
                Ok(Outcome::Done)
            }
            Err(e) => {
                let (code, retryable, message) =
                    runs.classify(id, e, ErrorCode::ModelError).await?;
                runs.fail_run(id, code, &message, retryable).await?;
                Ok(Outcome::Done)
            }
        }
    }

    async fn run_model(
        &self,
        run: &Run,
        runner: Arc<dyn ModelRunner>,
    ) -> Result<Vec<Artifact>, Error> {
        let runs = &self.runs;
        let declared = runs.pipelines.get(run.backend_pipeline())?;
        // A run that failed over to an ONNX pipeline runs that pipeline's model (runs stored
        // before failovers named their pipeline: the first ONNX fallback).
        let pipeline = match &declared.backend {
            BackendSpec::Onnx { .. } | BackendSpec::Local { .. } => declared,
            BackendSpec::Space { .. }
            | BackendSpec::HttpModel { .. }
            | BackendSpec::Chain { .. } => { declared }
                .fallbacks()
                .into_iter()
                .filter_map(|name| runs.pipelines.get(name).ok())
                .find(|p| matches!(p.backend, BackendSpec::Onnx { .. }))
                .unwrap_or(declared),
        };
        let mut model_inputs = vec![];
        for (slot, files) in inputs::ordered(pipeline, run) {
            for f in files {
                let body = inputs::open(self.blobs.as_ref(), slot, f).await?;
                model_inputs.push(ModelInput {
                    filename: f.filename.clone(),
                    bytes: inputs::read_all(body).await?.into(),
                });
            }
        }
        let out_dir = std::env::temp_dir().join(format!(
            "spaceport-{}-{:08x}",
            run.id,
            rand::random::<u32>()
        ));
        // Progress comes from the runner's thread; the latest is stored by a heartbeat task that
        // also renews the lease.
        let latest: Arc<Mutex<Option<Progress>>> = Arc::new(Mutex::new(None));
        let sink = {
            let latest = latest.clone();
            Box::new(move |p: Progress| {
                if let Ok(mut l) = latest.lock() {
                    *l = Some(p);
                }
            })
        };
        let work = match &pipeline.backend {
            BackendSpec::Onnx {
                model,
                io,
                preprocess,
            } => {
                let job = ModelJob {
                    run_id: run.id.clone(),
                    model: model.clone(),
                    io: io.clone(),
                    preprocess: preprocess.clone(),
                    settings: run.settings.clone(),
                    inputs: model_inputs,
                    out_dir: out_dir.clone(),
                };
                runner.run(job, sink)
            }
            // A function of ours over earlier artifacts: no model.
            BackendSpec::Local { function } => runner.local(LocalJob {
                run_id: run.id.clone(),
                function: *function,
                settings: run.settings.clone(),
                inputs: model_inputs,
                out_dir: out_dir.clone(),
            }),
            _ => {
                return Err(Error::Internal(format!(
                    "pipeline {} runs no local model or function",
                    pipeline.name
                )));
            }
        };
        tokio::pin!(work);
        let result = loop {
            tokio::select! {
                r = &mut work => break r,
                _ = tokio::time::sleep(runs.config.heartbeat) => {
                    let p = latest.lock().ok().and_then(|mut l| l.take());
                    if !runs.renew(&run.id, p).await? {
                        // Cancelled or expired meanwhile: stop waiting (the runner finishes its frame and is dropped).
                        let _ = tokio::fs::remove_dir_all(&out_dir).await;
                        return Err(Error::InvalidState("the run ended while the model ran".into()));
                    }
                }
            }
        };
        let stored = async {
            let files = result?;
            let _ = runs
                .renew(
                    &run.id,
                    Some(Progress {
                        stage: Some("storing".into()),
                        fraction: Some(1.0),
                        ..Progress::default()
                    }),
                )
                .await?;
            let mut stored = vec![];
            for (name, spec) in &pipeline.outputs {
                let Some(file) = files.iter().find(|f| &f.name == name) else {
                    // An output the settings did not ask for (mesh-convert's other format).
                    if spec.optional {
                        continue;
                    }
                    return Err(Error::upstream(
                        ErrorCode::ModelError,
                        false,
                        format!("the model runner wrote no {name} output"),
                    ));
                };
                let body = tokio::fs::File::open(&file.path)
                    .await
                    .map_err(|e| Error::storage(format!("opening {}", file.path.display()), e))?;
                let stream = Box::pin(tokio_util::io::ReaderStream::new(body));
                stored.push(
                    artifacts::store(
                        self.blobs.as_ref(),
                        &run.id,
                        name,
                        spec,
                        stream,
                        file.meta.clone(),
                    )
                    .await?,
                );
            }
            Ok(stored)
        }
        .await;
        let _ = tokio::fs::remove_dir_all(&out_dir).await;
        match stored {
            Err(Error::InvalidState(_)) => {
                Err(Error::Internal("the run ended while the model ran".into()))
            }
            other => other,
        }
    }
}
