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

    // Dispatch: one delivery per run, none tried yet.
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
    assert!(receiver.records().unwrap().is_empty());

    // A function handles the first attempt of the batch, then dies: no answer, nothing deleted.
    let url = &env.aws.queues[&QueueName::NotifyWebhook].url;
    let (batch, _) = env
        .lambda_batch(url, 2, Duration::from_secs(10))
        .await
        .expect("the attempts' messages");
    let batch: SqsEvent = serde_json::from_value(batch).unwrap();
    let first = batch
        .records
        .iter()
        .filter_map(|r| r.body.as_deref())
        .find(|b| b.contains("\"delivery\""))
        .expect("an attempt message");
    handle_message(&notify, first).await.unwrap();
    assert_eq!(receiver.records().unwrap().len(), 1);

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
