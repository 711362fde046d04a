//! A joined job's updates, the same for every protocol: [`JobStream`] ends after the first
//! terminal update or error, while the protocol module behind it ([`UpdateSource`]) decides what
//! its frames mean (a queue session's messages today, a websocket's later).

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use serde_json::Value;
use spaceport_core::Error;

/// How one event ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `success: true` with `output.data`.
    Completed(Vec<Value>),
    /// `success: true` and no `output.data`: the event was cancelled.
    Cancelled,
    /// `success: false`: the function raised; the Space's message.
    Failed(String),
}

/// What happened to a joined event, as its stream tells it.
#[derive(Debug, Clone, PartialEq)]
pub enum JobUpdate {
    /// Waiting in the Space's queue.
    Queued {
        rank: Option<u64>,
        queue_size: Option<u64>,
        eta_s: Option<f64>,
    },
    /// A worker took it.
    Started { eta_s: Option<f64> },
    /// `gr.Progress`.
    Progress {
        fraction: Option<f64>,
        message: Option<String>,
    },
    /// `gr.Info`/`gr.Warning`/log lines.
    Log { message: String },
    /// A generator's current outputs (diffs applied).
    Generating { outputs: Vec<Value> },
    /// It ended.
    Finished(Outcome),
    /// The Space no longer knows it, or the stream broke before it ended: its result is gone.
    Lost { reason: String },
}

impl JobUpdate {
    /// Whether nothing follows this update.
    pub fn is_terminal(&self) -> bool {
        matches!(self, JobUpdate::Finished(_) | JobUpdate::Lost { .. })
    }
}

/// One protocol's reading of a job's stream, behind [`JobStream`].
#[async_trait]
pub(crate) trait UpdateSource: Send {
    /// The next update; a stream that ends or goes silent is a `Lost` update, not an error.
    async fn next(&mut self) -> Result<JobUpdate, Error>;

    /// Called once the job finished, before the stream is dropped, so that our disconnect does
    /// not make the Space clean up what it still sends (bounded).
    async fn settle(&mut self);
}

/// The event stream of one joined event. Dropping it before the end drops the connection, which
/// makes the Space forget the session (its result is lost).
pub struct JobStream {
    source: Box<dyn UpdateSource>,
    done: bool,
}

impl JobStream {
    pub(crate) fn new(source: Box<dyn UpdateSource>) -> JobStream {
        JobStream {
            source,
            done: false,
        }
    }

    /// The next update; `None` after a terminal one. Never waits longer than the idle timeout.
    pub async fn next_update(&mut self) -> Option<Result<JobUpdate, Error>> {
        if self.done {
            return None;
        }
        let next = self.source.next().await;
        self.done = next.as_ref().map_or(true, JobUpdate::is_terminal);
        Some(next)
    }

    /// Reads to the end and returns the outcome (for calls whose result feeds a later call).
    pub async fn finish(mut self) -> Result<Result<Outcome, String>, Error> {
        while let Some(u) = self.next_update().await {
            match u? {
                JobUpdate::Finished(o) => {
                    self.source.settle().await;
                    return Ok(Ok(o));
                }
                JobUpdate::Lost { reason } => return Ok(Err(reason)),
                _ => {}
            }
        }
        Ok(Err("the stream ended".into()))
    }

    /// As a `futures` stream.
    pub fn into_stream(self) -> BoxStream<'static, Result<JobUpdate, Error>> {
        futures::stream::unfold(self, |mut s| async move {
            s.next_update().await.map(|u| (u, s))
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Replays updates (an error if read past them) and records whether it was settled.
    struct Replay {
        updates: std::collections::VecDeque<Result<JobUpdate, Error>>,
        settled: Arc<AtomicBool>,
    }

    #[async_trait]
    impl UpdateSource for Replay {
        async fn next(&mut self) -> Result<JobUpdate, Error> {
            self.updates
                .pop_front()
                .unwrap_or_else(|| Err(Error::Internal("read past the end".into())))
        }

        async fn settle(&mut self) {
            self.settled.store(true, Ordering::SeqCst);
        }
    }

    fn replay(updates: Vec<Result<JobUpdate, Error>>) -> (JobStream, Arc<AtomicBool>) {
        let settled = Arc::new(AtomicBool::new(false));
        let source = Replay {
            updates: updates.into(),
            settled: settled.clone(),
        };
        (JobStream::new(Box::new(source)), settled)
    }

    fn stream(updates: Vec<Result<JobUpdate, Error>>) -> JobStream {
        replay(updates).0
    }

    #[tokio::test]
    async fn a_stream_ends_after_its_terminal_update() {
        let mut s = stream(vec![
            Ok(JobUpdate::Started { eta_s: None }),
            Ok(JobUpdate::Finished(Outcome::Cancelled)),
        ]);
        assert!(matches!(
            s.next_update().await,
            Some(Ok(JobUpdate::Started { .. }))
        ));
        assert!(matches!(
            s.next_update().await,
            Some(Ok(JobUpdate::Finished(_)))
        ));
        assert!(s.next_update().await.is_none());
    }

    #[tokio::test]
    async fn a_stream_ends_after_an_error() {
        let mut s = stream(vec![Err(Error::Internal("x".into()))]);
        assert!(matches!(s.next_update().await, Some(Err(_))));
        assert!(s.next_update().await.is_none());
    }

    #[tokio::test]
    async fn finish_returns_the_outcome_or_the_reason_it_was_lost() {
        let (done, settled) = replay(vec![
            Ok(JobUpdate::Log {
                message: "hi".into(),
            }),
            Ok(JobUpdate::Finished(Outcome::Completed(vec![Value::from(
                1,
            )]))),
        ]);
        assert_eq!(
            done.finish().await.unwrap(),
            Ok(Outcome::Completed(vec![Value::from(1)]))
        );
        assert!(
            settled.load(Ordering::SeqCst),
            "a finished job lets the Space settle"
        );
        let (lost, settled) = replay(vec![Ok(JobUpdate::Lost {
            reason: "gone".into(),
        })]);
        assert_eq!(lost.finish().await.unwrap(), Err("gone".into()));
        assert!(!settled.load(Ordering::SeqCst));
    }
}
