//! The front door, through the embedded stack on 127.0.0.1: a body that is neither JSON nor a
//! multipart form (what a cross-site `text/plain` POST sends without a preflight) is refused with 415 and
//! stores nothing; a request naming a host the server does not answer to (DNS rebinding) is
//! refused with 421; CORS answers only the configured origins; a bad setting stops `serve`.

use std::process::Command;

use serde_json::{Value, json};
use spaceport_cli::config::Config;

use crate::common::*;

fn create_body() -> Value {
    json!({"pipeline": "vggt",
        "inputs": {"images": [{"filename": "a.png", "content_type": "image/png", "size": 10}]}})
}

async fn runs(t: &TestStack) -> Value {
    let (_, list) = send(reqwest::Client::new().get(format!("{}/v1/runs", t.stack.url))).await;
    list["runs"].clone()
}

#[tokio::test]
async fn a_body_that_is_not_json_is_refused_and_stores_nothing() {
    let t = TestStack::start("http://127.0.0.1:9").await.unwrap();
    let http = reqwest::Client::new();
    let body = create_body().to_string();
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut req = http
            .post(format!("{}/v1/runs", t.stack.url))
            .body(body.clone());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let got = send(req).await;
        let e = expect_error(&got, 415, "unsupported_media_type");
        assert_eq!(e["field"], "Content-Type", "{ct:?}: {e}");
    }
    // Labelled a form (which one-shot creates take), it is a malformed one.
    let got = send(
        http.post(format!("{}/v1/runs", t.stack.url))
            .header("content-type", "multipart/form-data; boundary=x")
            .body(body.clone()),
    )
    .await;
    expect_error(&got, 400, "validation_failed");
    assert_eq!(runs(&t).await, json!([]), "nothing stored");
    // The same body as JSON is a run.
    let (status, run) = send(
        http.post(format!("{}/v1/runs", t.stack.url))
            .header("content-type", "application/json; charset=utf-8")
            .body(body),
    )
    .await;
    assert_eq!(status, 201, "{run}");
}

#[tokio::test]
async fn a_request_naming_a_foreign_host_is_refused() {
    let t = TestStack::start("http://127.0.0.1:9").await.unwrap();
    let port = t.stack.addr.port();
    let http = reqwest::Client::new();
    // What a page on evil.example sends once its name resolves to 127.0.0.1.
    let got = send(
        http.get(format!("{}/v1/runs", t.stack.url))
            .header("host", format!("evil.example:{port}")),
    )
    .await;
    let e = expect_error(&got, 421, "host_not_allowed");
    assert!(
        e["message"].as_str().unwrap().contains("evil.example"),
        "{e}"
    );
    let got = send(
        http.post(format!("{}/v1/runs", t.stack.url))
            .header("host", "evil.example")
            .json(&create_body()),
    )
    .await;
    expect_error(&got, 421, "host_not_allowed");
    assert_eq!(runs(&t).await, json!([]), "nothing stored");
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let (status, body) = send(
            http.get(format!("{}/v1/runs", t.stack.url))
                .header("host", host),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test]
async fn a_configured_public_host_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        public_hosts: vec!["api.example.com".into()],
        ..config(dir.path(), "http://127.0.0.1:9")
    };
    let t = TestStack::start_config(cfg).await.unwrap();
    let (status, body) = send(
        reqwest::Client::new()
            .get(format!("{}/healthz", t.stack.url))
            .header("host", "API.example.com"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn cors_answers_the_configured_origins_only() {
    let preflight = |t: &TestStack, origin: &str| {
        reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, format!("{}/v1/runs", t.stack.url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,idempotency-key",
            )
            .send()
    };
    let allowed = |r: &reqwest::Response| {
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    // None by default.
    let plain = TestStack::start("http://127.0.0.1:9").await.unwrap();
    let r = preflight(&plain, "https://app.example.com").await.unwrap();
    assert_eq!(allowed(&r), None);

    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        cors_origins: vec!["https://app.example.com".into()],
        ..config(dir.path(), "http://127.0.0.1:9")
    };
    let t = TestStack::start_config(cfg).await.unwrap();
    let r = preflight(&t, "https://app.example.com").await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(allowed(&r).as_deref(), Some("https://app.example.com"));
    let methods = r.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(methods.contains("POST"), "{methods}");
    let r = preflight(&t, "https://evil.example").await.unwrap();
    assert_eq!(allowed(&r), None);
    // And on the answer itself.
    let r = reqwest::Client::new()
        .get(format!("{}/v1/runs", t.stack.url))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed(&r).as_deref(), Some("https://app.example.com"));
}

#[test]
fn serve_refuses_settings_that_are_not_hosts_or_origins() {
    for (var, value) in [
        ("SPACEPORT_CORS_ORIGINS", "*"),
        ("SPACEPORT_PUBLIC_HOSTS", "https://api.example.com"),
    ] {
        let data = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_spaceport"))
            .args(["--data", data.path().to_str().unwrap(), "serve"])
            .args(["--bind", "127.0.0.1:0"])
            .env(var, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}={value} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "{var}: {err}");
    }
}
