//! A `vggt` run through the step functions on AWS adapters: a real Gradio mirror of
//! facebook/vggt, moto for DynamoDB, SQS and S3, and each step's messages handed over as Lambda's
//! SQS poller would (a batch event; the poller deletes what the answer does not list) — on
//! resources the test provisions, and on those moto's CloudFormation creates from the template.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use spaceport_core::ports::{Queue, QueueName};
use spaceport_core::{Run, Status};
use spaceport_steps::Steps;
use spaceport_testkit::aws::AwsEnv;
use spaceport_testkit::lambda_batches::create_landed;
use spaceport_testkit::{MirrorSpace, MotoServer, gltf_validate, png, repo_root, venv_python};

/// A `vggt` run of two images through the step functions on `env`'s resources against `space`,
/// each step's messages handed over as Lambda's SQS poller would; with moto recording the calls
/// from the create on. Returns the finished run, the fetch step's ports (to read the scene) and
/// how many status reads the loop itself made.
async fn drive_vggt_run(env: &AwsEnv, space: &MirrorSpace) -> (Run, Steps, usize) {
    let pipelines = repo_root().join("pipelines").display().to_string();
    // One stack per function, as each Lambda builds its own from its environment.
    let cfg = env.config(&[
        ("SPACEPORT_PIPELINES_DIR", pipelines.as_str()),
        ("SPACEPORT_SPACE_URL_VGGT", space.url()),
    ]);
    let submit = env.stack(&cfg).await.steps;
    let poll = env.stack(&cfg).await.steps;
    let fetch = env.stack(&cfg).await.steps;
    // Every call the run makes to AWS, from its create on (capacity arithmetic, README).
    env.moto.record_calls().await.unwrap();
    let images = [("b.png", png(40, 30, 2)), ("a.png", png(40, 30, 8))];
    let id = create_landed(
        &submit,
        "vggt",
        &images,
        json!({"conf_thres": 20, "show_cam": false}),
    )
    .await;
    let until = Instant::now() + Duration::from_secs(90);
    let mut reads = 0;
    let run = loop {
        reads += 1;
        let run = submit.ports.store.get(&id).await.unwrap().unwrap();
        if run.status.is_terminal() {
            break run;
        }
        assert!(
            Instant::now() < until,
            "the run did not finish: {run:?}\n{}",
            space.output()
        );
        let mut seen = 0;
        seen += env.lambda_handles(&submit, &submit.submit_space()).await;
        seen += env.lambda_handles(&poll, &poll.poll_status()).await;
        seen += env.lambda_handles(&fetch, &fetch.fetch_artifact()).await;
        if seen == 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    assert_eq!(
        run.status,
        Status::Succeeded,
        "{:?}\n{}",
        run.error,
        space.output()
    );
    (run, fetch, reads)
}

#[tokio::test]
async fn a_vggt_run_goes_through_the_step_functions_on_aws_adapters() {
    let space = MirrorSpace::start().unwrap();
    let env = AwsEnv::start("p", 5).await.unwrap();
    let (run, fetch, reads) = drive_vggt_run(&env, &space).await;
    let poll = &fetch;
    assert_eq!(run.backend.kind, "space");
    let calls = env.moto.recorded_calls().await.unwrap();
    println!(
        "AWS calls of one vggt run of 2 images (dynamodb:GetItem includes this test's {reads} status reads; sqs Receive/Delete are Lambda's poller's):"
    );
    for (op, n) in &calls {
        println!("  {op}: {n}");
    }
    // Nothing a run does may grow with the table: no scans.
    assert!(!calls.contains_key("dynamodb:Scan"), "{calls:?}");
    let scene = run
        .artifacts
        .iter()
        .find(|a| a.name == "scene")
        .expect("a scene artifact");
    let mut body = fetch.ports.blobs.get(&scene.key).await.unwrap();
    let mut glb = Vec::new();
    while let Some(c) = body.next().await {
        glb.extend_from_slice(&c.unwrap());
    }
    assert_eq!(glb.len() as u64, scene.size);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scene.glb");
    std::fs::write(&path, &glb).unwrap();
    let report = gltf_validate(&path).unwrap();
    assert_eq!(report["issues"]["numErrors"], 0, "{report}");
    // Every step's queue is empty: nothing left to redeliver.
    for q in [
        QueueName::SubmitSpace,
        QueueName::PollStatus,
        QueueName::FetchArtifact,
    ] {
        let stats = Queue::stats(poll.ports.queue.as_ref(), q).await.unwrap();
        assert_eq!(
            (stats.depth, stats.in_flight, stats.dead),
            (0, 0, 0),
            "{}",
            q.as_str()
        );
    }
}

/// The step queues and their dead-letter queues, by the template's logical ids.
const QUEUES: [(QueueName, &str, &str); 6] = [
    (
        QueueName::SubmitSpace,
        "SubmitQueue",
        "SubmitDeadLetterQueue",
    ),
    (QueueName::PollStatus, "PollQueue", "PollDeadLetterQueue"),
    (
        QueueName::FetchArtifact,
        "FetchQueue",
        "FetchDeadLetterQueue",
    ),
    (
        QueueName::NotifyWebhook,
        "WebhookQueue",
        "WebhookDeadLetterQueue",
    ),
    (
        QueueName::Reconstruct,
        "ReconstructQueue",
        "ReconstructDeadLetterQueue",
    ),
    (
        QueueName::CallModel,
        "CallModelQueue",
        "CallModelDeadLetterQueue",
    ),
];

/// Resource types moto's CloudFormation does not implement (moto 5.2.5): the stand-up leaves
/// them out; cfn-lint and the template tests check them instead.
const MOTO_LACKS: [&str; 8] = [
    "AWS::ApiGatewayV2::Api",
    "AWS::ApiGatewayV2::Stage",
    "AWS::CloudWatch::Alarm",
    "AWS::S3::BucketPolicy",
    "AWS::SNS::Subscription",
    "AWS::SQS::QueuePolicy",
    "AWS::Scheduler::Schedule",
    "AWS::SecretsManager::Secret",
];

/// The template, translated offline by the SAM translator, created as a stack by moto's
/// CloudFormation: every resource moto implements is created, wired as the template says (each
/// step queue's redrive to its dead-letter queue, each function's event source mapping on its
/// queue with partial batch responses), and a `vggt` run goes through the step functions on the
/// table, bucket and queues the stack made.
#[tokio::test]
async fn the_template_stands_up_on_motos_cloudformation_and_a_run_goes_through_it() {
    let space = MirrorSpace::start().unwrap();
    let moto = MotoServer::start().unwrap();
    let out = std::process::Command::new(venv_python().unwrap())
        .arg(repo_root().join("tests/aws/stand_up.py"))
        .args([moto.url(), "spaceport"])
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stand_up.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "CREATE_COMPLETE", "{report}");
    let resources = report["resources"].as_array().unwrap();
    for r in resources {
        assert_eq!(r["status"], "CREATE_COMPLETE", "{r}");
    }
    // Only the GPU worker is off (no image given), as CloudFormation would leave it.
    for off in report["off_by_condition"].as_array().unwrap() {
        assert!(off.as_str().unwrap().starts_with("Gpu"), "{off} is off");
    }
    for l in report["left_out"].as_array().unwrap() {
        assert!(
            MOTO_LACKS.contains(&l["type"].as_str().unwrap()),
            "{l} was left out, but moto's CloudFormation creates that type"
        );
    }
    println!(
        "stood up: {} resources created, {} of types moto's CloudFormation lacks left out",
        resources.len(),
        report["left_out"].as_array().unwrap().len()
    );
    let physical = |logical: &str| -> String {
        resources
            .iter()
            .find(|r| r["logical"] == logical)
            .and_then(|r| r["physical"].as_str())
            .unwrap_or_else(|| panic!("the stack made no {logical}: {report}"))
            .to_owned()
    };
    let arn = |url: &str| report["queues"][url]["arn"].as_str().unwrap().to_owned();

    // Wiring: redrive to the dead-letter queue, and each consumer reading its own queue.
    let mut queues = std::collections::BTreeMap::new();
    for (queue, logical, dlq) in QUEUES {
        let (url, dlq_url) = (physical(logical), physical(dlq));
        assert_eq!(
            report["queues"][&url]["redrive"]["deadLetterTargetArn"],
            arn(&dlq_url),
            "{logical}"
        );
        queues.insert(
            queue,
            spaceport_aws::QueueUrls {
                url,
                dlq_url: Some(dlq_url),
            },
        );
    }
    for (function, logical) in [
        ("AcceptUploadFunction", "UploadsQueue"),
        ("SubmitSpaceFunction", "SubmitQueue"),
        ("PollStatusFunction", "PollQueue"),
        ("FetchArtifactFunction", "FetchQueue"),
        ("NotifyWebhookFunction", "WebhookQueue"),
        ("ReconstructFunction", "ReconstructQueue"),
        ("CallModelFunction", "CallModelQueue"),
    ] {
        let name = physical(function);
        let source = arn(&physical(logical));
        let mapping = report["mappings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["function"] == name.as_str())
            .unwrap_or_else(|| panic!("no event source mapping for {function}"));
        assert_eq!(mapping["source"], source.as_str(), "{function}");
        assert_eq!(
            mapping["response_types"],
            json!(["ReportBatchItemFailures"]),
            "{function}"
        );
    }

    // A run on what the stack made.
    let aws = spaceport_aws::AwsConfig {
        runs_table: physical("RunsTable"),
        blobs_bucket: physical("BlobsBucket"),
        queues,
        s3_path_style: true,
        event_bus: None,
    };
    let env = AwsEnv::on_resources(moto, aws).await;
    let (run, _, _) = drive_vggt_run(&env, &space).await;
    assert!(run.artifacts.iter().any(|a| a.name == "scene"), "{run:?}");
}
