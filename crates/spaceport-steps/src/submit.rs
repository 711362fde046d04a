//! submit-space: takes a queued run (or one whose backend lost the job), uploads its inputs to
//! the Space, runs the call sequence up to the last join and persists the job handle. A lease
//! keeps a duplicate message from submitting twice; a lapsed lease means the holder crashed.

use std::collections::BTreeMap;

use chrono::Duration as ChronoDuration;
use serde_json::Value;
use spaceport_core::pipeline::{BackendSpec, InputOrder, space_base_url};
use spaceport_core::ports::{JobInput, QueueName, SpaceJob};
use spaceport_core::{Error, ErrorCode, Progress, Run, RunId, Status};

use crate::{JobState, Lease, Mutated, Outcome, Steps};

impl Steps {
    /// Handles a submit-space message.
    pub async fn submit_space(&self, id: &RunId) -> Result<Outcome, Error> {
        let now = self.clock.now();
        let me = self.worker_id.clone();
        let lease_until = now + ChronoDuration::from_std(self.config.lease).unwrap_or_default();
        let max_attempts = self
            .pipelines
            .get(&self.load(id).await?.pipeline)?
            .max_attempts;
        // Claim the run: queued → submitting (attempt 1), or take over a submission whose lease lapsed.
        let mut previous_job = None;
        let claimed = self
            .mutate(id, |run| {
                if run.status.is_terminal() {
                    return Ok(false);
                }
                if run.past_deadline(now) {
                    run.expire(now)?;
                    return Ok(true);
                }
                let mut job = JobState::of(run);
                match run.status {
                    Status::Queued => {
                        run.transition(Status::Submitting, now)?;
                        run.backend.attempt += 1;
                        job = JobState::default();
                    }
                    // A live lease, this worker's own included, means a submission is under way:
                    // a duplicate message handled at the same time in this very process must not
                    // join the Space a second time.
                    Status::Submitting if job.lease.as_ref().is_some_and(|l| l.until > now) => {
                        return Ok(false);
                    }
                    Status::Submitting if job.handle.is_some() => {
                        // A holder crashed after joining but before recording `running`: count a new attempt.
                        run.backend.attempt += 1;
                        previous_job = job.handle.take();
                    }
                    Status::Submitting => {}
                    _ => return Ok(false),
                }
                if run.backend.attempt > max_attempts {
                    run.fail(
                        ErrorCode::SpaceError,
                        format!("the Space lost the job {max_attempts} times; giving up"),
                        true,
                        now,
                    )?;
                    return Ok(true);
                }
                job.lease = Some(Lease {
                    holder: me.clone(),
                    until: lease_until,
                });
                job.store(run)?;
                Ok(true)
            })
            .await?;
        let run = match claimed {
            Mutated::Changed(run) if run.status == Status::Submitting => run,
            _ => return Ok(Outcome::Done),
        };
        if run.backend.kind == "onnx" {
            // A local model: the reconstruct worker (maybe another process) takes it from here.
            self.release(id).await?;
            self.enqueue(QueueName::Reconstruct, &run, std::time::Duration::ZERO)
                .await?;
            return Ok(Outcome::Done);
        }
        if let Some(old) = previous_job {
            // The previous attempt may still hold a worker at the Space; free it.
            self.cancel_at_backend(&run, &old).await;
        }

        match self.submit_job(&run).await {
            Ok(handle) => self.record_submitted(&run.id, handle).await,
            Err(e) => self.submit_failed(&run.id, e).await,
        }
    }

    async fn submit_job(&self, run: &Run) -> Result<Value, Error> {
        let pipeline = self.pipelines.get(&run.pipeline)?;
        let BackendSpec::Space { space, url, calls } = &pipeline.backend else {
            return Err(Error::Internal(format!(
                "pipeline {} has no Space backend",
                pipeline.name
            )));
        };
        let mut inputs = BTreeMap::new();
        for (slot, files) in &run.inputs {
            let mut files: Vec<_> = files.iter().collect();
            if pipeline
                .inputs
                .get(slot)
                .is_none_or(|s| s.order == InputOrder::Filename)
            {
                files.sort_by(|a, b| a.filename.cmp(&b.filename));
            }
            let mut list = vec![];
            for f in files {
                let body = self.blobs.get(&f.key).await.map_err(|e| match e {
                    Error::NotFound { .. } => Error::upstream(
                        ErrorCode::UploadMissing,
                        false,
                        format!("input {slot} file {:?} is missing from storage", f.filename),
                    ),
                    other => other,
                })?;
                list.push(JobInput {
                    filename: f.filename.clone(),
                    content_type: f.content_type.clone(),
                    size: f.size,
                    body,
                });
            }
            inputs.insert(slot.clone(), list);
        }
        let job = SpaceJob {
            run_id: run.id.clone(),
            space: space.clone(),
            url: url.clone().unwrap_or_else(|| space_base_url(space)),
            calls: calls.clone(),
            settings: pipeline.backend_settings(&run.settings),
            inputs,
        };
        self.space.submit(job).await
    }

