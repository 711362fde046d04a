//! The sweeper: ends runs past their deadline (`expired`, stopping the job at the backend),
//! re-sends the message of every run whose worker vanished (a lapsed lease, a message lost
//! between a write and its send) to the step the routing table names, dispatches webhook
//! deliveries a crash left undispatched, and forgets day-old idempotency keys, so a crash at any
//! point loses nothing.

use std::sync::Arc;
use std::time::Duration;

use spaceport_core::Error;
use spaceport_core::ports::{IDEMPOTENCY_TTL, SpaceBackend};

use crate::notify::Notify;
use crate::runs::Runs;

/// Stalled runs read per page.
const STALLED_PAGE: usize = 100;
/// How overdue a pending webhook delivery is before the sweeper re-sends its attempt.
const DELIVERY_GRACE: Duration = Duration::from_secs(30);

/// The sweeper.
pub struct Sweeper {
    runs: Runs,
    space: Arc<dyn SpaceBackend>,
    notify: Notify,
}

impl Sweeper {
    /// The sweeper over its ports.
    pub fn new(runs: Runs, space: Arc<dyn SpaceBackend>, notify: Notify) -> Sweeper {
        Sweeper {
            runs,
            space,
            notify,
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
        runs.store.purge_idempotency_keys(now - key_ttl).await?;
        for id in runs.store.overdue(now, 100).await? {
            if runs.expire_run(&id).await? {
                touched += 1;
                let run = runs.load(&id).await?;
                if let Some(h) = run.job_handle() {
                    self.runs
                        .cancel_at_backend(self.space.as_ref(), &run, h)
                        .await;
                }
            }
        }
        let before = now - chrono::Duration::from_std(stall_after).unwrap_or_default();
        let mut after = None;
        loop {
            let page = runs
                .store
                .stalled(before, after.as_ref(), STALLED_PAGE)
                .await?;
            for run in &page.runs {
                tracing::info!(run = %run.id, status = %run.status, "re-sending the message of a stalled run");
                runs.hand_on(run).await?;
                touched += 1;
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        touched += self.notify.sweep(now, DELIVERY_GRACE).await?;
        Ok(touched)
    }
}
