//! Inputs checked as they land through the presigned upload route: bytes that are not the
//! declared type fail the run `input_invalid` before any Space is called (the upload answered
//! 415), an upload URL replayed after its input landed, or after the run was deleted, is
//! refused 409 with nothing stored, and an upload (or a multipart create) whose body goes
//! silent is abandoned 408 with nothing stored.

use serde_json::{Value, json};

use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::bad_input::{assert_no_blob, body, create, file, manual_run, png_bytes, put, stack};
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_are_not_the_declared_type_fail_the_run_input_invalid_before_any_space_call() {
    let t = stack().await;
    let text = b"hello, this is not a picture\n".to_vec();
    let (status, run) = create(
        &t,
        &json!({"pipeline": "vggt", "inputs": {"images": [
            {"filename": "a.png", "content_type": "image/png", "size": text.len()},
            {"filename": "b.png", "content_type": "image/png", "size": 100}]}}),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let up = &run["uploads"][0];
    let got = put(up["url"].as_str().unwrap(), Some("image/png"), text).await;
    let e = expect_error(&got, 415, "unsupported_media_type");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains("images[0] (a.png)") && message.contains("text"),
        "{message}"
    );
    let failed = t.client.get_run(&id, None).await.unwrap();
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "input_invalid");
    assert_eq!(failed["error"]["retryable"], false);
    // It never reached a backend: no attempt was made.
    assert!(
        failed["backend"]["attempts"].as_array().unwrap().is_empty(),
        "{failed}"
    );
    assert_eq!(failed["started_at"], Value::Null);

    // A real PNG of the declared size lands as before.
    let png_bytes = png(8, 8, 1);
    let (status, run) = create(&t, &body(vec![file("c.png", png_bytes.len() as u64)])).await;
    assert_eq!(status, 201, "{run}");
    let got = put(
        run["uploads"][0]["url"].as_str().unwrap(),
        Some("image/png"),
        png_bytes,
    )
    .await;
    assert_eq!(got.0, 200, "{}", got.1);
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_url_replayed_after_its_input_landed_is_409_and_stores_nothing() {
    let t = stack().await;
    let (id, up, key) = manual_run(&t, 100).await;
    let url = up["url"].as_str().unwrap();
    let first = png_bytes(100);
    let (status, ok) = put(url, Some("image/png"), first.clone()).await;
    assert_eq!(status, 200, "{ok}");
    let landed = stored_json(&t, &id).await;
    let meta = t.stack.steps.ports.blobs.head(&key).await.unwrap().unwrap();

    // The same URL again, with other bytes of the same size: refused, nothing replaced.
    let mut other = png_bytes(100);
    other[99] = 1;
    let got = put(url, Some("image/png"), other).await;
    let e = expect_error(&got, 409, "conflict");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains("already landed") && message.contains(&meta.sha256),
        "{message}"
    );
    assert_eq!(stored_json(&t, &id).await, landed);
    assert_eq!(
        t.stack
            .steps
            .ports
            .blobs
            .head(&key)
            .await
            .unwrap()
            .unwrap()
            .sha256,
        meta.sha256,
        "the stored bytes are the ones the run recorded"
    );

    // Nor after the run ended and was deleted.
    t.client.action(&id, "cancel").await.unwrap();
    t.client.delete_run(&id).await.unwrap();
    let got = put(url, Some("image/png"), first).await;
    let e = expect_error(&got, 409, "conflict");
    assert!(e["message"].as_str().unwrap().contains("deleted"), "{e}");
    assert_no_blob(&t, &key).await;
    t.stack.shutdown().await;
}

/// A request body that sends `head` and then nothing, never ending.
fn stalls_after(head: Vec<u8>) -> reqwest::Body {
    let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(head) })
        .chain(futures::stream::pending());
    reqwest::Body::wrap_stream(stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_body_that_goes_silent_is_abandoned_408_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dead = format!("http://127.0.0.1:{}", spaceport_testkit::free_port());
    let mut cfg = config(dir.path(), &dead);
    cfg.upload_idle_s = Some(1);
    let t = TestStack::start_config(cfg).await.unwrap();
    let (id, up, key) = manual_run(&t, 100).await;
    let http = reqwest::Client::new();
    let began = Instant::now();
    let got = tokio::time::timeout(
        Duration::from_secs(20),
        send(
            http.put(up["url"].as_str().unwrap())
                .header("content-type", "image/png")
                .header("content-length", "100")
                .body(stalls_after(png_bytes(100)[..10].to_vec())),
        ),
    )
    .await
    .expect("the server answered a silent upload");
    let e = expect_error(&got, 408, "request_timeout");
    assert!(e["message"].as_str().unwrap().contains("1 s"), "{e}");
    assert!(began.elapsed() < Duration::from_secs(15));
    assert_no_blob(&t, &key).await;
    // The run still waits for its input, and the same URL takes a whole upload.
    let run = t.client.get_run(&id, None).await.unwrap();
    assert_eq!(run["status"], "created", "{run}");
    let (status, ok) = put(
        up["url"].as_str().unwrap(),
        Some("image/png"),
        png_bytes(100),
    )
    .await;
    assert_eq!(status, 200, "{ok}");

    // A multipart create whose body goes silent: 408, no run.
    let runs = t.client.list_runs(&[]).await.unwrap()["runs"]
        .as_array()
        .unwrap()
        .len();
    let boundary = "spaceportstall";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"pipeline\"\r\n\r\nvggt\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"images\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n"
    );
    let mut first = head.into_bytes();
    first.extend_from_slice(&png_bytes(40));
    let got = tokio::time::timeout(
        Duration::from_secs(20),
        send(
            http.post(format!("{}/v1/runs", t.stack.url))
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(stalls_after(first)),
        ),
    )
    .await
    .expect("the server answered a silent form");
    expect_error(&got, 408, "request_timeout");
    let after = t.client.list_runs(&[]).await.unwrap()["runs"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, runs, "no run was created");
    t.stack.shutdown().await;
}
