//! A `vggt` run end to end against the mirror Space: success with a valid GLB, settings and
//! image order at the Space, cancel (queued and running) freeing the Space's queue, the Space's
//! own failure, a Space that is down, and the deadline.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

fn images(names: &[&str]) -> Vec<(&'static str, Vec<u8>)> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                Box::leak(n.to_string().into_boxed_str()) as &'static str,
                png(40 + i as u32 * 3, 30, i as u8 * 40),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_succeeds_with_a_valid_glb_and_the_settings_and_order_reach_the_space() {
    let mirror = MirrorSpace::start().unwrap();
    let t = TestStack::start(mirror.url()).await.unwrap();
    let run = create_and_upload(
        &t.client,
        &images(&["c.png", "a.png", "b.png"]),
        json!({"conf_thres": 45, "prediction_mode": "pointmap", "mask_black_bg": true, "show_cam": false}),
        json!({"metadata": {"order": "A-17"}}),
    )
    .await
    .unwrap();
    let id = run["id"].as_str().unwrap();
    let done = wait_terminal(&t.client, id, Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["backend"]["attempt"], 1);
    assert_eq!(done["metadata"]["order"], "A-17");
    for k in ["queued_at", "started_at", "finished_at"] {
        assert!(done[k].is_string(), "{k} missing: {done}");
    }
    let arts = done["artifacts"].as_array().unwrap();
    assert_eq!(arts.len(), 1);
    assert_eq!(arts[0]["name"], "scene");
    assert_eq!(arts[0]["content_type"], "model/gltf-binary");

    // The artifact downloads through the API and is a valid glTF binary.
    let out = tempfile::tempdir().unwrap();
    let path = t
        .client
        .download_artifact(id, "scene", "scene.glb", out.path())
        .await
        .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len() as u64, arts[0]["size"].as_u64().unwrap());
    assert_eq!(&bytes[..4], b"glTF");
    let report = spaceport_testkit::gltf_validate(&path).unwrap();
    assert_eq!(report["issues"]["numErrors"], 0, "{report}");
    // Its meta says what the scene holds, as trimesh reads it: points, no cameras (show_cam
    // off), the scene's bounds.
    assert_facts_match_trimesh(&arts[0]["meta"], &path, true);
    assert_eq!(arts[0]["meta"]["cameras"], 0, "{}", arts[0]);

    // The Space got the settings in the /gradio_demo positions, in its own spellings, and the
    // images sorted by filename.
    let outputs = t.space_outputs(id).await;
    let log = outputs[1].as_str().unwrap_or_default().to_string();
    let args: Vec<Value> =
        serde_json::from_str(&log_line(&log, "ARGS").expect("ARGS line")).unwrap();
    assert_eq!(args.len(), 8, "{log}");
    assert!(
        args[0].as_str().unwrap().starts_with("input_images_"),
        "target_dir from call 0: {log}"
    );
    assert_eq!(args[1].as_f64(), Some(45.0), "conf_thres");
    assert_eq!(args[2], "All", "frame_filter");
    assert_eq!(args[3], true, "mask_black_bg");
    assert_eq!(args[4], false, "mask_white_bg");
    assert_eq!(args[5], false, "show_cam");
    assert_eq!(args[6], false, "mask_sky");
    assert_eq!(args[7], "Pointmap Branch", "prediction_mode");
    let named: Value =
        serde_json::from_str(&log_line(&log, "SETTINGS").expect("SETTINGS line")).unwrap();
    assert_eq!(named["prediction_mode"], "Pointmap Branch");
    assert_eq!(named["show_cam"], false);
    assert_eq!(log_line(&log, "IMAGES").unwrap(), "a.png,b.png,c.png");

    // The Space's log text is kept as outputs.log, and its gr.Info lines as the run's logs.
    assert_eq!(
        done["outputs"]["log"].as_str(),
        Some(log.as_str()),
        "{done}"
    );
    assert_eq!(
        done["logs"],
        json!(["mirror: reconstructing 3 frames"]),
        "{done}"
    );
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_while_queued_and_while_running_frees_the_space() {
    let mirror = MirrorSpace::start().unwrap();
    let t = TestStack::start(mirror.url()).await.unwrap();
    // A slow job holds the Space's single worker; a second one waits in the Space's queue.
    let slow = create_and_upload(&t.client, &images(&["slow1.png"]), json!({}), json!({}))
        .await
        .unwrap();
    let slow_id = slow["id"].as_str().unwrap();
    wait_for(
        &t.client,
        slow_id,
        Duration::from_secs(30),
        "running at the Space",
        |r| r["status"] == "running" && r["progress"]["stage"] == "running",
    )
    .await
    .unwrap();
    let queued = create_and_upload(&t.client, &images(&["q1.png"]), json!({}), json!({}))
        .await
        .unwrap();
    let queued_id = queued["id"].as_str().unwrap();
    let seen = wait_for(
        &t.client,
        queued_id,
        Duration::from_secs(30),
        "queued at the Space",
        |r| r["status"] == "running" && r["progress"]["stage"] == "queued_at_space",
    )
    .await
    .unwrap();
    assert!(seen["progress"]["queue_rank"].is_u64(), "{seen}");

    let c = t.client.action(queued_id, "cancel").await.unwrap();
    assert_eq!(c["status"], "cancelled");
    let c = t.client.action(slow_id, "cancel").await.unwrap();
    assert_eq!(c["status"], "cancelled");
    assert!(c["finished_at"].is_string());

    // The Space's worker is free at once: a quick job finishes well before the slow one would have.
    let started = std::time::Instant::now();
    let quick = create_and_upload(&t.client, &images(&["quick.png"]), json!({}), json!({}))
        .await
        .unwrap();
    let done = wait_terminal(
        &t.client,
        quick["id"].as_str().unwrap(),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the Space was still busy: {:?}",
        started.elapsed()
    );

    // Both stay cancelled; a second cancel is refused.
    for id in [slow_id, queued_id] {
        let r = t.client.get_run(id, None).await.unwrap();
        assert_eq!(r["status"], "cancelled");
        let err = t.client.action(id, "cancel").await.unwrap_err();
        let f = err
            .downcast_ref::<spaceport_cli::client::ApiFailure>()
            .unwrap();
        assert_eq!((f.status, f.code.as_str()), (409, "invalid_state"));
    }
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_space_failure_ends_failed_with_the_spaces_message() {
    let mirror = MirrorSpace::start().unwrap();
    let t = TestStack::start(mirror.url()).await.unwrap();
    let run = create_and_upload(&t.client, &images(&["fail.png"]), json!({}), json!({}))
        .await
        .unwrap();
    let done = wait_terminal(
        &t.client,
        run["id"].as_str().unwrap(),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "space_error");
    assert!(
        done["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mirror failure"),
        "{done}"
    );
    assert!(done["artifacts"].as_array().unwrap().is_empty());
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_space_that_is_down_ends_space_unavailable_after_bounded_retries() {
    let port = spaceport_testkit::free_port();
    let t = TestStack::start(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let run = create_and_upload(&t.client, &images(&["a.png"]), json!({}), json!({}))
        .await
        .unwrap();
    let done = wait_terminal(
        &t.client,
        run["id"].as_str().unwrap(),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "space_unavailable");
    assert_eq!(done["error"]["retryable"], true);
    let msg = done["error"]["message"].as_str().unwrap();
    assert!(msg.contains("gave up after 4 tries"), "{msg}");
    // 3 back-offs of 0.2, 0.4 and 0.8 s, each jittered down by up to half: bounded, not instant.
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_ends_a_run_expired_and_stops_the_job() {
    let mirror = MirrorSpace::start().unwrap();
    let t = TestStack::start(mirror.url()).await.unwrap();
    let run = create_and_upload(
        &t.client,
        &images(&["slow.png"]),
        json!({}),
        json!({"deadline_s": 4}),
    )
    .await
    .unwrap();
    let id = run["id"].as_str().unwrap();
    let done = wait_terminal(&t.client, id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(done["status"], "expired", "{done}");
    assert_eq!(done["error"]["code"], "deadline_exceeded");
    // The Space was told to stop: the next job does not wait for the slow one.
    let started = std::time::Instant::now();
    let quick = create_and_upload(&t.client, &images(&["quick.png"]), json!({}), json!({}))
        .await
        .unwrap();
    let q = wait_terminal(
        &t.client,
        quick["id"].as_str().unwrap(),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!(q["status"], "succeeded", "{q}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_runs_again_on_copies_of_the_inputs_once_per_idempotency_key() {
    let mirror = MirrorSpace::start().unwrap();
    let t = TestStack::start(mirror.url()).await.unwrap();
    let first = run_to_end(
        &t.client,
        &images(&["a.png", "b.png"]),
        json!({}),
        json!({}),
    )
    .await;
    assert_eq!(first["status"], "succeeded", "{first}");
    let id = first["id"].as_str().unwrap();
    let http = reqwest::Client::new();
    let retry = |key: &'static str| {
        http.post(format!("{}/v1/runs/{id}/retry", t.stack.url))
            .header("Idempotency-Key", key)
    };
    let (status, again) = send(retry("retry-1")).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["retry_of"], id);
    let (status, same) = send(retry("retry-1")).await;
    assert_eq!((status, &same["id"]), (200, &again["id"]), "{same}");
    let (status, other) = send(retry("retry-2")).await;
    assert_eq!(status, 201, "{other}");
    assert_ne!(other["id"], again["id"]);

    // The copies hold the same bytes, and outlive the run they were copied from.
    let old = t.stored(id).await;
    let new = t.stored(again["id"].as_str().unwrap()).await;
    let shas = |r: &spaceport_core::Run| -> Vec<Option<String>> {
        r.inputs["images"]
            .iter()
            .map(|f| f.sha256.clone())
            .collect()
    };
    assert_eq!(shas(&old), shas(&new));
    let (status, _) = send(http.delete(format!("{}/v1/runs/{id}", t.stack.url))).await;
    assert_eq!(status, 200);
    let blobs = &t.stack.steps.ports.blobs;
    for (o, n) in old.inputs["images"].iter().zip(&new.inputs["images"]) {
        assert!(
            blobs.head(&o.key).await.unwrap().is_none(),
            "the old input is deleted"
        );
        let kept = blobs.head(&n.key).await.unwrap().expect("the copy stays");
        assert_eq!(Some(kept.sha256), n.sha256);
    }
    for rid in [again["id"].as_str().unwrap(), other["id"].as_str().unwrap()] {
        let done = wait_terminal(&t.client, rid, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    t.stack.shutdown().await;
}
