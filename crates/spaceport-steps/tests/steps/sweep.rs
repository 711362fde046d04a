//! The sweeper and the lease records on the embedded adapters, with a clock the test moves.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::json;
use spaceport_core::ports::{
    BlobStore, Clock, Idempotency, Queue, QueueName, RunStore, StepMessage,
};
use spaceport_core::{
    BackendKind, CreateRunRequest, JobState, Lease, PipelineSet, Run, RunId, Status,
};
use spaceport_gradio::{ClientOptions, GradioBackend};
use spaceport_local::LocalStack;
use spaceport_steps::{Steps, StepsConfig};

struct ManualClock(Mutex<DateTime<Utc>>);

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

impl ManualClock {
    fn advance(&self, by: chrono::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

fn steps_on(local: &LocalStack, clock: Arc<dyn Clock>) -> Steps {
    let pipelines_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines");
    steps_with(local, clock, &pipelines_dir, StepsConfig::default())
}

/// The steps on `local`'s adapters with the pipelines in `dir` and `config`.
fn steps_with(local: &LocalStack, clock: Arc<dyn Clock>, dir: &Path, config: StepsConfig) -> Steps {
    Steps::new(
        Arc::new(PipelineSet::load_dir(dir).unwrap()),
        crate::ports(
            local,
            local.queue.clone(),
            Arc::new(GradioBackend::new(ClientOptions::default())),
            clock,
        ),
        config,
    )
}

#[tokio::test]
async fn the_sweeper_forgets_idempotency_keys_after_a_day_and_keeps_their_runs() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalStack::open(dir.path(), "http://127.0.0.1").unwrap();
    let clock = Arc::new(ManualClock(Mutex::new(Utc::now())));
    let steps = steps_on(&local, clock.clone());
    let api = steps.accept();
    let key = Idempotency {
        key: "order-17".into(),
        request_hash: "h".into(),
    };
    let new = || -> CreateRunRequest {
        serde_json::from_value(json!({
            "pipeline": "vggt",
            "inputs": {"images": [{"filename": "a.png", "content_type": "image/png", "size": 10}]},
            "deadline_s": 600,
        }))
        .unwrap()
    };
    let first = api.create(&new(), Some(key.clone())).await.unwrap();
    assert!(!first.existing);

    clock.advance(chrono::Duration::hours(23));
    steps
        .sweeper()
        .sweep(Duration::from_secs(10))
        .await
        .unwrap();
    let again = api.create(&new(), Some(key.clone())).await.unwrap();
    assert!(again.existing, "within a day the key still answers");
    assert_eq!(again.run.id, first.run.id);

    clock.advance(chrono::Duration::hours(1) + chrono::Duration::seconds(5));
    steps
        .sweeper()
        .sweep(Duration::from_secs(10))
        .await
        .unwrap();
    let later = api.create(&new(), Some(key)).await.unwrap();
    assert!(!later.existing, "after a day the key is forgotten");
    assert_ne!(later.run.id, first.run.id);
    let kept = steps
        .ports
        .store
        .get(&first.run.id)
        .await
        .unwrap()
        .expect("kept");
    assert_eq!(kept.id, first.run.id, "the first run stays");
}

/// A run of `kind` moved to `status` an hour ago, with a lease that lapsed then (or none).
fn stalled_run(kind: BackendKind, status: Status, leased: bool, now: DateTime<Utc>) -> Run {
    let long_ago = now - chrono::Duration::hours(1);
    let mut run = spaceport_contract::sample_run("vggt", long_ago);
    run.backend.kind = kind;
    let path: &[Status] = match status {
        Status::Queued => &[Status::Queued],
        Status::Submitting => &[Status::Queued, Status::Submitting],
        Status::Running => &[Status::Queued, Status::Submitting, Status::Running],
        _ => &[
            Status::Queued,
            Status::Submitting,
            Status::Running,
            Status::Fetching,
        ],
    };
    for s in path {
        run.transition(*s, long_ago).unwrap();
    }
    run.deadline_at = now + chrono::Duration::hours(1);
    if leased {
        run.job = Some(JobState {
            lease: Some(Lease {
                holder: "wrk_gone".into(),
                until: long_ago,
            }),
            ..JobState::default()
        });
    }
    run
}

#[tokio::test]
async fn the_sweeper_resends_every_stalled_run_past_a_page_to_the_step_its_kind_needs() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalStack::open(dir.path(), "http://127.0.0.1").unwrap();
    let now = Utc::now();
    let steps = steps_on(&local, Arc::new(ManualClock(Mutex::new(now))));
    let mut want = vec![];
    // More queued runs than a page holds, then one of every other live kind and status.
    for _ in 0..130 {
        want.push((
            stalled_run(BackendKind::Space, Status::Queued, false, now),
            QueueName::SubmitSpace,
        ));
    }
    for (kind, status, queue) in [
        (
            BackendKind::Space,
            Status::Submitting,
            QueueName::SubmitSpace,
        ),
        (BackendKind::Space, Status::Running, QueueName::PollStatus),
        (
            BackendKind::Space,
            Status::Fetching,
            QueueName::FetchArtifact,
        ),
        (BackendKind::Onnx, Status::Queued, QueueName::SubmitSpace),
        (BackendKind::Onnx, Status::Running, QueueName::Reconstruct),
        (BackendKind::Onnx, Status::Fetching, QueueName::Reconstruct),
    ] {
        for _ in 0..3 {
            want.push((
                stalled_run(kind, status, status != Status::Queued, now),
                queue,
            ));
        }
    }
    for (run, _) in &want {
        local.store.insert(run, None).await.unwrap();
    }
    // Not stalled: a live lease, a run still waiting for its inputs, a finished run.
    let mut live = stalled_run(BackendKind::Space, Status::Running, true, now);
    if let Some(job) = live.job.as_mut() {
        job.lease.as_mut().unwrap().until = now + chrono::Duration::seconds(30);
    }
    let mut created = spaceport_contract::sample_run("vggt", now - chrono::Duration::hours(1));
    created.deadline_at = now + chrono::Duration::hours(1);
    let mut done = stalled_run(BackendKind::Space, Status::Queued, false, now);
    done.transition(Status::Cancelled, now).unwrap();
    for run in [&live, &created, &done] {
        local.store.insert(run, None).await.unwrap();
    }

