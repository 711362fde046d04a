//! Contract suites for the ports: the same checks run against every adapter (SQLite and a
//! directory here, DynamoDB/SQS/S3 on AWS), so a step behaves the same on either. Each check is a
//! public async function that panics with `[contract <check>] …`; the suite functions run them all.
//! Run-store checks use fresh ids and a unique pipeline name, so they can share a table. Queue
//! checks need queues nobody else uses during the run (fresh queues per suite on SQS), because
//! `QueueName` is a closed set; each check leaves its queue as it found it (dead letters aside).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Map;
use spaceport_core::ports::{
    Delivery, Idempotency, InsertOutcome, ListQuery, Queue, QueueName, QueueStats, RunStore,
};
use spaceport_core::{
    BackendInfo, BackendKind, Error, JobState, Lease, Progress, Run, RunId, StartMode, Status,
};

/// A valid `created` run of `pipeline` with a fresh id minted at `created_at` (ids sort by it),
/// a deadline 15 minutes later and no inputs.
pub fn sample_run(pipeline: &str, created_at: DateTime<Utc>) -> Run {
    let id = RunId::new(created_at.timestamp_millis() as u64, rand::random::<u128>());
    Run {
        id,
        pipeline: pipeline.to_owned(),
        status: Status::Created,
        version: 1,
        settings: Map::new(),
        inputs: BTreeMap::new(),
        progress: Progress::default(),
        backend: BackendInfo {
            kind: BackendKind::Space,
            target: "facebook/vggt".into(),
            attempt: 0,
        },
        job: None,
        error: None,
        artifacts: vec![],
        created_at,
        queued_at: None,
        started_at: None,
        finished_at: None,
        deadline_at: created_at + chrono::Duration::minutes(15),
        cancel_requested_at: None,
        deleted_at: None,
        metadata: Map::new(),
        start: StartMode::Auto,
        retry_of: None,
        webhook: None,
    }
}

