//! The sweeper: ends runs past their deadline (`expired`, stopping the job at the backend) and
//! re-sends the message of a run whose worker vanished (a lapsed lease, a message lost between a
//! write and its send), so a crash at any point loses nothing.

use std::time::Duration;

use spaceport_core::ports::{IDEMPOTENCY_TTL, ListQuery, QueueName};
use spaceport_core::{Error, Status};

use crate::{JobState, Steps};

impl Steps {
    /// One sweep: expires overdue runs and re-queues stalled ones. Returns how many it touched.
    pub async fn sweep(&self, stall_after: Duration) -> Result<usize, Error> {
        let now = self.clock.now();
        let mut touched = 0;
        let key_ttl = chrono::Duration::from_std(IDEMPOTENCY_TTL).unwrap_or_default();
        self.store.purge_idempotency_keys(now - key_ttl).await?;
        for id in self.store.overdue(now, 100).await? {
            if self.expire_run(&id).await? {
                touched += 1;
                let run = self.load(&id).await?;
                if let Some(h) = JobState::of(&run).handle {
                    self.cancel_at_backend(&run, &h).await;
                }
            }
        }
        let stall = chrono::Duration::from_std(stall_after).unwrap_or_default();
        for (status, queue) in [
            (Status::Queued, QueueName::SubmitSpace),
            (Status::Submitting, QueueName::SubmitSpace),
            (Status::Running, QueueName::PollStatus),
            (Status::Fetching, QueueName::FetchArtifact),
        ] {
            let page = self
                .store
                .list(&ListQuery {
                    status: Some(status),
                    limit: 100,
                    ..ListQuery::default()
                })
                .await?;
            for run in page.runs {
                // Runs on a local model are redone by the reconstruct worker from any live status.
                let queue = match (run.backend.kind.as_str(), status) {
                    ("space", _) | (_, Status::Queued) => queue,
                    _ => QueueName::Reconstruct,
                };
                let job = JobState::of(&run);
                let stalled = match &job.lease {
                    Some(l) => l.until + stall < now,
                    None => run
                        .queued_at
                        .or(Some(run.created_at))
                        .is_some_and(|t| t + stall < now),
                };
                if stalled {
                    tracing::info!(run = %run.id, status = %run.status, "re-sending the message of a stalled run");
                    self.enqueue(queue, &run, Duration::ZERO).await?;
                    touched += 1;
                }
            }
        }
        Ok(touched)
    }
}
