//! fetch-artifact: streams each result file from the backend into the blob store (never whole in
//! memory), records size, sha256 and content type, and marks the run succeeded. Artifacts are
//! written to fixed keys, so a repeated fetch overwrites instead of duplicating.

use spaceport_core::{Artifact, Error, ErrorCode, Progress, Run, RunId, Status};

use crate::{JobState, Mutated, Outcome, Steps};

impl Steps {
    /// Handles a fetch-artifact message.
    pub async fn fetch_artifact(&self, id: &RunId) -> Result<Outcome, Error> {
        let Some(run) = self.claim(id, Status::Fetching).await? else {
            return Ok(Outcome::Done);
        };
        match self.download_all(&run).await {
            Ok(artifacts) => {
                let now = self.clock.now();
                let m = self
                    .mutate(id, |run| {
                        if run.status != Status::Fetching {
                            return Ok(false);
                        }
                        record_success(run, &artifacts, now)?;
                        Ok(true)
                    })
                    .await?;
                if let Mutated::Unchanged(run) = m {
                    tracing::info!(run = %run.id, status = %run.status, "run changed while fetching; artifacts not recorded");
                }
                Ok(Outcome::Done)
            }
            Err(e) => {
                let (code, retryable, message) = self
                    .classify(id, e, ErrorCode::ArtifactDownloadFailed)
                    .await?;
                let tries_max = self.config.fetch_tries;
                let mut retry_in = None;
                let now = self.clock.now();
                let backoff = |t: u32| self.backoff(t);
                self.mutate(id, |run| {
                    if run.status != Status::Fetching {
                        return Ok(false);
                    }
                    let mut job = JobState::of(run);
                    job.lease = None;
                    if retryable && job.fetch_tries + 1 < tries_max {
                        job.fetch_tries += 1;
                        retry_in = Some(backoff(job.fetch_tries - 1));
                        job.store(run)?;
                        return Ok(true);
                    }
                    retry_in = None;
                    job.store(run)?;
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
                Ok(retry_in.map(Outcome::RetryAfter).unwrap_or(Outcome::Done))
            }
        }
    }

    async fn download_all(&self, run: &Run) -> Result<Vec<Artifact>, Error> {
        let pipeline = self.pipelines.get(&run.pipeline)?;
        let job = JobState::of(run);
        let (Some(handle), Some(outputs)) = (job.handle, job.outputs) else {
            return Err(Error::upstream(
                ErrorCode::SpaceProtocol,
                false,
                "the job completed without outputs",
            ));
        };
        let mut artifacts = vec![];
        for (name, spec) in &pipeline.outputs {
            let index = spec.from.map(|f| f.index).unwrap_or(0);
            let file = outputs.get(index).filter(|v| !v.is_null()).ok_or_else(|| {
                Error::upstream(
                    ErrorCode::SpaceProtocol,
                    false,
                    format!("the Space returned no file for output {name} (index {index})"),
                )
            })?;
            let (body, _backend_type) = self.space.download(&handle, file).await?;
            let key = Run::artifact_key(&run.id, name, &spec.filename);
            let meta = self.blobs.put(&key, &spec.content_type, body).await?;
            artifacts.push(Artifact {
                name: name.clone(),
                filename: spec.filename.clone(),
                content_type: spec.content_type.clone(),
                size: meta.size,
                sha256: meta.sha256,
                key,
                meta: Default::default(),
            });
        }
        Ok(artifacts)
    }
}

/// Ends a `fetching` run `succeeded` with its artifacts, dropping the worker's lease.
pub(crate) fn record_success(
    run: &mut Run,
    artifacts: &[Artifact],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), Error> {
    let mut job = JobState::of(run);
    job.lease = None;
    job.store(run)?;
    run.artifacts = artifacts.to_vec();
    run.progress = Progress {
        stage: Some("done".into()),
        fraction: Some(1.0),
        ..Progress::default()
    };
    run.transition(Status::Succeeded, now)
}