/// A pipeline name no other test uses, so list filters see only this check's runs.
pub fn unique_pipeline(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

fn unique_key(prefix: &str) -> String {
    format!("contract-{prefix}-{:032x}", rand::random::<u128>())
}

/// Runs every run-store check.
pub async fn run_store_contract(store: &dyn RunStore) {
    store_insert_then_get_round_trips(store).await;
    store_same_idempotency_key_and_body_returns_the_first_run(store).await;
    store_same_idempotency_key_other_body_conflicts_and_writes_nothing(store).await;
    store_update_is_conditional_on_the_version(store).await;
    store_list_is_newest_first_filtered_and_paginates_without_gaps(store).await;
    store_overdue_lists_live_runs_past_their_deadline(store).await;
    store_stalled_pages_through_runs_nothing_moved(store).await;
}

/// `insert` then `get` gives back the same run; an unknown id is `None`.
pub async fn store_insert_then_get_round_trips(store: &dyn RunStore) {
    let c = "store_insert_then_get_round_trips";
    let mut run = sample_run(&unique_pipeline("contract"), Utc::now());
    run.metadata.insert("order".into(), "A-17".into());
    run.settings.insert("conf_thres".into(), 45.into());
    let outcome = store.insert(&run, None).await.expect(c);
    assert!(
        matches!(outcome, InsertOutcome::Inserted),
        "[contract {c}] a fresh insert must be Inserted, got {outcome:?}"
    );
    let got = store.get(&run.id).await.expect(c);
    assert_eq!(
        got.as_ref(),
        Some(&run),
        "[contract {c}] get must return the run exactly as inserted"
    );
    let unknown = sample_run("contract", Utc::now());
    assert!(
        store.get(&unknown.id).await.expect(c).is_none(),
        "[contract {c}] get of an unknown id must be None"
    );
}

/// The same key with the same request hash returns the first run and stores nothing new.
pub async fn store_same_idempotency_key_and_body_returns_the_first_run(store: &dyn RunStore) {
    let c = "store_same_idempotency_key_and_body_returns_the_first_run";
    let pipeline = unique_pipeline("contract");
    let key = Idempotency {
        key: unique_key("idem"),
        request_hash: "hash-a".into(),
    };
    let first = sample_run(&pipeline, Utc::now());
    let second = sample_run(&pipeline, Utc::now());
    let o = store.insert(&first, Some(&key)).await.expect(c);
    assert!(
        matches!(o, InsertOutcome::Inserted),
        "[contract {c}] the first use of a key must insert, got {o:?}"
    );
    match store.insert(&second, Some(&key)).await.expect(c) {
        InsertOutcome::Existing(run) => assert_eq!(
            run.id, first.id,
            "[contract {c}] a repeated key must return the run it first created"
        ),
        other => panic!(
            "[contract {c}] a repeated key with the same body must be Existing, got {other:?}"
        ),
    }
    assert!(
        store.get(&second.id).await.expect(c).is_none(),
        "[contract {c}] a repeated key must not store the second run"
    );
}

/// The same key with another request hash is `Conflict` and stores nothing.
pub async fn store_same_idempotency_key_other_body_conflicts_and_writes_nothing(
    store: &dyn RunStore,
) {
    let c = "store_same_idempotency_key_other_body_conflicts_and_writes_nothing";
    let pipeline = unique_pipeline("contract");
    let key = unique_key("idem");
    let first = sample_run(&pipeline, Utc::now());
    let second = sample_run(&pipeline, Utc::now());
    store
        .insert(
            &first,
            Some(&Idempotency {
                key: key.clone(),
                request_hash: "hash-a".into(),
            }),
        )
        .await
        .expect(c);
    let err = store
        .insert(
            &second,
            Some(&Idempotency {
                key,
                request_hash: "hash-b".into(),
            }),
        )
        .await
        .expect_err("a key reused with another body must fail");
    assert!(
        matches!(err, Error::Conflict(_)),
        "[contract {c}] a key reused with another body must be Conflict, got {err:?}"
    );
    assert!(
        store.get(&second.id).await.expect(c).is_none(),
        "[contract {c}] a conflicting insert must store nothing"
    );
    assert_eq!(
        store.get(&first.id).await.expect(c).map(|r| r.version),
        Some(first.version),
        "[contract {c}] a conflicting insert must not touch the first run"
    );
}

/// An update with the stored version succeeds; one with a stale version is `VersionConflict`
/// and changes nothing; an update of an absent run fails.
pub async fn store_update_is_conditional_on_the_version(store: &dyn RunStore) {
    let c = "store_update_is_conditional_on_the_version";
    let now = Utc::now();
    let run = sample_run(&unique_pipeline("contract"), now);
    store.insert(&run, None).await.expect(c);

    let mut queued = run.clone();
    queued.transition(Status::Queued, now).expect(c);
    store.update(&queued, run.version).await.expect(c);
    let got = store.get(&run.id).await.expect(c).expect(c);
    assert_eq!(
        (got.status, got.version),
        (Status::Queued, run.version + 1),
        "[contract {c}] an update with the current version must be stored"
    );

    // A second writer decided on the old version: it must lose.
    let mut late = run.clone();
    late.transition(Status::Cancelled, now).expect(c);
    let err = store
        .update(&late, run.version)
        .await
        .expect_err("a stale update must fail");
    assert!(
        matches!(err, Error::VersionConflict { .. }),
        "[contract {c}] a stale version must be VersionConflict, got {err:?}"
    );
    assert!(
        err.retryable(),
        "[contract {c}] VersionConflict is retryable"
    );
    let got = store.get(&run.id).await.expect(c).expect(c);
    assert_eq!(
        got.status,
        Status::Queued,
        "[contract {c}] a lost conditional write must change nothing"
    );

    // Progress without a status move is also versioned.
    let mut touched = got.clone();
    touched.progress.queue_rank = Some(3);
    touched.touch();
    store.update(&touched, got.version).await.expect(c);
    assert_eq!(
        store.get(&run.id).await.expect(c).expect(c),
        touched,
        "[contract {c}] the stored run must be the one written"
    );

    let ghost = sample_run("contract", now);
    let err = store
        .update(&ghost, ghost.version)
        .await
        .expect_err("updating an absent run must fail");
    assert!(
        matches!(err, Error::NotFound { .. } | Error::VersionConflict { .. }),
        "[contract {c}] updating an absent run must be NotFound or VersionConflict, got {err:?}"
    );
    assert!(
        store.get(&ghost.id).await.expect(c).is_none(),
        "[contract {c}] updating an absent run must not create it"
    );
}

async fn collect_pages(store: &dyn RunStore, c: &str, mut query: ListQuery) -> Vec<RunId> {
    let mut ids = Vec::new();
    for _ in 0..100 {
        let page = store.list(&query).await.expect(c);
        assert!(
            page.runs.len() <= query.limit,
            "[contract {c}] a page must hold at most `limit` runs"
        );
        ids.extend(page.runs.into_iter().map(|r| r.id));
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return ids,
        }
    }
    panic!("[contract {c}] pagination did not end after 100 pages");
}

