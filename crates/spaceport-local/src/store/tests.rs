//! The SQLite run store's own cases (the shared ones are the contract suite's).

use super::*;
use spaceport_core::Status;

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let db = LocalDb::open(dir.path().join("db")).unwrap();
    (dir, db.store())
}

fn run(pipeline: &str) -> Run {
    spaceport_contract::sample_run(pipeline, Utc::now())
}

fn idem(key: &str, hash: &str) -> Idempotency {
    Idempotency {
        key: key.into(),
        request_hash: hash.into(),
    }
}

#[tokio::test]
async fn with_an_outbox_the_message_lands_with_the_change_or_not_at_all() {
    use spaceport_core::ports::Queue;
    let dir = tempfile::tempdir().unwrap();
    let db = LocalDb::open(dir.path().join("db")).unwrap();
    let (store, queue) = (db.store().with_outbox(), db.queue());
    let mut r = run("p");
    store.insert(&r, None).await.unwrap();
    r.transition(Status::Queued, Utc::now()).unwrap();
    r.version = 2;
    let q = QueueName::SubmitSpace;
    assert!(store.update_and_send(&r, 1, q, "moved on").await.unwrap());
    let got = queue
        .receive(q, 10, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "moved on");
    assert_eq!(
        store.get(&r.id).await.unwrap().unwrap().status,
        Status::Queued
    );

    // A change that loses its race sends nothing either.
    let err = store.update_and_send(&r, 1, q, "stale").await.unwrap_err();
    assert!(matches!(err, Error::VersionConflict { .. }), "{err:?}");
    let stats = queue.stats(q).await.unwrap();
    assert_eq!((stats.depth, stats.in_flight), (0, 1), "{stats:?}");

    // Without the outbox the store only updates, and says so.
    let plain = db.store();
    r.version = 3;
    assert!(!plain.update_and_send(&r, 2, q, "not sent").await.unwrap());
    assert_eq!(queue.stats(q).await.unwrap().depth, 0);
}

#[tokio::test]
async fn same_key_same_hash_returns_the_first_run_and_writes_nothing() {
    let (_d, store) = store();
    let first = run("p");
    let second = run("p");
    let key = idem("k1", "h1");
    assert!(matches!(
        store.insert(&first, Some(&key)).await.unwrap(),
        InsertOutcome::Inserted
    ));
    match store.insert(&second, Some(&key)).await.unwrap() {
        InsertOutcome::Existing(r) => assert_eq!(r.id, first.id),
        other => panic!("expected Existing, got {other:?}"),
    }
    assert!(store.get(&second.id).await.unwrap().is_none());
}

