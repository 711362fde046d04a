//! poll-status: holds the Space's event stream to the end (a stream dropped early loses the
//! result), storing queue rank, ETA and progress on the run; classifies the end; and starts a new
//! attempt when the Space lost the job. A lease with heartbeats keeps a second poller away.

use std::time::Duration;

use chrono::Duration as ChronoDuration;
use futures::StreamExt;
use spaceport_core::ports::{QueueName, SpaceEvent};
use spaceport_core::{Error, ErrorCode, Progress, Run, RunId, Status};

use crate::{JobState, Lease, Mutated, Outcome, Steps};

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

impl Steps {
    /// Handles a poll-status message.
    pub async fn poll_status(&self, id: &RunId) -> Result<Outcome, Error> {
        let Some(run) = self.claim(id, Status::Running).await? else {
            return Ok(Outcome::Done);
        };
        let job = JobState::of(&run);
        let Some(handle) = job.handle else {
            self.lost(id, "the run has no job handle").await?;
            return Ok(Outcome::Done);
        };
        if job.stream_opened {
            self.lost(
                id,
                "the worker holding the Space's event stream stopped; the Space drops such results",
            )
            .await?;
            return Ok(Outcome::Done);
        }
        let me = self.worker_id.clone();
        self.mutate(id, |run| {
            let mut job = JobState::of(run);
            if run.status != Status::Running || job.lease.as_ref().is_none_or(|l| l.holder != me) {
                return Ok(false);
            }
            job.stream_opened = true;
            job.store(run)?;
            Ok(true)
        })
        .await?;
        let mut events = match self.space.watch(&handle).await {
            Ok(s) => s,
            Err(e) => {
                self.release(id).await?;
                return Err(e);
            }
        };

        let heartbeat = self.config.heartbeat;
        let window_end = tokio::time::Instant::now() + self.config.poll_window;
        let deadline = {
            let left = (run.deadline_at - self.clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO);
            tokio::time::Instant::now() + left
        };
        let mut progress: Option<Progress> = None;
        let mut next_beat = tokio::time::Instant::now() + heartbeat;
        // Progress is stored as it comes, at most once per PROGRESS_EVERY; the rest rides on heartbeats.
        let start = tokio::time::Instant::now();
        let mut last_write = start.checked_sub(PROGRESS_EVERY).unwrap_or(start);
        let end = loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(SpaceEvent::Progress(p))) => {
                        if last_write.elapsed() >= PROGRESS_EVERY {
                            last_write = tokio::time::Instant::now();
                            if !self.renew(id, Some(p)).await? {
                                break End::Released;
                            }
                        } else {
                            progress = Some(p);
                        }
                    }
                    Some(Ok(SpaceEvent::Completed { outputs })) => {
                        self.completed(id, outputs).await?;
                        break End::Done;
                    }
                    Some(Ok(SpaceEvent::Failed { code, message })) => {
                        let retryable = code == ErrorCode::SpaceQuotaExceeded;
                        self.fail_run(id, code, &format!("the Space failed: {message}"), retryable).await?;
                        break End::Done;
                    }
                    Some(Ok(SpaceEvent::Cancelled)) => {
                        // The run's own state says whether we cancelled it; if not, someone else
                        // stopped the job at the Space and it must run again.
                        let run = self.load(id).await?;
                        if run.status == Status::Running {
                            self.lost(id, "the Space cancelled the job").await?;
                        }
                        break End::Done;
                    }
                    Some(Ok(SpaceEvent::Lost { reason })) => {
                        self.lost(id, &reason).await?;
                        break End::Done;
                    }
                    Some(Err(e)) if !e.retryable() => {
                        let code = match &e { Error::Upstream { code, .. } => *code, _ => ErrorCode::SpaceProtocol };
                        self.fail_run(id, code, &e.to_string(), false).await?;
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
                    if !self.renew(id, progress.take()).await? {
                        break End::Released;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.expire_run(id).await?;
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
                let run = self.load(id).await?;
                if run.status.is_terminal()
                    && let Some(h) = JobState::of(&run).handle
                    && run.status != Status::Succeeded
                {
                    self.cancel_at_backend(&run, &h).await;
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

    /// Takes the lease on a run in `status`; `None` when any live lease is held on it (another
    /// worker's, or another handler's in this process), or the run is no longer in that status.
    pub(crate) async fn claim(&self, id: &RunId, status: Status) -> Result<Option<Run>, Error> {
        let now = self.clock.now();
        let me = self.worker_id.clone();
        let until = now + ChronoDuration::from_std(self.config.lease).unwrap_or_default();
        let mutated = self
            .mutate(id, |run| {
                if run.status != status {
                    return Ok(false);
                }
                if run.past_deadline(now) {
                    run.expire(now)?;
                    return Ok(true);
                }
                let mut job = JobState::of(run);
                // Any live lease, this worker's own included: a duplicate message handled at the
                // same time in this very process must not watch (or fetch) a second time.
                if job.lease.as_ref().is_some_and(|l| l.until > now) {
                    return Ok(false);
                }
                job.lease = Some(Lease {
                    holder: me.clone(),
                    until,
                });
                job.store(run)?;
                Ok(true)
            })
            .await?;
        Ok(match mutated {
            Mutated::Changed(run) if run.status == status => Some(run),
            _ => None,
        })
    }

    /// Renews our lease and stores the latest progress; false when the run is no longer ours.
    pub(crate) async fn renew(
        &self,
        id: &RunId,
        progress: Option<Progress>,
    ) -> Result<bool, Error> {
        let now = self.clock.now();
        let me = self.worker_id.clone();
        let until = now + ChronoDuration::from_std(self.config.lease).unwrap_or_default();
        let mut ours = false;
        self.mutate(id, |run| {
            let mut job = JobState::of(run);
            ours = !run.status.is_terminal() && job.lease.as_ref().is_some_and(|l| l.holder == me);
            if !ours {
                return Ok(false);
            }
            job.lease = Some(Lease {
                holder: me.clone(),
                until,
            });
            job.store(run)?;
            if let Some(p) = &progress {
                run.progress = p.clone();
            }
            Ok(true)
        })
        .await?;
        Ok(ours)
    }

    /// Drops our lease so another worker can take the run at once.
    pub(crate) async fn release(&self, id: &RunId) -> Result<(), Error> {
        let me = self.worker_id.clone();
        self.mutate(id, |run| {
            let mut job = JobState::of(run);
            if job.lease.as_ref().is_none_or(|l| l.holder != me) {
                return Ok(false);
            }
            job.lease = None;
            job.store(run)?;
            Ok(true)
        })
        .await?;
        Ok(())
    }

    async fn completed(&self, id: &RunId, outputs: Vec<serde_json::Value>) -> Result<(), Error> {
        let now = self.clock.now();
        let mutated = self
            .mutate(id, |run| {
                if run.status != Status::Running {
                    return Ok(false);
                }
                let mut job = JobState::of(run);
                job.outputs = Some(outputs.clone());
                job.lease = None;
                job.store(run)?;
                run.transition(Status::Fetching, now)?;
                run.progress = Progress {
                    stage: Some("fetching".into()),
                    fraction: Some(1.0),
                    ..Progress::default()
                };
                Ok(true)
            })
            .await?;
        if let Mutated::Changed(run) = mutated {
            self.enqueue(QueueName::FetchArtifact, &run, Duration::ZERO)
                .await?;
        }
        Ok(())
    }

    /// The backend lost the job: submit it again as a new attempt (submit-space enforces the limit).
    pub(crate) async fn lost(&self, id: &RunId, reason: &str) -> Result<(), Error> {
        let now = self.clock.now();
        let mutated = self
            .mutate(id, |run| {
                if run.status != Status::Running {
                    return Ok(false);
                }
                run.transition(Status::Submitting, now)?;
                run.progress = Progress {
                    stage: Some("resubmitting".into()),
                    message: Some(reason.to_string()),
                    ..Progress::default()
                };
                let job = JobState {
                    handle: JobState::of(run).handle,
                    ..JobState::default()
                };
                job.store(run)?;
                Ok(true)
            })
            .await?;
        if let Mutated::Changed(run) = mutated {
            tracing::info!(run = %run.id, attempt = run.backend.attempt, reason, "the backend lost the job; submitting again");
            self.enqueue(QueueName::SubmitSpace, &run, Duration::ZERO)
                .await?;
        }
        Ok(())
    }

    /// Ends a live run `failed`.
    pub(crate) async fn fail_run(
        &self,
        id: &RunId,
        code: ErrorCode,
        message: &str,
        retryable: bool,
    ) -> Result<(), Error> {
        let now = self.clock.now();
        self.mutate(id, |run| {
            if run.status.is_terminal() {
                return Ok(false);
            }
            let mut job = JobState::of(run);
            job.lease = None;
            job.store(run)?;
            run.fail(code, message, retryable, now)?;
            Ok(true)
        })
        .await?;
        Ok(())
    }

    /// Ends a live run `expired`.
    pub(crate) async fn expire_run(&self, id: &RunId) -> Result<bool, Error> {
        let now = self.clock.now();
        let m = self
            .mutate(id, |run| {
                if run.status.is_terminal() || !run.past_deadline(now) {
                    return Ok(false);
                }
                let mut job = JobState::of(run);
                job.lease = None;
                job.store(run)?;
                run.expire(now)?;
                Ok(true)
            })
            .await?;
        Ok(matches!(m, Mutated::Changed(_)))
    }
}
