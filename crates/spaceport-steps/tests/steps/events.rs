//! The event feed under load: 200 runs at once through the real steps, runner, SQLite store and
//! queues (the Space replaced by the testkit's instant backend) — every event of every run comes
//! out of the feed exactly once, each run's in order, and each run's numbering has no gap.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use spaceport_core::ports::{FeedQuery, SystemClock};
use spaceport_core::{CreateRunRequest, DeclaredInput, PipelineSet, Run, RunId, Status};
use spaceport_local::LocalStack;
use spaceport_steps::runner::{LOCAL_QUEUES, Runner, RunnerConfig};
use spaceport_steps::{Steps, StepsConfig};
use spaceport_testkit::fakes::InstantSpace;
use spaceport_testkit::png;

const RUNS: usize = 200;

/// Creates a one-image `vggt` run and lands its input, as the API does.
pub(crate) async fn one_run(steps: &Steps, image: Bytes) -> RunId {
    let req = CreateRunRequest {
        pipeline: "vggt".into(),
        inputs: [(
            "images".to_string(),
            vec![DeclaredInput {
                filename: Some("a.png".into()),
                content_type: Some("image/png".into()),
                size: Some(image.len() as u64),
                ..DeclaredInput::default()
            }],
        )]
        .into(),
        ..CreateRunRequest::default()
    };
    let api = steps.accept();
    let run = api.create(&req, None).await.unwrap().run;
    let key = Run::input_key(&run.id, "images", 0);
    let body = futures::stream::iter([Ok(image)]).boxed();
    let meta = steps
        .ports
        .blobs
        .put(&key, "image/png", body)
        .await
        .unwrap();
    api.input_landed(&key, &meta).await.unwrap();
    run.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_feed_lists_every_event_of_200_concurrent_runs_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalStack::open(dir.path(), "http://127.0.0.1:9").unwrap();
    let steps = Steps::new(
        Arc::new(PipelineSet::builtin()),
        crate::ports(
            &local,
            local.queue.clone(),
            Arc::new(InstantSpace::new()),
            Arc::new(SystemClock),
        ),
        StepsConfig::default(),
    );
    let runner = Runner::start(
        steps.clone(),
        &LOCAL_QUEUES,
        RunnerConfig {
            idle_poll: Duration::from_millis(5),
            ..RunnerConfig::default()
        },
    );
    let image = Bytes::from(png(20, 20, 1));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..RUNS {
        let (steps, image) = (steps.clone(), image.clone());
        tasks.spawn(async move { one_run(&steps, image).await });
    }
    let mut ids = vec![];
    while let Some(id) = tasks.join_next().await {
        ids.push(id.unwrap());
    }
    let api = steps.accept();
    let mut last_seq = BTreeMap::new();
    for id in &ids {
        let until = tokio::time::Instant::now() + Duration::from_secs(120);
        let mut run = api.get(id).await.unwrap();
        while !run.status.is_terminal() && tokio::time::Instant::now() < until {
            run = api.wait(id, None, Duration::from_secs(10)).await.unwrap();
        }
        assert_eq!(run.status, Status::Succeeded, "{:?}", run.error);
        last_seq.insert(id.clone(), run.event_seq);
    }
    runner.shutdown().await;

    let mut seen: BTreeMap<RunId, Vec<u64>> = BTreeMap::new();
    let mut after = None;
    let mut total = 0;
    loop {
        let page = api
            .feed(&FeedQuery {
                tenant: None,
                after: after.clone(),
                types: vec![],
                limit: 100,
            })
            .await
            .unwrap();
        total += page.events.len();
        for e in &page.events {
            seen.entry(e.run_id.clone()).or_default().push(e.seq);
        }
        if !page.has_more {
            break;
        }
        after = page.next_cursor;
    }
    assert_eq!(seen.len(), RUNS, "every run's events are in the feed");
    for (id, seqs) in &seen {
        let want: Vec<u64> = (1..=last_seq[id]).collect();
        assert_eq!(seqs, &want, "run {id}: each event once, in order, no gap");
    }
    assert_eq!(
        total,
        last_seq.values().sum::<u64>() as usize,
        "nothing else"
    );
}
