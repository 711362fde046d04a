//! The in-process hand-over between steps (`relay.rs`): a run goes from submit-space to
//! poll-status to fetch-artifact without a message where this process runs the next step; what
//! a handed-over step cannot finish goes back to its queue; and a run held by a runner that
//! stopped is sent on by the sweeper.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde_json::Value;
use spaceport_core::ports::{
    ByteStream, Clock, Queue, QueueName, SpaceBackend, SpaceEvent, SpaceJob, Submitted, SystemClock,
};
use spaceport_core::{Error, ErrorCode, PipelineSet, RunId, Status};
use spaceport_local::LocalStack;
use spaceport_steps::runner::{LOCAL_QUEUES, Runner, RunnerConfig};
use spaceport_steps::{Steps, StepsConfig};
use spaceport_testkit::fakes::{CountingQueue, Counts, InstantSpace};
use spaceport_testkit::png;

use crate::events::one_run;

/// The instant backend, whose downloads fail (retryably) `fail_downloads` times, and whose jobs
/// never end when `hang` is set.
struct Backend {
    inner: InstantSpace,
    fail_downloads: AtomicU32,
    hang: bool,
}

#[async_trait]
impl SpaceBackend for Backend {
    async fn submit(&self, job: SpaceJob) -> Result<Submitted, Error> {
        self.inner.submit(job).await
    }

    async fn watch(
        &self,
        handle: &Value,
    ) -> Result<BoxStream<'static, Result<SpaceEvent, Error>>, Error> {
        if self.hang {
            return Ok(Box::pin(futures::stream::pending()));
        }
        self.inner.watch(handle).await
    }

    async fn download(
        &self,
        handle: &Value,
        file: &Value,
    ) -> Result<(ByteStream, Option<String>), Error> {
        let left = self.fail_downloads.load(Ordering::SeqCst);
        if left > 0 {
            self.fail_downloads.store(left - 1, Ordering::SeqCst);
            return Err(Error::upstream(
                ErrorCode::SpaceUnavailable,
                true,
                "the Space dropped the download",
            ));
        }
        self.inner.download(handle, file).await
    }

    async fn cancel(&self, handle: &Value) -> Result<(), Error> {
        self.inner.cancel(handle).await
    }
}

struct ManualClock(Mutex<DateTime<Utc>>);

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

fn steps_on(
    local: &LocalStack,
    counts: &Arc<Counts>,
    space: Arc<dyn SpaceBackend>,
    clock: Arc<dyn Clock>,
) -> Steps {
    let queue = Arc::new(CountingQueue {
        inner: local.queue.clone(),
        counts: counts.clone(),
    });
    Steps::new(
        Arc::new(PipelineSet::builtin()),
        crate::ports(local, queue, space, clock),
        StepsConfig {
            backoff: Duration::from_millis(20),
            ..StepsConfig::default()
        },
    )
}

fn backend(fail_downloads: u32, hang: bool) -> Arc<dyn SpaceBackend> {
    Arc::new(Backend {
        inner: InstantSpace::new(),
        fail_downloads: AtomicU32::new(fail_downloads),
        hang,
    })
}

fn quick() -> RunnerConfig {
    RunnerConfig {
        idle_poll: Duration::from_millis(5),
        ..RunnerConfig::default()
    }
}

async fn ended(steps: &Steps, id: &RunId) -> spaceport_core::Run {
    let api = steps.accept();
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut run = api.get(id).await.unwrap();
    while !run.status.is_terminal() && tokio::time::Instant::now() < until {
        run = api.wait(id, None, Duration::from_secs(5)).await.unwrap();
    }
    run
}

fn sends(counts: &Counts) -> u64 {
    counts.sends.load(Ordering::SeqCst)
}

