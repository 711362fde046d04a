//! notify-webhook on the AWS adapters, against moto (DynamoDB, SQS) and the webhook receiver
//! peer (which verifies every delivery with the Standard Webhooks reference library): SQS
//! batches handled as Lambda's poller hands them over, including one whose function dies
//! mid-batch; every message still arrives, verified, once per try, under one id.

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::{Value, json};
use spaceport_core::ports::QueueName;
use spaceport_core::webhook::DeliveryState;
use spaceport_core::{CreateRunRequest, RunId};
use spaceport_steps::{Steps, handle_message};
use spaceport_testkit::aws::AwsEnv;
use spaceport_testkit::{WebhookReceiver, repo_root};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The function's steps, built from the variables the template gives it.
async fn function(env: &AwsEnv) -> Steps {
    let pipelines = repo_root().join("pipelines").display().to_string();
    let cfg = env.config(&[
        ("SPACEPORT_PIPELINES_DIR", pipelines.as_str()),
        ("SPACEPORT_WEBHOOK_SECRETS", SECRET),
        ("SPACEPORT_OUTBOUND_ALLOW", "127.0.0.1"),
        ("SPACEPORT_WEBHOOK_SCHEDULE_S", "0,1,1"),
        // Webhooks alone here; the bus has its own test.
        ("SPACEPORT_EVENT_BUS_EVENTS", "off"),
    ]);
    env.stack(&cfg).await.steps
}

async fn cancelled_run(steps: &Steps, url: String) -> RunId {
    let new: CreateRunRequest = serde_json::from_value(json!({
        "pipeline": "vggt",
        "webhook": {"url": url, "events": ["run.cancelled"]},
        "inputs": {"images": [{"filename": "a.png", "content_type": "image/png", "size": 10}]},
    }))
    .unwrap();
    let id = steps.accept().create(&new, None).await.unwrap().run.id;
    steps.accept().cancel(&id).await.unwrap();
    id
}

#[tokio::test]
async fn deliveries_survive_a_function_that_dies_mid_batch() {
    let env = AwsEnv::start("w", 5).await.unwrap();
    let receiver = WebhookReceiver::start(&[SECRET.into()]).unwrap();
    let steps = function(&env).await;
    let notify = steps.notify();
    let mut runs = vec![];
    for i in 0..3 {
        let url = format!("{}/flaky/{i}?fail=1", receiver.url());
        runs.push(cancelled_run(&steps, url).await);
    }
    let log = |id: &RunId| {
        let notify = notify.clone();
        let id = id.clone();
        async move { notify.log(&id).await.unwrap() }
    };

    // Dispatch: one delivery per run, each tried at once (500: a retry is scheduled).
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        env.lambda_handles(&steps, &notify).await;
        let mut made = 0;
        for id in &runs {
            made += log(id).await.len();
        }
        if made == 3 {
            break;
        }
        assert!(Instant::now() < until, "{made} of 3 deliveries made");
    }
    let tried = receiver.records().unwrap().len();
    assert!(tried >= 3, "{tried} tries");

    // A function handles the first retry of the batch, then dies: no answer, nothing deleted.
    let url = &env.aws.queues[&QueueName::NotifyWebhook].url;
    let (batch, _) = env
        .lambda_batch(url, 2, Duration::from_secs(10))
        .await
        .expect("the retries' messages");
    let batch: SqsEvent = serde_json::from_value(batch).unwrap();
    let first = batch
        .records
        .iter()
        .filter_map(|r| r.body.as_deref())
        .find(|b| b.contains("\"delivery\""))
        .expect("a retry message");
    handle_message(&notify, first).await.unwrap();
    assert_eq!(receiver.records().unwrap().len(), tried + 1);

    // Later batches (the dead one's messages back after their visibility timeout): every
    // delivery ends delivered on its second try.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        env.lambda_handles(&steps, &notify).await;
        let mut delivered = 0;
        for id in &runs {
            delivered += log(id)
                .await
                .iter()
                .filter(|d| d.state == DeliveryState::Delivered)
                .count();
        }
        if delivered == 3 {
            break;
        }
        assert!(Instant::now() < until, "{delivered} of 3 delivered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (i, id) in runs.iter().enumerate() {
        let d = &log(id).await[0];
        let statuses: Vec<Option<u16>> = d.attempts.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [Some(500), Some(200)], "{d:?}");
        let got = receiver.records_of(&format!("/flaky/{i}")).unwrap();
        // Two requests, never a third: the dead batch's stale message was dropped.
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(
            got.iter()
                .all(|g| g["id"] == d.id.as_str() && g["verified"] == true),
            "{got:#?}"
        );
        let body: Value = serde_json::from_str(got[1]["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["data"]["id"], id.to_string());
    }
}

#[tokio::test]
async fn the_example_batch_is_handled_without_failures() {
    let env = AwsEnv::start("x", 5).await.unwrap();
    let steps = function(&env).await;
    let example = repo_root().join("events/notify-webhook/example-sqs-batch.json");
    let event: SqsEvent = serde_json::from_str(&std::fs::read_to_string(example).unwrap()).unwrap();
    // Unknown runs and deliveries: nothing to do, nothing to retry.
    let response =
        spaceport_aws::handle_sqs_batch(&steps.notify(), steps.ports.queue.as_ref(), event).await;
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({"batchItemFailures": []})
    );
}

