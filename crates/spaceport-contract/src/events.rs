//! Run-event checks of the run-store contract: a change's events are written with it and only
//! with it (a write that loses its version race leaves none), numbered per run without gaps, and
//! every run's events come out of the feed once each, in the order their changes were made.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use spaceport_core::ports::{FeedQuery, RunStore};
use spaceport_core::{Error, EventType, Progress, RunEvent, RunId, Status};

use crate::store::{sample_run, unique_pipeline};

/// Runs every event check.
pub async fn run_events_contract(store: &dyn RunStore) {
    events_are_written_with_their_change_and_only_with_it(store).await;
    the_feed_lists_every_event_once_in_order(store).await;
}

fn kinds(events: &[RunEvent]) -> Vec<(u64, EventType)> {
    events.iter().map(|e| (e.seq, e.kind)).collect()
}

/// A run's events: `created` at insert, one per move and per progress-only change, numbered 1, 2,
/// 3 … with the run's state once the change was made; a write that loses the version race
/// records nothing; paging by sequence number has no gaps.
pub async fn events_are_written_with_their_change_and_only_with_it(store: &dyn RunStore) {
    let c = "events_are_written_with_their_change_and_only_with_it";
    let now = Utc::now();
    let run = sample_run(&unique_pipeline("contract-events"), now);
    store.insert(&run, None).await.expect(c);
    let id = run.id.clone();
    let read = |after| {
        let id = id.clone();
        async move { store.events(&id, after, 100).await.expect(c) }
    };
    let got = read(0).await;
    assert_eq!(
        kinds(&got),
        [(1, EventType::Created)],
        "[contract {c}] an inserted run has its created event"
    );

    // queued, then a progress-only change.
    let mut base = run;
    base.clear_new_events();
    let mut queued = base.clone();
    queued.transition(Status::Queued, now).expect(c);
    store.update(&queued, base.version).await.expect(c);
    let mut progressed = queued.clone();
    progressed.clear_new_events();
    progressed.touch();
    progressed.set_progress(
        Progress {
            stage: Some("queued_at_space".into()),
            queue_rank: Some(3),
            ..Progress::default()
        },
        now,
    );
    store.update(&progressed, queued.version).await.expect(c);

    // Two writers decide on the same version: the loser's event must not appear.
    let mut winner = progressed.clone();
    winner.clear_new_events();
    winner.transition(Status::Submitting, now).expect(c);
    let mut loser = progressed.clone();
    loser.clear_new_events();
    loser.cancel_requested_at = Some(now);
    loser.transition(Status::Cancelled, now).expect(c);
    store.update(&winner, progressed.version).await.expect(c);
    let err = store.update(&loser, progressed.version).await.unwrap_err();
    assert!(
        matches!(err, Error::VersionConflict { .. }),
        "[contract {c}] the second writer loses the race, got {err:?}"
    );

    let got = read(0).await;
    assert_eq!(
        kinds(&got),
        [
            (1, EventType::Created),
            (2, EventType::Queued),
            (3, EventType::Progress),
            (4, EventType::Started),
        ],
        "[contract {c}] one event per change, numbered without gaps, none from the lost write"
    );
    assert!(
        got.iter().all(|e| e.kind != EventType::Cancelled),
        "[contract {c}] a write that lost its race leaves no event"
    );
    assert_eq!(
        got[1].status,
        Status::Queued,
        "[contract {c}] status after the move"
    );
    assert_eq!(
        got[2].progress.queue_rank,
        Some(3),
        "[contract {c}] a progress event carries the progress"
    );
    assert_eq!(got[3].status, Status::Submitting);

    // A failure's event carries the reason, though the move records it first.
    let mut failed = winner.clone();
    failed.clear_new_events();
    failed
        .fail(spaceport_core::ErrorCode::SpaceError, "boom", false, now)
        .expect(c);
    store.update(&failed, winner.version).await.expect(c);
    let last = read(4).await;
    assert_eq!(
        kinds(&last),
        [(5, EventType::Failed)],
        "[contract {c}] after 4"
    );
    assert_eq!(
        last[0].error.as_ref().map(|e| e.message.as_str()),
        Some("boom"),
        "[contract {c}] the failed event carries the error"
    );
    let paged = store.events(&id, 1, 2).await.expect(c);
    assert_eq!(
        paged.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [2, 3],
        "[contract {c}] `after` and `limit` page by sequence number"
    );
    assert!(
        read(5).await.is_empty(),
        "[contract {c}] nothing after the last event"
    );
}