/// Lists are newest first, filter by status and pipeline, and cursor pages cover every match
/// once, with no gaps or repeats; a malformed cursor is a validation error on `cursor`.
pub async fn store_list_is_newest_first_filtered_and_paginates_without_gaps(store: &dyn RunStore) {
    let c = "store_list_is_newest_first_filtered_and_paginates_without_gaps";
    let pipeline = unique_pipeline("contract-list");
    let base = Utc::now() - chrono::Duration::seconds(60);
    let mut runs: Vec<Run> = (0..7)
        .map(|i| sample_run(&pipeline, base + chrono::Duration::seconds(i)))
        .collect();
    for (i, run) in runs.iter_mut().enumerate() {
        if i % 2 == 0 {
            run.transition(Status::Queued, base).expect(c);
        }
    }
    // Inserted out of order: the order must come from the ids (creation time), not insertion.
    for i in [3, 0, 6, 1, 5, 2, 4] {
        store.insert(&runs[i], None).await.expect(c);
    }
    let newest_first: Vec<RunId> = runs.iter().rev().map(|r| r.id.clone()).collect();

    let all = collect_pages(
        store,
        c,
        ListQuery {
            pipeline: Some(pipeline.clone()),
            limit: 3,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        all, newest_first,
        "[contract {c}] pages of 3 must give every run once, newest first"
    );

    let one_page = store
        .list(&ListQuery {
            pipeline: Some(pipeline.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect(c);
    assert_eq!(
        one_page
            .runs
            .iter()
            .map(|r| r.id.clone())
            .collect::<Vec<_>>(),
        newest_first,
        "[contract {c}] one large page must hold every run, newest first"
    );
    assert!(
        one_page.next_cursor.is_none(),
        "[contract {c}] a page holding the last run must have no next_cursor"
    );

    let queued = collect_pages(
        store,
        c,
        ListQuery {
            pipeline: Some(pipeline.clone()),
            status: Some(Status::Queued),
            limit: 2,
            ..Default::default()
        },
    )
    .await;
    let expected: Vec<RunId> = runs
        .iter()
        .rev()
        .filter(|r| r.status == Status::Queued)
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(
        queued, expected,
        "[contract {c}] the status filter must keep only queued runs, newest first"
    );

    let err = store
        .list(&ListQuery {
            cursor: Some("not a cursor!".into()),
            limit: 5,
            ..Default::default()
        })
        .await
        .expect_err("a malformed cursor must fail");
    assert!(
        matches!(err, Error::Validation { .. }) && err.field() == Some("cursor"),
        "[contract {c}] a malformed cursor must be a validation error on `cursor`, got {err:?}"
    );
}

/// `overdue` lists non-terminal runs whose deadline passed, and no longer once they end.
pub async fn store_overdue_lists_live_runs_past_their_deadline(store: &dyn RunStore) {
    let c = "store_overdue_lists_live_runs_past_their_deadline";
    let pipeline = unique_pipeline("contract-overdue");
    let now = Utc::now();
    // Deadlines long past, so these sort first even in a shared store full of overdue runs.
    let long_ago = DateTime::from_timestamp(946_684_800 + rand::random::<u32>() as i64 % 1000, 0)
        .expect("a valid time");
    let mut late = sample_run(&pipeline, now);
    late.deadline_at = long_ago;
    let mut finished = sample_run(&pipeline, now);
    finished.deadline_at = long_ago;
    finished.transition(Status::Cancelled, now).expect(c);
    let future = sample_run(&pipeline, now);
    for r in [&late, &finished, &future] {
        store.insert(r, None).await.expect(c);
    }
    let ids = store.overdue(now, 1000).await.expect(c);
    assert!(
        ids.contains(&late.id),
        "[contract {c}] a live run past its deadline must be overdue"
    );
    assert!(
        !ids.contains(&finished.id),
        "[contract {c}] a terminal run is never overdue"
    );
    assert!(
        !ids.contains(&future.id),
        "[contract {c}] a run before its deadline is not overdue"
    );
    assert!(
        store.overdue(now, 1).await.expect(c).len() <= 1,
        "[contract {c}] overdue must honour its limit"
    );
    let mut expired = late.clone();
    expired.expire(now).expect(c);
    store.update(&expired, late.version).await.expect(c);
    assert!(
        !store.overdue(now, 1000).await.expect(c).contains(&late.id),
        "[contract {c}] an expired run is no longer overdue"
    );
}

/// `stalled` lists live runs past `created` whose lease lapsed (or, without a lease, that were
/// queued) before the given time, oldest first, one page at a time without gaps; a renewed
/// lease takes a run off the list, and created or terminal runs are never on it.
pub async fn store_stalled_pages_through_runs_nothing_moved(store: &dyn RunStore) {
    let c = "store_stalled_pages_through_runs_nothing_moved";
    let pipeline = unique_pipeline("contract-stalled");
    let now = Utc::now();
    // Stall times in 2001, at a random offset, so no other run of a shared store is among them.
    let base = DateTime::from_timestamp(
        978_307_200 + (rand::random::<u32>() % 100_000) as i64 * 1000,
        0,
    )
    .expect("a valid time");
    let at = |s: i64| base + chrono::Duration::seconds(s);
    let leased = |mut run: Run, until: DateTime<Utc>| {
        run.transition(Status::Queued, at(0)).expect(c);
        run.transition(Status::Submitting, at(0)).expect(c);
        run.transition(Status::Running, at(0)).expect(c);
        run.job = Some(JobState {
            lease: Some(Lease {
                holder: "wrk_contract".into(),
                until,
            }),
            ..JobState::default()
        });
        run
    };
    let queued = |mut run: Run, when: DateTime<Utc>| {
        run.transition(Status::Queued, when).expect(c);
        run
    };
    let mut stalled = vec![
        leased(sample_run(&pipeline, now), at(1)),
        queued(sample_run(&pipeline, now), at(2)),
    ];
    for s in 3..6 {
        stalled.push(leased(sample_run(&pipeline, now), at(s)));
    }
    let live_lease = leased(sample_run(&pipeline, now), now + chrono::Duration::hours(1));
    let created = sample_run(&pipeline, now);
    let mut cancelled = queued(sample_run(&pipeline, now), at(1));
    cancelled.transition(Status::Cancelled, at(1)).expect(c);
    for r in stalled.iter().chain([&live_lease, &created, &cancelled]) {
        store.insert(r, None).await.expect(c);
    }
    let before = at(100);
    let mut seen = vec![];
    let mut after = None;
    for _ in 0..10 {
        let page = store.stalled(before, after.as_ref(), 2).await.expect(c);
        assert!(
            page.runs.len() <= 2,
            "[contract {c}] a page holds at most its limit"
        );
        seen.extend(page.runs.iter().map(|r| r.id.clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let want: Vec<RunId> = stalled.iter().map(|r| r.id.clone()).collect();
    assert_eq!(
        seen, want,
        "[contract {c}] every stalled run once, oldest stall first, and nothing else"
    );
    // A renewed lease takes the run off the list.
    let mut renewed = stalled[0].clone();
    if let Some(job) = renewed.job.as_mut() {
        job.lease = Some(Lease {
            holder: "wrk_contract".into(),
            until: now + chrono::Duration::hours(1),
        });
    }
    renewed.version += 1;
    store.update(&renewed, stalled[0].version).await.expect(c);
    let page = store.stalled(before, None, 100).await.expect(c);
    let ids: Vec<RunId> = page.runs.iter().map(|r| r.id.clone()).collect();
    assert_eq!(
        ids,
        want[1..].to_vec(),
        "[contract {c}] a run whose lease was renewed is no longer stalled"
    );
}

/// Timing of the queue checks. SQS counts delays and visibility in whole seconds, so its
/// adapters use the default; an adapter with finer timers may use a smaller `unit`.
#[derive(Debug, Clone)]
pub struct QueueContractOptions {
    /// The adapter's receive limit before dead-lettering (the same on every queue).
    pub max_receives: u32,
    /// The smallest delay or visibility the checks use.
    pub unit: Duration,
    /// How long a check waits for something that should happen (bounded waits only).
    pub patience: Duration,
    /// Whether `stats` reports the oldest message's age (SQS gives it only as a CloudWatch
    /// metric, so its adapter reports `None`).
    pub oldest_age: bool,
}

impl Default for QueueContractOptions {
    fn default() -> Self {
        QueueContractOptions {
            max_receives: 5,
            unit: Duration::from_secs(1),
            patience: Duration::from_secs(20),
            oldest_age: true,
        }
    }
}

/// Runs every queue check with the default options.
pub async fn queue_contract(queue: &dyn Queue) {
    queue_contract_with(queue, &QueueContractOptions::default()).await;
}

/// Runs every queue check.
pub async fn queue_contract_with(queue: &dyn Queue, opts: &QueueContractOptions) {
    queue_send_receive_delete(queue, QueueName::SubmitSpace, opts).await;
    queue_delayed_message_waits_for_its_delay(queue, QueueName::PollStatus, opts).await;
    queue_visibility_expiry_redelivers_with_a_higher_count(queue, QueueName::FetchArtifact, opts)
        .await;
    queue_change_visibility_extends_and_releases(queue, QueueName::NotifyWebhook, opts).await;
    queue_dead_letters_after_max_receives(queue, QueueName::Reconstruct, opts).await;
    queue_stats_count_waiting_in_flight_and_age(queue, QueueName::SubmitSpace, opts).await;
}

fn unique_body(check: &str) -> String {
    format!(
        "{{\"contract\":\"{check}\",\"nonce\":\"{:032x}\"}}",
        rand::random::<u128>()
    )
}

/// Receives until a message arrives or `patience` runs out; panics on a stranger's message.
async fn receive_one(
    queue: &dyn Queue,
    q: QueueName,
    c: &str,
    body: &str,
    visibility: Duration,
    patience: Duration,
) -> Option<Delivery> {
    let until = Instant::now() + patience;
    loop {
        let got = queue.receive(q, 10, visibility).await.expect(c);
        assert!(
            got.len() <= 1,
            "[contract {c}] queue {} holds messages this check did not send: the contract needs queues of its own",
            q.as_str()
        );
        if let Some(d) = got.into_iter().next() {
            assert_eq!(
                d.body,
                body,
                "[contract {c}] queue {} handed out a message this check did not send",
                q.as_str()
            );
            return Some(d);
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Receives once and asserts nothing is visible.
async fn assert_nothing_visible(queue: &dyn Queue, q: QueueName, c: &str, why: &str) {
    let got = queue
        .receive(q, 10, Duration::from_secs(30))
        .await
        .expect(c);
    assert!(
        got.is_empty(),
        "[contract {c}] {why}, but received {:?}",
        got.iter().map(|d| &d.body).collect::<Vec<_>>()
    );
}

/// A sent message is received once with its id, body and a count of 1, and gone once deleted.
pub async fn queue_send_receive_delete(
    queue: &dyn Queue,
    q: QueueName,
    opts: &QueueContractOptions,
) {
    let c = "queue_send_receive_delete";
    let body = unique_body(c);
    let id = queue.send(q, &body, Duration::ZERO).await.expect(c);
    let d = receive_one(queue, q, c, &body, opts.unit * 3, opts.patience)
        .await
        .unwrap_or_else(|| panic!("[contract {c}] a sent message must be received"));
    assert_eq!(
        d.message_id, id,
        "[contract {c}] the delivery carries the send's id"
    );
    assert_eq!(
        d.receive_count, 1,
        "[contract {c}] a first receive counts 1"
    );
    assert_nothing_visible(queue, q, c, "a received message must be hidden").await;
    queue.delete(q, &d.receipt).await.expect(c);
    tokio::time::sleep(opts.unit * 4).await;
    assert_nothing_visible(
        queue,
        q,
        c,
        "a deleted message must not come back after its visibility timeout",
    )
    .await;
}

/// A delayed message is not received before its delay, and is received after it.
pub async fn queue_delayed_message_waits_for_its_delay(
    queue: &dyn Queue,
    q: QueueName,
    opts: &QueueContractOptions,
) {
    let c = "queue_delayed_message_waits_for_its_delay";
    let body = unique_body(c);
    let delay = opts.unit * 2;
    let sent = Instant::now();
    queue.send(q, &body, delay).await.expect(c);
    assert_nothing_visible(queue, q, c, "a delayed message must wait for its delay").await;
    let d = receive_one(queue, q, c, &body, opts.unit, opts.patience + delay)
        .await
        .unwrap_or_else(|| panic!("[contract {c}] a delayed message must arrive after its delay"));
    // Allow for clock granularity between the adapter and this process.
    assert!(
        sent.elapsed() + Duration::from_millis(150) >= delay,
        "[contract {c}] received after {:?}, before the {delay:?} delay",
        sent.elapsed()
    );
    queue.delete(q, &d.receipt).await.expect(c);
}

/// A message not deleted before its visibility timeout is delivered again, counting 2, with a
/// new receipt.
pub async fn queue_visibility_expiry_redelivers_with_a_higher_count(
    queue: &dyn Queue,
    q: QueueName,
    opts: &QueueContractOptions,
) {
    let c = "queue_visibility_expiry_redelivers_with_a_higher_count";
    let body = unique_body(c);
    let id = queue.send(q, &body, Duration::ZERO).await.expect(c);
    let first = receive_one(queue, q, c, &body, opts.unit * 3, opts.patience)
        .await
        .unwrap_or_else(|| panic!("[contract {c}] a sent message must be received"));
    assert_nothing_visible(
        queue,
        q,
        c,
        "a message must stay hidden during its visibility",
    )
    .await;
    let second = receive_one(
        queue,
        q,
        c,
        &body,
        opts.unit * 30,
        opts.patience + opts.unit,
    )
    .await
    .unwrap_or_else(|| {
        panic!("[contract {c}] a message must be delivered again after its visibility ends")
    });
    assert_eq!(
        second.message_id, id,
        "[contract {c}] the same message comes back"
    );
    assert_eq!(
        (first.receive_count, second.receive_count),
        (1, 2),
        "[contract {c}] each receive counts"
    );
    assert_ne!(
        first.receipt, second.receipt,
        "[contract {c}] each receive has its own receipt"
    );
    // Deleting with a stale receipt is not an error (as in SQS); the current receipt deletes.
    queue.delete(q, &first.receipt).await.expect(c);
    queue.delete(q, &second.receipt).await.expect(c);
    tokio::time::sleep(opts.unit / 2).await;
    assert_nothing_visible(
        queue,
        q,
        c,
        "the message was deleted with its current receipt",
    )
    .await;
}

/// `change_visibility` extends a receive's hiding, and zero makes the message visible at once.
pub async fn queue_change_visibility_extends_and_releases(
    queue: &dyn Queue,
    q: QueueName,
    opts: &QueueContractOptions,
) {
    let c = "queue_change_visibility_extends_and_releases";
    let body = unique_body(c);
    queue.send(q, &body, Duration::ZERO).await.expect(c);
    let d = receive_one(queue, q, c, &body, opts.unit * 3, opts.patience)
        .await
        .unwrap_or_else(|| panic!("[contract {c}] a sent message must be received"));
    queue
        .change_visibility(q, &d.receipt, opts.unit * 30)
        .await
        .expect(c);
    tokio::time::sleep(opts.unit * 4).await;
    assert_nothing_visible(
        queue,
        q,
        c,
        "an extended message must stay hidden past its first timeout",
    )
    .await;
    queue
        .change_visibility(q, &d.receipt, Duration::ZERO)
        .await
        .expect(c);
    let again = receive_one(queue, q, c, &body, opts.unit * 30, opts.patience)
        .await
        .unwrap_or_else(|| {
            panic!("[contract {c}] a message released with visibility zero must be received again")
        });
    assert_eq!(
        again.receive_count, 2,
        "[contract {c}] the release counts as one more receive"
    );
    queue.delete(q, &again.receipt).await.expect(c);
}

/// A message received `max_receives` times is never handed out again but dead-lettered.
pub async fn queue_dead_letters_after_max_receives(
    queue: &dyn Queue,
    q: QueueName,
    opts: &QueueContractOptions,
) {
    let c = "queue_dead_letters_after_max_receives";
    let before = queue.stats(q).await.expect(c);
    let body = unique_body(c);
    queue.send(q, &body, Duration::ZERO).await.expect(c);
    for n in 1..=opts.max_receives {
        let d = receive_one(queue, q, c, &body, Duration::ZERO, opts.patience)
            .await
            .unwrap_or_else(|| panic!("[contract {c}] receive {n} must hand out the message"));
        assert_eq!(d.receive_count, n, "[contract {c}] receive {n} counts {n}");
    }
    // Further receives move it aside instead of returning it.
    let until = Instant::now() + opts.patience;
    loop {
        let got = queue.receive(q, 10, Duration::ZERO).await.expect(c);
        assert!(
            got.is_empty(),
            "[contract {c}] a message received {} times must not be handed out again, got count {:?}",
            opts.max_receives,
            got.iter().map(|d| d.receive_count).collect::<Vec<_>>()
        );
        let now = queue.stats(q).await.expect(c);
        if now.dead > before.dead && now.depth == before.depth && now.in_flight == before.in_flight
        {
            break;
        }
        assert!(
            Instant::now() < until,
            "[contract {c}] the message must be dead-lettered (stats before {before:?}, now {now:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn stats_eventually(
    queue: &dyn Queue,
    q: QueueName,
    c: &str,
    patience: Duration,
    what: &str,
    ok: impl Fn(&QueueStats) -> bool,
) -> QueueStats {
    let until = Instant::now() + patience;
    loop {
        let s = queue.stats(q).await.expect(c);
        if ok(&s) {
            return s;
        }
        assert!(
            Instant::now() < until,
            "[contract {c}] stats must show {what}, got {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `stats` counts waiting and in-flight messages and the oldest waiting message's age.
pub async fn queue_stats_count_waiting_in_flight_and_age(
    queue: &dyn Queue,
    q: QueueName,
    opts: &QueueContractOptions,
) {
    let c = "queue_stats_count_waiting_in_flight_and_age";
    let before = queue.stats(q).await.expect(c);
    let body = unique_body(c);
    queue.send(q, &body, Duration::ZERO).await.expect(c);
    queue.send(q, &body, Duration::ZERO).await.expect(c);
    let s = stats_eventually(queue, q, c, opts.patience, "two more waiting", |s| {
        s.depth == before.depth + 2
    })
    .await;
    assert!(
        !opts.oldest_age || s.oldest_age_s.is_some_and(|a| a >= 0.0),
        "[contract {c}] a queue with waiting messages has an oldest age, got {s:?}"
    );
    let got = queue.receive(q, 1, opts.unit * 30).await.expect(c);
    assert_eq!(
        got.len(),
        1,
        "[contract {c}] a receive of one hands out one"
    );
    stats_eventually(
        queue,
        q,
        c,
        opts.patience,
        "one waiting and one in flight",
        |s| s.depth == before.depth + 1 && s.in_flight == before.in_flight + 1,
    )
    .await;
    queue.delete(q, &got[0].receipt).await.expect(c);
    let rest = receive_one(queue, q, c, &body, opts.unit * 30, opts.patience)
        .await
        .unwrap_or_else(|| panic!("[contract {c}] the second message must be received"));
    queue.delete(q, &rest.receipt).await.expect(c);
    stats_eventually(
        queue,
        q,
        c,
        opts.patience,
        "the counts back where they were",
        |s| s.depth == before.depth && s.in_flight == before.in_flight && s.dead == before.dead,
    )
    .await;
}
