//! accept-upload's reads: a run, waiting for it to change, its events, the feed, an
//! artifact's download URL, a page of runs — each confined to the view's tenant.

use std::time::Duration;

use chrono::{DateTime, Utc};
use spaceport_core::ports::{FeedPage, FeedQuery, ListQuery, RunPage};
use spaceport_core::{Artifact, Error, Run, RunEvent, RunId, Status};

use crate::accept::Accept;
use crate::inputs;

impl Accept {
    /// Reads a run.
    pub async fn get(&self, id: &RunId) -> Result<Run, Error> {
        self.load(id).await
    }

    /// Waits up to `timeout` for the run's status to differ from `from` (the status when the wait
    /// began, if `None`), then returns the run as it is. Woken by the change itself when this
    /// process makes it; changes of other processes are seen on the cross-process beat.
    pub async fn wait(
        &self,
        id: &RunId,
        from: Option<Status>,
        timeout: Duration,
    ) -> Result<Run, Error> {
        // Listen before reading, so a change between the read and the wait is not missed.
        let mut listener = self.runs().listen();
        let mut run = self.load(id).await?;
        let from = from.unwrap_or(run.status);
        let until = tokio::time::Instant::now() + timeout;
        while run.status == from && !run.status.is_terminal() {
            let now = tokio::time::Instant::now();
            if now >= until {
                break;
            }
            listener.changed(id, until - now).await;
            run = self.load(id).await?;
        }
        Ok(run)
    }

    /// The run's events after sequence number `after`, in order, at most `limit` (`NotFound`
    /// for an unknown run).
    pub async fn events(
        &self,
        id: &RunId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RunEvent>, Error> {
        let run = self.load(id).await?;
        if after >= run.event_seq {
            return Ok(vec![]);
        }
        self.runs().store.events(id, after, limit).await
    }

    /// Every run's events in commit order, a page at a time.
    pub async fn feed(&self, query: &FeedQuery) -> Result<FeedPage, Error> {
        let query = FeedQuery {
            tenant: self.tenant().map(str::to_owned),
            ..query.clone()
        };
        self.runs().store.feed(&query).await
    }

    /// An artifact of a run, with a short-lived download URL.
    pub async fn artifact(
        &self,
        id: &RunId,
        name: &str,
    ) -> Result<(Artifact, String, DateTime<Utc>), Error> {
        self.presigned(artifact_of(&self.load(id).await?, name)?)
            .await
    }

    /// `a` with a short-lived download URL.
    pub(crate) async fn presigned(
        &self,
        a: Artifact,
    ) -> Result<(Artifact, String, DateTime<Utc>), Error> {
        let (url, exp) = self
            .blobs()
            .presign_download(&a.key, Some(&a.filename), self.runs().config.download_ttl)
            .await?;
        Ok((a, url, exp))
    }

    /// Runs newest first, filtered, one page at a time.
    pub async fn list(&self, query: &ListQuery) -> Result<RunPage, Error> {
        let query = ListQuery {
            tenant: self.tenant().map(str::to_owned),
            ..query.clone()
        };
        self.runs().store.list(&query).await
    }

    /// Reads a blob whole (for the CLI and tests).
    pub async fn read_blob(&self, key: &str) -> Result<Vec<u8>, Error> {
        inputs::read_all(self.blobs().get(key).await?).await
    }
}

/// Artifact `name` of `run`, or `NotFound` naming it.
pub(crate) fn artifact_of(run: &Run, name: &str) -> Result<Artifact, Error> {
    run.artifacts
        .iter()
        .find(|a| a.name == name)
        .cloned()
        .ok_or_else(|| Error::NotFound {
            what: "artifact",
            id: format!("{}/{name}", run.id),
        })
}
