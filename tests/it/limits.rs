//! Limits at the front door through the embedded stack: a key over its rate is 429
//! `rate_limited` with `Retry-After` and stores nothing; a body over `max_body_bytes` is 413,
//! with or without a declared length; a tenant at its cap on runs in flight or stored bytes is
//! 429 `limit_exceeded` until it holds less.

use serde_json::{Value, json};
use spaceport_cli::config::ApiKeyConfig;
use spaceport_core::limits::Rate;

use crate::common::*;

fn key(name: &str, tenant: &str) -> (String, ApiKeyConfig) {
    api_key(name, tenant, &["runs:read", "runs:write"])
}

fn create_body(size: u64) -> Value {
    json!({"pipeline": "vggt",
        "inputs": {"images": [{"filename": "a.png", "content_type": "image/png", "size": size}]}})
}

async fn create(t: &TestStack, key: &str, body: &Value) -> (u16, Value) {
    send(
        reqwest::Client::new()
            .post(format!("{}/v1/runs", t.stack.url))
            .bearer_auth(key)
            .json(body),
    )
    .await
}

async fn count_runs(t: &TestStack, key: &str) -> usize {
    let (_, list) = send(
        reqwest::Client::new()
            .get(format!("{}/v1/runs?limit=100", t.stack.url))
            .bearer_auth(key),
    )
    .await;
    list["runs"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_key_over_its_rate_or_a_body_over_the_limit_is_refused_and_stores_nothing() {
    let (a, a_entry) = key("a", "acme");
    let (b, b_entry) = key("b", "acme");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "http://127.0.0.1:9");
    cfg.api_keys = vec![a_entry, b_entry];
    // A burst of 3 creates, then one every 100 s; reads unlimited.
    cfg.rate_limits.insert(
        "runs:write".into(),
        Rate {
            per_second: 0.01,
            burst: 3,
        },
    );
    cfg.rate_limits.insert(
        "runs:read".into(),
        Rate {
            per_second: 0.0,
            burst: 0,
        },
    );
    cfg.max_body_bytes = Some(2048);
    let t = TestStack::start_config(cfg).await.unwrap();

    for _ in 0..3 {
        assert_eq!(create(&t, &a, &create_body(10)).await.0, 201);
    }
    let refused = send(
        reqwest::Client::new()
            .post(format!("{}/v1/runs", t.stack.url))
            .bearer_auth(&a)
            .json(&create_body(10)),
    )
    .await;
    let e = expect_error(&refused, 429, "rate_limited");
    assert!(e["message"].as_str().unwrap().contains("runs:write"), "{e}");
    let raw = reqwest::Client::new()
        .post(format!("{}/v1/runs", t.stack.url))
        .bearer_auth(&a)
        .json(&create_body(10))
        .send()
        .await
        .unwrap();
    let retry: u64 = raw.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((90..=100).contains(&retry), "Retry-After {retry}");
    // Reads go on; another key of the same tenant has its own bucket.
    assert_eq!(count_runs(&t, &a).await, 3);
    assert_eq!(create(&t, &b, &create_body(10)).await.0, 201);
    assert_eq!(count_runs(&t, &a).await, 4);

    // A body over 2048 bytes: declared, or streamed without a length. Neither is stored, and
    // neither spends a token beyond the request itself.
    let mut big = create_body(10);
    big["metadata"] = json!({"note": "x".repeat(3000)});
    let got = create(&t, &b, &big).await;
    let e = expect_error(&got, 413, "payload_too_large");
    assert!(e["message"].as_str().unwrap().contains("2048"), "{e}");
    let text = big.to_string();
    let chunks: Vec<Result<String, std::io::Error>> = text
        .as_bytes()
        .chunks(500)
        .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
        .collect();
    let streamed = send(
        reqwest::Client::new()
            .post(format!("{}/v1/runs", t.stack.url))
            .bearer_auth(&b)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks))),
    )
    .await;
    expect_error(&streamed, 413, "payload_too_large");
    assert_eq!(count_runs(&t, &a).await, 4);
}

#[tokio::test]
async fn a_tenant_at_its_cap_creates_nothing_until_it_holds_less() {
    let (k, entry) = key("ops", "capped");
    let (other, other_entry) = key("other", "roomy");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "http://127.0.0.1:9");
    cfg.api_keys = vec![entry, other_entry];
    cfg.tenant_max_runs_in_flight = Some(2);
    cfg.tenant_max_stored_bytes = Some(1000);
    let t = TestStack::start_config(cfg).await.unwrap();
    let http = reqwest::Client::new();
    let act = |id: &str, what: &str| {
        let req = if what == "delete" {
            http.delete(format!("{}/v1/runs/{id}", t.stack.url))
        } else {
            http.post(format!("{}/v1/runs/{id}/{what}", t.stack.url))
        };
        send(req.bearer_auth(&k))
    };

    let (status, first) = create(&t, &k, &create_body(600)).await;
    assert_eq!(status, 201, "{first}");
    let first = first["id"].as_str().unwrap().to_owned();
    // 600 stored (declared), 600 more would pass 1000.
    let got = create(&t, &k, &create_body(600)).await;
    let e = expect_error(&got, 429, "limit_exceeded");
    assert!(e["message"].as_str().unwrap().contains("1000"), "{e}");
    assert_eq!(create(&t, &k, &create_body(300)).await.0, 201);
    // Two in flight.
    let e = expect_error(
        &create(&t, &k, &create_body(10)).await,
        429,
        "limit_exceeded",
    );
    assert!(
        e["message"].as_str().unwrap().contains("2 runs in flight"),
        "{e}"
    );
    // Another tenant is not held by this one's usage.
    assert_eq!(create(&t, &other, &create_body(900)).await.0, 201);

    // One ends: a slot frees, its bytes stay until it is deleted.
    assert_eq!(act(&first, "cancel").await.0, 200);
    let e = expect_error(
        &create(&t, &k, &create_body(200)).await,
        429,
        "limit_exceeded",
    );
    assert!(e["message"].as_str().unwrap().contains("bytes"), "{e}");
    assert_eq!(act(&first, "delete").await.0, 200);
    assert_eq!(create(&t, &k, &create_body(200)).await.0, 201);
    assert_eq!(count_runs(&t, &k).await, 3);
}
