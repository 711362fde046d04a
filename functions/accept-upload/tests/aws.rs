//! accept-upload on the AWS adapters against a real moto server: API Gateway requests served by
//! the API's router (the shapes of `events/accept-upload/example-apigw-*.json`), and S3's own
//! object-created notifications, delivered by moto to SQS, queueing the run.

use std::time::Duration;

use accept_upload::handler::{self, AcceptUpload};
use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use serde_json::{Value, json};
use spaceport_core::CreateRunRequest;
use spaceport_core::ports::QueueName;
use spaceport_core::webhook::DeliveryState;
use spaceport_steps::Steps;
use spaceport_testkit::aws::AwsEnv;
use spaceport_testkit::{png, repo_root};

struct Env {
    aws_env: AwsEnv,
    uploads_url: String,
}

async fn env() -> Env {
    let aws_env = AwsEnv::start("a", 5).await.unwrap();
    let (sdk, aws) = (aws_env.sdk.clone(), aws_env.aws.clone());
    // S3 → SQS notifications of created objects, as the template wires them.
    let (uploads_url, arn) = aws_env.extra_queue("uploads").await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    s3.put_bucket_notification_configuration()
        .bucket(&aws.blobs_bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .id("inputs-landed")
                        .queue_arn(arn)
                        .events(Event::S3ObjectCreated)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    Env {
        aws_env,
        uploads_url,
    }
}

/// The steps and the function's handler state it wires, on `env` (with `vars` on top of the
/// template's).
async fn function(env: &Env, vars: &[(&str, &str)]) -> (Steps, AcceptUpload) {
    let pipelines = repo_root().join("pipelines").display().to_string();
    let mut extra = vec![("SPACEPORT_PIPELINES_DIR", pipelines.as_str())];
    extra.extend_from_slice(vars);
    let cfg = env.aws_env.config(&extra);
    let stack = env.aws_env.stack(&cfg).await;
    let f = AcceptUpload {
        api: stack.steps.accept(),
        sweeper: stack.steps.sweeper(),
        router: stack.app(None).unwrap(),
    };
    (stack.steps, f)
}

fn example(name: &str) -> Value {
    let path = repo_root().join("events/accept-upload").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// An API Gateway request for `method path` with an optional JSON body.
fn request(method: &str, path: &str, body: Option<Value>) -> Value {
    let mut ev = example(if body.is_some() {
        "example-apigw-create-run.json"
    } else {
        "example-apigw-get-run.json"
    });
    ev["rawPath"] = json!(path);
    ev["requestContext"]["http"]["path"] = json!(path);
    ev["requestContext"]["http"]["method"] = json!(method);
    if let Some(body) = body {
        ev["body"] = json!(body.to_string());
    }
    ev
}

/// Status and JSON body of an HTTP answer.
fn answer(response: &Value) -> (u64, Value) {
    assert_eq!(response["isBase64Encoded"], false, "{response}");
    let body = response["body"].as_str().unwrap();
    (
        response["statusCode"].as_u64().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// What Lambda's SQS poller would hand over from `url`: every message there, as one batch.
async fn batch_from(env: &Env, url: &str) -> (Value, Vec<String>) {
    let (event, messages) = env
        .aws_env
        .lambda_batch(url, 60, Duration::from_secs(10))
        .await
        .expect("an S3 notification on the uploads queue");
    let bodies = messages
        .iter()
        .map(|m| m.body().unwrap_or_default().to_owned())
        .collect();
    (event, bodies)
}

#[tokio::test]
async fn an_api_request_creates_a_run_and_s3s_notification_queues_it() {
    let env = env().await;
    let (steps, f) = function(&env, &[]).await;
    let image = png(40, 30, 4);
    let mut create = example("example-apigw-create-run.json");
    let mut body: Value = serde_json::from_str(create["body"].as_str().unwrap()).unwrap();
    body["inputs"]["images"][0]["size"] = json!(image.len());
    create["body"] = json!(body.to_string());

    let (status, run) = answer(&handler::handle(&f, create.clone()).await.unwrap());
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["status"], "created");
    let id = run["id"].as_str().unwrap().to_owned();
    let (status, again) = answer(&handler::handle(&f, create).await.unwrap());
    assert_eq!(
        (status, again["id"].as_str()),
        (200, Some(id.as_str())),
        "Idempotency-Key"
    );

    let upload = &run["uploads"][0];
    assert_eq!(upload["method"], "PUT");
    let mut put = reqwest::Client::new()
        .put(upload["url"].as_str().unwrap())
        .body(image.clone());
    for (k, v) in upload["headers"].as_object().unwrap() {
        put = put.header(k, v.as_str().unwrap());
    }
    assert!(put.send().await.unwrap().status().is_success());

    let (batch, bodies) = batch_from(&env, &env.uploads_url).await;
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("ObjectCreated:Put") && b.contains(&id)),
        "moto's notification names the object: {bodies:?}"
    );
    let response = handler::handle(&f, batch).await.unwrap();
    assert_eq!(response, json!({"batchItemFailures": []}));

    let (status, got) = answer(
        &handler::handle(&f, request("GET", &format!("/v1/runs/{id}"), None))
            .await
            .unwrap(),
    );
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["status"], "queued", "{got}");
    assert_eq!(got["inputs"]["images"][0]["state"], "landed");
    let stats = steps
        .ports
        .queue
        .stats(QueueName::SubmitSpace)
        .await
        .unwrap();
    assert_eq!(stats.depth, 1, "the run waits for submit-space");
}

#[tokio::test]
async fn the_example_notification_for_an_unknown_run_is_handled_and_dropped() {
    let env = env().await;
    let (_, f) = function(&env, &[]).await;
    let response = handler::handle(&f, example("example-sqs-s3-object-created.json"))
        .await
        .unwrap();
    assert_eq!(response, json!({"batchItemFailures": []}));
}

