//! The sweeper: ends runs past their deadline (`expired`, stopping the job at the backend),
//! re-sends the message of every run whose worker vanished (a lapsed lease, a message lost
//! between a write and its send) to the step the routing table names, dispatches webhook
//! deliveries a crash left undispatched, and forgets day-old idempotency keys, so a crash at any
//! point loses nothing; every ten minutes it deletes the data of runs kept past their retention
//! (`retention.rs`). Each run is handled on its own: one that cannot be read or changed is
//! logged and passed over, and the sweep goes on through every candidate, page by page. A run
//! whose message merely waits in a backlog (the queue says so, where it can tell) is not sent
//! another.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use spaceport_core::ports::{IDEMPOTENCY_TTL, SpaceBackend};
use spaceport_core::{Error, Run, RunId};

use crate::notify::Notify;
use crate::runs::Runs;

/// Stalled runs read per page.
const STALLED_PAGE: usize = 100;
/// Overdue runs read per page.
const OVERDUE_PAGE: usize = 100;
/// Pages of overdue runs one sweep reads at most (the next sweep goes on).
const OVERDUE_PAGES: usize = 100;
/// How overdue a pending webhook delivery is before the sweeper re-sends its attempt.
const DELIVERY_GRACE: Duration = Duration::from_secs(30);

/// The sweeper.
pub struct Sweeper {
    runs: Runs,
    space: Arc<dyn SpaceBackend>,
    notify: Notify,
    /// When retention is next swept (`retention.rs`); `None`: at the next sweep.
    retention_due: std::sync::Mutex<Option<chrono::DateTime<chrono::Utc>>>,
}

impl Sweeper {
    /// The sweeper over its ports.
    pub fn new(runs: Runs, space: Arc<dyn SpaceBackend>, notify: Notify) -> Sweeper {
        Sweeper {
            runs,
            space,
            notify,
            retention_due: Default::default(),
        }
    }

    /// One sweep: expires overdue runs and re-queues every stalled one (a run is stalled once
    /// nothing moved it for `stall_after` past its lease, or past when it was queued). Returns
    /// how many runs it touched.
    pub async fn sweep(&self, stall_after: Duration) -> Result<usize, Error> {
        let runs = &self.runs;
        let now = runs.clock.now();
        let mut touched = 0;
        let key_ttl = chrono::Duration::from_std(IDEMPOTENCY_TTL).unwrap_or_default();
        if let Err(e) = runs.store.purge_idempotency_keys(now - key_ttl).await {
            tracing::warn!(error = %e, "could not purge old idempotency keys");
        }
        touched += self.expire_overdue(now).await?;
        let before = now - chrono::Duration::from_std(stall_after).unwrap_or_default();
        let mut after = None;
        loop {
            let page = runs
                .store
                .stalled(before, after.as_ref(), STALLED_PAGE)
                .await?;
            for run in &page.runs {
                match self.resend(run).await {
                    Ok(sent) => touched += usize::from(sent),
                    Err(e) => {
                        tracing::warn!(run = %run.id, error = %e, "could not re-send a stalled run's message; passed over")
                    }
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        touched += self.notify.sweep(now, DELIVERY_GRACE).await?;
        if self.retention_is_due(now) {
            touched += runs.sweep_retention(now).await?;
        }
        Ok(touched)
    }

    /// Whether retention is due now (and if so, when it is due next).
    fn retention_is_due(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        let mut due = self.retention_due.lock().unwrap_or_else(|p| p.into_inner());
        if due.is_some_and(|d| now < d) {
            return false;
        }
        let every =
            chrono::Duration::from_std(crate::retention::RETENTION_EVERY).unwrap_or_default();
        *due = Some(now + every);
        true
    }

    /// Expires every run past its deadline, page by page; a run that cannot be expired is
    /// passed over (and asked for again past the page, so it starves no other).
    async fn expire_overdue(&self, now: chrono::DateTime<chrono::Utc>) -> Result<usize, Error> {
        let runs = &self.runs;
        let mut touched = 0;
        let mut passed: HashSet<RunId> = HashSet::new();
        for _ in 0..OVERDUE_PAGES {
            let limit = OVERDUE_PAGE + passed.len();
            let ids = runs.store.overdue(now, limit).await?;
            let full = ids.len() >= limit;
            let mut progressed = false;
            for id in ids {
                if passed.contains(&id) {
                    continue;
                }
                match self.expire(&id).await {
                    Ok(expired) => {
                        touched += usize::from(expired);
                        progressed = true;
                    }
                    Err(e) => {
                        tracing::warn!(run = %id, error = %e, "could not expire an overdue run; passed over");
                        passed.insert(id);
                    }
                }
            }
            if !full || !progressed {
                break;
            }
        }
        Ok(touched)
    }

    /// Expires one overdue run and stops its job at the backend.
    async fn expire(&self, id: &RunId) -> Result<bool, Error> {
        if !self.runs.expire_run(id).await? {
            return Ok(false);
        }
        let run = self.runs.load(id).await?;
        if let Some(h) = run.job_handle() {
            self.runs
                .cancel_at_backend(self.space.as_ref(), &run, h)
                .await;
        }
        Ok(true)
    }

    /// Sends a stalled run's message again, unless one waits for it in its queue.
    async fn resend(&self, run: &Run) -> Result<bool, Error> {
        let Some(queue) = run.backend.kind.queue_for(run.status) else {
            return Ok(false);
        };
        if self.runs.queue.waiting(queue, &run.id).await? == Some(true) {
            return Ok(false);
        }
        tracing::info!(run = %run.id, status = %run.status, "re-sending the message of a stalled run");
        self.runs.hand_on(run).await?;
        Ok(true)
    }
}
