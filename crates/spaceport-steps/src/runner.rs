//! The local runner: the step workers of `spaceport serve` and of an in-process `spaceport run`.
//! One loop per queue receives messages, handles them concurrently, keeps them invisible while
//! they are handled (visibility heartbeats), and deletes or re-schedules them; a sweeper loop
//! expires overdue runs and re-sends stalled ones.

use std::sync::Arc;
use std::time::Duration;

use spaceport_core::ports::{Delivery, Queue, QueueName};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::relay::{Lane, Relay};
use crate::{Step, Steps, Sweeper, handle_message, settle};

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
    /// Runs handed from one step to the next in-process (`relay.rs`).
    relayed: TaskTracker,
    relay: Relay,
    installed: u64,
}

/// The queues the local runner serves.
pub const LOCAL_QUEUES: [QueueName; 6] = [
    QueueName::SubmitSpace,
    QueueName::PollStatus,
    QueueName::FetchArtifact,
    QueueName::Reconstruct,
    QueueName::CallModel,
    QueueName::NotifyWebhook,
];

impl Runner {
    /// Starts one worker loop per queue in `queues` (with this process's step for it) and the
    /// sweeper.
    pub fn start(steps: Steps, queues: &[QueueName], config: RunnerConfig) -> Runner {
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut lanes = vec![];
        for &q in queues {
            let Some(step) = steps.step(q) else {
                tracing::warn!(queue = q.as_str(), "no step for this queue in this build");
                continue;
            };
            // One set of slots per step, for the runs its loop receives and those handed to it.
            let slots = Arc::new(Semaphore::new(config.concurrency));
            lanes.push(Lane {
                queue: q,
                slots: slots.clone(),
                step: step.clone(),
            });
            tasks.spawn(worker_loop(
                steps.ports.queue.clone(),
                step,
                slots,
                config.clone(),
                stop.clone(),
            ));
        }
        let relayed = TaskTracker::new();
        let relay = steps.runs().relay.clone();
        let installed = relay.install(lanes, stop.clone(), relayed.clone());
        tasks.spawn(sweeper_loop(
            Arc::new(steps.sweeper()),
            config,
            stop.clone(),
        ));
        Runner {
            stop,
            tasks,
            relayed,
            relay,
            installed,
        }
    }

    /// Stops the loops and waits for them (in-flight messages become visible again later; runs
    /// handed over in-process are sent on by the sweeper once their leases lapse).
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        self.relay.uninstall(self.installed);
        while self.tasks.join_next().await.is_some() {}
        self.relayed.close();
        self.relayed.wait().await;
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.stop.cancel();
        self.relay.uninstall(self.installed);
        self.tasks.abort_all();
    }
}

async fn worker_loop(
    queues: Arc<dyn Queue>,
    step: Arc<dyn Step>,
    slots: Arc<Semaphore>,
    config: RunnerConfig,
    stop: CancellationToken,
) {
    let queue = step.queue();
    let mut handlers = JoinSet::new();
    loop {
        while handlers.try_join_next().is_some() {}
        let free = slots.available_permits();
        if free == 0 {
            // Every worker busy (with messages, or runs handed over in-process): wait for one.
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = slots.acquire() => continue,
            }
        }
        let received = tokio::select! {
            _ = stop.cancelled() => break,
            r = queues.receive(queue, free, config.visibility) => r,
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
            let (queues, step, config) = (queues.clone(), step.clone(), config.clone());
            handlers.spawn(async move {
                handle_one(queues.as_ref(), step.as_ref(), d, &config, permit).await;
            });
        }
    }
    handlers.abort_all();
}

/// Handles one message, holding `slot` while the step works: the slot is given back before the
/// message is settled, so the next message's step does not wait on this one's delete (a
/// message being settled is still hidden, so it cannot be received twice meanwhile).
async fn handle_one(
    queues: &dyn Queue,
    step: &dyn Step,
    d: Delivery,
    config: &RunnerConfig,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let queue = step.queue();
    let work = handle_message(step, &d.body);
    tokio::pin!(work);
    let beat = config.visibility / 3;
    let result = loop {
        tokio::select! {
            r = &mut work => break r,
            _ = tokio::time::sleep(beat) => {
                if let Err(e) = queues.change_visibility(queue, &d.receipt, config.visibility).await {
                    tracing::warn!(queue = queue.as_str(), error = %e, "could not extend a message's visibility");
                }
            }
        }
    };
    drop(slot);
    if let Err(e) = &result {
        tracing::warn!(queue = queue.as_str(), message = %d.message_id, error = %e, "step failed; will retry");
    }
    let settled = match settle(&result, d.receive_count) {
        None => queues.delete(queue, &d.receipt).await,
        Some(delay) => queues.change_visibility(queue, &d.receipt, delay).await,
    };
    if let Err(e) = settled {
        tracing::warn!(queue = queue.as_str(), error = %e, "could not settle a message");
    }
}

async fn sweeper_loop(sweeper: Arc<Sweeper>, config: RunnerConfig, stop: CancellationToken) {
    loop {
        if let Err(e) = sweeper.sweep(config.stall_after).await {
            tracing::warn!(error = %e, "sweep failed");
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(config.sweep_every) => {}
        }
    }
}
