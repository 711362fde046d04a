//! The reconstruct function on the AWS adapters, against a real moto server (DynamoDB, SQS, S3)
//! and ONNX Runtime with the demo model: the Lambda handler answers an SQS batch (the shape of
//! `events/reconstruct/example-sqs-batch.json`) with a partial batch response, and the binary in
//! worker mode long-polls SQS and finishes a run on its own.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use futures::StreamExt;
use reconstruct::handler;
use serde_json::{Value, json};
use spaceport_aws::AwsConfig;
use spaceport_core::ports::{QueueName, StepMessage};
use spaceport_core::{Run, RunId, Status};
use spaceport_stack::{Config, OpenOptions, Stack, Storage};
use spaceport_steps::Steps;
use spaceport_testkit::aws::AwsEnv;
use spaceport_testkit::lambda_batches::create_landed;
use spaceport_testkit::{demo_model, gltf_validate, ort_dylib, png, repo_root};

struct Env {
    aws_env: AwsEnv,
    sdk: SdkConfig,
    aws: AwsConfig,
    dir: tempfile::TempDir,
}

async fn env() -> Env {
    let aws_env = AwsEnv::start("r", 3).await.unwrap();
    let (sdk, aws) = (aws_env.sdk.clone(), aws_env.aws.clone());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    demo_model(&dir.path().join("models"), "vggt.onnx", &[]);
    Env {
        aws_env,
        sdk,
        aws,
        dir,
    }
}

/// The function's variables for this environment (what the template sets on AWS).
fn vars(env: &Env) -> Vec<(String, String)> {
    let mut v = env.aws_env.vars();
    v.extend([
        (
            "SPACEPORT_MODEL_DIR".to_owned(),
            env.dir.path().display().to_string(),
        ),
        (
            "SPACEPORT_PIPELINES_DIR".to_owned(),
            repo_root().join("pipelines").display().to_string(),
        ),
        (
            "ORT_DYLIB_PATH".to_owned(),
            ort_dylib().display().to_string(),
        ),
    ]);
    v
}

/// The steps the function builds from its variables (`extra` on top), as in a Lambda.
async fn steps_with(env: &Env, extra: &[(&str, &str)]) -> Steps {
    let mut vars = vars(env);
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let cfg = Config::from_sources(None, vars).unwrap();
    assert_eq!(cfg.storage, Storage::Aws);
    let opts = OpenOptions {
        sdk: Some(env.sdk.clone()),
        ..handler::open_options(&cfg, true)
    };
    Stack::open(&cfg, opts).await.unwrap().steps
}

async fn steps(env: &Env) -> Steps {
    steps_with(env, &[]).await
}

/// What the Lambda answers a batch with.
async fn handle_batch(steps: &Steps, event: SqsEvent) -> SqsBatchResponse {
    spaceport_aws::handle_sqs_batch(&steps.reconstruct(), steps.ports.queue.as_ref(), event).await
}

/// Creates a `vggt-onnx` run, uploads `images` through the presigned URLs over HTTP, records
/// them as landed (accept-upload's answer to S3's object-created event) and runs submit-space,
/// which hands the run to the reconstruct queue.
async fn queued_run(steps: &Steps, images: &[(&str, Vec<u8>)]) -> RunId {
    let id = create_landed(
        steps,
        "vggt-onnx",
        images,
        json!({"conf_thres": 10, "show_cam": true}),
    )
    .await;
    assert_eq!(stored(steps, &id).await.status, Status::Queued);
    let msg = serde_json::to_string(&StepMessage {
        run_id: id.clone(),
        version: 0,
        delivery: None,
    })
    .unwrap();
    steps.handle(QueueName::SubmitSpace, &msg).await.unwrap();
    id
}

async fn stored(steps: &Steps, id: &RunId) -> Run {
    steps
        .ports
        .store
        .get(id)
        .await
        .unwrap()
        .expect("the run is stored")
}

/// Receives the reconstruct queue's next message as Lambda's poller would hand it over: the
/// example event with this message's id, receipt, body and receive count.
async fn lambda_event(env: &Env) -> SqsEvent {
    let url = &env.aws.queues[&QueueName::Reconstruct].url;
    let (batch, _) = env
        .aws_env
        .lambda_batch(url, 60, Duration::from_secs(10))
        .await
        .expect("a message on the reconstruct queue");
    let got = &batch["Records"][0];
    let example = repo_root().join("events/reconstruct/example-sqs-batch.json");
    let mut event: Value =
        serde_json::from_str(&std::fs::read_to_string(example).unwrap()).unwrap();
    let record = &mut event["Records"][0];
    for field in ["messageId", "receiptHandle", "body"] {
        record[field] = got[field].clone();
    }
    record["attributes"]["ApproximateReceiveCount"] =
        got["attributes"]["ApproximateReceiveCount"].clone();
    serde_json::from_value(event).unwrap()
}

async fn save_artifact(steps: &Steps, run: &Run, name: &str, to: &Path) -> Vec<u8> {
    let a = run
        .artifacts
        .iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("artifact {name} in {:?}", run.artifacts));
    let mut body = steps.ports.blobs.get(&a.key).await.unwrap();
    let mut bytes = Vec::new();
    while let Some(c) = body.next().await {
        bytes.extend_from_slice(&c.unwrap());
    }
    assert_eq!(bytes.len() as u64, a.size, "{name}: the stored size");
    std::fs::write(to, &bytes).unwrap();
    bytes
}

