//! Run tokens through the embedded stack: creating a run returns `run_token`, which reads that
//! run's status, events and artifacts — in the `Authorization` header or, for a browser's
//! EventSource, the `token` query parameter — and nothing else: not another run, not a list,
//! not a change. An expired token, or one signed with another secret, is 401.

use serde_json::json;
use spaceport_cli::config::Secret;
use spaceport_core::RunId;
use spaceport_core::run_token::RunToken;

use crate::common::*;

const SECRET: &str = "a-run-token-secret-of-32-characters-or-more";

#[tokio::test]
async fn a_run_token_reads_its_run_only_and_not_after_it_expires() {
    let (key, entry) = api_key("app", "acme", &["runs:read", "runs:write"]);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "http://127.0.0.1:9");
    cfg.api_keys = vec![entry];
    cfg.run_token_secret = Some(Secret::new(SECRET));
    cfg.run_token_ttl_s = Some(600);
    let t = TestStack::start_config(cfg).await.unwrap();
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", t.stack.url);
    let body = json!({"pipeline": "vggt",
        "inputs": {"images": [{"filename": "a.png", "content_type": "image/png", "size": 10}]}});
    let create = || send(http.post(url("/v1/runs")).bearer_auth(&key).json(&body));
    let (status, a) = create().await;
    assert_eq!(status, 201, "{a}");
    let (_, b) = create().await;
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let token = a["run_token"].as_str().expect("a run token").to_owned();
    assert!(token.starts_with("rt_"), "{token}");
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(a["run_token_expires_at"].clone()).unwrap();
    let ttl = expires - chrono::Utc::now();
    assert!(ttl > chrono::Duration::seconds(590) && ttl <= chrono::Duration::seconds(600));

    // Its run: status (with the upload targets), events, an artifact lookup.
    let (status, run) = send(
        http.get(url(&format!("/v1/runs/{a_id}")))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["uploads"].as_array().unwrap().len(), 1, "{run}");
    let events = format!("/v1/runs/{a_id}/events?format=json");
    let (status, ev) = send(http.get(url(&events)).bearer_auth(&token)).await;
    assert_eq!(status, 200, "{ev}");
    assert_eq!(ev["events"][0]["type"], "run.created");
    let (status, ev) = send(http.get(url(&format!("{events}&token={token}")))).await;
    assert_eq!(status, 200, "the token in the query: {ev}");
    let got = send(
        http.get(url(&format!("/v1/runs/{a_id}/artifacts/glb")))
            .bearer_auth(&token),
    )
    .await;
    expect_error(&got, 404, "not_found");

    // Nothing else.
    for (method, path) in [
        ("GET", format!("/v1/runs/{b_id}")),
        ("GET", format!("/v1/runs/{b_id}/events?format=json")),
        ("GET", "/v1/runs".to_string()),
        ("GET", "/v1/events".to_string()),
        ("GET", format!("/v1/runs/{a_id}/deliveries")),
        ("POST", format!("/v1/runs/{a_id}/cancel")),
        ("DELETE", format!("/v1/runs/{a_id}")),
        ("POST", "/v1/runs".to_string()),
    ] {
        let mut req = http
            .request(method.parse().unwrap(), url(&path))
            .bearer_auth(&token);
        if method == "POST" && path == "/v1/runs" {
            req = req.json(&body);
        }
        let got = send(req).await;
        expect_error(&got, 403, "forbidden");
    }
    // A query token does not authorize a change.
    let got = send(http.post(url(&format!("/v1/runs/{a_id}/cancel?token={token}")))).await;
    expect_error(&got, 401, "unauthorized");
    let (_, a_now) = send(http.get(url(&format!("/v1/runs/{a_id}"))).bearer_auth(&key)).await;
    assert_eq!(a_now["status"], "created");

    // Expired, or signed with another secret: 401, saying which.
    let grant = |exp: i64| RunToken {
        run: RunId::parse(a_id).unwrap(),
        tenant: "acme".into(),
        exp,
    };
    let expired = grant(chrono::Utc::now().timestamp() - 1).mint(SECRET.as_bytes());
    let got = send(
        http.get(url(&format!("/v1/runs/{a_id}")))
            .bearer_auth(&expired),
    )
    .await;
    let e = expect_error(&got, 401, "unauthorized");
    assert!(e["message"].as_str().unwrap().contains("expired"), "{e}");
    let forged =
        grant(chrono::Utc::now().timestamp() + 600).mint(b"another secret of 32 characters!");
    let got = send(
        http.get(url(&format!("/v1/runs/{a_id}")))
            .bearer_auth(&forged),
    )
    .await;
    let e = expect_error(&got, 401, "unauthorized");
    assert!(e["message"].as_str().unwrap().contains("signature"), "{e}");
}
