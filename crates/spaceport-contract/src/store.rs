//! The run-store suite: every `RunStore` must insert, read, update conditionally, list and page
//! the same way. Checks use fresh ids and a unique pipeline name, so they can share a table with
//! other tests.

use chrono::{DateTime, Utc};
use spaceport_core::limits::Usage;
use spaceport_core::ports::{Idempotency, InsertOutcome, ListQuery, RunStore, SlotBook};
use spaceport_core::{
    Artifact, BackendInfo, BackendKind, Error, InputFile, InputState, Run, RunId, Status,
};

/// A valid `created` run of `pipeline` with a fresh id minted at `created_at` (ids sort by it),
/// a deadline 15 minutes later and no inputs.
pub fn sample_run(pipeline: &str, created_at: DateTime<Utc>) -> Run {
    let id = RunId::new(created_at.timestamp_millis() as u64, rand::random::<u128>());
    let backend = BackendInfo::new(BackendKind::Space, "facebook/vggt");
    Run::new(
        id,
        pipeline,
        backend,
        created_at,
        created_at + chrono::Duration::minutes(15),
    )
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
    store_a_tenants_list_and_feed_hold_only_its_runs(store).await;
    store_usage_counts_a_tenants_live_runs_and_stored_bytes(store).await;
    crate::sweeps::store_overdue_lists_live_runs_past_their_deadline(store).await;
    crate::sweeps::store_stalled_pages_through_runs_nothing_moved(store).await;
    crate::sweeps::store_retained_pages_through_finished_runs_that_hold_data(store).await;
    store_slot_books_are_written_by_compare_and_swap(store).await;
    crate::events::run_events_contract(store).await;
}

