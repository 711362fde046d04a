//! Holding a run through a long transfer (inputs up to a Space, results down from it): our
//! lease is renewed every heartbeat, so no other worker takes the run over while bytes still
//! flow, and the transfer stops at the run's deadline (the run expires) or as soon as the run is
//! no longer ours (cancelled, deleted, or taken over after a stall). What it had written by then
//! is the caller's to discard (`discard`).

use std::future::Future;
use std::time::Duration;

use spaceport_core::ports::BlobStore;
use spaceport_core::{Error, Run, RunId, Status};

use crate::runs::Runs;

/// How a held transfer ended.
pub(crate) enum Held<T> {
    /// It finished (well or not) while the run was ours.
    Done(T),
    /// The run ended or changed hands first; the transfer was dropped.
    Released,
}

impl Runs {
    /// Runs `work` while holding `run` (see the module's note).
    pub(crate) async fn holding<T>(
        &self,
        run: &Run,
        work: impl Future<Output = T>,
    ) -> Result<Held<T>, Error> {
        let left = (run.deadline_at - self.clock.now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        let deadline = tokio::time::Instant::now() + left;
        let every = self.config.heartbeat;
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return Ok(Held::Done(out)),
                _ = beat.tick() => {
                    if !self.renew(&run.id, None).await? {
                        return Ok(Held::Released);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.expire_run(&run.id).await?;
                    return Ok(Held::Released);
                }
            }
        }
    }

    /// Deletes what a step wrote for run `id` (`keys`) once the run turned out not to want it:
    /// deleted, or ended other than `succeeded`. A run still live or succeeded is another
    /// worker's now, writing the same fixed keys, so they stay.
    pub(crate) async fn discard(&self, id: &RunId, blobs: &dyn BlobStore, keys: &[String]) {
        let gone = match self.store.get(id).await {
            Ok(None) => true,
            Ok(Some(run)) => run.status.is_terminal() && run.status != Status::Succeeded,
            Err(e) => {
                tracing::warn!(run = %id, error = %e, "could not read the run to discard a late write");
                false
            }
        };
        if !gone {
            return;
        }
        for key in keys {
            if let Err(e) = blobs.delete(key).await {
                tracing::warn!(run = %id, key, error = %e, "could not discard a late write");
            }
        }
        if !keys.is_empty() {
            tracing::info!(run = %id, files = keys.len(), "the run ended while its results were written; discarded them");
        }
    }
}
