//! What every step shares: reading a run, changing it with a conditional write (re-deciding on a
//! conflict), handing it to the step that moves it on (by core's routing table), the worker
//! lease, and the ways a live run ends. A step holds a `Runs` and the few other ports it uses.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use spaceport_core::ports::{
    BlobStore, Clock, Queue, QueueName, RunStore, SpaceBackend, StepMessage,
};
use spaceport_core::{
    BackendKind, Error, ErrorCode, PipelineSet, Progress, Run, RunId, Status, lease,
};

use crate::changes::{Changes, Listener};
use crate::relay::{Baton, Relay};
use crate::{Outcome, StepsConfig};

/// The run store and queues, the clock, the pipelines and tunables, and this worker's name.
#[derive(Clone)]
pub struct Runs {
    pub pipelines: Arc<PipelineSet>,
    pub store: Arc<dyn RunStore>,
    pub queue: Arc<dyn Queue>,
    pub clock: Arc<dyn Clock>,
    /// Where job state too large for a run's row is kept (`stash`).
    pub blobs: Arc<dyn BlobStore>,
    pub config: StepsConfig,
    /// Names this worker in leases.
    worker_id: String,
    /// Wakes this process's waiters when a run changes.
    changes: Changes,
    /// This process's running steps, to hand runs over to without a message (`relay.rs`).
    pub(crate) relay: Relay,
}

/// A run after a change: whether it was changed now, or was already as wanted.
pub(crate) enum Mutated {
    Changed(Run),
    Unchanged(Run),
}

impl Mutated {
    pub(crate) fn run(&self) -> &Run {
        match self {
            Mutated::Changed(r) | Mutated::Unchanged(r) => r,
        }
    }
}

impl Runs {
    /// The shared run operations, with a fresh worker id.
    pub fn new(
        pipelines: Arc<PipelineSet>,
        store: Arc<dyn RunStore>,
        queue: Arc<dyn Queue>,
        clock: Arc<dyn Clock>,
        blobs: Arc<dyn BlobStore>,
        config: StepsConfig,
    ) -> Runs {
        Runs {
            pipelines,
            store,
            queue,
            clock,
            blobs,
            config,
            worker_id: format!("wrk_{:016x}", rand::random::<u64>()),
            changes: Changes::default(),
            relay: Relay::default(),
        }
    }

    /// Tells this process's waiters that run `id` changed (after a write outside `mutate`).
    pub(crate) fn changed(&self, id: &RunId) {
        self.changes.notify(id);
    }

    /// A listener for the changes this process makes from now on.
    pub fn listen(&self) -> Listener {
        self.changes.listen()
    }

    /// The name this worker's leases carry.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Sends a step message for `run` to `queue`.
    pub(crate) async fn enqueue(
        &self,
        queue: QueueName,
        run: &Run,
        delay: Duration,
    ) -> Result<(), Error> {
        self.queue.send(queue, &step_body(run)?, delay).await?;
        Ok(())
    }

    /// Comes back to `run` in `queue` after `delay` with a fresh message, ending this one. A
    /// wait of any length (a slot, a quota, a Space waking) must not use up the message's
    /// receives, which dead-letter it after a few (SQS's `maxReceiveCount`, the local queue's
    /// limit); and SQS delays a message at most 15 minutes, so a longer wait takes several
    /// messages, each finding the run's `not_before` still ahead.
    pub(crate) async fn later(
        &self,
        queue: QueueName,
        run: &Run,
        delay: Duration,
    ) -> Result<crate::Outcome, Error> {
        self.enqueue(queue, run, delay).await?;
        Ok(crate::Outcome::Done)
    }

    /// Sends `run` to the step that moves a run of its kind on from its status (nothing for a
    /// created or terminal run).
    pub(crate) async fn hand_on(&self, run: &Run) -> Result<(), Error> {
        match run.backend.kind.queue_for(run.status) {
            Some(queue) => self.enqueue(queue, run, Duration::ZERO).await,
            None => Ok(()),
        }
    }

    /// Reads a run or fails `NotFound`.
    pub(crate) async fn load(&self, id: &RunId) -> Result<Run, Error> {
        self.store.get(id).await?.ok_or_else(|| Error::NotFound {
            what: "run",
            id: id.to_string(),
        })
    }

    /// Applies `f` to the stored run with a conditional write, re-reading and re-deciding on a
    /// conflict. `f` returns `Ok(false)` to leave the run as it is.
    pub(crate) async fn mutate<F>(&self, id: &RunId, f: F) -> Result<Mutated, Error>
    where
        F: FnMut(&mut Run) -> Result<bool, Error>,
    {
        self.mutate_then(id, f, false).await
    }

