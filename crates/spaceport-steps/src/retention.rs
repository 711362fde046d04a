//! A finished run's data goes when it is no longer wanted: on `DELETE`, or once it has been
//! kept its pipeline's `retain_days` (else the deployment's `retention_days`). Its inputs,
//! artifacts and stashed job state are deleted from the blob store and the record stays, marked
//! `deleted_at` with `deleted_by` (`request` or `retention`), so a client still reads how the
//! run went. Retention is swept at most every `RETENTION_EVERY`: the store lists finished runs
//! by when they finished (an index), each checked against its own pipeline's days.

use std::time::Duration;

use chrono::{DateTime, Utc};
use spaceport_core::{Error, InputState, Run};

use crate::runs::Runs;

/// How often retention is swept: data kept for days need not go to the second.
pub const RETENTION_EVERY: Duration = Duration::from_secs(600);

/// Finished runs read per page.
const PAGE: usize = 100;

impl Runs {
    /// Deletes a finished run's inputs, artifacts and stashed job state, and marks the record
    /// (`by`: `request` or `retention`). Deleting twice changes nothing.
    pub(crate) async fn delete_data(&self, run: &Run, by: &str) -> Result<Run, Error> {
        for f in run.inputs.values().flatten() {
            self.blobs.delete(&f.key).await?;
        }
        for a in &run.artifacts {
            self.blobs.delete(&a.key).await?;
        }
        // Job state kept in the blob store (a 3.x job's inline handle and outputs).
        let job = run.job();
        for kept in job.handle.iter().chain(job.outputs.iter().flatten()) {
            crate::stash::forget(self.blobs.as_ref(), kept).await;
        }
        let now = self.clock.now();
        let mutated = self
            .mutate(&run.id, |run| {
                if run.deleted_at.is_some() {
                    return Ok(false);
                }
                run.deleted_at = Some(now);
                run.deleted_by = Some(by.to_string());
                for f in run.inputs.values_mut().flatten() {
                    f.state = InputState::Deleted;
                }
                run.artifacts.clear();
                Ok(true)
            })
            .await?;
        Ok(mutated.run().clone())
    }

    /// The days `run`'s data is kept: its pipeline's, else the deployment's; `None`: for good.
    fn retain_days(&self, run: &Run) -> Option<u32> {
        self.pipelines
            .get(&run.pipeline)
            .ok()
            .and_then(|p| p.retain_days)
            .or(self.config.retention_days)
    }

    /// Deletes the data of every finished run kept past its days. Returns how many.
    pub(crate) async fn sweep_retention(&self, now: DateTime<Utc>) -> Result<usize, Error> {
        let shortest = self
            .pipelines
            .iter()
            .filter_map(|p| p.retain_days)
            .chain(self.config.retention_days)
            .min();
        let Some(shortest) = shortest else {
            return Ok(0);
        };
        let before = now - chrono::Duration::days(i64::from(shortest));
        let mut purged = 0;
        let mut after = None;
        loop {
            let Some(page) = self.store.retained(before, after.as_ref(), PAGE).await? else {
                return Ok(purged);
            };
            for run in &page.runs {
                let Some(days) = self.retain_days(run) else {
                    continue;
                };
                let due = run
                    .finished_at
                    .is_some_and(|t| t + chrono::Duration::days(i64::from(days)) <= now);
                if !due {
                    continue;
                }
                match self.delete_data(run, "retention").await {
                    Ok(_) => purged += 1,
                    Err(e) => {
                        tracing::warn!(run = %run.id, error = %e, "could not delete a run's data past its retention; passed over")
                    }
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(purged),
            }
        }
    }
}