#[tokio::test]
async fn same_key_other_hash_is_a_conflict_and_writes_nothing() {
    let (_d, store) = store();
    let first = run("p");
    let second = run("p");
    store.insert(&first, Some(&idem("k", "h1"))).await.unwrap();
    let err = store
        .insert(&second, Some(&idem("k", "h2")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert!(err.to_string().contains("different request body"), "{err}");
    assert!(store.get(&second.id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_duplicate_id_is_a_conflict_and_does_not_record_the_key() {
    let (_d, store) = store();
    let first = run("p");
    store.insert(&first, None).await.unwrap();
    let err = store
        .insert(&first, Some(&idem("k", "h")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    // The key was rolled back with the failed insert, so it is free for a new run.
    let other = run("p");
    assert!(matches!(
        store.insert(&other, Some(&idem("k", "h"))).await.unwrap(),
        InsertOutcome::Inserted
    ));
}

#[tokio::test]
async fn update_is_conditional_on_the_version() {
    let (_d, store) = store();
    let mut r = run("p");
    store.insert(&r, None).await.unwrap();
    let stale = r.clone();
    r.transition(Status::Queued, Utc::now()).unwrap();
    store.update(&r, 1).await.unwrap();
    let mut late = stale.clone();
    late.transition(Status::Cancelled, Utc::now()).unwrap();
    let err = store.update(&late, 1).await.unwrap_err();
    assert!(
        matches!(err, Error::VersionConflict { expected: 1, .. }),
        "{err:?}"
    );
    assert_eq!(
        store.get(&r.id).await.unwrap().unwrap().status,
        Status::Queued
    );
    let ghost = run("p");
    let err = store.update(&ghost, 1).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn malformed_cursors_are_validation_errors_on_cursor() {
    let (_d, store) = store();
    use base64::Engine;
    let not_an_id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("run_nope");
    for bad in ["%%%", "bm90IGEgcnVu", not_an_id.as_str()] {
        let err = store
            .list(&ListQuery {
                cursor: Some(bad.into()),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.field(), Some("cursor"), "{bad}: {err:?}");
    }
}

#[tokio::test]
async fn limits_default_to_20_and_cap_at_100() {
    let (_d, store) = store();
    for _ in 0..105 {
        store.insert(&run("p"), None).await.unwrap();
    }
    let page = store.list(&ListQuery::default()).await.unwrap();
    assert_eq!(page.runs.len(), DEFAULT_PAGE);
    assert!(page.next_cursor.is_some());
    let page = store
        .list(&ListQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.runs.len(), MAX_PAGE);
}

#[tokio::test]
async fn overdue_skips_terminal_runs_and_future_deadlines() {
    let (_d, store) = store();
    let now = Utc::now();
    let mut late = run("p");
    late.deadline_at = now - chrono::Duration::seconds(5);
    let mut done = late.clone();
    done.id = run("p").id;
    done.transition(Status::Cancelled, now).unwrap();
    let future = run("p");
    for r in [&late, &done, &future] {
        store.insert(r, None).await.unwrap();
    }
    assert_eq!(store.overdue(now, 10).await.unwrap(), vec![late.id.clone()]);
    // Once it ends, it is no longer overdue.
    let mut expired = late.clone();
    expired.expire(now).unwrap();
    store.update(&expired, late.version).await.unwrap();
    assert!(store.overdue(now, 10).await.unwrap().is_empty());
}

#[test]
fn lists_and_the_sweeper_use_indexes_not_scans_or_sorts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(LocalDb::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let plan = |sql: &str| -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let nulls = vec![rusqlite::types::Null; stmt.parameter_count()];
        let rows = stmt
            .query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap();
        rows.join("; ")
    };
    for tenant in [false, true] {
        for (status, pipeline, after) in [
            (false, false, false),
            (false, false, true),
            (true, false, true),
            (false, true, true),
            (true, true, false),
        ] {
            let p = plan(&list_sql(tenant, status, pipeline, after));
            assert!(!p.contains("TEMP B-TREE"), "list sorts: {p}");
            assert!(p.contains("USING"), "list scans: {p}");
            if tenant && !(status && pipeline) {
                assert!(p.contains("runs_by_tenant"), "a tenant's list: {p}");
            }
        }
    }
    {
        let p = plan(&list_sql(false, false, false, false));
        assert!(!p.contains("TEMP B-TREE"), "list sorts: {p}");
        assert!(p.contains("USING"), "list scans: {p}");
    }
    let p = plan(OVERDUE_SQL);
    assert!(
        p.contains("runs_overdue") && !p.contains("TEMP B-TREE"),
        "{p}"
    );
    let p = plan(PURGE_KEYS_SQL);
    assert!(
        p.contains("idempotency_keys_by_age"),
        "the purge scans: {p}"
    );
    let p = plan(STALLED_SQL);
    assert!(
        p.contains("runs_stalled") && !p.contains("TEMP B-TREE"),
        "the stalled query scans or sorts: {p}"
    );
}

#[tokio::test]
async fn runs_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let r = run("p");
    {
        let store = LocalDb::open(&path).unwrap().store();
        store.insert(&r, Some(&idem("k", "h"))).await.unwrap();
    }
    let store = LocalDb::open(&path).unwrap().store();
    assert_eq!(store.get(&r.id).await.unwrap().unwrap(), r);
    assert!(matches!(
        store
            .insert(&run("p"), Some(&idem("k", "h")))
            .await
            .unwrap(),
        InsertOutcome::Existing(_)
    ));
    // Once purged, the key is free again; the run it named stays.
    let purged = store
        .purge_idempotency_keys(Utc::now() + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(purged, 1);
    assert!(matches!(
        store
            .insert(&run("p"), Some(&idem("k", "h")))
            .await
            .unwrap(),
        InsertOutcome::Inserted
    ));
    assert!(store.get(&r.id).await.unwrap().is_some());
}