    /// `mutate`, then the changed run handed on to the step for its new status (`hand_on`): in
    /// the change's own transaction where the store holds the queue (`update_and_send`), so a
    /// crash between the two cannot leave a run no message moves on.
    pub(crate) async fn mutate_handing_on<F>(&self, id: &RunId, f: F) -> Result<Mutated, Error>
    where
        F: FnMut(&mut Run) -> Result<bool, Error>,
    {
        self.mutate_then(id, f, true).await
    }

    async fn mutate_then<F>(&self, id: &RunId, mut f: F, hand_on: bool) -> Result<Mutated, Error>
    where
        F: FnMut(&mut Run) -> Result<bool, Error>,
    {
        // A worker of the next step, when this process runs it and one is free (`relay.rs`).
        let mut baton: Option<Baton> = None;
        for attempt in 0..32u32 {
            let mut run = self.load(id).await?;
            let prev = run.version;
            let now = self.clock.now();
            let slot_before = self.occupied_slot(&run, now);
            if !f(&mut run)? {
                return Ok(Mutated::Unchanged(run));
            }
            run.version = prev + 1;
            let next = if hand_on {
                run.backend.kind.queue_for(run.status)
            } else {
                None
            };
            if let Some(queue) = next
                && baton.as_ref().map(Baton::queue) != Some(queue)
            {
                baton = self.relay.reserve(queue);
            }
            let relayed = next.is_some()
                && baton.as_ref().is_some_and(|b| {
                    b.take_over(&mut run, &self.worker_id, now, self.lease_until(now))
                });
            let written = match next {
                // Handed over in-process: no message.
                Some(_) if relayed => self.store.update(&run, prev).await.map(|()| None),
                Some(queue) => self
                    .store
                    .update_and_send(&run, prev, queue, &step_body(&run)?)
                    .await
                    .map(|sent| (!sent).then_some(queue)),
                None => self.store.update(&run, prev).await.map(|()| None),
            };
            match written {
                Ok(unsent) => {
                    // A store that could not send with the change: sent now, after it.
                    if let Some(queue) = unsent {
                        self.enqueue(queue, &run, Duration::ZERO).await?;
                    }
                    let recorded = !run.new_events.0.is_empty();
                    run.clear_new_events();
                    self.changes.notify(id);
                    if recorded {
                        self.notify_webhooks(&run).await;
                    }
                    // A run that stopped occupying its backend gives its slot back at once (a
                    // lost write here is evicted by the next run that finds it in the way).
                    if let Some(key) = slot_before
                        && self.occupied_slot(&run, self.clock.now()).as_ref() != Some(&key)
                        && let Err(e) = self.leave(&key, id).await
                    {
                        tracing::warn!(run = %id, key, error = %e, "could not give a backend slot back");
                    }
                    if relayed && let Some(b) = baton.take() {
                        b.start(run.clone(), self.clone());
                    }
                    return Ok(Mutated::Changed(run));
                }
                Err(Error::VersionConflict { .. }) => {
                    // The write that beat us is stored: deciding again on it usually succeeds at
                    // once (two uploads of one run landing together). Writers that collide again
                    // are moving in step: a random pause, up to 1 ms doubling to 32 ms, sets
                    // them apart.
                    if attempt > 0 {
                        let cap = Duration::from_micros(1000 << (attempt - 1).min(5));
                        tokio::time::sleep(cap.mul_f64(rand::random::<f64>())).await;
                    }
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Internal(format!(
            "run {id} kept changing under a write"
        )))
    }

    /// Hands a change that recorded events to notify-webhook, when anything may be delivered.
    /// Best effort: the sweeper dispatches from the event feed whatever this misses.
    pub(crate) async fn notify_webhooks(&self, run: &Run) {
        if !self.config.webhook.wants(run) {
            return;
        }
        if let Err(e) = self
            .enqueue(QueueName::NotifyWebhook, run, Duration::ZERO)
            .await
        {
            tracing::warn!(run = %run.id, error = %e, "could not hand a change to notify-webhook; the sweeper will");
        }
    }

    /// When a lease taken or renewed at `now` lapses.
    pub(crate) fn lease_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.config.lease).unwrap_or_default()
    }

    /// Takes the lease on a run in `status`; `None` when any live lease is held on it (another
    /// worker's, or another handler's in this process), or the run is no longer in that status.
    /// A run found past its deadline is expired instead.
    pub(crate) async fn claim(
        &self,
        id: &RunId,
        status: spaceport_core::Status,
    ) -> Result<Option<Run>, Error> {
        self.claim_and(id, status, |_| {}).await
    }