#[tokio::test]
async fn a_notification_that_cannot_be_recorded_comes_back() {
    let env = env().await;
    // The object exists, but the run table cannot be reached.
    let (steps, f) = function(&env, &[("SPACEPORT_RUNS_TABLE", "no-such-table")]).await;
    let key = "runs/run_01JD8X5V3W0000000000000000/inputs/images/0";
    let body = futures::stream::iter([Ok(bytes::Bytes::from_static(b"0123456789"))]);
    steps
        .ports
        .blobs
        .put(key, "image/png", Box::pin(body))
        .await
        .unwrap();
    let response = handler::handle(&f, example("example-sqs-s3-object-created.json"))
        .await
        .unwrap();
    assert_eq!(
        response,
        json!({"batchItemFailures": [{"itemIdentifier": "2e1424d4-f796-459a-8184-9c92662be6da"}]})
    );
}

#[tokio::test]
async fn bad_requests_get_the_apis_error_body_and_unreadable_events_an_error_type() {
    let env = env().await;
    let (_, f) = function(&env, &[]).await;
    let (status, body) = answer(
        &handler::handle(
            &f,
            request(
                "POST",
                "/v1/runs",
                Some(json!({"pipeline": "no-such-pipeline"})),
            ),
        )
        .await
        .unwrap(),
    );
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-pipeline"),
        "{body}"
    );

    let (status, body) = answer(
        &handler::handle(&f, request("GET", "/v1/runs/run_nope", None))
            .await
            .unwrap(),
    );
    assert!((400..500).contains(&status), "{status} {body}");

    let err = handler::handle(&f, json!({"hello": "world"}))
        .await
        .unwrap_err();
    let diagnostic: lambda_runtime::Diagnostic = err.into();
    assert_eq!(diagnostic.error_type, "InvalidEvent");
}

#[tokio::test]
async fn the_scheduled_sweep_expires_a_run_past_its_deadline() {
    let env = env().await;
    let (steps, f) = function(&env, &[]).await;
    let new: CreateRunRequest = serde_json::from_value(json!({
        "pipeline": "vggt",
        "inputs": {"images": [{"filename": "a.png", "content_type": "image/png", "size": 10}]},
        "deadline_s": 1,
    }))
    .unwrap();
    let id = steps.accept().create(&new, None).await.unwrap().run.id;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let response = handler::handle(&f, example("example-eventbridge-sweep.json"))
        .await
        .unwrap();
    assert_eq!(response, json!({"swept": 1}));
    let run = steps.ports.store.get(&id).await.unwrap().unwrap();
    assert_eq!(run.status.as_str(), "expired");
    assert_eq!(run.error.unwrap().code.as_str(), "deadline_exceeded");
}

/// The sweeper runs in accept-upload, which has no webhook client nor the signing secrets: an
/// event whose notify message was lost (nothing consumes notify-webhook's queue here) is found in
/// the feed once it is `FEED_LAG` old, and its delivery is handed to notify-webhook's queue
/// untried, not recorded as a failed try.
#[tokio::test]
async fn the_sweeper_hands_webhook_tries_to_notify_webhook() {
    let env = env().await;
    let (steps, f) = function(
        &env,
        &[
            ("SPACEPORT_WEBHOOK_SIGNING_ELSEWHERE", "true"),
            ("SPACEPORT_EVENT_BUS_EVENTS", "off"),
        ],
    )
    .await;
    let new: CreateRunRequest = serde_json::from_value(json!({
        "pipeline": "vggt",
        "inputs": {"images": [{"filename": "a.png", "content_type": "image/png", "size": 10}]},
        "webhook": {"url": "https://app.example.com/hooks", "events": ["run.created"]},
    }))
    .unwrap();
    let id = steps.accept().create(&new, None).await.unwrap().run.id;
    // The feed shows an event only once it is FEED_LAG old (the index is eventually consistent).
    tokio::time::sleep(spaceport_aws::events::FEED_LAG + Duration::from_millis(300)).await;
    let response = handler::handle(&f, example("example-eventbridge-sweep.json"))
        .await
        .unwrap();
    assert_eq!(response, json!({"swept": 1}));
    let deliveries = steps.ports.deliveries.deliveries_of_run(&id).await.unwrap();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    let d = &deliveries[0];
    assert_eq!(d.state, DeliveryState::Pending);
    assert!(d.attempts.is_empty(), "tried here: {:?}", d.attempts);
    let url = &env.aws_env.aws.queues[&QueueName::NotifyWebhook].url;
    let (_, bodies) = batch_from(&env, url).await;
    let wanted = format!("\"delivery\":\"{}\"", d.id);
    assert!(
        bodies.iter().any(|b| b.contains(&wanted)),
        "no message for {} among {bodies:?}",
        d.id
    );
}

/// The bootstrap run as Lambda runs it: started with Lambda's variables against a Runtime API
/// emulator and moto, its API keys in Secrets Manager, it answers `events/accept-upload/*.json`
/// through the real `lambda_runtime` loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_answers_its_events_through_the_runtime_api() {
    let env = AwsEnv::start("rt", 5).await.unwrap();
    let binary = &spaceport_testkit::lambda_rt::bootstrap(
        "accept-upload",
        env!("CARGO_BIN_EXE_accept-upload"),
    );
    // The keys come from Secrets Manager, as the template gives them.
    let keys = env
        .put_secret("api-keys", &AwsEnv::example_api_keys())
        .await;
    let report = env
        .run_bootstrap(
            binary,
            "accept-upload",
            &[("SPACEPORT_API_KEYS_ARN", keys.as_str())],
            true,
        )
        .await
        .unwrap();
    report.assert_answered("accept-upload");
}
