//! A `vggt` run through the step functions on AWS adapters: a real Gradio mirror of
//! facebook/vggt, moto for DynamoDB, SQS and S3, and each step's messages handed over as Lambda's
//! SQS poller would (a batch event; the poller deletes what the answer does not list).

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use spaceport_core::ports::{Queue, QueueName};
use spaceport_core::{CreateRunRequest, Status};
use spaceport_testkit::aws::AwsEnv;
use spaceport_testkit::{MirrorSpace, gltf_validate, png, repo_root};

#[tokio::test]
async fn a_vggt_run_goes_through_the_step_functions_on_aws_adapters() {
    let space = MirrorSpace::start().unwrap();
    let env = AwsEnv::start("p", 5).await.unwrap();
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
    // accept-upload: create, upload through the presigned URLs, record the landed inputs.
    let images = [("b.png", png(40, 30, 2)), ("a.png", png(40, 30, 8))];
    let new: CreateRunRequest = serde_json::from_value(json!({
        "pipeline": "vggt",
        "settings": {"conf_thres": 20, "show_cam": false},
        "inputs": {"images": images.iter().map(|(n, b)| json!({"filename": n, "content_type": "image/png", "size": b.len()})).collect::<Vec<_>>()},
    }))
    .unwrap();
    let created = submit.accept().create(&new, None).await.unwrap();
    let http = reqwest::Client::new();
    for (upload, (_, bytes)) in created.uploads.iter().zip(&images) {
        let mut put = http.put(&upload.url).body(bytes.clone());
        for (k, v) in &upload.headers {
            put = put.header(k, v);
        }
        assert!(put.send().await.unwrap().status().is_success());
    }
    for f in created.run.inputs["images"].iter() {
        let meta = submit.ports.blobs.head(&f.key).await.unwrap().unwrap();
        submit.accept().input_landed(&f.key, &meta).await.unwrap();
    }

    let id = created.run.id.clone();
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
