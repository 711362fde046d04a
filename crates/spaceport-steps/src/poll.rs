//! poll-status: holds the Space's event stream to the end (a stream dropped early loses the
//! result), storing queue rank, ETA and progress on the run; classifies the end; and starts a new
//! attempt when the Space lost the job. A lease with heartbeats keeps a second poller away.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use spaceport_core::ports::{ModelRunner, QueueName, SpaceBackend, SpaceEvent, StepMessage};
use spaceport_core::{Error, ErrorCode, JobState, Progress, Run, RunId, Status, lease};

use crate::runs::{Mutated, Runs};
use crate::trouble::{Trouble, Troubles};
use crate::{Outcome, Step};

/// The most often progress is written to the run.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// How a watch ended.
enum End {
    Done,
    /// The run is no longer ours to watch (cancelled, expired, taken over).
    Released,
    /// The poll window closed before the job finished.
    WindowClosed,
}

/// The poll-status step.
pub struct PollStatus {
    runs: Runs,
    space: Arc<dyn SpaceBackend>,
    /// Waits, failovers and errors when the Space fails the job.
    troubles: Troubles,
}

#[async_trait]
impl Step for PollStatus {
    fn queue(&self) -> QueueName {
        QueueName::PollStatus
    }

    async fn run(&self, msg: &StepMessage) -> Result<Outcome, Error> {
        self.poll(&msg.run_id).await
    }

    /// A run just submitted in this process: what the claim marks, marked in the submit's write.
    fn take_over(&self, run: &mut Run) -> bool {
        match run.job.as_mut() {
            Some(job)
                if run.status == Status::Running && job.handle.is_some() && !job.stream_opened =>
            {
                job.stream_opened = true;
                true
            }
            _ => false,
        }
    }

    async fn resume(&self, run: Run) -> Result<Outcome, Error> {
        self.watch(run).await
    }
}

impl PollStatus {
    /// The step over its ports.
    pub fn new(
        runs: Runs,
        space: Arc<dyn SpaceBackend>,
        runner: Option<Arc<dyn ModelRunner>>,
    ) -> PollStatus {
        let troubles = Troubles {
            runs: runs.clone(),
            space: space.clone(),
            runner,
        };
        PollStatus {
            runs,
            space,
            troubles,
        }
    }

    /// Handles a poll-status message.
    pub async fn poll(&self, id: &RunId) -> Result<Outcome, Error> {
        let runs = &self.runs;
        // The claim marks the stream opened in the same write: a worker that finds it marked
        // knows an earlier holder's stream (and with it the result) may be gone.
        let mut opened_before = false;
        let claimed = runs
            .claim_and(id, Status::Running, |run| {
                let job = run.job.get_or_insert_default();
                opened_before = job.stream_opened;
                job.stream_opened = job.handle.is_some();
            })
            .await?;
        let Some(run) = claimed else {
            return Ok(Outcome::Done);
        };
        if run.job().handle.is_none() {
            self.lost(id, "the run has no job handle").await?;
            return Ok(Outcome::Done);
        }
        if opened_before {
            self.lost(
                id,
                "the worker holding the Space's event stream stopped; the Space drops such results",
            )
            .await?;
            return Ok(Outcome::Done);
        }
        self.watch(run).await
    }

