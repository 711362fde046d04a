//! The local runner: the step workers of `spaceport serve` and of an in-process `spaceport run`.
//! One loop per queue receives messages, handles them concurrently, keeps them invisible while
//! they are handled (visibility heartbeats), and deletes or re-schedules them; a sweeper loop
//! expires overdue runs and re-sends stalled ones.

use std::sync::Arc;
use std::time::Duration;

use spaceport_core::ports::QueueName;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{Outcome, Steps};

/// Tunables of the local runner.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Messages handled at once per queue.
    pub concurrency: usize,
    /// How long a received message stays hidden between heartbeats.
    pub visibility: Duration,
    /// How often an idle loop looks for messages.
    pub idle_poll: Duration,
    /// How often the sweeper runs.
    pub sweep_every: Duration,
    /// A run whose lease lapsed this long ago is re-sent.
    pub stall_after: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            concurrency: 8,
            visibility: Duration::from_secs(30),
            idle_poll: Duration::from_millis(50),
            sweep_every: Duration::from_secs(5),
            stall_after: Duration::from_secs(10),
        }
    }
}

/// Running step workers; dropping it (or `shutdown`) stops them.
pub struct Runner {
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

/// The queues the local runner serves.
pub const LOCAL_QUEUES: [QueueName; 4] = [
    QueueName::SubmitSpace,
    QueueName::PollStatus,
    QueueName::FetchArtifact,
    QueueName::Reconstruct,
];

impl Runner {
    /// Starts one worker loop per queue in `queues` and the sweeper.
    pub fn start(steps: Steps, queues: &[QueueName], config: RunnerConfig) -> Runner {
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let steps = Arc::new(steps);
        for &q in queues {
            tasks.spawn(worker_loop(steps.clone(), q, config.clone(), stop.clone()));
        }
        tasks.spawn(sweeper_loop(steps, config, stop.clone()));
        Runner { stop, tasks }
    }

    /// Stops the loops and waits for them (in-flight messages become visible again later).
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.stop.cancel();
        self.tasks.abort_all();
    }
}

async fn worker_loop(
    steps: Arc<Steps>,
    queue: QueueName,
    config: RunnerConfig,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(config.concurrency));
    let mut handlers = JoinSet::new();
    loop {
        while handlers.try_join_next().is_some() {}
        let free = slots.available_permits();
        if free == 0 {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = handlers.join_next() => continue,
            }
        }
        let received = tokio::select! {
            _ = stop.cancelled() => break,
            r = steps.queue.receive(queue, free, config.visibility) => r,
        };
        let deliveries = match received {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(queue = queue.as_str(), error = %e, "receive failed");
                Vec::new()
            }
        };
        if deliveries.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(config.idle_poll) => {}
            }
            continue;
        }
        for d in deliveries {
            let permit = slots.clone().acquire_owned().await.expect("semaphore open");
            let steps = steps.clone();
            let config = config.clone();
            handlers.spawn(async move {
                let _permit = permit;
                handle_one(&steps, queue, d, &config).await;
            });
        }
    }
    handlers.abort_all();
}

async fn handle_one(
    steps: &Steps,
    queue: QueueName,
    d: spaceport_core::ports::Delivery,
    config: &RunnerConfig,
) {
    let work = steps.handle(queue, &d.body);
    tokio::pin!(work);
    let beat = config.visibility / 3;
    let result = loop {
        tokio::select! {
            r = &mut work => break r,
            _ = tokio::time::sleep(beat) => {
                if let Err(e) = steps.queue.change_visibility(queue, &d.receipt, config.visibility).await {
                    tracing::warn!(queue = queue.as_str(), error = %e, "could not extend a message's visibility");
                }
            }
        }
    };
    let settle = match result {
        Ok(Outcome::Done) => steps.queue.delete(queue, &d.receipt).await,
        Ok(Outcome::RetryAfter(delay)) => {
            steps
                .queue
                .change_visibility(queue, &d.receipt, delay)
                .await
        }
        Err(e) => {
            let delay = Duration::from_secs(1 << d.receive_count.min(5));
            tracing::warn!(queue = queue.as_str(), message = %d.message_id, error = %e, retry_in_s = delay.as_secs(), "step failed; will retry");
            steps
                .queue
                .change_visibility(queue, &d.receipt, delay)
                .await
        }
    };
    if let Err(e) = settle {
        tracing::warn!(queue = queue.as_str(), error = %e, "could not settle a message");
    }
}

async fn sweeper_loop(steps: Arc<Steps>, config: RunnerConfig, stop: CancellationToken) {
    loop {
        if let Err(e) = steps.sweep(config.stall_after).await {
            tracing::warn!(error = %e, "sweep failed");
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(config.sweep_every) => {}
        }
    }
}