/// Creates an SQS queue and a rule on the environment's bus, with the README's example pattern,
/// that sends matching events to it; returns the queue's URL.
async fn rule_to_queue(env: &AwsEnv) -> String {
    let (url, arn) = env.extra_queue("terminal").await;
    let bus = env.aws.event_bus.clone().expect("a bus");
    let pattern =
        std::fs::read_to_string(repo_root().join("infra/examples/terminal-events-rule.json"))
            .unwrap();
    let events = aws_sdk_eventbridge::Client::new(&env.sdk);
    events
        .put_rule()
        .name("terminal-runs")
        .event_bus_name(&bus)
        .event_pattern(pattern)
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("terminal-runs")
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    url
}

/// Every message on the queue at `url` within `within` (bodies as JSON), deleting them.
async fn drain(env: &AwsEnv, url: &str, within: Duration) -> Vec<Value> {
    let sqs = aws_sdk_sqs::Client::new(&env.sdk);
    let until = Instant::now() + within;
    let mut got = vec![];
    while Instant::now() < until {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        for m in out.messages.unwrap_or_default() {
            got.push(serde_json::from_str(m.body().unwrap()).unwrap());
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    got
}

#[tokio::test]
async fn terminal_events_reach_a_queue_through_the_example_rule_on_the_bus() {
    let env = AwsEnv::start("b", 5).await.unwrap();
    let queue = rule_to_queue(&env).await;
    // Every event published; the rule's pattern keeps the terminal ones.
    let pipelines = repo_root().join("pipelines").display().to_string();
    let cfg = env.config(&[
        ("SPACEPORT_PIPELINES_DIR", pipelines.as_str()),
        ("SPACEPORT_EVENT_BUS_EVENTS", "all"),
    ]);
    let steps = env.stack(&cfg).await.steps;
    let notify = steps.notify();
    // A run without any webhook: the bus alone makes its events dispatched.
    let new: CreateRunRequest = serde_json::from_value(json!({
        "pipeline": "vggt",
        "inputs": {"images": [{"filename": "a.png", "content_type": "image/png", "size": 10}]},
    }))
    .unwrap();
    let id = steps.accept().create(&new, None).await.unwrap().run.id;
    steps.accept().cancel(&id).await.unwrap();
    // Each event the bus takes is a delivery to the `bus` endpoint, published by its attempt.
    let until = Instant::now() + Duration::from_secs(20);
    let log = loop {
        env.lambda_handles(&steps, &notify).await;
        let log = notify.log(&id).await.unwrap();
        if log.len() == 2 && log.iter().all(|d| d.state == DeliveryState::Delivered) {
            break log;
        }
        assert!(Instant::now() < until, "not published: {log:#?}");
    };
    assert!(
        log.iter()
            .all(|d| d.endpoint == "bus" && d.attempts.len() == 1)
    );
    // Dispatched once: a later message for the run makes nothing again.
    assert_eq!(notify.dispatch(&id).await.unwrap(), 0);

    // created and cancelled published; the rule passes the terminal one alone.
    let got = drain(&env, &queue, Duration::from_secs(3)).await;
    assert_eq!(got.len(), 1, "{got:#?}");
    for e in &got {
        assert_eq!(e["source"], "spaceport", "{e}");
        assert_eq!(
            e["detail-type"], "run.cancelled",
            "only terminal events: {e}"
        );
        assert_eq!(e["detail"]["type"], "run.cancelled", "{e}");
        assert_eq!(e["detail"]["data"]["id"], id.to_string(), "{e}");
        assert_eq!(e["detail"]["data"]["status"], "cancelled", "{e}");
        assert!(
            e["detail"]["id"].as_str().unwrap().starts_with("evt_"),
            "{e}"
        );
    }
    let mut ids: Vec<&str> = got
        .iter()
        .map(|e| e["detail"]["id"].as_str().unwrap())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 1, "one event, however often published: {got:#?}");
}

/// The bootstrap run as Lambda runs it: started with Lambda's variables against a Runtime API
/// emulator and moto, it answers `events/notify-webhook/*.json` through the real `lambda_runtime` loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_answers_its_events_through_the_runtime_api() {
    let env = AwsEnv::start("rt", 5).await.unwrap();
    let binary = &spaceport_testkit::lambda_rt::bootstrap(
        "notify-webhook",
        env!("CARGO_BIN_EXE_notify-webhook"),
    );
    let report = env
        .run_bootstrap(binary, "notify-webhook", &[], true)
        .await
        .unwrap();
    report.assert_answered("notify-webhook");
}

/// The function links the webhook sender alone (spaceport-stack's features in its Cargo.toml,
/// for a smaller zip): the Space port, which no notify step reaches, refuses by naming the
/// missing feature instead of being a client. (`scripts/test.sh` tests each function built on its
/// own, so this holds for the binary that ships.)
#[tokio::test]
async fn the_function_is_built_without_a_space_client() {
    let env = AwsEnv::start("u", 5).await.unwrap();
    let steps = function(&env).await;
    let err = steps.ports.space.cancel(&json!({})).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("built without spaceport-stack's `spaces` feature"),
        "{err} (run this crate's tests alone, `cargo test -p notify-webhook`, as scripts/test.sh \
         does: built beside the CLI, cargo gives the function every client)"
    );
}
