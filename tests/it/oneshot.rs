//! One-shot creates through the embedded stack against the mirror Space: a multipart form with
//! the images in it and `?wait=30` answers with the succeeded run and its artifact; URL inputs
//! are fetched from an allowed server and the run succeeds the same way; a URL at 127.0.0.1
//! that is not allow-listed, a redirect to a loopback or metadata address, an error status, a
//! type the slot does not take, bytes that are not their declared type and a file over the
//! slot's limit are each refused naming the input, and nothing is stored for them. A form posted from a foreign page is refused.

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use serde_json::{Value, json};

use crate::common::*;

/// A file server on 127.0.0.1: `/a.png` and `/b.png`, `/text` (text/plain), `/fake.png` (text
/// served as image/png), `/missing` (404),
/// `/to?url=…` (a 302 to `url`), `/big.png` (an image/png past vggt's limit, without a length).
async fn files_server() -> String {
    let a = png(30, 20, 1);
    let b = png(32, 20, 2);
    let image = |bytes: Vec<u8>| {
        move || {
            let bytes = bytes.clone();
            async move { ([(header::CONTENT_TYPE, "image/png")], bytes) }
        }
    };
    let app = Router::new()
        .route("/a.png", get(image(a)))
        .route("/b.png", get(image(b)))
        .route(
            "/text",
            get(|| async { ([(header::CONTENT_TYPE, "text/plain")], "hello") }),
        )
        .route(
            "/fake.png",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "image/png")],
                    "hello, not a picture",
                )
            }),
        )
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/to",
            get(
                |axum::extract::Query(q): axum::extract::Query<
                    std::collections::HashMap<String, String>,
                >| async move {
                    let mut h = HeaderMap::new();
                    h.insert(header::LOCATION, q["url"].parse().unwrap());
                    (StatusCode::FOUND, h)
                },
            ),
        )
        .route(
            "/big.png",
            get(|| async {
                // 64 MiB in 1 MiB chunks, streamed without a Content-Length.
                let chunk = bytes::Bytes::from(vec![0u8; 1 << 20]);
                let body = futures::stream::iter(
                    (0..64).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
                );
                (
                    [(header::CONTENT_TYPE, "image/png")],
                    axum::body::Body::from_stream(body),
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn form(files: &[(&str, Vec<u8>)]) -> reqwest::multipart::Form {
    let mut f = reqwest::multipart::Form::new()
        .text("pipeline", "vggt")
        .text("settings", r#"{"conf_thres": 45}"#)
        .text("metadata", r#"{"order": "A-17"}"#);
    for (name, bytes) in files {
        let part = reqwest::multipart::Part::bytes(bytes.clone())
            .file_name(name.to_string())
            .mime_str("image/png")
            .unwrap();
        f = f.part("images", part);
    }
    f
}

async fn run_count(t: &TestStack) -> usize {
    let (_, list) = send(reqwest::Client::new().get(format!("{}/v1/runs", t.stack.url))).await;
    list["runs"].as_array().unwrap().len()
}

/// The inputs the data directory's blob store holds (files and inline rows alike).
fn stored_inputs(data: &std::path::Path) -> usize {
    stored_keys(data)
        .into_iter()
        .filter(|k| k.contains("/inputs/"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_with_its_files_and_wait_answers_with_the_succeeded_run() {
    let mirror = MirrorSpace::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let t = TestStack::start_config(config(dir.path(), mirror.url()))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let (a, b) = (png(40, 30, 1), png(43, 30, 2));
    let (status, run) = send(
        http.post(format!("{}/v1/runs?wait=30", t.stack.url))
            .multipart(form(&[("b.png", b.clone()), ("a.png", a.clone())])),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["metadata"]["order"], "A-17");
    assert_eq!(run["settings"]["conf_thres"].as_f64(), Some(45.0));
    let inputs = run["inputs"]["images"].as_array().unwrap();
    assert_eq!(inputs.len(), 2);
    for (got, (name, bytes)) in inputs.iter().zip([("b.png", &b), ("a.png", &a)]) {
        assert_eq!(got["filename"], name);
        assert_eq!(got["size"], bytes.len());
        assert_eq!(got["state"], "landed");
        assert_eq!(
            got["sha256"].as_str().unwrap(),
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
        );
    }
    assert!(
        run.get("uploads").is_none(),
        "nothing left to upload: {run}"
    );
    let arts = run["artifacts"].as_array().unwrap();
    assert_eq!(arts[0]["name"], "scene", "{run}");
    let glb = http
        .get(arts[0]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&glb[..4], b"glTF");
    // The Space got both images, in filename order.
    let log = t.space_outputs(run["id"].as_str().unwrap()).await[1]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(log_line(&log, "IMAGES").unwrap(), "a.png,b.png");

    // The same Idempotency-Key and the same form: the same run, nothing more stored.
    let again = |files: &[(&str, Vec<u8>)]| {
        http.post(format!("{}/v1/runs", t.stack.url))
            .header("Idempotency-Key", "form-1")
            .multipart(form(files))
    };
    let (s1, first) = send(again(&[("a.png", a.clone())])).await;
    let stored = stored_inputs(dir.path());
    let (s2, second) = send(again(&[("a.png", a.clone())])).await;
    assert_eq!((s1, s2), (201, 200), "{first} {second}");
    assert_eq!(first["id"], second["id"]);
    assert_eq!(stored_inputs(dir.path()), stored, "a replay stores nothing");
    // Other bytes under the same key: a conflict.
    let got = send(again(&[("a.png", b.clone())])).await;
    expect_error(&got, 409, "conflict");
    assert_eq!(stored_inputs(dir.path()), stored);

    // Refused forms store nothing: no pipeline, a slot vggt lacks, a type it does not take, a
    // foreign page's post.
    let runs = run_count(&t).await;
    let no_pipeline = reqwest::multipart::Form::new().part(
        "images",
        reqwest::multipart::Part::bytes(a.clone())
            .file_name("a.png")
            .mime_str("image/png")
            .unwrap(),
    );
    let got = send(
        http.post(format!("{}/v1/runs", t.stack.url))
            .multipart(no_pipeline),
    )
    .await;
    assert!(got.0 == 400 || got.0 == 422, "{got:?}");
    let wrong_slot = form(&[]).part(
        "masks",
        reqwest::multipart::Part::bytes(a.clone())
            .file_name("m.png")
            .mime_str("image/png")
            .unwrap(),
    );
    let got = send(
        http.post(format!("{}/v1/runs", t.stack.url))
            .multipart(wrong_slot),
    )
    .await;
    let e = expect_error(&got, 422, "validation_failed");
    assert_eq!(e["field"], "inputs.masks", "{e}");
    let wrong_type = form(&[]).part(
        "images",
        reqwest::multipart::Part::bytes(b"hello".to_vec())
            .file_name("a.txt")
            .mime_str("text/plain")
            .unwrap(),
    );
    let got = send(
        http.post(format!("{}/v1/runs", t.stack.url))
            .multipart(wrong_type),
    )
    .await;
    expect_error(&got, 415, "unsupported_media_type");
    // A type the slot takes, but bytes that are not it: refused as a presigned upload's are.
    let not_png = form(&[]).part(
        "images",
        reqwest::multipart::Part::bytes(b"hello, not a picture\n".to_vec())
            .file_name("a.png")
            .mime_str("image/png")
            .unwrap(),
    );
    let got = send(
        http.post(format!("{}/v1/runs", t.stack.url))
            .multipart(not_png),
    )
    .await;
    let e = expect_error(&got, 415, "unsupported_media_type");
    assert_eq!(e["field"], "inputs.images[0]", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("text, not image/png"),
        "{e}"
    );
    let got = send(
        http.post(format!("{}/v1/runs", t.stack.url))
            .header("Origin", "https://evil.example")
            .multipart(form(&[("a.png", a.clone())])),
    )
    .await;
    expect_error(&got, 403, "forbidden");
    assert_eq!(run_count(&t).await, runs);
    assert_eq!(stored_inputs(dir.path()), stored);
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_inputs_are_fetched_under_the_outbound_rules() {
    let mirror = MirrorSpace::start().unwrap();
    let files = files_server().await;
    let http = reqwest::Client::new();

    // 127.0.0.1 not allow-listed: refused as given, and as a redirect target.
    let dir = tempfile::tempdir().unwrap();
    let strict = TestStack::start_config(config(dir.path(), mirror.url()))
        .await
        .unwrap();
    let create = |t: &TestStack, urls: &[String]| {
        let inputs: Vec<Value> = urls.iter().map(|u| json!({"url": u})).collect();
        http.post(format!("{}/v1/runs?wait=30", t.stack.url))
            .json(&json!({"pipeline": "vggt", "inputs": {"images": inputs}}))
    };
    let got = send(create(&strict, &[format!("{files}/a.png")])).await;
    let e = expect_error(&got, 422, "validation_failed");
    assert_eq!(e["field"], "inputs.images[0].url", "{e}");
    assert!(e["message"].as_str().unwrap().contains("loopback"), "{e}");
    assert_eq!(run_count(&strict).await, 0);
    strict.stack.shutdown().await;

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), mirror.url());
    cfg.outbound_allow = vec!["127.0.0.1".into()];
    let t = TestStack::start_config(cfg).await.unwrap();
    let to = |target: &str| format!("{files}/to?url={target}");
    for (url, status, code, says) in [
        (
            to("http://127.0.0.2/a.png"),
            422,
            "validation_failed",
            "loopback",
        ),
        (
            to("http://169.254.169.254/latest/meta-data/"),
            422,
            "validation_failed",
            "169.254.169.254",
        ),
        (format!("{files}/missing"), 422, "validation_failed", "404"),
        (
            format!("{files}/text"),
            415,
            "unsupported_media_type",
            "text/plain",
        ),
        (
            format!("{files}/fake.png"),
            415,
            "unsupported_media_type",
            "text, not image/png",
        ),
        (
            format!("{files}/big.png"),
            413,
            "payload_too_large",
            "limit",
        ),
    ] {
        let got = send(create(&t, &[format!("{files}/a.png"), url.clone()])).await;
        let e = expect_error(&got, status, code);
        assert_eq!(
            e["field"]
                .as_str()
                .unwrap()
                .split('.')
                .take(2)
                .collect::<Vec<_>>()
                .join("."),
            "inputs.images[1]",
            "{url}: {e}"
        );
        assert!(e["message"].as_str().unwrap().contains(says), "{url}: {e}");
    }
    assert_eq!(run_count(&t).await, 0);
    assert_eq!(
        stored_inputs(dir.path()),
        0,
        "refused inputs left files behind"
    );

    // Allowed: fetched (one through a redirect), stored with their URL, and the run succeeds.
    let (status, run) = send(create(
        &t,
        &[format!("{files}/a.png"), to(&format!("{files}/b.png"))],
    ))
    .await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["status"], "succeeded", "{run}");
    let inputs = run["inputs"]["images"].as_array().unwrap();
    assert_eq!(inputs[0]["filename"], "a.png");
    assert_eq!(
        inputs[1]["filename"], "b.png",
        "named after where it came from"
    );
    assert!(inputs.iter().all(|i| i["state"] == "landed"), "{run}");
    assert_eq!(run["artifacts"][0]["name"], "scene");
    t.stack.shutdown().await;
}