    let touched = steps
        .sweeper()
        .sweep(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(touched, want.len(), "every stalled run re-sent once");
    for queue in QueueName::ALL {
        let mut sent: Vec<RunId> = vec![];
        loop {
            let got = local
                .queue
                .receive(queue, 10, Duration::from_secs(600))
                .await
                .unwrap();
            if got.is_empty() {
                break;
            }
            for d in got {
                let msg: StepMessage = serde_json::from_str(&d.body).unwrap();
                sent.push(msg.run_id);
            }
        }
        let mut expected: Vec<RunId> = want
            .iter()
            .filter(|(_, q)| *q == queue)
            .map(|(r, _)| r.id.clone())
            .collect();
        sent.sort();
        expected.sort();
        assert_eq!(
            sent,
            expected,
            "{} got exactly its stalled runs",
            queue.as_str()
        );
    }
}

#[tokio::test]
async fn a_run_whose_job_record_does_not_decode_fails_loudly_and_keeps_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalStack::open(dir.path(), "http://127.0.0.1").unwrap();
    let now = Utc::now();
    let steps = steps_on(&local, Arc::new(ManualClock(Mutex::new(now))));
    let mut run = stalled_run(BackendKind::Space, Status::Running, true, now);
    if let Some(job) = run.job.as_mut() {
        job.lease.as_mut().unwrap().until = now + chrono::Duration::seconds(30);
        job.handle = Some(json!({"root": "http://127.0.0.1:9"}));
    }
    local.store.insert(&run, None).await.unwrap();
    // A record another build wrote wrongly: the lease's end is not a time.
    let conn = rusqlite::Connection::open(local.db.path()).unwrap();
    conn.execute(
        "UPDATE runs SET body = json_set(body, '$.job.lease.until', 'soon') WHERE id = ?1",
        [run.id.as_str()],
    )
    .unwrap();
    let before: String = conn
        .query_row(
            "SELECT body FROM runs WHERE id = ?1",
            [run.id.as_str()],
            |r| r.get(0),
        )
        .unwrap();

