//! The queue suite: delays, visibility, redelivery counts, dead letters and stats, the same on
//! SQLite and SQS. Checks need queues nobody else uses during the run (fresh queues per suite on
//! SQS), because `QueueName` is a closed set; each leaves its queue as it found it (dead letters
//! aside).

use std::time::{Duration, Instant};

use spaceport_core::RunId;
use spaceport_core::ports::{Delivery, Queue, QueueName, QueueStats, StepMessage};

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
    queue_waiting_names_a_runs_unreceived_message(queue, QueueName::PollStatus, opts).await;
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

/// `waiting` is true for a run whose step message is in the queue not yet received, false for
/// another run and once the message was received; a queue that cannot tell answers `None`.
pub async fn queue_waiting_names_a_runs_unreceived_message(
    queue: &dyn Queue,
    q: QueueName,
    opts: &QueueContractOptions,
) {
    let c = "queue_waiting_names_a_runs_unreceived_message";
    let fresh = || RunId::new(chrono::Utc::now().timestamp_millis() as u64, rand::random());
    let (ours, other) = (fresh(), fresh());
    let body = serde_json::to_string(&StepMessage {
        run_id: ours.clone(),
        version: 1,
        delivery: None,
    })
    .expect(c);
    queue.send(q, &body, Duration::ZERO).await.expect(c);
    let before = queue.waiting(q, &ours).await.expect(c);
    if before.is_none() {
        // This queue cannot tell; nothing more to hold it to. Take the message back out.
        let d = receive_one(queue, q, c, &body, opts.unit * 3, opts.patience).await;
        if let Some(d) = d {
            queue.delete(q, &d.receipt).await.expect(c);
        }
        return;
    }
    assert_eq!(
        before,
        Some(true),
        "[contract {c}] a sent, unreceived message waits"
    );
    assert_eq!(
        queue.waiting(q, &other).await.expect(c),
        Some(false),
        "[contract {c}] another run has no waiting message"
    );
    let d = receive_one(queue, q, c, &body, opts.unit * 3, opts.patience)
        .await
        .unwrap_or_else(|| panic!("[contract {c}] a sent message must be received"));
    assert_eq!(
        queue.waiting(q, &ours).await.expect(c),
        Some(false),
        "[contract {c}] a received message is in a worker's hands, not waiting"
    );
    queue.delete(q, &d.receipt).await.expect(c);
}