    /// `claim`, with `also` applied to the claimed run in the same write (one commit fewer on
    /// the step's path than a second `mutate`).
    pub(crate) async fn claim_and(
        &self,
        id: &RunId,
        status: spaceport_core::Status,
        mut also: impl FnMut(&mut Run),
    ) -> Result<Option<Run>, Error> {
        let now = self.clock.now();
        let until = self.lease_until(now);
        let me = self.worker_id.clone();
        let mutated = self
            .mutate(id, |run| {
                if run.status != status {
                    return Ok(false);
                }
                if run.past_deadline(now) {
                    run.expire(now)?;
                    return Ok(true);
                }
                if !lease::claim(run, &me, now, until) {
                    return Ok(false);
                }
                also(run);
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
        self.renew_with_logs(id, progress, vec![]).await
    }

    /// As `renew`, appending the backend's log lines too.
    pub(crate) async fn renew_with_logs(
        &self,
        id: &RunId,
        progress: Option<Progress>,
        logs: Vec<String>,
    ) -> Result<bool, Error> {
        let now = self.clock.now();
        let until = self.lease_until(now);
        let me = self.worker_id.clone();
        let mut ours = false;
        self.mutate(id, |run| {
            ours = lease::renew(run, &me, until);
            if ours {
                run.append_logs(logs.iter().cloned());
                if let Some(p) = &progress {
                    run.set_progress(p.clone(), now);
                } else if !logs.is_empty() {
                    run.record(spaceport_core::EventType::Progress, now);
                }
            }
            Ok(ours)
        })
        .await?;
        Ok(ours)
    }

    /// For a step that does a run's whole job in one place (reconstruct, call-model): holds
    /// the run back while its backend has no free slot (`Err` carries the step's answer then),
    /// else claims it — any live status, a lapsed lease taken over as a new attempt (a worker
    /// crashed mid-job), `submitting` moved to `running`, `progress` shown — and returns it;
    /// `None` when there is nothing to do (ended, expired here, or held by a live lease: a
    /// duplicate message must not run the job twice).
    pub(crate) async fn claim_whole_job(
        &self,
        queue: QueueName,
        id: &RunId,
        progress: Option<Progress>,
    ) -> Result<Result<Option<Run>, Outcome>, Error> {
        if let Some(run) = self.store.get(id).await?
            && matches!(run.status, Status::Submitting | Status::Running)
            && !run.job().leased(self.clock.now())
            && let Some(again) = self.hold_back(&run).await?
        {
            return Ok(Err(self.later(queue, &run, again).await?));
        }
        let now = self.clock.now();
        let me = self.worker_id.clone();
        let until = self.lease_until(now);
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
                let taken_over = run.job().lease.is_some_and(|l| l.holder != me);
                if !lease::claim(run, &me, now, until) {
                    return Ok(false);
                }
                if run.status == Status::Submitting {
                    run.transition(Status::Running, now)?;
                }
                if taken_over
                    || run
                        .backend
                        .attempts
                        .last()
                        .is_none_or(|a| a.ended_at.is_some())
                {
                    run.begin_attempt(now);
                }
                if let Some(p) = &progress {
                    run.set_progress(p.clone(), now);
                }
                Ok(true)
            })
            .await?;
        Ok(Ok(match claimed {
            Mutated::Changed(run) if !run.status.is_terminal() => Some(run),
            _ => None,
        }))
    }

    /// As `renew`, recording text a model server streamed as a `run.progress` event.
    pub(crate) async fn stream_text(
        &self,
        id: &RunId,
        text: spaceport_core::TextDelta,
        progress: Progress,
    ) -> Result<bool, Error> {
        let now = self.clock.now();
        let until = self.lease_until(now);
        let me = self.worker_id.clone();
        let mut ours = false;
        self.mutate(id, |run| {
            ours = !run.status.is_terminal() && lease::renew(run, &me, until);
            if ours {
                run.stream_text(text.clone(), progress.clone(), now);
            }
            Ok(ours)
        })
        .await?;
        Ok(ours)
    }

    /// A run handed over in-process whose step could not finish (`relay.rs`): our lease
    /// dropped and a message sent to `queue` after `delay`, as its runner would have retried a
    /// message.
    pub(crate) async fn hand_back(
        &self,
        queue: QueueName,
        id: &RunId,
        delay: Duration,
    ) -> Result<(), Error> {
        let me = self.worker_id.clone();
        let m = self.mutate(id, |run| Ok(lease::release(run, &me))).await?;
        if m.run().status.is_terminal() {
            return Ok(());
        }
        self.enqueue(queue, m.run(), delay).await
    }