    let msg = serde_json::to_string(&StepMessage {
        run_id: run.id.clone(),
        version: run.version,
        delivery: None,
    })
    .unwrap();
    for queue in [
        QueueName::PollStatus,
        QueueName::SubmitSpace,
        QueueName::FetchArtifact,
    ] {
        let err = steps.handle(queue, &msg).await.unwrap_err();
        assert!(
            err.to_string().contains(run.id.as_str()),
            "{}: the error names the run: {err}",
            queue.as_str()
        );
        assert!(!err.retryable(), "retrying cannot fix a bad record: {err}");
    }
    let err = steps.ports.store.get(&run.id).await.unwrap_err();
    assert!(err.to_string().contains(run.id.as_str()), "{err}");
    let after: String = conn
        .query_row(
            "SELECT body FROM runs WHERE id = ?1",
            [run.id.as_str()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        after, before,
        "nothing rewrote the record (its lease is kept)"
    );
}

/// Corrupts a stored run's record as another build might: its lease's end is not a time.
fn corrupt(local: &LocalStack, id: &RunId) {
    let conn = rusqlite::Connection::open(local.db.path()).unwrap();
    let n = conn
        .execute(
            "UPDATE runs SET body = json_set(body, '$.job.lease.until', 'soon') WHERE id = ?1",
            [id.as_str()],
        )
        .unwrap();
    assert_eq!(n, 1);
}

/// Every run id whose message is in `queue`, received here (and so taken out).
async fn drain(local: &LocalStack, queue: QueueName) -> Vec<RunId> {
    let mut sent = vec![];
    loop {
        let got = local
            .queue
            .receive(queue, 10, Duration::from_secs(600))
            .await
            .unwrap();
        if got.is_empty() {
            return sent;
        }
        for d in got {
            let msg: StepMessage = serde_json::from_str(&d.body).unwrap();
            sent.push(msg.run_id);
        }
    }
}

#[tokio::test]
async fn one_bad_run_does_not_stop_the_sweep_for_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalStack::open(dir.path(), "http://127.0.0.1").unwrap();
    let now = Utc::now();
    let steps = steps_on(&local, Arc::new(ManualClock(Mutex::new(now))));
    // Stalled: a bad one first in stall order, then good ones.
    let bad_stalled = stalled_run(BackendKind::Space, Status::Fetching, true, now);
    let good_stalled: Vec<Run> = (0..3)
        .map(|_| stalled_run(BackendKind::Space, Status::Fetching, true, now))
        .collect();
    // Overdue: a bad one with the earliest deadline, then good ones.
    let mut overdue = vec![];
    for i in 0..3 {
        let mut run = stalled_run(BackendKind::Space, Status::Running, true, now);
        run.deadline_at = now - chrono::Duration::minutes(10 - i);
        if let Some(job) = run.job.as_mut() {
            job.lease.as_mut().unwrap().until = now + chrono::Duration::minutes(5);
        }
        overdue.push(run);
    }
    for run in std::iter::once(&bad_stalled)
        .chain(&good_stalled)
        .chain(&overdue)
    {
        local.store.insert(run, None).await.unwrap();
    }
    corrupt(&local, &bad_stalled.id);
    corrupt(&local, &overdue[0].id);

    let touched = steps
        .sweeper()
        .sweep(Duration::from_secs(10))
        .await
        .expect("a sweep with bad runs in it still completes");
    assert_eq!(
        touched,
        good_stalled.len() + 2,
        "the good runs were handled"
    );
    let mut sent = drain(&local, QueueName::FetchArtifact).await;
    let mut want: Vec<RunId> = good_stalled.iter().map(|r| r.id.clone()).collect();
    sent.sort();
    want.sort();
    assert_eq!(
        sent, want,
        "every good stalled run re-sent, the bad one passed over"
    );
    for run in &overdue[1..] {
        let stored = local.store.get(&run.id).await.unwrap().unwrap();
        assert_eq!(stored.status, Status::Expired, "{}", run.id);
    }
    // The bad runs are still there, untouched, for a person to look at.
    assert!(local.store.get(&bad_stalled.id).await.is_err());
    assert!(local.store.get(&overdue[0].id).await.is_err());
}