/// One run through one process running every step, on `space`; the run as it ended, the
/// queue's counts and the stack (to look into its queues).
async fn through_one_process(
    space: Arc<dyn SpaceBackend>,
) -> (
    spaceport_core::Run,
    Arc<Counts>,
    LocalStack,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalStack::open(dir.path(), "http://127.0.0.1:9").unwrap();
    let counts = Arc::new(Counts::default());
    let steps = steps_on(&local, &counts, space, Arc::new(SystemClock));
    let runner = Runner::start(steps.clone(), &LOCAL_QUEUES, quick());
    let id = one_run(&steps, Bytes::from(png(20, 20, 1))).await;
    let run = ended(&steps, &id).await;
    runner.shutdown().await;
    (run, counts, local, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_goes_from_step_to_step_in_process_with_one_message() {
    let (run, counts, local, _dir) = through_one_process(backend(0, false)).await;
    assert_eq!(run.status, Status::Succeeded, "{:?}", run.error);
    assert_eq!(run.artifacts.len(), 1, "{:?}", run.artifacts);
    assert!(run.job().lease.is_none(), "no lease left behind");
    // The landing's message to submit-space, and nothing after it: poll-status and
    // fetch-artifact were handed the run in-process (the outbox's sends go through the store,
    // so count what was received instead).
    let received = counts.received.load(Ordering::SeqCst);
    assert_eq!(received, 1, "one message received for the whole run");
    for q in [QueueName::PollStatus, QueueName::FetchArtifact] {
        assert_eq!(local.queue.stats(q).await.unwrap().depth, 0, "{q:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_next_step_in_this_process_the_run_goes_by_message() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalStack::open(dir.path(), "http://127.0.0.1:9").unwrap();
    let counts = Arc::new(Counts::default());
    let space = backend(0, false);
    // Two processes on one file: one submits, the other watches and fetches.
    let submitter = steps_on(&local, &counts, space.clone(), Arc::new(SystemClock));
    let watcher = steps_on(&local, &counts, space, Arc::new(SystemClock));
    let a = Runner::start(submitter.clone(), &[QueueName::SubmitSpace], quick());
    let b = Runner::start(
        watcher,
        &[QueueName::PollStatus, QueueName::FetchArtifact],
        quick(),
    );
    let id = one_run(&submitter, Bytes::from(png(20, 20, 2))).await;
    let run = ended(&submitter, &id).await;
    a.shutdown().await;
    b.shutdown().await;
    assert_eq!(run.status, Status::Succeeded, "{:?}", run.error);
    // submit-space's message, then poll-status's (the other process); fetch-artifact was handed
    // over in that process.
    assert_eq!(counts.received.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_over_step_that_must_retry_goes_back_to_its_queue() {
    let (run, counts, _local, _dir) = through_one_process(backend(1, false)).await;
    assert_eq!(run.status, Status::Succeeded, "{:?}", run.error);
    // The handed-over fetch failed once: its retry came back as a message of its own queue.
    assert_eq!(run.job().fetch_tries, 1, "{:?}", run.job());
    assert!(sends(&counts) >= 1, "the retry was sent");
    assert_eq!(counts.received.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_held_by_a_runner_that_stopped_is_sent_on_by_the_sweeper() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalStack::open(dir.path(), "http://127.0.0.1:9").unwrap();
    let counts = Arc::new(Counts::default());
    let clock = Arc::new(ManualClock(Mutex::new(Utc::now())));
    let steps = steps_on(&local, &counts, backend(0, true), clock.clone());
    let runner = Runner::start(steps.clone(), &LOCAL_QUEUES, quick());
    let id = one_run(&steps, Bytes::from(png(20, 20, 4))).await;
    // The job never ends: the run waits in poll-status, handed over in-process.
    let api = steps.accept();
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut run = api.get(&id).await.unwrap();
    while !(run.status == Status::Running && run.job().stream_opened) {
        assert!(tokio::time::Instant::now() < until, "{run:?}");
        run = api
            .wait(&id, Some(run.status), Duration::from_secs(1))
            .await
            .unwrap();
    }
    runner.shutdown().await;
    assert!(run.job().lease.is_some(), "held in-process");
    let waiting = || async {
        local
            .queue
            .waiting(QueueName::PollStatus, &id)
            .await
            .unwrap()
    };
    assert_eq!(waiting().await, Some(false), "no message behind it");
    // Nothing moves it while the lease lives; once it lapsed, the sweeper sends it on.
    let sweeper = steps.sweeper();
    sweeper.sweep(Duration::from_secs(10)).await.unwrap();
    assert_eq!(waiting().await, Some(false));
    *clock.0.lock().unwrap() += chrono::Duration::seconds(60);
    sweeper.sweep(Duration::from_secs(10)).await.unwrap();
    assert_eq!(waiting().await, Some(true), "re-sent to poll-status");
}
