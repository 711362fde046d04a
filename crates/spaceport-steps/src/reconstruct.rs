//! reconstruct: runs an ONNX pipeline's model on the run's images with the local model runner
//! (one session per worker), reporting stages as progress, then streams the files it wrote into
//! the blob store. Artifacts go to fixed keys, so a run taken over after a crash is simply redone.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Duration as ChronoDuration;
use spaceport_core::pipeline::{BackendSpec, InputOrder};
use spaceport_core::ports::{ModelInput, ModelJob};
use spaceport_core::{Artifact, Error, ErrorCode, Progress, Run, RunId, Status};

use crate::{JobState, Lease, Mutated, Outcome, Steps};

impl Steps {
    /// Handles a reconstruct message.
    pub async fn reconstruct(&self, id: &RunId) -> Result<Outcome, Error> {
        let Some(runner) = self.model.clone() else {
            // Not this process's job: another worker with a model runtime takes it.
            return Ok(Outcome::RetryAfter(Duration::from_secs(5)));
        };
        let now = self.clock.now();
        let me = self.worker_id.clone();
        let until = now + ChronoDuration::from_std(self.config.lease).unwrap_or_default();
        let claimed = self
            .mutate(id, |run| {
                if !matches!(
                    run.status,
                    Status::Submitting | Status::Running | Status::Fetching
                ) {
                    return Ok(false);
                }
                if run.past_deadline(now) {
                    run.expire(now)?;
                    return Ok(true);
                }
                let mut job = JobState::of(run);
                // Any live lease, ours included: a duplicate handled at the same time must not run the model twice.
                if job.lease.as_ref().is_some_and(|l| l.until > now) {
                    return Ok(false);
                }
                if run.status == Status::Submitting {
                    run.transition(Status::Running, now)?;
                }
                run.progress = Progress {
                    stage: Some("preprocessing".into()),
                    fraction: Some(0.0),
                    ..Progress::default()
                };
                job.lease = Some(Lease {
                    holder: me.clone(),
                    until,
                });
                job.store(run)?;
                Ok(true)
            })
            .await?;
        let run = match claimed {
            Mutated::Changed(run) if !run.status.is_terminal() => run,
            _ => return Ok(Outcome::Done),
        };

        match self.run_model(&run, runner).await {
            Ok(artifacts) => {
                let now = self.clock.now();
                let me = self.worker_id.clone();
                self.mutate(id, |run| {
                    let job = JobState::of(run);
                    if run.status.is_terminal() || job.lease.as_ref().is_none_or(|l| l.holder != me)
                    {
                        return Ok(false);
                    }
                    if run.status == Status::Running {
                        run.transition(Status::Fetching, now)?;
                    }
                    crate::fetch::record_success(run, &artifacts, now)?;
                    Ok(true)
                })
                .await?;
                Ok(Outcome::Done)
            }
            Err(e) => {
                let (code, retryable, message) =
                    self.classify(id, e, ErrorCode::ModelError).await?;
                self.fail_run(id, code, &message, retryable).await?;
                Ok(Outcome::Done)
            }
        }
    }

    async fn run_model(
        &self,
        run: &Run,
        runner: Arc<dyn spaceport_core::ports::ModelRunner>,
    ) -> Result<Vec<Artifact>, Error> {
        let declared = self.pipelines.get(&run.pipeline)?;
        // A Space pipeline whose run fell back to its ONNX fallback runs the fallback's model.
        let pipeline = match (&declared.backend, &declared.fallback) {
            (BackendSpec::Space { .. }, Some(fb)) => self.pipelines.get(fb)?,
            _ => declared,
        };
        let BackendSpec::Onnx {
            model,
            io,
            preprocess,
        } = &pipeline.backend
        else {
            return Err(Error::Internal(format!(
                "pipeline {} runs no local model",
                pipeline.name
            )));
        };
        let mut inputs = vec![];
        for (slot, files) in &run.inputs {
            let mut files: Vec<_> = files.iter().collect();
            if pipeline
                .inputs
                .get(slot)
                .is_none_or(|s| s.order == InputOrder::Filename)
            {
                files.sort_by(|a, b| a.filename.cmp(&b.filename));
            }
            for f in files {
                let bytes = self.read_blob(&f.key).await.map_err(|e| match e {
                    Error::NotFound { .. } => Error::upstream(
                        ErrorCode::UploadMissing,
                        false,
                        format!("input {slot} file {:?} is missing from storage", f.filename),
                    ),
                    other => other,
                })?;
                inputs.push(ModelInput {
                    filename: f.filename.clone(),
                    bytes: bytes.into(),
                });
            }
        }
        let out_dir = std::env::temp_dir().join(format!(
            "spaceport-{}-{:08x}",
            run.id,
            rand::random::<u32>()
        ));
        let job = ModelJob {
            run_id: run.id.clone(),
            model: model.clone(),
            io: io.clone(),
            preprocess: preprocess.clone(),
            settings: run.settings.clone(),
            inputs,
            out_dir: out_dir.clone(),
        };
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
        let work = runner.run(job, sink);
        tokio::pin!(work);
        let result = loop {
            tokio::select! {
                r = &mut work => break r,
                _ = tokio::time::sleep(self.config.heartbeat) => {
                    let p = latest.lock().ok().and_then(|mut l| l.take());
                    if !self.renew(&run.id, p).await? {
                        // Cancelled or expired meanwhile: stop waiting (the runner finishes its frame and is dropped).
                        let _ = tokio::fs::remove_dir_all(&out_dir).await;
                        return Err(Error::InvalidState("the run ended while the model ran".into()));
                    }
                }
            }
        };
        let stored = async {
            let files = result?;
            let _ = self
                .renew(
                    &run.id,
                    Some(Progress {
                        stage: Some("storing".into()),
                        fraction: Some(1.0),
                        ..Progress::default()
                    }),
                )
                .await?;
            let mut artifacts = vec![];
            for (name, spec) in &pipeline.outputs {
                let file = files.iter().find(|f| &f.name == name).ok_or_else(|| {
                    Error::upstream(
                        ErrorCode::ModelError,
                        false,
                        format!("the model runner wrote no {name} output"),
                    )
                })?;
                let body = tokio::fs::File::open(&file.path)
                    .await
                    .map_err(|e| Error::storage(format!("opening {}", file.path.display()), e))?;
                let stream = Box::pin(tokio_util::io::ReaderStream::new(body));
                let key = Run::artifact_key(&run.id, name, &spec.filename);
                let meta = self.blobs.put(&key, &spec.content_type, stream).await?;
                artifacts.push(Artifact {
                    name: name.clone(),
                    filename: spec.filename.clone(),
                    content_type: spec.content_type.clone(),
                    size: meta.size,
                    sha256: meta.sha256,
                    key,
                    meta: file.meta.clone(),
                });
            }
            Ok(artifacts)
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
