//! Wakes whoever waits on a run in this process the moment a step or the API changes it
//! (`GET /v1/runs/{id}?wait=`, the run's event stream), instead of re-reading the store in a
//! tight loop. Changes made by other processes (another worker, a Lambda) are seen by
//! re-reading the store on a slow beat, `CROSS_PROCESS_POLL`.

use std::time::Duration;

use spaceport_core::RunId;
use tokio::sync::broadcast;

/// How often a waiter re-reads the store for changes another process made.
pub const CROSS_PROCESS_POLL: Duration = Duration::from_secs(1);

/// Changes waiters may have missed before they re-read the store (a lagging waiter re-reads).
const BACKLOG: usize = 1024;

/// The runs this process changed, as they change.
#[derive(Debug, Clone)]
pub struct Changes(broadcast::Sender<RunId>);

impl Default for Changes {
    fn default() -> Self {
        Changes(broadcast::channel(BACKLOG).0)
    }
}

impl Changes {
    /// Tells this process's waiters that run `id` changed.
    pub fn notify(&self, id: &RunId) {
        // No receiver is fine: nobody waits.
        let _ = self.0.send(id.clone());
    }

    /// A listener for changes from now on; subscribe before reading what you will compare.
    pub fn listen(&self) -> Listener {
        Listener(self.0.subscribe())
    }
}

/// Receives the changes made after it was created.
#[derive(Debug)]
pub struct Listener(broadcast::Receiver<RunId>);

impl Listener {
    /// Waits until run `id` changed in this process, another process may have changed it (the
    /// cross-process beat), or `max` passed, whichever comes first.
    pub async fn changed(&mut self, id: &RunId, max: Duration) {
        self.any_changed(&std::collections::HashSet::from([id.clone()]), max)
            .await
    }

    /// Waits until any of `ids` changed in this process (or some change was missed), another
    /// process may have changed one (the cross-process beat), or `max` passed.
    pub async fn any_changed(&mut self, ids: &std::collections::HashSet<RunId>, max: Duration) {
        let beat = tokio::time::sleep(max.min(CROSS_PROCESS_POLL));
        tokio::pin!(beat);
        loop {
            tokio::select! {
                got = self.0.recv() => match got {
                    Ok(changed) if ids.contains(&changed) => return,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => return beat.await,
                },
                _ = &mut beat => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiter_wakes_on_its_run_and_not_on_others() {
        let changes = Changes::default();
        let mine = RunId::new(1, 1);
        let other = RunId::new(1, 2);
        let mut l = changes.listen();
        changes.notify(&other);
        changes.notify(&mine);
        let t = std::time::Instant::now();
        l.changed(&mine, Duration::from_secs(30)).await;
        assert!(t.elapsed() < Duration::from_millis(500), "woken by its run");
        // Nothing more: it waits for the cross-process beat (bounded by `max`).
        let t = std::time::Instant::now();
        l.changed(&mine, Duration::from_millis(50)).await;
        assert!(t.elapsed() >= Duration::from_millis(50));
    }
}