/// The feed lists every event of several runs exactly once, each run's in sequence order and
/// all of them in the order the changes were made; pages chain through `next_cursor`; a type
/// filter returns only those types.
pub async fn the_feed_lists_every_event_once_in_order(store: &dyn RunStore) {
    let c = "the_feed_lists_every_event_once_in_order";
    let pipeline = unique_pipeline("contract-feed");
    // Times a millisecond apart, so the order of the changes is the order of their times too
    // (a store whose feed orders by time must then agree).
    let start = Utc::now() - chrono::Duration::seconds(60);
    let at = |i: i64| -> DateTime<Utc> { start + chrono::Duration::milliseconds(i) };
    let mut tick = 0;
    let mut written: Vec<(RunId, u64)> = vec![];
    let mut runs = vec![];
    for _ in 0..3 {
        tick += 1;
        let run = sample_run(&pipeline, at(tick));
        store.insert(&run, None).await.expect(c);
        written.push((run.id.clone(), 1));
        runs.push(run);
    }
    // Interleave the runs' changes.
    for step in 0..2 {
        for run in runs.iter_mut() {
            tick += 1;
            let prev = run.version;
            run.clear_new_events();
            if step == 0 {
                run.transition(Status::Queued, at(tick)).expect(c);
            } else {
                run.transition(Status::Cancelled, at(tick)).expect(c);
            }
            store.update(run, prev).await.expect(c);
            written.push((run.id.clone(), run.event_seq));
        }
    }
    let ours: BTreeSet<RunId> = runs.iter().map(|r| r.id.clone()).collect();

    // Page through the whole feed two at a time, keeping this check's events.
    let mut seen: Vec<(RunId, u64)> = vec![];
    let mut after = None;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages < 10_000, "[contract {c}] the feed never ends");
        let page = store
            .feed(&FeedQuery {
                tenant: None,
                after: after.clone(),
                types: vec![],
                limit: 2,
            })
            .await
            .expect(c);
        assert!(
            page.events.len() <= 2,
            "[contract {c}] a page holds at most its limit"
        );
        seen.extend(
            page.events
                .iter()
                .filter(|e| ours.contains(&e.run_id))
                .map(|e| (e.run_id.clone(), e.seq)),
        );
        match (page.next_cursor, page.has_more) {
            (Some(next), true) => after = Some(next),
            _ => break,
        }
    }
    assert_eq!(
        seen, written,
        "[contract {c}] every event once, in the order the changes were made"
    );

    let page = store
        .feed(&FeedQuery {
            tenant: None,
            after: None,
            types: vec![EventType::Cancelled],
            limit: 1000,
        })
        .await
        .expect(c);
    assert!(
        page.events.iter().all(|e| e.kind == EventType::Cancelled),
        "[contract {c}] a type filter returns only that type"
    );
    let cancelled: Vec<&RunId> = page
        .events
        .iter()
        .filter(|e| ours.contains(&e.run_id))
        .map(|e| &e.run_id)
        .collect();
    assert_eq!(
        cancelled.len(),
        3,
        "[contract {c}] each run's cancelled event is in the filtered feed"
    );
    let err = store
        .feed(&FeedQuery {
            tenant: None,
            after: Some("not a cursor".into()),
            types: vec![],
            limit: 10,
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.field(),
        Some("after"),
        "[contract {c}] a malformed cursor is a validation error on `after`, got {err:?}"
    );
}
