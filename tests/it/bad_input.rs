//! Bad input through the HTTP API: each rejected request answers API.md's error body with the
//! right status and code, names the field at fault, and changes nothing that is stored (the run
//! record byte for byte, the blob store, the run list). No Space is needed: the stacks point at
//! a port nobody listens on, and runs that must stay put are created with `"start": "manual"`.

use std::time::Duration;

use serde_json::{Value, json};
use spaceport_core::RunId;

use crate::common::*;

/// A stack whose Space is a port nobody listens on.
pub(crate) async fn stack() -> TestStack {
    stack_with(fast_options()).await
}

async fn stack_with(opts: spaceport_cli::stack::StackOptions) -> TestStack {
    let dead = format!("http://127.0.0.1:{}", spaceport_testkit::free_port());
    TestStack::start_with(&dead, opts).await.unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

pub(crate) fn file(name: &str, size: u64) -> Value {
    json!({"filename": name, "content_type": "image/png", "size": size})
}

/// A valid create body declaring `files`.
pub(crate) fn body(files: Vec<Value>) -> Value {
    json!({"pipeline": "vggt", "inputs": {"images": files}, "start": "manual"})
}

pub(crate) async fn create(t: &TestStack, body: &Value) -> (u16, Value) {
    send(http().post(format!("{}/v1/runs", t.stack.url)).json(body)).await
}

async fn create_text(t: &TestStack, text: &str) -> (u16, Value) {
    let req = http()
        .post(format!("{}/v1/runs", t.stack.url))
        .header("content-type", "application/json")
        .body(text.to_string());
    send(req).await
}

async fn run_count(t: &TestStack) -> usize {
    let list = t.client.list_runs(&[]).await.unwrap();
    list["runs"].as_array().unwrap().len()
}

/// Asserts a rejected create: status, code, the field (when given) and words of the message;
/// and that no run exists afterwards.
async fn rejected_create(
    t: &TestStack,
    got: (u16, Value),
    status: u16,
    code: &str,
    field: Option<&str>,
    words: &[&str],
) {
    let e = expect_error(&got, status, code);
    if let Some(f) = field {
        assert_eq!(e["field"], f, "{e}");
    }
    let message = e["message"].as_str().unwrap();
    for w in words {
        assert!(
            message.contains(w),
            "the message should name {w:?}: {message}"
        );
    }
    assert_eq!(run_count(t).await, 0, "a rejected create stored a run");
}

/// A manual-start run declaring one PNG of `size` bytes: its id, upload target and blob key.
pub(crate) async fn manual_run(t: &TestStack, size: u64) -> (String, Value, String) {
    let (status, run) = create(t, &body(vec![file("a.png", size)])).await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let up = run["uploads"][0].clone();
    assert_eq!(up["method"], "PUT", "{run}");
    let key = t.stored(&id).await.inputs["images"][0].key.clone();
    (id, up, key)
}

/// `n` bytes that start as a PNG does (what an upload declared `image/png` is checked for).
pub(crate) fn png_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    b.resize(n, 7);
    b
}

pub(crate) async fn put(url: &str, content_type: Option<&str>, bytes: Vec<u8>) -> (u16, Value) {
    let mut req = http().put(url).body(bytes);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    send(req).await
}

pub(crate) async fn assert_no_blob(t: &TestStack, key: &str) {
    let head = t.stack.steps.ports.blobs.head(key).await.unwrap();
    assert!(
        head.is_none(),
        "a rejected upload left an object at {key}: {head:?}"
    );
}