#[tokio::test]
async fn the_lambda_handler_reconstructs_a_run_and_reports_no_failures() {
    let env = env().await;
    let steps = steps(&env).await;
    let id = queued_run(
        &steps,
        &[("b.png", png(64, 48, 3)), ("a.png", png(64, 48, 9))],
    )
    .await;

    let response = handle_batch(&steps, lambda_event(&env).await).await;
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({"batchItemFailures": []}),
        "a handled message is left for Lambda to delete"
    );
    let run = stored(&steps, &id).await;
    assert_eq!(run.status, Status::Succeeded, "{:?}", run.error);
    let glb = env.dir.path().join("scene.glb");
    save_artifact(&steps, &run, "scene", &glb).await;
    let report = gltf_validate(&glb).unwrap();
    assert_eq!(report["issues"]["numErrors"], 0, "{report}");
    let npz = save_artifact(&steps, &run, "predictions", &env.dir.path().join("p.npz")).await;
    assert_eq!(&npz[..2], b"PK", "predictions.npz is a zip archive");
    drop(env.aws_env);
}

#[tokio::test]
async fn a_corrupt_image_fails_the_run_with_input_invalid_and_consumes_the_message() {
    let env = env().await;
    let steps = steps(&env).await;
    let id = queued_run(
        &steps,
        &[("a.png", b"\x89PNG\r\n\x1a\n not really".to_vec())],
    )
    .await;
    let event = lambda_event(&env).await;
    let response = handle_batch(&steps, event).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "a run that failed for good is handled: {response:?}"
    );
    let run = stored(&steps, &id).await;
    assert_eq!(run.status, Status::Failed);
    let error = run.error.expect("a failed run says why");
    assert_eq!(error.code.as_str(), "input_invalid", "{}", error.message);
}

#[tokio::test]
async fn a_failing_step_returns_its_message_as_a_batch_item_failure_after_a_backoff() {
    let env = env().await;
    // The run table is unreachable (it does not exist): every read fails, retryably or not,
    // and the message must come back rather than be deleted.
    let steps = steps_with(&env, &[("SPACEPORT_RUNS_TABLE", "no-such-table")]).await;
    let msg = serde_json::to_string(&StepMessage {
        run_id: RunId::new(chrono::Utc::now().timestamp_millis() as u64, 7),
        version: 1,
        delivery: None,
    })
    .unwrap();
    steps
        .ports
        .queue
        .send(QueueName::Reconstruct, &msg, Duration::ZERO)
        .await
        .unwrap();
    let event = lambda_event(&env).await;
    let message_id = event.records[0].message_id.clone().unwrap();
    let response = handle_batch(&steps, event).await;
    let handled = Instant::now();
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(
        failed,
        vec![message_id.clone()],
        "the message must come back"
    );
    // Its visibility was set to the first backoff (2 s), not the 60 s it was received with.
    let again = steps
        .ports
        .queue
        .receive(QueueName::Reconstruct, 1, Duration::from_secs(60))
        .await
        .unwrap();
    // (A machine slow enough to take the whole backoff between the two calls may see it again.)
    assert!(
        again.is_empty() || handled.elapsed() >= Duration::from_secs(2),
        "hidden during the backoff"
    );
    let until = Instant::now() + Duration::from_secs(15);
    let d = match again.into_iter().next() {
        Some(d) => d,
        None => loop {
            let got = steps
                .ports
                .queue
                .receive(QueueName::Reconstruct, 1, Duration::from_secs(60))
                .await
                .unwrap();
            if let Some(d) = got.into_iter().next() {
                break d;
            }
            assert!(
                Instant::now() < until,
                "the message did not come back after its backoff"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        },
    };
    assert_eq!(d.message_id, message_id);
    assert_eq!(d.receive_count, 2);
}

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_worker_binary_long_polls_sqs_and_finishes_a_run() {
    let env = env().await;
    let steps = steps(&env).await;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reconstruct"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in vars(&env) {
        cmd.env(k, v);
    }
    for (k, v) in env.aws_env.moto.env() {
        cmd.env(k, v);
    }
    let _worker = Worker(cmd.spawn().unwrap());
    let id = queued_run(
        &steps,
        &[("a.png", png(48, 48, 5)), ("b.png", png(48, 48, 6))],
    )
    .await;
    let until = Instant::now() + Duration::from_secs(60);
    let run = loop {
        let run = stored(&steps, &id).await;
        if run.status.is_terminal() {
            break run;
        }
        assert!(
            Instant::now() < until,
            "the worker did not finish the run: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(run.status, Status::Succeeded, "{:?}", run.error);
    let mut names: Vec<&str> = run.artifacts.iter().map(|a| a.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["predictions", "scene"]);
}

/// The bootstrap run as Lambda runs it: started with Lambda's variables against a Runtime API
/// emulator and moto, it answers `events/reconstruct/*.json` through the real `lambda_runtime` loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_answers_its_events_through_the_runtime_api() {
    let env = AwsEnv::start("rt", 5).await.unwrap();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_reconstruct"));
    let report = env
        .run_bootstrap(binary, "reconstruct", &[], true)
        .await
        .unwrap();
    report.assert_answered("reconstruct");
}
