//! The edge orchestrator (orchestrator/, a Spin component built for wasm32-wasip2) under a real
//! WASI-HTTP host, `wasmtime serve`, in front of the embedded stack, with a recording proxy
//! between them whose request log shows what reached the API. Refusals (401, 403, 413, 415,
//! 400, 422, and 429 from buckets kept in a preopened directory) are answered at the edge, byte
//! for byte as the API words them, and never reach it;
//! a run token reads its own run only and not after it expires; a client cannot pose as the
//! edge; request ids travel both ways; and a `vggt` run is created in one shot through the edge
//! and followed to `succeeded`, bodies streamed both ways.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use futures::TryStreamExt;
use serde_json::{Value, json};
use spaceport_cli::config::Secret;
use spaceport_core::RunId;
use spaceport_core::auth::{hash_text, key_hash};
use spaceport_core::run_token::RunToken;

use crate::common::*;

const EDGE_SECRET: &str = "edge-secret-shared-with-the-api-0123456789";
const TOKEN_SECRET: &str = "run-token-secret-of-the-api-0123456789";

/// What reached the API: method, path and request id of each request.
type Log = Arc<Mutex<Vec<(String, String, String)>>>;

/// A proxy that records each request and passes it on to `upstream`, bodies streamed.
async fn recorder(upstream: String) -> (String, Log) {
    let log: Log = Arc::default();
    let state = (upstream, log.clone(), reqwest::Client::new());
    let app = axum::Router::new()
        .fallback(
            |State((up, log, http)): State<(String, Log, reqwest::Client)>, req: Request| async move {
                let (parts, body) = req.into_parts();
                let rid = parts
                    .headers
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                log.lock()
                    .unwrap()
                    .push((parts.method.to_string(), parts.uri.path().to_owned(), rid));
                let url = format!("{up}{}", parts.uri);
                let mut out = http.request(parts.method.clone(), url);
                for (k, v) in &parts.headers {
                    if k != "host" {
                        out = out.header(k, v);
                    }
                }
                let stream = body.into_data_stream().map_err(std::io::Error::other);
                let resp = out
                    .body(reqwest::Body::wrap_stream(stream))
                    .send()
                    .await
                    .unwrap();
                let mut back = Response::builder().status(resp.status().as_u16());
                for (k, v) in resp.headers() {
                    back = back.header(k, v);
                }
                back.body(Body::from_stream(resp.bytes_stream())).unwrap()
            },
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, log)
}

struct Edge {
    child: Child,
    url: String,
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `wasmtime serve` with the component, configured through its environment.
fn edge(wasm: &std::path::Path, env: &[(&str, String)], args: &[String]) -> Edge {
    let port = spaceport_testkit::free_port();
    let mut cmd = Command::new(spaceport_testkit::build::wasmtime());
    cmd.args(["serve", "-Scli", "--addr", &format!("127.0.0.1:{port}")])
        .args(args);
    // Passed by name: values holding commas (the keys' JSON) would be split on the command line.
    for (k, v) in env {
        cmd.env(k, v).args(["--env", k]);
    }
    let child = cmd
        .arg(wasm)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("wasmtime is missing: run scripts/test-env.sh");
    let mut e = Edge {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let until = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            e.child.try_wait().unwrap().is_none(),
            "wasmtime serve exited"
        );
        assert!(Instant::now() < until, "wasmtime serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_refuses_at_the_door_and_carries_a_run_through_to_succeeded() {
    let wasm = tokio::task::spawn_blocking(spaceport_testkit::build::edge_component)
        .await
        .unwrap()
        .unwrap();
    let mirror = MirrorSpace::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), mirror.url());
    cfg.edge_secret = Some(Secret::new(EDGE_SECRET));
    cfg.run_token_secret = Some(Secret::new(TOKEN_SECRET));
    let t = TestStack::start_config(cfg).await.unwrap();
    let (upstream, log) = recorder(t.stack.url.clone()).await;
    let (writer, reader) = ("sk_edge_writer_0123456789", "sk_edge_reader_0123456789");
    let keys = json!([
        {"name": "app", "tenant": "acme", "scopes": ["runs:read", "runs:write"], "hash": hash_text(&key_hash(writer))},
        {"name": "dash", "tenant": "acme", "scopes": ["runs:read"], "hash": hash_text(&key_hash(reader))}
    ]);
    let rates = tempfile::tempdir().unwrap();
    let e = edge(
        &wasm,
        &[
            ("SPACEPORT_EDGE_UPSTREAM", upstream.clone()),
            ("SPACEPORT_EDGE_SECRET", EDGE_SECRET.into()),
            ("SPACEPORT_RUN_TOKEN_SECRET", TOKEN_SECRET.into()),
            ("SPACEPORT_API_KEYS", keys.to_string()),
            ("SPACEPORT_MAX_BODY_BYTES", "4096".into()),
            // Three reads a key, then one every 100 s; buckets in a preopened directory.
            (
                "SPACEPORT_RATE_LIMITS",
                json!({"runs:read": {"per_second": 0.01, "burst": 3}}).to_string(),
            ),
            ("SPACEPORT_EDGE_RATE_DIR", "/rates".into()),
        ],
        &[
            "--dir".into(),
            format!("{}::/rates", rates.path().display()),
        ],
    );
    let http = reqwest::Client::new();
    let raw = |req: reqwest::RequestBuilder| async move {
        let r = req.send().await.unwrap();
        let headers = r.headers().clone();
        (
            r.status().as_u16(),
            headers,
            r.bytes().await.unwrap().to_vec(),
        )
    };
    let reached = || log.lock().unwrap().len();