/// Asserts the stored run is exactly `before` and its input has no object.
async fn unchanged(t: &TestStack, id: &str, before: &str, key: &str) {
    assert_eq!(
        stored_json(t, id).await,
        before,
        "a rejected request changed the stored run"
    );
    assert_no_blob(t, key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_pipeline_is_422_on_pipeline_and_stores_nothing() {
    let t = stack().await;
    let mut b = body(vec![file("a.png", 10)]);
    b["pipeline"] = json!("no-such-pipeline");
    let got = create(&t, &b).await;
    rejected_create(
        &t,
        got,
        422,
        "validation_failed",
        Some("pipeline"),
        &["no-such-pipeline", "vggt"],
    )
    .await;
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_setting_is_422_naming_it() {
    let t = stack().await;
    let mut b = body(vec![file("a.png", 10)]);
    b["settings"] = json!({"conf_thres": 10, "colour": "red"});
    let got = create(&t, &b).await;
    rejected_create(
        &t,
        got,
        422,
        "validation_failed",
        Some("settings.colour"),
        &["colour"],
    )
    .await;
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_range_setting_is_422_naming_it() {
    let t = stack().await;
    for bad in [json!(101), json!(-1)] {
        let mut b = body(vec![file("a.png", 10)]);
        b["settings"] = json!({"conf_thres": bad});
        let got = create(&t, &b).await;
        rejected_create(
            &t,
            got,
            422,
            "validation_failed",
            Some("settings.conf_thres"),
            &["settings.conf_thres", &bad.to_string(), "100"],
        )
        .await;
    }
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setting_of_the_wrong_type_is_422_naming_it() {
    let t = stack().await;
    for (name, bad) in [
        ("show_cam", json!("yes")),
        ("conf_thres", json!("50")),
        ("prediction_mode", json!("mesh")),
    ] {
        let mut b = body(vec![file("a.png", 10)]);
        b["settings"] = json!({ name: bad });
        let field = format!("settings.{name}");
        let got = create(&t, &b).await;
        rejected_create(&t, got, 422, "validation_failed", Some(&field), &[&field]).await;
    }
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_or_too_few_images_are_422_on_the_slot() {
    let t = stack().await;
    let many: Vec<Value> = (0..201).map(|i| file(&format!("{i:03}.png"), 10)).collect();
    let got = create(&t, &body(many)).await;
    rejected_create(
        &t,
        got,
        422,
        "validation_failed",
        Some("inputs.images"),
        &["201", "1 to 200"],
    )
    .await;

    let got = create(&t, &body(vec![])).await;
    rejected_create(
        &t,
        got,
        422,
        "validation_failed",
        Some("inputs.images"),
        &["0 file", "1 to 200"],
    )
    .await;

    // No `inputs` at all is zero images too.
    let got = create(&t, &json!({"pipeline": "vggt"})).await;
    rejected_create(
        &t,
        got,
        422,
        "validation_failed",
        Some("inputs.images"),
        &["0 file"],
    )
    .await;

    // 200 is the limit, not past it.
    let ok: Vec<Value> = (0..200).map(|i| file(&format!("{i:03}.png"), 10)).collect();
    let (status, run) = create(&t, &body(ok)).await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["uploads"].as_array().unwrap().len(), 200);
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_size_over_the_limit_is_413_on_the_size() {
    let t = stack().await;
    let got = create(&t, &body(vec![file("a.png", 20_000_001)])).await;
    rejected_create(
        &t,
        got,
        413,
        "payload_too_large",
        Some("inputs.images[0].size"),
        &["20000001", "20000000"],
    )
    .await;
    // Exactly the limit is accepted.
    let (status, run) = create(&t, &body(vec![file("a.png", 20_000_000)])).await;
    assert_eq!(status, 201, "{run}");
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_content_type_is_415_on_the_content_type() {
    let t = stack().await;
    let mut b = body(vec![file("a.png", 10), file("b.gif", 10)]);
    b["inputs"]["images"][1]["content_type"] = json!("image/gif");
    let got = create(&t, &b).await;
    rejected_create(
        &t,
        got,
        415,
        "unsupported_media_type",
        Some("inputs.images[1].content_type"),
        &["image/gif", "image/png"],
    )
    .await;
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filenames_with_a_path_or_a_nul_are_422_on_the_filename() {
    let t = stack().await;
    for (i, bad) in [
        "../a.png",
        "a\u{0}.png",
        "..",
        "x/../../etc/passwd",
        "a\\b.png",
    ]
    .into_iter()
    .enumerate()
    {
        // The bad name second, so the field must carry its index.
        let b = body(vec![file("ok.png", 10), file(bad, 10)]);
        let got = create(&t, &b).await;
        let e = expect_error(&got, 422, "validation_failed");
        assert_eq!(e["field"], "inputs.images[1].filename", "case {i}: {e}");
        let message = e["message"].as_str().unwrap();
        assert!(message.contains("filename"), "case {i}: {message}");
        assert_eq!(run_count(&t).await, 0);
    }
    // First in the list too.
    let got = create(&t, &body(vec![file("../a.png", 10)])).await;
    rejected_create(
        &t,
        got,
        422,
        "validation_failed",
        Some("inputs.images[0].filename"),
        &["../a.png"],
    )
    .await;
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_wrong_types_and_unknown_fields_are_400() {
    let t = stack().await;
    // Not JSON at all, or cut short.
    for text in [r#"{"pipeline": "vggt","#, "pipeline=vggt", "", "[]"] {
        let got = create_text(&t, text).await;
        rejected_create(&t, got, 400, "validation_failed", None, &["malformed"]).await;
    }
    // A field of the wrong type: the field is named, at any depth.
    let mut b = body(vec![file("a.png", 10)]);
    b["pipeline"] = json!(5);
    let got = create(&t, &b).await;
    rejected_create(
        &t,
        got,
        400,
        "validation_failed",
        Some("pipeline"),
        &["malformed"],
    )
    .await;

    let mut b = body(vec![file("a.png", 10)]);
    b["inputs"]["images"][0]["size"] = json!("big");
    let got = create(&t, &b).await;
    rejected_create(
        &t,
        got,
        400,
        "validation_failed",
        Some("inputs.images[0].size"),
        &["malformed"],
    )
    .await;

    let mut b = body(vec![file("a.png", 10)]);
    b["deadline_s"] = json!(-5);
    let got = create(&t, &b).await;
    rejected_create(&t, got, 400, "validation_failed", Some("deadline_s"), &[]).await;

    // An unknown top-level field (a typo of `settings`) is refused, not ignored.
    let mut b = body(vec![file("a.png", 10)]);
    b["setings"] = json!({"conf_thres": 10});
    let got = create(&t, &b).await;
    rejected_create(&t, got, 400, "validation_failed", None, &["setings"]).await;

    // An unknown field of a declared file too.
    let mut b = body(vec![file("a.png", 10)]);
    b["inputs"]["images"][0]["sha"] = json!("x");
    let got = create(&t, &b).await;
    rejected_create(&t, got, 400, "validation_failed", None, &["sha"]).await;
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_longer_than_declared_is_413_and_stores_nothing() {
    let t = stack().await;
    let (id, up, key) = manual_run(&t, 100).await;
    let before = stored_json(&t, &id).await;
    let url = up["url"].as_str().unwrap();
    let got = put(url, Some("image/png"), vec![7; 101]).await;
    let e = expect_error(&got, 413, "payload_too_large");
    assert!(e["message"].as_str().unwrap().contains("100"), "{e}");
    unchanged(&t, &id, &before, &key).await;

    // The URL is still good for the declared bytes.
    let (status, ok) = put(url, Some("image/png"), png_bytes(100)).await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["size"], 100);
    let run = t.client.get_run(&id, None).await.unwrap();
    assert_eq!(run["inputs"]["images"][0]["state"], "landed", "{run}");
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_shorter_than_declared_or_empty_is_rejected_and_stores_nothing() {
    let t = stack().await;
    let (id, up, key) = manual_run(&t, 100).await;
    let before = stored_json(&t, &id).await;
    let url = up["url"].as_str().unwrap();
    let got = put(url, Some("image/png"), vec![7; 99]).await;
    let e = expect_error(&got, 422, "validation_failed");
    assert_eq!(e["field"], "body", "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains("99") && message.contains("100"),
        "{message}"
    );
    unchanged(&t, &id, &before, &key).await;

    // An empty body: 400 when the request says `Content-Length: 0`, else 422 as a short body.
    let got = put(url, Some("image/png"), vec![]).await;
    let status = if got.0 == 400 { 400 } else { 422 };
    expect_error(&got, status, "validation_failed");
    unchanged(&t, &id, &before, &key).await;
    t.stack.shutdown().await;
}

/// `url` with the first hex digit of its `sig` changed.
fn flip_sig(url: &str) -> String {
    let at = url.find("sig=").expect("a sig parameter") + 4;
    let mut s = url.to_string();
    let c = s.as_bytes()[at];
    let flipped = if c == b'0' { "1" } else { "0" };
    s.replace_range(at..at + 1, flipped);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_upload_url_is_403_and_stores_nothing() {
    let t = stack().await;
    let (id, up, key) = manual_run(&t, 100).await;
    let (other_id, _, other_key) = manual_run(&t, 100).await;
    let before = stored_json(&t, &id).await;
    let other_before = stored_json(&t, &other_id).await;
    let url = up["url"].as_str().unwrap();

    // One hex digit of the signature changed.
    let tampered = flip_sig(url);
    assert_ne!(tampered, url);
    let got = put(&tampered, Some("image/png"), vec![7; 100]).await;
    expect_error(&got, 403, "upload_signature_invalid");
    unchanged(&t, &id, &before, &key).await;

    // The size raised (and a body of that size sent).
    assert!(url.contains("size=100&"), "{url}");
    let bigger = url.replace("size=100&", "size=101&");
    let got = put(&bigger, Some("image/png"), vec![7; 101]).await;
    expect_error(&got, 403, "upload_signature_invalid");
    unchanged(&t, &id, &before, &key).await;

    // The signed content type changed along with the request's.
    let as_jpeg = url.replace("content_type=image%2Fpng", "content_type=image%2Fjpeg");
    assert_ne!(as_jpeg, url);
    let got = put(&as_jpeg, Some("image/jpeg"), vec![7; 100]).await;
    expect_error(&got, 403, "upload_signature_invalid");
    unchanged(&t, &id, &before, &key).await;

    // Another run's object with this URL's signature.
    let elsewhere = url.replace(&id, &other_id);
    let got = put(&elsewhere, Some("image/png"), vec![7; 100]).await;
    expect_error(&got, 403, "upload_signature_invalid");
    unchanged(&t, &other_id, &other_before, &other_key).await;

    // No signature at all.
    let unsigned = &url[..url.find("&sig=").unwrap()];
    let got = put(unsigned, Some("image/png"), vec![7; 100]).await;
    expect_error(&got, 403, "upload_signature_invalid");
    unchanged(&t, &id, &before, &key).await;
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_upload_url_is_403_upload_expired_and_a_fresh_one_works() {
    let mut opts = fast_options();
    opts.steps.upload_ttl = Duration::from_secs(1);
    let t = stack_with(opts).await;
    let (id, up, key) = manual_run(&t, 100).await;
    let before = stored_json(&t, &id).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let got = put(up["url"].as_str().unwrap(), Some("image/png"), vec![7; 100]).await;
    let e = expect_error(&got, 403, "upload_expired");
    assert!(e["message"].as_str().unwrap().contains("expired"), "{e}");
    unchanged(&t, &id, &before, &key).await;

    // Reading the run hands out a new URL, which works.
    let run = t.client.get_run(&id, None).await.unwrap();
    let fresh = run["uploads"][0]["url"].as_str().unwrap();
    let (status, ok) = put(fresh, Some("image/png"), png_bytes(100)).await;
    assert_eq!(status, 200, "{ok}");
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_with_another_content_type_header_is_403() {
    let t = stack().await;
    let (id, up, key) = manual_run(&t, 100).await;
    let before = stored_json(&t, &id).await;
    let url = up["url"].as_str().unwrap();
    assert_eq!(up["headers"]["Content-Type"], "image/png", "{up}");
    for ct in [Some("image/jpeg"), Some("application/octet-stream"), None] {
        let got = put(url, ct, vec![7; 100]).await;
        let e = expect_error(&got, 403, "upload_signature_invalid");
        assert!(
            e["message"].as_str().unwrap().contains("Content-Type"),
            "{ct:?}: {e}"
        );
        unchanged(&t, &id, &before, &key).await;
    }
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_run_ids_are_404_for_every_action() {
    let t = stack().await;
    let missing = RunId::new(1_700_000_000_000, 42).to_string();
    for id in [missing.as_str(), "garbage", "run_notaulid", "run_"] {
        let base = format!("{}/v1/runs/{id}", t.stack.url);
        let requests = [
            ("GET", http().get(&base)),
            ("GET ?wait", http().get(format!("{base}?wait=1"))),
            ("start", http().post(format!("{base}/start"))),
            ("cancel", http().post(format!("{base}/cancel"))),
            ("retry", http().post(format!("{base}/retry"))),
            ("DELETE", http().delete(&base)),
            ("artifact", http().get(format!("{base}/artifacts/scene"))),
        ];
        for (what, req) in requests {
            let got = send(req).await;
            let e = expect_error(&got, 404, "not_found");
            let message = e["message"].as_str().unwrap();
            assert!(message.contains(id), "{what} {id}: {message}");
        }
    }
    assert_eq!(run_count(&t).await, 0);
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_that_do_not_fit_the_runs_state_are_409_and_change_nothing() {
    let t = stack().await;
    // A live run (created, waiting for its input): retry and delete need a finished run; start
    // needs the input.
    let (id, _, key) = manual_run(&t, 100).await;
    let before = stored_json(&t, &id).await;
    for action in ["retry", "start"] {
        let got = send(http().post(format!("{}/v1/runs/{id}/{action}", t.stack.url))).await;
        expect_error(&got, 409, "invalid_state");
        unchanged(&t, &id, &before, &key).await;
    }
    let got = send(http().delete(format!("{}/v1/runs/{id}", t.stack.url))).await;
    expect_error(&got, 409, "invalid_state");
    unchanged(&t, &id, &before, &key).await;

    // Cancelled: a second cancel (and a start) is refused, naming the state.
    let c = t.client.action(&id, "cancel").await.unwrap();
    assert_eq!(c["status"], "cancelled");
    let before = stored_json(&t, &id).await;
    for action in ["cancel", "start"] {
        let got = send(http().post(format!("{}/v1/runs/{id}/{action}", t.stack.url))).await;
        let e = expect_error(&got, 409, "invalid_state");
        assert!(e["message"].as_str().unwrap().contains("cancelled"), "{e}");
        assert_eq!(
            stored_json(&t, &id).await,
            before,
            "{action} changed a cancelled run"
        );
    }

    // Failed (the Space is down): cancel and start are refused too.
    let run = create_and_upload(
        &t.client,
        &[("a.png", png(20, 20, 1))],
        json!({}),
        json!({}),
    )
    .await
    .unwrap();
    let failed_id = run["id"].as_str().unwrap();
    let done = wait_terminal(&t.client, failed_id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(done["status"], "failed", "{done}");
    let before = stored_json(&t, failed_id).await;
    for action in ["cancel", "start"] {
        let got = send(http().post(format!("{}/v1/runs/{failed_id}/{action}", t.stack.url))).await;
        let e = expect_error(&got, 409, "invalid_state");
        assert!(e["message"].as_str().unwrap().contains("failed"), "{e}");
        assert_eq!(
            stored_json(&t, failed_id).await,
            before,
            "{action} changed a failed run"
        );
    }
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_returns_the_same_run_for_the_same_body_and_409_for_another() {
    let t = stack().await;
    let url = format!("{}/v1/runs", t.stack.url);
    let b = body(vec![file("a.png", 10)]);
    let post = |body: &Value| {
        http()
            .post(&url)
            .header("Idempotency-Key", "order-17")
            .json(body)
    };

    let (status, first) = send(post(&b)).await;
    assert_eq!(status, 201, "{first}");
    let id = first["id"].as_str().unwrap().to_string();
    let before = stored_json(&t, &id).await;

    // The same body again: 200 with the same run, and no second run.
    let (status, again) = send(post(&b)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(
        again["uploads"].as_array().map(Vec::len),
        Some(1),
        "{again}"
    );
    assert_eq!(run_count(&t).await, 1);
    assert_eq!(stored_json(&t, &id).await, before);

    // The same JSON with its keys in another order and other spacing is the same body.
    let reordered = r#"{ "start": "manual",
        "inputs": {"images": [{"size": 10, "content_type": "image/png", "filename": "a.png"}]},
        "pipeline": "vggt" }"#;
    let req = http()
        .post(&url)
        .header("Idempotency-Key", "order-17")
        .header("content-type", "application/json")
        .body(reordered);
    let (status, again) = send(req).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(run_count(&t).await, 1);

    // The same key with another body: 409 conflict naming the key; nothing changes.
    let mut other = b.clone();
    other["settings"] = json!({"conf_thres": 10});
    let got = send(post(&other)).await;
    let e = expect_error(&got, 409, "conflict");
    assert!(e["message"].as_str().unwrap().contains("order-17"), "{e}");
    assert_eq!(run_count(&t).await, 1);
    assert_eq!(stored_json(&t, &id).await, before);

    // Another key makes another run.
    let (status, second) = send(
        http()
            .post(&url)
            .header("Idempotency-Key", "order-18")
            .json(&b),
    )
    .await;
    assert_eq!(status, 201, "{second}");
    assert_ne!(second["id"], first["id"]);
    assert_eq!(run_count(&t).await, 2);
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_has_the_error_shape_axums_own_included() {
    let t = stack().await;
    let base = &t.stack.url;
    let got = send(http().get(format!("{base}/v1/nowhere"))).await;
    expect_error(&got, 404, "not_found");
    let resp = http()
        .delete(format!("{base}/v1/pipelines"))
        .send()
        .await
        .unwrap();
    let allow = resp
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_string());
    assert!(
        allow.as_deref().is_some_and(|a| a.contains("GET")),
        "{allow:?}"
    );
    let got = (resp.status().as_u16(), resp.json::<Value>().await.unwrap());
    expect_error(&got, 405, "method_not_allowed");
    let got = send(http().get(format!("{base}/v1/runs?limit=many"))).await;
    expect_error(&got, 400, "validation_failed");
    // 413 has its own test (limits.rs), with a body the server can refuse before reading.
    assert_eq!(run_count(&t).await, 0, "nothing was stored");
}