#[tokio::test]
async fn a_run_whose_message_waits_in_a_backlog_is_not_sent_another() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalStack::open(dir.path(), "http://127.0.0.1").unwrap();
    let now = Utc::now();
    let steps = steps_on(&local, Arc::new(ManualClock(Mutex::new(now))));
    let waiting = stalled_run(BackendKind::Space, Status::Queued, false, now);
    let lost = stalled_run(BackendKind::Space, Status::Queued, false, now);
    for run in [&waiting, &lost] {
        local.store.insert(run, None).await.unwrap();
    }
    // `waiting` has its message in the queue, behind a long backlog; `lost`'s never arrived.
    let msg = serde_json::to_string(&StepMessage {
        run_id: waiting.id.clone(),
        version: waiting.version,
        delivery: None,
    })
    .unwrap();
    local
        .queue
        .send(QueueName::SubmitSpace, &msg, Duration::ZERO)
        .await
        .unwrap();
    for _ in 0..3 {
        steps
            .sweeper()
            .sweep(Duration::from_secs(10))
            .await
            .unwrap();
    }
    let mut sent = drain(&local, QueueName::SubmitSpace).await;
    sent.sort();
    let lost_times = sent.iter().filter(|id| **id == lost.id).count();
    let waiting_times = sent.iter().filter(|id| **id == waiting.id).count();
    assert_eq!(waiting_times, 1, "only its own message: {sent:?}");
    assert!(lost_times >= 1, "the lost one is re-sent: {sent:?}");
}

/// A queued `vggt-onnx` run (its model allows one job at a time).
fn queued_onnx(now: DateTime<Utc>) -> Run {
    let mut run = spaceport_contract::sample_run("vggt-onnx", now);
    run.backend.kind = BackendKind::Onnx;
    run.backend.target = "models/vggt.onnx".into();
    run.transition(Status::Queued, now).unwrap();
    run
}

#[tokio::test]
async fn a_backend_slot_held_by_a_run_that_ended_without_giving_it_back_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalStack::open(dir.path(), "http://127.0.0.1").unwrap();
    let clock = Arc::new(ManualClock(Mutex::new(Utc::now())));
    let steps = steps_on(&local, clock.clone());
    let now = clock.now();
    let (a, b, c) = (queued_onnx(now), queued_onnx(now), queued_onnx(now));
    for r in [&a, &b, &c] {
        local.store.insert(r, None).await.unwrap();
    }
    let submit = steps.submit_space();
    submit.submit(&a.id).await.unwrap();
    assert_eq!(
        local.store.get(&a.id).await.unwrap().unwrap().status,
        Status::Submitting,
        "the first run takes the model's one slot"
    );
    for (r, ahead) in [(&b, 0), (&c, 1)] {
        // It waits with a fresh message of its own (a wait must not use up receives).
        let depth = local
            .queue
            .stats(QueueName::SubmitSpace)
            .await
            .unwrap()
            .depth;
        submit.submit(&r.id).await.unwrap();
        let after = local
            .queue
            .stats(QueueName::SubmitSpace)
            .await
            .unwrap()
            .depth;
        assert_eq!(after, depth + 1);
        let stored = local.store.get(&r.id).await.unwrap().unwrap();
        assert_eq!(stored.status, Status::Queued);
        assert_eq!(
            stored.progress.stage.as_deref(),
            Some("waiting_for_backend")
        );
        assert_eq!(stored.progress.queue_rank, Some(ahead));
    }
    let books = steps.runs().slot_books().await.unwrap();
    let id = |r: &Run| r.id.to_string();
    assert_eq!(books[0].0, "onnx:models/vggt.onnx");
    assert_eq!(books[0].1.holders, [id(&a)]);
    assert_eq!(books[0].1.waiters, [id(&b), id(&c)]);

    // `a` ends by a write that never gave its slot back (a process died between the two).
    let mut ended = local.store.get(&a.id).await.unwrap().unwrap();
    let v = ended.version;
    ended
        .fail(spaceport_core::ErrorCode::ModelError, "gone", false, now)
        .unwrap();
    ended.version = v + 1;
    local.store.update(&ended, v).await.unwrap();
    // The next in line finds it in the way, evicts it and goes; the one after still waits.
    submit.submit(&b.id).await.unwrap();
    assert_eq!(
        local.store.get(&b.id).await.unwrap().unwrap().status,
        Status::Submitting
    );
    submit.submit(&c.id).await.unwrap();
    assert_eq!(
        local.store.get(&c.id).await.unwrap().unwrap().status,
        Status::Queued
    );
    let books = steps.runs().slot_books().await.unwrap();
    assert_eq!(books[0].1.holders, [id(&b)]);
    assert_eq!(books[0].1.waiters, [id(&c)]);
}