/// A backend's slot book starts empty at version 0; each write must name the version it read,
/// so of two writers that read the same version only one lands; `all_slots` lists books that
/// hold or wait for something.
pub async fn store_slot_books_are_written_by_compare_and_swap(store: &dyn RunStore) {
    let key = unique_key("space:owner/slots");
    let (book, v) = store.slots(&key).await.unwrap();
    assert_eq!((book, v), (SlotBook::default(), 0));
    let one = SlotBook {
        holders: vec!["run_a".into()],
        waiters: vec!["run_b".into(), "run_c".into()],
    };
    store.put_slots(&key, &one, 0).await.unwrap();
    // A second writer that also read version 0 loses.
    let lost = store.put_slots(&key, &SlotBook::default(), 0).await;
    assert!(
        matches!(lost, Err(Error::VersionConflict { .. })),
        "{lost:?}"
    );
    assert_eq!(store.slots(&key).await.unwrap(), (one.clone(), 1));
    let two = SlotBook {
        holders: vec!["run_a".into(), "run_b".into()],
        waiters: vec!["run_c".into()],
    };
    store.put_slots(&key, &two, 1).await.unwrap();
    assert!(matches!(
        store.put_slots(&key, &one, 1).await,
        Err(Error::VersionConflict { .. })
    ));
    assert_eq!(store.slots(&key).await.unwrap(), (two.clone(), 2));
    let all = store.all_slots().await.unwrap();
    assert!(all.contains(&(key.clone(), two)), "{all:?}");
    store
        .put_slots(&key, &SlotBook::default(), 2)
        .await
        .unwrap();
    let all = store.all_slots().await.unwrap();
    assert!(
        all.iter().all(|(k, _)| k != &key),
        "an empty book is not listed"
    );
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

/// A list or feed for a tenant holds that tenant's runs and events only, with every filter;
/// every-tenant lists hold both.
pub async fn store_a_tenants_list_and_feed_hold_only_its_runs(store: &dyn RunStore) {
    let c = "store_a_tenants_list_and_feed_hold_only_its_runs";
    let pipeline = unique_pipeline("contract-tenant");
    let (a, b) = (unique_pipeline("tenant-a"), unique_pipeline("tenant-b"));
    let base = Utc::now() - chrono::Duration::seconds(60);
    let mut runs = vec![];
    for i in 0..6 {
        let mut run = sample_run(&pipeline, base + chrono::Duration::seconds(i));
        run.tenant = if i % 2 == 0 { a.clone() } else { b.clone() };
        if i < 4 {
            run.transition(Status::Queued, base + chrono::Duration::seconds(i))
                .expect(c);
        }
        store.insert(&run, None).await.expect(c);
        runs.push(run);
    }
    let of = |t: &str, queued: bool| -> Vec<RunId> {
        runs.iter()
            .rev()
            .filter(|r| r.tenant == t && (!queued || r.status == Status::Queued))
            .map(|r| r.id.clone())
            .collect()
    };
    for (status, pipe) in [
        (None, None),
        (Some(Status::Queued), None),
        (None, Some(pipeline.clone())),
        (Some(Status::Queued), Some(pipeline.clone())),
    ] {
        let q = |tenant: &str| ListQuery {
            tenant: Some(tenant.to_owned()),
            status,
            pipeline: pipe.clone(),
            limit: 2,
            cursor: None,
        };
        for t in [&a, &b] {
            assert_eq!(
                collect_pages(store, c, q(t)).await,
                of(t, status.is_some()),
                "[contract {c}] tenant {t}'s list (status {status:?}, pipeline {pipe:?}) must hold its runs only, newest first"
            );
        }
    }
    let both = collect_pages(
        store,
        c,
        ListQuery {
            pipeline: Some(pipeline.clone()),
            limit: 100,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        both.len(),
        6,
        "[contract {c}] a list for every tenant must hold both tenants' runs"
    );
    let page = store
        .feed(&spaceport_core::ports::FeedQuery {
            tenant: Some(a.clone()),
            after: None,
            types: vec![],
            limit: 100,
        })
        .await
        .expect(c);
    let mut fed: Vec<RunId> = page.events.iter().map(|e| e.run_id.clone()).collect();
    fed.sort();
    fed.dedup();
    let mut expected = of(&a, false);
    expected.sort();
    assert_eq!(
        fed, expected,
        "[contract {c}] tenant {a}'s feed must hold the events of its runs only"
    );
}

/// `usage` counts a tenant's runs in flight and `Run::stored_bytes`, and follows every write:
/// a run ending, inputs deleted, artifacts added. Other tenants' runs count for them only.
pub async fn store_usage_counts_a_tenants_live_runs_and_stored_bytes(store: &dyn RunStore) {
    let c = "store_usage_counts_a_tenants_live_runs_and_stored_bytes";
    let tenant = unique_pipeline("tenant-usage");
    let other = unique_pipeline("tenant-usage-other");
    let pipeline = unique_pipeline("contract-usage");
    let now = Utc::now();
    let with_input = |size: u64, tenant: &str| {
        let mut run = sample_run(&pipeline, now);
        run.tenant = tenant.to_owned();
        run.inputs.insert(
            "images".into(),
            vec![InputFile {
                filename: "a.png".into(),
                content_type: "image/png".into(),
                size,
                sha256: None,
                state: InputState::Pending,
                key: Run::input_key(&run.id, "images", 0),
                url: None,
                from_run: None,
            }],
        );
        run
    };
    let expect = |runs, bytes| Usage {
        runs_in_flight: runs,
        stored_bytes: bytes,
    };
    assert_eq!(store.usage(&tenant).await.expect(c), Usage::default());
    let a = with_input(100, &tenant);
    let b = with_input(20, &tenant);
    store.insert(&a, None).await.expect(c);
    store.insert(&b, None).await.expect(c);
    store
        .insert(&with_input(5000, &other), None)
        .await
        .expect(c);
    assert_eq!(
        store.usage(&tenant).await.expect(c),
        expect(2, 120),
        "[contract {c}] two live runs declaring 100 and 20 bytes"
    );
    // `a` ends with an artifact of 7 bytes; `b` ends and its inputs are deleted.
    let mut a2 = a.clone();
    a2.transition(Status::Cancelled, now).expect(c);
    a2.artifacts.push(Artifact {
        name: "glb".into(),
        filename: "scene.glb".into(),
        content_type: "model/gltf-binary".into(),
        size: 7,
        sha256: "0".repeat(64),
        key: format!("runs/{}/out/scene.glb", a.id),
        meta: Default::default(),
    });
    store.update(&a2, a.version).await.expect(c);
    let mut b2 = b.clone();
    b2.transition(Status::Cancelled, now).expect(c);
    for f in b2.inputs.values_mut().flatten() {
        f.state = InputState::Deleted;
    }
    store.update(&b2, b.version).await.expect(c);
    assert_eq!(
        store.usage(&tenant).await.expect(c),
        expect(0, 107),
        "[contract {c}] after both ended, one's inputs deleted and the other's artifact added"
    );
    assert_eq!(store.usage(&other).await.expect(c), expect(1, 5000));
}