    async fn record_submitted(&self, id: &RunId, handle: Value) -> Result<Outcome, Error> {
        let now = self.clock.now();
        let me = self.worker_id.clone();
        let mutated = self
            .mutate(id, |run| {
                if run.status != Status::Submitting || JobState::of(run).leased_by_other(&me, now) {
                    return Ok(false);
                }
                let mut job = JobState::of(run);
                job.handle = Some(handle.clone());
                job.lease = None;
                job.submit_tries = 0;
                job.store(run)?;
                run.transition(Status::Running, now)?;
                run.progress.stage = Some("submitted".into());
                Ok(true)
            })
            .await?;
        match mutated {
            Mutated::Changed(run) => {
                self.enqueue(QueueName::PollStatus, &run, std::time::Duration::ZERO)
                    .await?;
            }
            Mutated::Unchanged(run) => {
                // Cancelled (or expired) while we were joining: the job we just made must not run on.
                tracing::info!(run = %run.id, status = %run.status, "run changed during submission; cancelling the new job");
                self.cancel_at_backend(&run, &handle).await;
            }
        }
        Ok(Outcome::Done)
    }

    async fn submit_failed(&self, id: &RunId, err: Error) -> Result<Outcome, Error> {
        let now = self.clock.now();
        let tries_max = self.config.submit_tries;
        let (code, retryable, message) = self.classify(id, err, ErrorCode::Internal).await?;
        let mut retry_in = None;
        let mut fell_back = false;
        let fallback_model = self.fallback_model(id).await?;
        let backoff = |tries: u32| self.backoff(tries);
        let mutated = self
            .mutate(id, |run| {
                fell_back = false;
                if run.status != Status::Submitting {
                    return Ok(false);
                }
                let mut job = JobState::of(run);
                job.lease = None;
                if retryable && job.submit_tries + 1 < tries_max {
                    job.submit_tries += 1;
                    retry_in = Some(backoff(job.submit_tries - 1));
                    run.progress.message = Some(format!(
                        "{message} (try {} of {tries_max}, retrying)",
                        job.submit_tries
                    ));
                    job.store(run)?;
                    return Ok(true);
                }
                retry_in = None;
                job.store(run)?;
                if let Some(target) = &fallback_model
                    && code == ErrorCode::SpaceUnavailable
                {
                    // The Space is down: the fallback pipeline's local model does the job instead.
                    run.backend.kind = "onnx".into();
                    run.backend.target = target.clone();
                    run.progress = Progress {
                        stage: Some("fallback".into()),
                        message: Some(format!("{message}; running on the local model instead")),
                        ..Progress::default()
                    };
                    fell_back = true;
                    return Ok(true);
                }
                let message = if retryable {
                    format!("{message} (gave up after {tries_max} tries)")
                } else {
                    message.clone()
                };
                run.fail(code, message, retryable, now)?;
                Ok(true)
            })
            .await?;
        if let (true, Mutated::Changed(run)) = (fell_back, &mutated) {
            self.enqueue(QueueName::Reconstruct, run, std::time::Duration::ZERO)
                .await?;
        }
        match retry_in {
            Some(d) => Ok(Outcome::RetryAfter(d)),
            None => Ok(Outcome::Done),
        }
    }

    /// The model of the run's fallback pipeline, when it has one this process can run.
    async fn fallback_model(&self, id: &RunId) -> Result<Option<String>, Error> {
        let Some(runner) = &self.model else {
            return Ok(None);
        };
        let run = self.load(id).await?;
        let pipeline = self.pipelines.get(&run.pipeline)?;
        let Some(fb) = &pipeline.fallback else {
            return Ok(None);
        };
        Ok(match &self.pipelines.get(fb)?.backend {
            BackendSpec::Onnx { model, .. } => Some(model.clone()).filter(|m| runner.available(m)),
            BackendSpec::Space { .. } => None,
        })
    }
}