    // Refusals, each answered at the edge: the API's log does not grow.
    let body = json!({"pipeline": "vggt",
        "inputs": {"images": [{"filename": "a.png", "content_type": "image/png", "size": 10}]}});
    let post = |key: Option<&str>| {
        let r = http.post(format!("{}/v1/runs", e.url));
        match key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    };
    let before = reached();
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (post(None).json(&body), 401, "unauthorized"),
        (post(Some("sk_unknown")).json(&body), 401, "unauthorized"),
        (post(Some(reader)).json(&body), 403, "forbidden"),
        (
            post(Some(writer))
                .header("content-type", "application/json")
                .body(format!("{{\"pipeline\": \"{}\"}}", "x".repeat(5000))),
            413,
            "payload_too_large",
        ),
        (
            post(Some(writer))
                .header("content-type", "text/plain")
                .body(body.to_string()),
            415,
            "unsupported_media_type",
        ),
        (
            post(Some(writer))
                .header("content-type", "application/json")
                .body("{\"pipeline\":"),
            400,
            "validation_failed",
        ),
        (
            post(Some(writer)).json(&json!({"pipeline": "vggt", "settings": {"conf_thres": 101}})),
            422,
            "validation_failed",
        ),
    ];
    for (req, status, code) in cases {
        let (got, headers, bytes) = raw(req).await;
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        expect_error(&(got, v.clone()), status, code);
        assert!(headers.contains_key("x-request-id"), "{v}");
        if status == 401 {
            assert_eq!(headers["www-authenticate"], "Bearer realm=\"spaceport\"");
        }
    }
    assert_eq!(
        reached(),
        before,
        "a refusal reached the API: {:?}",
        log.lock().unwrap()
    );

    // A key over its rate: three reads go through, the fourth is a 429 the API never sees.
    for _ in 0..3 {
        let (status, _, _) = raw(http.get(format!("{}/v1/runs", e.url)).bearer_auth(reader)).await;
        assert_eq!(status, 200);
    }
    let before = reached();
    let (status, headers, bytes) =
        raw(http.get(format!("{}/v1/runs", e.url)).bearer_auth(reader)).await;
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    expect_error(&(status, v.clone()), 429, "rate_limited");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((90..=100).contains(&retry), "{retry}");
    assert_eq!(reached(), before, "a 429 reached the API");

    // The same bad bodies, sent to the API itself, are refused with the same bytes.
    for bad in [
        json!({"pipeline": "vggt", "settings": {"conf_thres": 101}}),
        json!({"pipeline": "vggt", "start": "later"}),
        json!({"pipeline": "vggt", "inputs": {"images": [{"filename": "../a.png", "content_type": "image/png", "size": 1}]}}),
        json!({"pipeline": "vggt", "bogus": 1}),
    ] {
        let at_edge = raw(post(Some(writer)).json(&bad)).await;
        let at_api = raw(http.post(format!("{}/v1/runs", t.stack.url)).json(&bad)).await;
        assert_eq!(
            (at_edge.0, String::from_utf8_lossy(&at_edge.2)),
            (at_api.0, String::from_utf8_lossy(&at_api.2)),
            "{bad}"
        );
    }
    assert_eq!(reached(), before);

    // The run page and its files go through without a key (they hold no data; the page asks
    // the person for a key or run token and sends it on each API call).
    let (status, headers, page) = raw(http.get(format!("{}/", e.url))).await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(String::from_utf8_lossy(&page).contains("/assets/main.js"));
    let (status, headers, _) = raw(http.get(format!("{}/assets/main.js", e.url))).await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );

    // A pipeline the edge does not carry goes on, and the API answers in its own words.
    let before = reached();
    let (status, _, bytes) = raw(post(Some(writer)).json(&json!({"pipeline": "nope"}))).await;
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let err = expect_error(&(status, v), 422, "validation_failed");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("known: hunyuan3d"),
        "{err}"
    );
    assert_eq!(reached(), before + 1);

    // A create goes through as acme's (a forged principal header is dropped), with the
    // client's request id seen by the API and returned.
    let (status, headers, bytes) = raw(post(Some(writer))
        .header("x-request-id", "client-7")
        .header(
            "x-spaceport-principal",
            r#"{"key":"x","tenant":"globex","scopes":["admin"],"run":null}"#,
        )
        .json(&body))
    .await;
    let run: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status, 201, "{run}");
    assert_eq!(headers["x-request-id"], "client-7");
    assert_eq!(log.lock().unwrap().last().unwrap().2, "client-7");
    let id = run["id"].as_str().unwrap().to_owned();
    assert_eq!(t.stored(&id).await.tenant, "acme");

    // Its run token reads it through the edge; not another run; not once expired.
    let token = run["run_token"].as_str().unwrap().to_owned();
    let (_, _, other) = raw(post(Some(writer)).json(&body)).await;
    let other: Value = serde_json::from_slice(&other).unwrap();
    let get = |path: String, bearer: String| {
        raw(http.get(format!("{}{path}", e.url)).bearer_auth(bearer))
    };
    assert_eq!(get(format!("/v1/runs/{id}"), token.clone()).await.0, 200);
    assert_eq!(
        raw(http.get(format!(
            "{}/v1/runs/{id}/events?format=json&token={token}",
            e.url
        )))
        .await
        .0,
        200
    );
    let before = reached();
    assert_eq!(
        get(
            format!("/v1/runs/{}", other["id"].as_str().unwrap()),
            token.clone()
        )
        .await
        .0,
        403
    );
    assert_eq!(get("/v1/runs".into(), token.clone()).await.0, 403);
    let expired = RunToken {
        run: RunId::parse(&id).unwrap(),
        tenant: "acme".into(),
        exp: chrono::Utc::now().timestamp() - 1,
    }
    .mint(TOKEN_SECRET.as_bytes());
    let (status, _, bytes) = get(format!("/v1/runs/{id}"), expired).await;
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(reached(), before, "a refused token reached the API");

    // One shot through the edge: the form streams through, the run succeeds within the wait.
    let form = reqwest::multipart::Form::new()
        .text("pipeline", "vggt")
        .part(
            "images",
            reqwest::multipart::Part::bytes(png(40, 30, 1))
                .file_name("a.png")
                .mime_str("image/png")
                .unwrap(),
        )
        .part(
            "images",
            reqwest::multipart::Part::bytes(png(43, 30, 2))
                .file_name("b.png")
                .mime_str("image/png")
                .unwrap(),
        );
    let (status, _, bytes) = raw(http
        .post(format!("{}/v1/runs?wait=30", e.url))
        .bearer_auth(writer)
        .multipart(form))
    .await;
    let done: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        (status, done["status"].as_str()),
        (201, Some("succeeded")),
        "{done}"
    );
    assert_eq!(done["artifacts"][0]["name"], "scene");
    // Its events, streamed back through the edge, end with the success.
    let (status, headers, bytes) = raw(http
        .get(format!(
            "{}/v1/runs/{}/events",
            e.url,
            done["id"].as_str().unwrap()
        ))
        .bearer_auth(writer))
    .await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("event: run.succeeded"), "{text}");
    drop(e);
}