    /// Drops our lease so another worker can take the run at once.
    pub(crate) async fn release(&self, id: &RunId) -> Result<(), Error> {
        let me = self.worker_id.clone();
        self.mutate(id, |run| Ok(lease::release(run, &me))).await?;
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
            lease::clear(run);
            run.fail(code, message, retryable, now)?;
            Ok(true)
        })
        .await?;
        Ok(())
    }

    /// Ends a live run `cancelled` (asked now); a run already ended is left as it is
    /// (`Mutated::Unchanged`).
    pub(crate) async fn cancel_run(&self, id: &RunId) -> Result<Mutated, Error> {
        let now = self.clock.now();
        self.mutate(id, |run| {
            if run.status.is_terminal() {
                return Ok(false);
            }
            run.cancel_requested_at = Some(now);
            run.transition(Status::Cancelled, now)?;
            Ok(true)
        })
        .await
    }

    /// Ends a live run `expired` if its deadline passed; whether it did.
    pub(crate) async fn expire_run(&self, id: &RunId) -> Result<bool, Error> {
        let now = self.clock.now();
        let m = self
            .mutate(id, |run| {
                if run.status.is_terminal() || !run.past_deadline(now) {
                    return Ok(false);
                }
                lease::clear(run);
                run.expire(now)?;
                Ok(true)
            })
            .await?;
        Ok(matches!(m, Mutated::Changed(_)))
    }

    /// What a run records of a step's failure: `(code, retryable, message)`. Storage trouble is
    /// not the run's: our lease is released (a live lease of ours would turn the retry away) and
    /// the error goes back to the runner to retry. Anything else unexpected is `other_code`.
    pub(crate) async fn classify(
        &self,
        id: &RunId,
        err: Error,
        other_code: ErrorCode,
    ) -> Result<(ErrorCode, bool, String), Error> {
        match err {
            Error::Upstream {
                code,
                retryable,
                message,
                ..
            } => Ok((code, retryable, message)),
            e @ Error::Storage { .. } => {
                self.release(id).await?;
                Err(e)
            }
            other => Ok((other_code, false, other.to_string())),
        }
    }

    /// The delay before retry number `tries` (0-based): the configured backoff, doubling, with
    /// "equal jitter" (half fixed, half random) so runs that failed together do not all come
    /// back together.
    pub(crate) fn backoff(&self, tries: u32) -> Duration {
        let full = self.config.backoff * (1u32 << tries.min(6));
        full / 2 + full.mul_f64(rand::random::<f64>() / 2.0)
    }
}

impl Runs {
    /// Job state as the run should keep it (`stash.rs`): large values go to the blob store.
    pub(crate) async fn stash(&self, id: &RunId, name: &str, v: Value) -> Result<Value, Error> {
        crate::stash::stash(self.blobs.as_ref(), id, name, v).await
    }

    /// Job state as it was, read back when it was stashed.
    pub(crate) async fn unstash(&self, v: &Value) -> Result<Value, Error> {
        crate::stash::unstash(self.blobs.as_ref(), v).await
    }

    /// Stops the job `handle` (as the run keeps it) names at the run's backend; failures are
    /// logged, not returned (the run is already final or being replaced). A local model or a
    /// model server needs nothing: its worker stops when its lease renewal finds the run ended
    /// (dropping the request, which closes the server's stream).
    pub(crate) async fn cancel_at_backend(
        &self,
        space: &dyn SpaceBackend,
        run: &Run,
        handle: &Value,
    ) {
        let result = match run.backend.kind {
            BackendKind::Space => match self.unstash(handle).await {
                Ok(h) => space.cancel(&h).await,
                Err(e) => Err(e),
            },
            // A chain's stages are cancelled as runs of their own (`Accept::cancel`).
            BackendKind::Onnx
            | BackendKind::HttpModel
            | BackendKind::Local
            | BackendKind::Chain => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(run = %run.id, error = %e, "could not cancel the job at the backend");
        }
    }
}

/// The step message that moves `run` on, as of its current version.
fn step_body(run: &Run) -> Result<String, Error> {
    serde_json::to_string(&StepMessage {
        run_id: run.id.clone(),
        version: run.version,
        delivery: None,
    })
    .map_err(|e| Error::Internal(e.to_string()))
}