    /// Holds the Space's event stream of a run this worker claimed (its stream marked opened)
    /// to the end.
    async fn watch(&self, run: Run) -> Result<Outcome, Error> {
        let runs = &self.runs;
        let id = &run.id;
        let Some(handle) = run.job().handle else {
            self.lost(id, "the run has no job handle").await?;
            return Ok(Outcome::Done);
        };
        let handle = runs.unstash(&handle).await?;
        let mut events = match self.space.watch(&handle).await {
            Ok(s) => s,
            Err(e) => {
                runs.release(id).await?;
                return Err(e);
            }
        };

        let rank_limit = self.troubles.rank_limit(&run)?;
        let heartbeat = runs.config.heartbeat;
        let window_end = tokio::time::Instant::now() + runs.config.poll_window;
        let deadline = {
            let left = (run.deadline_at - runs.clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO);
            tokio::time::Instant::now() + left
        };
        let mut progress: Option<Progress> = None;
        let mut logs: Vec<String> = vec![];
        let mut next_beat = tokio::time::Instant::now() + heartbeat;
        // Progress is stored as it comes, at most once per PROGRESS_EVERY; the rest rides on heartbeats.
        let start = tokio::time::Instant::now();
        let mut last_write = start.checked_sub(PROGRESS_EVERY).unwrap_or(start);
        let end = loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(SpaceEvent::Progress(p))) => {
                        if let (Some(rank), Some(limit)) = (p.queue_rank, rank_limit)
                            && rank > limit
                        {
                            // Too far back in this Space's queue: leave it for the next backend.
                            self.runs.cancel_at_backend(self.space.as_ref(), &run, &handle).await;
                            let reason = format!("the Space put the job at queue rank {rank}");
                            self.troubles.fail_over(id, Status::Running, &reason).await?;
                            break End::Done;
                        }
                        if last_write.elapsed() >= PROGRESS_EVERY {
                            last_write = tokio::time::Instant::now();
                            if !runs.renew_with_logs(id, Some(p), std::mem::take(&mut logs)).await? {
                                break End::Released;
                            }
                        } else {
                            progress = Some(p);
                        }
                    }
                    Some(Ok(SpaceEvent::Log { line })) => {
                        logs.push(line);
                        if last_write.elapsed() >= PROGRESS_EVERY {
                            last_write = tokio::time::Instant::now();
                            if !runs.renew_with_logs(id, progress.take(), std::mem::take(&mut logs)).await? {
                                break End::Released;
                            }
                        }
                    }
                    Some(Ok(SpaceEvent::Completed { outputs })) => {
                        self.completed(id, outputs, std::mem::take(&mut logs)).await?;
                        break End::Done;
                    }
                    Some(Ok(SpaceEvent::Failed { code, message, retry_after })) => {
                        if !logs.is_empty() {
                            runs.renew_with_logs(id, None, std::mem::take(&mut logs)).await?;
                        }
                        // A quota is worth waiting for (or failing over from); the Space's own error is final.
                        let trouble = Trouble {
                            code,
                            retryable: code == ErrorCode::SpaceQuotaExceeded,
                            message,
                            retry_after,
                        };
                        self.troubles.handle(id, Status::Running, trouble).await?;
                        break End::Done;
                    }
                    Some(Ok(SpaceEvent::Cancelled)) => {
                        // The run's own state says whether we cancelled it; if not, someone else
                        // stopped the job at the Space and it must run again.
                        let run = runs.load(id).await?;
                        if run.status == Status::Running {
                            self.lost(id, "the Space cancelled the job").await?;
                        }
                        break End::Done;
                    }
                    Some(Ok(SpaceEvent::Lost { reason })) => {
                        self.lost(id, &reason).await?;
                        break End::Done;
                    }
                    Some(Err(Error::Upstream { code: ErrorCode::SpaceQueueFull, message, retry_after, .. })) => {
                        // A live protocol's queue turned the job away: nothing ran, so it waits for room.
                        let trouble = Trouble { code: ErrorCode::SpaceQueueFull, retryable: true, message, retry_after };
                        self.troubles.handle(id, Status::Running, trouble).await?;
                        break End::Done;
                    }
                    Some(Err(e)) if !e.retryable() => {
                        let code = match &e { Error::Upstream { code, .. } => *code, _ => ErrorCode::SpaceProtocol };
                        runs.fail_run(id, code, &e.to_string(), false).await?;
                        break End::Done;
                    }
                    Some(Err(e)) => {
                        self.lost(id, &format!("the event stream broke: {e}")).await?;
                        break End::Done;
                    }
                    None => {
                        self.lost(id, "the event stream ended before the job completed").await?;
                        break End::Done;
                    }
                },
                _ = tokio::time::sleep_until(next_beat) => {
                    next_beat += heartbeat;
                    last_write = tokio::time::Instant::now();
                    if !runs.renew_with_logs(id, progress.take(), std::mem::take(&mut logs)).await? {
                        break End::Released;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    runs.expire_run(id).await?;
                    break End::Released;
                }
                _ = tokio::time::sleep_until(window_end) => {
                    break End::WindowClosed;
                }
            }
        };
        match end {
            End::Done => Ok(Outcome::Done),
            End::Released => {
                let run = runs.load(id).await?;
                if run.status.is_terminal()
                    && run.status != Status::Succeeded
                    && let Some(h) = run.job_handle()
                {
                    self.runs
                        .cancel_at_backend(self.space.as_ref(), &run, h)
                        .await;
                }
                Ok(Outcome::Done)
            }
            End::WindowClosed => {
                // Dropping the stream loses the result at the Space: submit again (counted as an
                // attempt) rather than reopen a stream that may never speak again.
                drop(events);
                self.lost(id, "the poll window closed before the job finished")
                    .await?;
                Ok(Outcome::Done)
            }
        }
    }

    /// The job completed: its values (checked against the pipeline) and last log lines go on
    /// the run, which moves on to fetching its files.
    async fn completed(
        &self,
        id: &RunId,
        outputs: Vec<serde_json::Value>,
        logs: Vec<String>,
    ) -> Result<(), Error> {
        let runs = &self.runs;
        let now = runs.clock.now();
        let run = runs.load(id).await?;
        let pipeline = runs.pipelines.get(run.backend_pipeline())?;
        let values = match pipeline.extract_values(run.job().layout.as_deref(), &outputs) {
            Ok(v) => v,
            Err(message) => {
                runs.fail_run(
                    id,
                    ErrorCode::SpaceProtocol,
                    &format!(
                        "the Space's answer does not fit pipeline {}: {message}",
                        pipeline.name
                    ),
                    false,
                )
                .await?;
                return Ok(());
            }
        };
        // A 3.x Space's images come inline: large outputs live in the blob store until fetched.
        let name = format!("outputs-{}", run.backend.attempt);
        let outputs = crate::stash::stash_list(runs.blobs.as_ref(), id, &name, outputs).await?;
        runs.mutate_handing_on(id, |run| {
            if run.status != Status::Running {
                return Ok(false);
            }
            run.append_logs(logs.iter().cloned());
            run.outputs = values.clone();
            let job = run.job.get_or_insert_default();
            job.outputs = Some(outputs.clone());
            lease::clear(run);
            run.transition(Status::Fetching, now)?;
            run.progress = Progress {
                stage: Some("fetching".into()),
                fraction: Some(1.0),
                ..Progress::default()
            };
            Ok(true)
        })
        .await?;
        Ok(())
    }

    /// The backend lost the job: submit it again as a new attempt (submit-space enforces the limit).
    pub(crate) async fn lost(&self, id: &RunId, reason: &str) -> Result<(), Error> {
        let runs = &self.runs;
        let now = runs.clock.now();
        let mutated = runs
            .mutate_handing_on(id, |run| {
                if run.status != Status::Running {
                    return Ok(false);
                }
                run.transition(Status::Submitting, now)?;
                run.progress = Progress {
                    stage: Some("resubmitting".into()),
                    message: Some(reason.to_string()),
                    ..Progress::default()
                };
                // Keep only the handle: submit-space cancels the old job before joining again.
                run.job = Some(JobState {
                    handle: run.job().handle,
                    ..JobState::default()
                });
                Ok(true)
            })
            .await?;
        if let Mutated::Changed(run) = mutated {
            tracing::info!(run = %run.id, attempt = run.backend.attempt, reason, "the backend lost the job; submitting again");
        }
        Ok(())
    }
}