/// A run of `pipeline` that ended `cancelled` `days_ago` days before `now`, holding one
/// artifact in the blob store.
async fn finished_run(
    local: &LocalStack,
    pipeline: &str,
    days_ago: i64,
    now: DateTime<Utc>,
) -> Run {
    let ended = now - chrono::Duration::days(days_ago);
    let mut run = spaceport_contract::sample_run(pipeline, ended - chrono::Duration::minutes(5));
    run.transition(Status::Queued, ended).unwrap();
    run.transition(Status::Cancelled, ended).unwrap();
    let key = Run::artifact_key(&run.id, "scene", "scene.glb");
    let body = futures::stream::once(async { Ok(bytes::Bytes::from_static(b"glTF")) }).boxed();
    let meta = local
        .blobs
        .put(&key, "model/gltf-binary", body)
        .await
        .unwrap();
    run.artifacts.push(spaceport_core::Artifact {
        name: "scene".into(),
        filename: "scene.glb".into(),
        content_type: "model/gltf-binary".into(),
        size: meta.size,
        sha256: meta.sha256,
        key,
        meta: Default::default(),
    });
    local.store.insert(&run, None).await.unwrap();
    run
}

#[tokio::test]
async fn retention_deletes_the_data_of_runs_kept_past_their_days_and_keeps_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalStack::open(dir.path().join("data"), "http://127.0.0.1").unwrap();
    // The built-in pipelines, `vggt-onnx` keeping its runs' data one day; the deployment 30.
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines");
    for e in std::fs::read_dir(&repo).unwrap().flatten() {
        let mut text = std::fs::read_to_string(e.path()).unwrap();
        if e.file_name() == "vggt-onnx.toml" {
            text = format!("retain_days = 1\n{text}");
        }
        std::fs::write(pipelines.join(e.file_name()), text).unwrap();
    }
    let now = Utc::now();
    let clock = Arc::new(ManualClock(Mutex::new(now)));
    let steps = steps_with(
        &local,
        clock.clone(),
        &pipelines,
        StepsConfig {
            retention_days: Some(30),
            ..StepsConfig::default()
        },
    );
    let old = finished_run(&local, "vggt", 31, now).await;
    let recent = finished_run(&local, "vggt", 10, now).await;
    let short = finished_run(&local, "vggt-onnx", 2, now).await;
    let mut live = spaceport_contract::sample_run("vggt", now - chrono::Duration::days(40));
    live.deadline_at = now + chrono::Duration::hours(1);
    local.store.insert(&live, None).await.unwrap();

    let sweeper = steps.sweeper();
    sweeper.sweep(Duration::from_secs(3600)).await.unwrap();
    for (run, gone) in [(&old, true), (&recent, false), (&short, true)] {
        let stored = local
            .store
            .get(&run.id)
            .await
            .unwrap()
            .expect("the record stays");
        let blob = local.blobs.head(&run.artifacts[0].key).await.unwrap();
        if gone {
            assert_eq!(
                stored.deleted_by.as_deref(),
                Some("retention"),
                "{}",
                run.id
            );
            assert!(stored.deleted_at.is_some() && stored.artifacts.is_empty());
            assert!(blob.is_none(), "{}: the artifact is deleted", run.id);
            assert_eq!(stored.status, Status::Cancelled, "how it went is kept");
        } else {
            assert_eq!(stored.deleted_at, None, "{}", run.id);
            assert!(blob.is_some(), "{}: kept within its days", run.id);
        }
    }
    let live_after = local.store.get(&live.id).await.unwrap().unwrap();
    assert_eq!(live_after.deleted_at, None, "a live run is never swept");

    // Twenty more days: the recent run's 30 are up, swept at the next retention sweep.
    clock.advance(chrono::Duration::days(21));
    sweeper.sweep(Duration::from_secs(3600)).await.unwrap();
    let stored = local.store.get(&recent.id).await.unwrap().unwrap();
    assert_eq!(stored.deleted_by.as_deref(), Some("retention"));
    assert!(
        local
            .blobs
            .head(&recent.artifacts[0].key)
            .await
            .unwrap()
            .is_none()
    );
}
