//! The webhook delivery store's contract: a delivery created twice is one delivery, updates are
//! conditional on the version, a run's log lists its own in order, the sweeper sees exactly the
//! pending deliveries that are due, the dead-letter list pages, and cursors keep their value.

use chrono::{DateTime, Duration, Utc};
use spaceport_core::ports::DeliveryStore;
use spaceport_core::webhook::{Attempt, DeliveryState, WebhookDelivery, message_id};
use spaceport_core::{Error, EventType, RunId};

/// Runs every delivery-store check.
pub async fn delivery_store_contract(store: &dyn DeliveryStore) {
    deliveries_are_created_once_and_updated_conditionally(store).await;
    the_sweeper_and_the_lists_see_the_right_deliveries(store).await;
    cursors_keep_their_value(store).await;
}

fn fresh_run(at: DateTime<Utc>) -> RunId {
    RunId::new(at.timestamp_millis() as u64, rand::random::<u128>())
}

/// A pending delivery of event `seq` of `run` to `endpoint`, due at `next_at`.
pub fn sample_delivery(
    run: &RunId,
    seq: u64,
    endpoint: &str,
    created_at: DateTime<Utc>,
    next_at: DateTime<Utc>,
) -> WebhookDelivery {
    WebhookDelivery {
        id: message_id(endpoint, run, seq),
        run_id: run.clone(),
        event_seq: seq,
        kind: EventType::Succeeded,
        endpoint: endpoint.to_owned(),
        url: "https://receiver.example/hooks".into(),
        body: format!(r#"{{"type":"run.succeeded","data":{{"id":"{run}","seq":{seq}}}}}"#),
        state: DeliveryState::Pending,
        attempts: vec![],
        next_at: Some(next_at),
        created_at,
        version: 1,
    }
}

/// Created once (a second create is `false` and changes nothing); read back whole; an update
/// with a stale version is a conflict and writes nothing.
pub async fn deliveries_are_created_once_and_updated_conditionally(store: &dyn DeliveryStore) {
    let c = "deliveries_are_created_once_and_updated_conditionally";
    let now = Utc::now();
    let run = fresh_run(now);
    let d = sample_delivery(&run, 3, "run", now, now);
    assert!(
        store.create_delivery(&d).await.expect(c),
        "[contract {c}] a new delivery is created"
    );
    let mut again = d.clone();
    again.url = "https://elsewhere.example/".into();
    assert!(
        !store.create_delivery(&again).await.expect(c),
        "[contract {c}] creating it again is a no-op"
    );
    assert_eq!(
        store.delivery(&d.id).await.expect(c),
        Some(d.clone()),
        "[contract {c}] read back as created"
    );

    let mut tried = d.clone();
    tried.attempts.push(Attempt {
        at: now,
        status: Some(500),
        latency_ms: 12,
        error: None,
    });
    tried.next_at = Some(now + Duration::seconds(5));
    tried.version = 2;
    store.update_delivery(&tried, 1).await.expect(c);
    let mut stale = d.clone();
    stale.state = DeliveryState::Delivered;
    stale.version = 2;
    let err = store.update_delivery(&stale, 1).await.unwrap_err();
    assert!(
        matches!(err, Error::VersionConflict { .. }),
        "[contract {c}] a stale update is a conflict, got {err:?}"
    );
    assert_eq!(
        store.delivery(&d.id).await.expect(c),
        Some(tried),
        "[contract {c}] the conflicting update wrote nothing"
    );
    assert_eq!(store.delivery("msg_none").await.expect(c), None);
}

/// A run's log lists its deliveries in creation order (no one else's); the due list holds the
/// pending deliveries whose time has come and nothing else; the dead list pages by id.
pub async fn the_sweeper_and_the_lists_see_the_right_deliveries(store: &dyn DeliveryStore) {
    let c = "the_sweeper_and_the_lists_see_the_right_deliveries";
    // Times in 2002 at a random offset, so other checks' deliveries of a shared store differ.
    let base = DateTime::from_timestamp(
        1_009_843_200 + (rand::random::<u32>() % 100_000) as i64 * 1000,
        0,
    )
    .expect("a valid time");
    let at = |s: i64| base + Duration::seconds(s);
    let run = fresh_run(base);
    let other = fresh_run(base);
    let due = sample_delivery(&run, 1, "run", at(1), at(10));
    let later = sample_delivery(&run, 2, "run", at(2), at(500));
    let mut delivered = sample_delivery(&run, 3, "run", at(3), at(5));
    delivered.state = DeliveryState::Delivered;
    delivered.next_at = None;
    let mut dead = vec![];
    for seq in 1..=3 {
        let mut d = sample_delivery(&other, seq, "billing", at(4), at(5));
        d.state = DeliveryState::Dead;
        d.next_at = None;
        dead.push(d);
    }
    for d in [&due, &later, &delivered].into_iter().chain(&dead) {
        store.create_delivery(d).await.expect(c);
    }
    let log: Vec<String> = store
        .deliveries_of_run(&run)
        .await
        .expect(c)
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(
        log,
        [due.id.clone(), later.id.clone(), delivered.id.clone()],
        "[contract {c}] the run's log, oldest first, and only its own"
    );
    let seen: Vec<String> = store
        .due_deliveries(at(100), 1000)
        .await
        .expect(c)
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert!(
        seen.contains(&due.id),
        "[contract {c}] a pending delivery that is due"
    );
    assert!(
        !seen.contains(&later.id),
        "[contract {c}] not one due later"
    );
    assert!(
        !seen.contains(&delivered.id),
        "[contract {c}] not a delivered one"
    );
    assert!(
        dead.iter().all(|d| !seen.contains(&d.id)),
        "[contract {c}] not a dead one"
    );

    let ours: Vec<&str> = dead.iter().map(|d| d.id.as_str()).collect();
    let mut listed = vec![];
    let mut after: Option<String> = None;
    for _ in 0..10_000 {
        let page = store.dead_deliveries(after.as_deref(), 2).await.expect(c);
        assert!(
            page.len() <= 2,
            "[contract {c}] a page holds at most its limit"
        );
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        listed.extend(
            page.iter()
                .filter(|d| ours.contains(&d.id.as_str()))
                .map(|d| d.id.clone()),
        );
    }
    let mut want: Vec<String> = ours.iter().map(|s| s.to_string()).collect();
    want.sort();
    listed.sort();
    assert_eq!(
        listed, want,
        "[contract {c}] each dead delivery once across pages"
    );
}

/// A cursor reads back what was set last; an unset one is `None`.
pub async fn cursors_keep_their_value(store: &dyn DeliveryStore) {
    let c = "cursors_keep_their_value";
    let name = format!("contract-{:016x}", rand::random::<u64>());
    assert_eq!(store.cursor(&name).await.expect(c), None);
    store.set_cursor(&name, "a").await.expect(c);
    store.set_cursor(&name, "b").await.expect(c);
    assert_eq!(
        store.cursor(&name).await.expect(c).as_deref(),
        Some("b"),
        "[contract {c}] the last value set"
    );
}
