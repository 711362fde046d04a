//! submit-space: takes a queued run (or one whose backend lost the job), uploads its inputs to
//! the Space, runs the call sequence up to the last join and persists the job handle. A lease
//! keeps a duplicate message from submitting twice; a lapsed lease means the holder crashed.
//! Runs on another kind of backend are claimed here too and handed to their own step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use spaceport_core::pipeline::BackendSpec;
use spaceport_core::ports::{
    BlobStore, JobInput, ModelRunner, QueueName, SpaceBackend, SpaceJob, StepMessage, Submitted,
};
use spaceport_core::{
    BackendKind, Error, ErrorCode, JobState, Progress, Run, RunId, Status, lease,
};

use crate::cache::Lookup;
use crate::hold::Held;
use crate::runs::{Mutated, Runs};
use crate::trouble::{Trouble, Troubles};
use crate::{Outcome, Step, inputs};

/// The submit-space step.
pub struct SubmitSpace {
    runs: Runs,
    blobs: Arc<dyn BlobStore>,
    space: Arc<dyn SpaceBackend>,
    /// Waits, failovers and errors when the Space fails.
    troubles: Troubles,
}

#[async_trait]
impl Step for SubmitSpace {
    fn queue(&self) -> QueueName {
        QueueName::SubmitSpace
    }

    async fn run(&self, msg: &StepMessage) -> Result<Outcome, Error> {
        self.submit(&msg.run_id).await
    }
}

impl SubmitSpace {
    /// The step over its ports.
    pub fn new(
        runs: Runs,
        blobs: Arc<dyn BlobStore>,
        space: Arc<dyn SpaceBackend>,
        fallback: Option<Arc<dyn ModelRunner>>,
    ) -> SubmitSpace {
        let troubles = Troubles {
            runs: runs.clone(),
            space: space.clone(),
            runner: fallback,
        };
        SubmitSpace {
            runs,
            blobs,
            space,
            troubles,
        }
    }

    /// Handles a submit-space message.
    pub async fn submit(&self, id: &RunId) -> Result<Outcome, Error> {
        let runs = &self.runs;
        let now = runs.clock.now();
        let me = runs.worker_id().to_string();
        let lease_until = runs.lease_until(now);
        let stored = runs.load(id).await?;
        // A chain's every later message is its driver's.
        if stored.backend.kind == BackendKind::Chain
            && matches!(
                stored.status,
                Status::Submitting | Status::Running | Status::Fetching
            )
        {
            return crate::chain::drive(runs, id).await;
        }
        // A run waiting for its backend (a quota, a Space waking) is not submitted before its time.
        if stored.status == Status::Submitting
            && let Some(at) = stored.job().not_before
            && at > now
            && !stored.job().leased(now)
        {
            let left = (at - now).to_std().unwrap_or(Duration::ZERO);
            return runs.later(QueueName::SubmitSpace, &stored, left).await;
        }
        // The same job done before: its results answer the run, with no call to the Space.
        let mut cache_key = None;
        if stored.status == Status::Queued && !stored.job().leased(now) {
            match crate::cache::lookup(runs, self.space.as_ref(), &stored).await? {
                Lookup::Hit(source) => {
                    if crate::cache::answer(runs, id, &source).await? {
                        return Ok(Outcome::Done);
                    }
                }
                Lookup::Miss(key) => cache_key = key,
            }
        }
        // At most N jobs at a backend at once: the rest wait in line, their place shown.
        if matches!(stored.status, Status::Queued | Status::Submitting)
            && !stored.job().leased(now)
            && let Some(again) = runs.hold_back(&stored).await?
        {
            return runs.later(QueueName::SubmitSpace, &stored, again).await;
        }
        let max_attempts = runs.pipelines.get(stored.backend_pipeline())?.max_attempts;
        // Claim the run: queued → submitting (attempt 1), or take over a submission whose lease lapsed.
        let mut previous_job = None;
        let claimed = runs
            .mutate(id, |run| {
                previous_job = None;
                if run.status.is_terminal() {
                    return Ok(false);
                }
                if run.past_deadline(now) {
                    run.expire(now)?;
                    return Ok(true);
                }
                match run.status {
                    Status::Queued => {
                        run.transition(Status::Submitting, now)?;
                        run.begin_attempt(now);
                        run.job = Some(JobState::default());
                        run.cache_key = cache_key.clone();
                        // Whatever it showed while queued (its place in a backend's line) is over.
                        run.progress = Progress {
                            stage: Some("submitting".into()),
                            ..Progress::default()
                        };
                    }
                    // A live lease, this worker's own included, means a submission is under way:
                    // a duplicate message handled at the same time in this very process must not
                    // join the Space a second time.
                    Status::Submitting if run.job().leased(now) => return Ok(false),
                    Status::Submitting if run.job_handle().is_some() => {
                        // The job was lost (poll-status), or a holder crashed after joining but
                        // before recording `running`: count a new attempt.
                        run.begin_attempt(now);
                        previous_job = run.job.as_mut().and_then(|j| j.handle.take());
                    }
                    Status::Submitting => {}
                    _ => return Ok(false),
                }
                let pipeline = run.backend_pipeline().to_string();
                if run.attempts_on(&pipeline) > max_attempts {
                    run.fail(
                        ErrorCode::SpaceError,
                        format!("the Space lost the job {max_attempts} times; giving up"),
                        true,
                        now,
                    )?;
                    return Ok(true);
                }
                lease::claim(run, &me, now, lease_until);
                Ok(true)
            })
            .await?;
        let run = match claimed {
            Mutated::Changed(run) if run.status == Status::Submitting => run,
            _ => return Ok(Outcome::Done),
        };
        match run.backend.kind {
            BackendKind::Space => {}
            // Another kind's own step (maybe in another process) takes it from here.
            // The chain's driver starts its first stage now.
            BackendKind::Chain => {
                runs.release(id).await?;
                return crate::chain::drive(runs, id).await;
            }
            BackendKind::Onnx | BackendKind::HttpModel | BackendKind::Local => {
                runs.release(id).await?;
                runs.hand_on(&run).await?;
                return Ok(Outcome::Done);
            }
        }
        if let Some(old) = previous_job {
            // The previous attempt may still hold a worker at the Space; free it.
            self.runs
                .cancel_at_backend(self.space.as_ref(), &run, &old)
                .await;
            crate::stash::forget(runs.blobs.as_ref(), &old).await;
        }

        // Inputs may take a while to reach the Space: the run is held meanwhile (`hold.rs`).
        let submitted = match runs.holding(&run, self.submit_job(&run)).await? {
            Held::Done(submitted) => submitted,
            Held::Released => return Ok(Outcome::Done),
        };
        match submitted {
            Ok(submitted) => {
                self.record_submitted(&run.id, run.backend.attempt, submitted)
                    .await
            }
            Err(e) => self.submit_failed(&run.id, e).await,
        }
    }

