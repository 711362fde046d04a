//! The run-store suite's sweeper cases: the queries the sweeper reads by index, overdue runs,
//! stalled runs and runs retention may empty, each page by page where it pages. Times sit in
//! years no other check uses, at a random offset, so a shared table does not disturb them.

use chrono::{DateTime, Utc};
use spaceport_core::ports::RunStore;
use spaceport_core::{JobState, Lease, Run, RunId, Status};

use crate::store::{sample_run, unique_pipeline};

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

/// `retained` (when the store keeps the index) lists finished runs whose data is still there,
/// oldest finish first, page by page; not live runs, not runs finished after `before`, and no
/// longer a run once it is marked deleted.
pub async fn store_retained_pages_through_finished_runs_that_hold_data(store: &dyn RunStore) {
    let c = "store_retained_pages_through_finished_runs_that_hold_data";
    let pipeline = unique_pipeline("contract-retained");
    let now = Utc::now();
    // Finish times in 2002, at a random offset, so no other run of a shared store is among them.
    let base = DateTime::from_timestamp(
        1_009_843_200 + (rand::random::<u32>() % 100_000) as i64 * 1000,
        0,
    )
    .expect("a valid time");
    let at = |s: i64| base + chrono::Duration::seconds(s);
    let finished = |status: Status, when: DateTime<Utc>| {
        let mut run = sample_run(&pipeline, now);
        run.transition(Status::Queued, when).expect(c);
        if status != Status::Cancelled {
            run.transition(Status::Submitting, when).expect(c);
            run.transition(Status::Running, when).expect(c);
        }
        run.transition(status, when).expect(c);
        run
    };
    let kept = [
        finished(Status::Failed, at(1)),
        finished(Status::Cancelled, at(2)),
        finished(Status::Failed, at(3)),
    ];
    let later = finished(Status::Failed, at(500));
    let live = sample_run(&pipeline, now);
    let mut gone = finished(Status::Cancelled, at(4));
    gone.deleted_at = Some(at(5));
    for r in kept.iter().chain([&later, &live, &gone]) {
        store.insert(r, None).await.expect(c);
    }
    let before = at(100);
    let mut seen = vec![];
    let mut after = None;
    for _ in 0..100 {
        let Some(page) = store.retained(before, after.as_ref(), 2).await.expect(c) else {
            return; // A store without the index: retention is not its sweeper's.
        };
        assert!(
            page.runs.len() <= 2,
            "[contract {c}] a page holds at most its limit"
        );
        // Runs other contracts finished earlier in a shared store may come first: only ours count.
        seen.extend(
            page.runs
                .iter()
                .filter(|r| r.pipeline == pipeline)
                .map(|r| r.id.clone()),
        );
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let want: Vec<RunId> = kept.iter().map(|r| r.id.clone()).collect();
    assert_eq!(
        seen, want,
        "[contract {c}] every finished run holding data once, oldest first, and nothing else"
    );
    // Marked deleted (its data gone), a run is no longer listed.
    let mut marked = kept[0].clone();
    marked.deleted_at = Some(now);
    marked.version += 1;
    store.update(&marked, kept[0].version).await.expect(c);
    let page = store
        .retained(before, None, 100)
        .await
        .expect(c)
        .expect("the index is still there");
    let ids: Vec<RunId> = page
        .runs
        .iter()
        .filter(|r| r.pipeline == pipeline)
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(
        ids,
        want[1..].to_vec(),
        "[contract {c}] a run marked deleted is no longer retained"
    );
}
