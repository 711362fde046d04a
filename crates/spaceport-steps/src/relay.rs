//! In-process hand-over between the steps of one local runner. A step that moves a run on to a
//! step this process also runs, with one of that step's workers free, takes the run over for it
//! in the same write (the lease, and what the next step's own claim would mark) instead of
//! sending a message, and starts it at once: per hop, the message's send, receive and delete and
//! the next step's claim are not written, and nothing waits for a wake-up. A crash loses
//! nothing: a run held this way has a live lease and no message behind it, as a run whose step
//! crashed mid-way has, and the sweeper sends it on once the lease lapses (`sweep.rs`). Where no
//! runner is installed (a Lambda) or no worker of the next step is free, the message goes as
//! before.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use spaceport_core::ports::QueueName;
use spaceport_core::{Error, Run, lease};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::runs::Runs;
use crate::{Outcome, Step};

/// Where the running steps of this process can be reached; empty until a runner installs them.
#[derive(Clone, Default)]
pub(crate) struct Relay {
    board: Arc<RwLock<Option<Board>>>,
}

/// One runner's workers, by queue.
struct Board {
    /// Which `install` this was (a runner removes only its own).
    id: u64,
    lanes: Vec<Lane>,
    /// Ends the runs started here when the runner stops (their leases lapse; the sweeper sends
    /// them on).
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// One step's workers: its slots (shared with the runner's loop for its queue) and the step.
#[derive(Clone)]
pub(crate) struct Lane {
    pub(crate) queue: QueueName,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) step: Arc<dyn Step>,
}

/// A free worker of one step, reserved for a run about to be handed over.
pub(crate) struct Baton {
    lane: Lane,
    permit: OwnedSemaphorePermit,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Relay {
    /// Makes `lanes` reachable; runs started through them end when `stop` is cancelled, and
    /// `tasks` tracks them. Returns what `uninstall` takes.
    pub(crate) fn install(
        &self,
        lanes: Vec<Lane>,
        stop: CancellationToken,
        tasks: TaskTracker,
    ) -> u64 {
        let id = rand::random::<u64>();
        *self.board.write().unwrap_or_else(|p| p.into_inner()) = Some(Board {
            id,
            lanes,
            stop,
            tasks,
        });
        id
    }

    /// Forgets the lanes `install` returned `id` for (they hold the steps, which hold this).
    pub(crate) fn uninstall(&self, id: u64) {
        let mut board = self.board.write().unwrap_or_else(|p| p.into_inner());
        if board.as_ref().is_some_and(|b| b.id == id) {
            *board = None;
        }
    }

    /// A free worker of `queue`'s step in this process, reserved, if there is one now.
    pub(crate) fn reserve(&self, queue: QueueName) -> Option<Baton> {
        let board = self.board.read().unwrap_or_else(|p| p.into_inner());
        let board = board.as_ref()?;
        if board.stop.is_cancelled() {
            return None;
        }
        let lane = board.lanes.iter().find(|l| l.queue == queue)?;
        let permit = lane.slots.clone().try_acquire_owned().ok()?;
        Some(Baton {
            lane: lane.clone(),
            permit,
            stop: board.stop.clone(),
            tasks: board.tasks.clone(),
        })
    }
}

impl Baton {
    /// The queue whose step this worker runs.
    pub(crate) fn queue(&self) -> QueueName {
        self.lane.queue
    }

    /// Takes `run` over for the step, in the write that hands it on: the step's own marks (false,
    /// and nothing changed, when it takes no runs this way), then the lease, `me`'s until
    /// `until`.
    pub(crate) fn take_over(
        &self,
        run: &mut Run,
        me: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> bool {
        if !self.lane.step.take_over(run) {
            return false;
        }
        lease::clear(run);
        lease::claim(run, me, now, until)
    }

    /// Starts the step on `run`, taken over and stored. What it cannot finish goes back to its
    /// queue as a message (`Runs::hand_back`).
    pub(crate) fn start(self, run: Run, runs: Runs) {
        let Baton {
            lane,
            permit,
            stop,
            tasks,
        } = self;
        tasks.spawn(async move {
            let _held = permit;
            let id = run.id.clone();
            let result = tokio::select! {
                // As an aborted handler: the lease lapses and the sweeper sends the run on.
                _ = stop.cancelled() => return,
                r = lane.step.resume(run) => r,
            };
            let delay = match &result {
                Ok(Outcome::Done) => return,
                Ok(Outcome::RetryAfter(d)) => *d,
                Err(e) => {
                    tracing::warn!(queue = lane.queue.as_str(), run = %id, error = %e, "step failed; will retry");
                    crate::settle(&result, 1).unwrap_or_default()
                }
            };
            if let Err(e) = runs.hand_back(lane.queue, &id, delay).await {
                tracing::warn!(queue = lane.queue.as_str(), run = %id, error = %e, "could not send a run back to its queue; the sweeper will");
            }
        });
    }
}

/// What a step that takes no runs in-process answers `resume` with.
pub(crate) fn cannot_resume(queue: QueueName) -> Error {
    Error::Internal(format!(
        "{} takes no runs handed over in-process",
        queue.as_str()
    ))
}
