//! fetch-artifact: streams each result file from the backend into the blob store (never whole in
//! memory), records size, sha256 and content type, and marks the run succeeded. Artifacts are
//! written to fixed keys, so a repeated fetch overwrites instead of duplicating. The run is held
//! while the files flow (`hold.rs`): the lease renewed, the transfer stopped at the deadline or
//! when the run ends, and what a run that ended meanwhile would have received deleted.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use spaceport_core::ports::{BlobStore, QueueName, SpaceBackend, StepMessage};
use spaceport_core::{Artifact, Error, ErrorCode, Run, RunId, Status};

use crate::hold::Held;
use crate::runs::{Mutated, Runs};
use crate::{Outcome, Step, artifacts};

/// The fetch-artifact step.
pub struct FetchArtifact {
    runs: Runs,
    blobs: Arc<dyn BlobStore>,
    space: Arc<dyn SpaceBackend>,
}

#[async_trait]
impl Step for FetchArtifact {
    fn queue(&self) -> QueueName {
        QueueName::FetchArtifact
    }

    async fn run(&self, msg: &StepMessage) -> Result<Outcome, Error> {
        self.fetch(&msg.run_id).await
    }

    /// A run whose job completed in this process: the lease is all the claim takes.
    fn take_over(&self, run: &mut Run) -> bool {
        run.status == Status::Fetching
    }

    async fn resume(&self, run: Run) -> Result<Outcome, Error> {
        self.fetch_claimed(run).await
    }
}

impl FetchArtifact {
    /// The step over its ports.
    pub fn new(
        runs: Runs,
        blobs: Arc<dyn BlobStore>,
        space: Arc<dyn SpaceBackend>,
    ) -> FetchArtifact {
        FetchArtifact { runs, blobs, space }
    }

    /// Handles a fetch-artifact message.
    pub async fn fetch(&self, id: &RunId) -> Result<Outcome, Error> {
        let Some(run) = self.runs.claim(id, Status::Fetching).await? else {
            return Ok(Outcome::Done);
        };
        self.fetch_claimed(run).await
    }

    /// Fetches the outputs of a run this worker claimed.
    async fn fetch_claimed(&self, run: Run) -> Result<Outcome, Error> {
        let runs = &self.runs;
        let id = &run.id;
        let written = Mutex::new(vec![]);
        let downloaded = match runs
            .holding(&run, self.download_all(&run, &written))
            .await?
        {
            Held::Done(d) => d,
            Held::Released => {
                let written =
                    std::mem::take(&mut *written.lock().unwrap_or_else(|p| p.into_inner()));
                runs.discard(id, self.blobs.as_ref(), &written).await;
                return Ok(Outcome::Done);
            }
        };
        match downloaded {
            Ok(stored) => {
                let now = runs.clock.now();
                let m = runs
                    .mutate(id, |run| {
                        if run.status != Status::Fetching {
                            return Ok(false);
                        }
                        artifacts::record_success(run, &stored, now)?;
                        Ok(true)
                    })
                    .await;
                match m {
                    Ok(Mutated::Changed(run)) => {
                        crate::cache::remember(runs.blobs.as_ref(), &run).await;
                    }
                    Ok(Mutated::Unchanged(run)) => {
                        tracing::info!(run = %run.id, status = %run.status, "run changed while fetching; artifacts not recorded");
                        let keys: Vec<String> = stored.iter().map(|a| a.key.clone()).collect();
                        runs.discard(id, self.blobs.as_ref(), &keys).await;
                    }
                    Err(Error::NotFound { .. }) => {
                        // Deleted while its results came in: none of them may stay.
                        let keys: Vec<String> = stored.iter().map(|a| a.key.clone()).collect();
                        runs.discard(id, self.blobs.as_ref(), &keys).await;
                    }
                    Err(e) => return Err(e),
                }
                Ok(Outcome::Done)
            }
            Err(e) => {
                let (code, retryable, message) = runs
                    .classify(id, e, ErrorCode::ArtifactDownloadFailed)
                    .await?;
                let tries_max = runs.config.fetch_tries;
                let mut retry_in = None;
                let now = runs.clock.now();
                runs.mutate(id, |run| {
                    retry_in = None;
                    if run.status != Status::Fetching {
                        return Ok(false);
                    }
                    let job = run.job.get_or_insert_default();
                    job.lease = None;
                    if retryable && job.fetch_tries + 1 < tries_max {
                        job.fetch_tries += 1;
                        retry_in = Some(runs.backoff(job.fetch_tries - 1));
                        return Ok(true);
                    }
                    let code = if code == ErrorCode::SpaceUnavailable {
                        ErrorCode::ArtifactDownloadFailed
                    } else {
                        code
                    };
                    run.fail(
                        code,
                        format!("could not fetch the result: {message}"),
                        retryable,
                        now,
                    )?;
                    Ok(true)
                })
                .await?;
                Ok(retry_in.map_or(Outcome::Done, Outcome::RetryAfter))
            }
        }
    }

    /// Downloads every output, naming each key in `written` before writing it (so that a
    /// transfer dropped half-way can be discarded).
    async fn download_all(
        &self,
        run: &Run,
        written: &Mutex<Vec<String>>,
    ) -> Result<Vec<Artifact>, Error> {
        let pipeline = self.runs.pipelines.get(run.backend_pipeline())?;
        let job = run.job();
        let (Some(handle), Some(outputs)) = (job.handle, job.outputs) else {
            return Err(Error::upstream(
                ErrorCode::SpaceProtocol,
                false,
                "the job completed without outputs",
            ));
        };
        let handle = self.runs.unstash(&handle).await?;
        let outputs = crate::stash::unstash_list(self.blobs.as_ref(), &outputs).await?;
        let layout = job.layout.as_deref();
        let mut stored = vec![];
        for name in pipeline.outputs.keys() {
            let Some(spec) = pipeline.output_spec(name, layout) else {
                continue;
            };
            let from = spec.from.unwrap_or(spaceport_core::pipeline::OutputRef {
                call: 0,
                index: 0,
                item: None,
            });
            let Some(file) = from.pick(&outputs) else {
                if spec.optional {
                    continue;
                }
                return Err(Error::upstream(
                    ErrorCode::SpaceProtocol,
                    false,
                    format!(
                        "the Space returned no file for output {name} (index {}{})",
                        from.index,
                        from.item.map(|i| format!(", item {i}")).unwrap_or_default()
                    ),
                ));
            };
            let (body, backend_type) = self.space.download(&handle, file).await?;
            let spec = artifacts::resolve_format(spec, backend_type.as_deref());
            written
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(artifacts::key(&run.id, name, &spec));
            stored.push(
                artifacts::store(
                    self.blobs.as_ref(),
                    &run.id,
                    name,
                    &spec,
                    body,
                    Default::default(),
                )
                .await?,
            );
        }
        Ok(stored)
    }
}