    /// A submit that failed: the run waits, fails over or fails (`trouble.rs`).
    async fn submit_failed(&self, id: &RunId, err: Error) -> Result<Outcome, Error> {
        let retry_after = err.retry_after();
        let (code, retryable, message) = self.runs.classify(id, err, ErrorCode::Internal).await?;
        let trouble = Trouble {
            code,
            retryable,
            message,
            retry_after,
        };
        self.troubles.handle(id, Status::Submitting, trouble).await
    }

    async fn submit_job(&self, run: &Run) -> Result<Submitted, Error> {
        let pipeline = self.runs.pipelines.get(run.backend_pipeline())?;
        let BackendSpec::Space { space, .. } = &pipeline.backend else {
            return Err(Error::Internal(format!(
                "pipeline {} has no Space backend",
                pipeline.name
            )));
        };
        let mut job_inputs = BTreeMap::new();
        for (slot, files) in inputs::ordered(pipeline, run) {
            let mut list = vec![];
            for f in files {
                list.push(JobInput {
                    filename: f.filename.clone(),
                    content_type: f.content_type.clone(),
                    size: f.size,
                    body: inputs::open_lazily(self.blobs.clone(), slot, f).await?,
                });
            }
            job_inputs.insert(slot.to_string(), list);
        }
        let job = SpaceJob {
            run_id: run.id.clone(),
            space: space.clone(),
            url: pipeline.backend.space_url().unwrap_or_default(),
            layouts: pipeline.layouts(),
            settings: pipeline.backend_settings(&run.settings),
            inputs: job_inputs,
        };
        self.space.submit(job).await
    }

    async fn record_submitted(
        &self,
        id: &RunId,
        attempt: u32,
        submitted: Submitted,
    ) -> Result<Outcome, Error> {
        let Submitted { handle, layout } = submitted;
        let runs = &self.runs;
        // A 3.x job's handle carries its data inline; a large one lives in the blob store.
        let kept = runs
            .stash(id, &format!("handle-{attempt}"), handle.clone())
            .await?;
        let now = runs.clock.now();
        let me = runs.worker_id().to_string();
        let mutated = runs
            .mutate_handing_on(id, |run| {
                if run.status != Status::Submitting || run.job().leased_by_other(&me, now) {
                    return Ok(false);
                }
                let job = run.job.get_or_insert_default();
                job.handle = Some(kept.clone());
                job.layout = Some(layout.clone());
                job.lease = None;
                job.submit_tries = 0;
                job.not_before = None;
                job.waiting_since = None;
                run.transition(Status::Running, now)?;
                run.progress.stage = Some("submitted".into());
                Ok(true)
            })
            .await?;
        match mutated {
            Mutated::Changed(_) => {}
            Mutated::Unchanged(run) => {
                // Cancelled (or expired) while we were joining: the job we just made must not run on.
                tracing::info!(run = %run.id, status = %run.status, "run changed during submission; cancelling the new job");
                self.runs
                    .cancel_at_backend(self.space.as_ref(), &run, &handle)
                    .await;
                crate::stash::forget(runs.blobs.as_ref(), &kept).await;
            }
        }
        Ok(Outcome::Done)
    }
}
