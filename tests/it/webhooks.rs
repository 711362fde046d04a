//! Webhooks through the API, against the receiver peer (`tests/peers/webhook_receiver`), which
//! verifies every delivery with the Standard Webhooks reference library: a run's lifecycle
//! reaches its own URL and the configured endpoints, signed with both secrets during a rotation;
//! a flaky receiver gets the same message id until it answers 2xx; an exhausted delivery waits
//! in the dead-letter list and is redelivered; 410 stops delivery to that URL; timeouts and
//! redirects are failures, `Retry-After` is honoured; a URL that may not be called, or a server
//! that cannot sign, is refused when the run is created; secrets appear in no answer.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spaceport_cli::config::{Config, EndpointConfig, Secret};
use spaceport_testkit::WebhookReceiver;

use crate::common::*;

/// The current signing secret (the Standard Webhooks specification's example) and the one
/// being rotated out.
const NEW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OLD: &str = "whsec_dGhlLW5ldy1zZWNyZXQtb2YtMjAyNiEh";

/// A stack that may call 127.0.0.1, signs with both secrets, and tries each delivery on
/// `schedule_ms`, each attempt bounded by `timeout_ms`.
async fn stack(
    space_url: &str,
    schedule_ms: &[u64],
    timeout_ms: u64,
    endpoints: Vec<EndpointConfig>,
) -> TestStack {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), space_url);
    cfg.outbound_allow = vec!["127.0.0.1".into()];
    cfg.webhook_secrets = vec![Secret::new(NEW), Secret::new(OLD)];
    cfg.webhooks = endpoints;
    let mut opts = fast_options();
    opts.steps.webhook.schedule = schedule_ms
        .iter()
        .map(|ms| Duration::from_millis(*ms))
        .collect();
    opts.steps.webhook.timeout = Duration::from_millis(timeout_ms);
    let t = TestStack::start_config_with(cfg, opts).await.unwrap();
    // The data dir lives as long as the stack.
    std::mem::forget(dir);
    t
}

fn endpoint(name: &str, url: String, events: &[&str]) -> EndpointConfig {
    EndpointConfig {
        name: name.into(),
        url,
        events: Some(events.iter().map(|e| e.to_string()).collect()),
        secrets: None,
    }
}

/// Creates a run declaring one image (never uploaded) with `webhook`; returns its id.
async fn waiting_run(t: &TestStack, webhook: Value) -> String {
    let run = t
        .client
        .create_run(
            &json!({"pipeline": "vggt", "webhook": webhook,
                    "inputs": {"images": [{"filename": "a.png", "content_type": "image/png", "size": 10}]}}),
            None,
        )
        .await
        .unwrap();
    run["id"].as_str().unwrap().to_owned()
}

/// `GET /v1/runs/{id}/deliveries`.
async fn deliveries(t: &TestStack, id: &str) -> Vec<Value> {
    let (status, body) =
        send(reqwest::Client::new().get(format!("{}/v1/runs/{id}/deliveries", t.stack.url))).await;
    assert_eq!(status, 200, "{body}");
    body["deliveries"].as_array().unwrap().clone()
}

/// Waits until the run's deliveries satisfy `pred`, at most `within`.
async fn wait_deliveries(
    t: &TestStack,
    id: &str,
    within: Duration,
    what: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let until = Instant::now() + within;
    loop {
        let list = deliveries(t, id).await;
        if pred(&list) {
            return list;
        }
        assert!(
            Instant::now() < until,
            "deliveries of {id} not {what} within {within:?}: {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn statuses(d: &Value) -> Vec<Value> {
    d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].clone())
        .collect()
}

fn assert_verified(records: &[Value]) {
    for r in records {
        assert_eq!(r["verified"], true, "not verified: {r}");
        assert!(r["signature"].as_str().unwrap().starts_with("v1,"), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_lifecycle_reaches_its_webhook_and_the_endpoints_signed_during_a_rotation() {
    let mirror = MirrorSpace::start().unwrap();
    // One receiver knows only the old secret, the other only the new: both must verify.
    let old_only = WebhookReceiver::start(&[OLD.into()]).unwrap();
    let new_only = WebhookReceiver::start(&[NEW.into()]).unwrap();
    let t = stack(
        mirror.url(),
        &[0, 200, 200],
        5000,
        vec![endpoint(
            "audit",
            format!("{}/ok/audit", new_only.url()),
            &["run.succeeded"],
        )],
    )
    .await;
    let url = format!("{}/ok/run?token=abc", old_only.url());
    let run = create_and_upload(
        &t.client,
        &[("a.png", png(48, 32, 3))],
        json!({}),
        json!({"webhook": {"url": url}}),
    )
    .await
    .unwrap();
    let id = run["id"].as_str().unwrap();
    let done = wait_terminal(&t.client, id, Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(done["status"], "succeeded", "{done}");

    // The default events of a run's webhook: queued, started, succeeded (no created, updated or
    // progress), each once, each verified.
    let to_run = wait_records(&old_only, "/ok/run", 3, Duration::from_secs(20)).await;
    assert_verified(&to_run);
    let mut kinds: Vec<String> = to_run
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
            assert_eq!(body["data"]["id"], id, "{body}");
            // A thin Run: no signed URL, no blob key.
            let text = body.to_string();
            assert!(
                !text.contains("/v1/blobs") && !text.contains("\"key\""),
                "{text}"
            );
            body["type"].as_str().unwrap().to_owned()
        })
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["run.queued", "run.started", "run.succeeded"]);
    let mut ids: Vec<&str> = to_run.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 3, "one message id per event: {ids:?}");

    let audit = wait_records(&new_only, "/ok/audit", 1, Duration::from_secs(20)).await;
    assert_verified(&audit);
    let body: Value = serde_json::from_str(audit[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["type"], "run.succeeded");
    assert_eq!(body["data"]["artifacts"][0]["name"], "scene", "{body}");

    // The delivery log: four deliveries, each delivered on its first attempt with a 200, the
    // ids the receivers saw, the URL without its query string.
    let log = wait_deliveries(&t, id, Duration::from_secs(10), "all delivered", |l| {
        l.len() == 4 && l.iter().all(|d| d["state"] == "delivered")
    })
    .await;
    for d in &log {
        assert_eq!(statuses(d), [json!(200)], "{d}");
        assert!(d["attempts"][0]["latency_ms"].is_u64(), "{d}");
        let seen = if d["endpoint"] == "audit" {
            &audit
        } else {
            &to_run
        };
        assert!(seen.iter().any(|r| r["id"] == d["id"]), "{d}");
    }
    assert!(
        log.iter()
            .any(|d| d["endpoint"] == "run" && d["url"] == format!("{}/ok/run", old_only.url())),
        "{log:#?}"
    );

    // No answer of the whole run carries a secret (or the query token of its URL).
    let http = reqwest::Client::new();
    let mut answers = vec![];
    for path in [
        format!("/v1/runs/{id}"),
        format!("/v1/runs/{id}/deliveries"),
        format!("/v1/runs/{id}/events?format=json"),
        "/v1/events?limit=100".into(),
        "/v1/runs".into(),
        "/readyz".into(),
        "/v1/openapi.json".into(),
    ] {
        let (status, body) = send(http.get(format!("{}{path}", t.stack.url))).await;
        assert_eq!(status, 200, "{path}: {body}");
        answers.push(body.to_string());
    }
    for a in &answers {
        for secret in [NEW, OLD, &NEW[6..], &OLD[6..]] {
            assert!(!a.contains(secret), "a secret in an answer: {a}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_receiver_gets_one_message_id_until_it_answers_2xx() {
    let r = WebhookReceiver::start(&[NEW.into()]).unwrap();
    let t = stack("http://127.0.0.1:9", &[0, 200, 200, 200], 5000, vec![]).await;
    let id = waiting_run(
        &t,
        json!({"url": format!("{}/flaky/f?fail=2", r.url()), "events": ["run.cancelled"]}),
    )
    .await;
    t.client.action(&id, "cancel").await.unwrap();
    let log = wait_deliveries(&t, &id, Duration::from_secs(20), "delivered", |l| {
        l.len() == 1 && l[0]["state"] == "delivered"
    })
    .await;
    assert_eq!(
        statuses(&log[0]),
        [json!(500), json!(500), json!(200)],
        "{log:#?}"
    );
    let got = r.records_of("/flaky/f").unwrap();
    assert_eq!(got.len(), 3, "{got:#?}");
    assert_verified(&got);
    assert!(got.iter().all(|g| g["id"] == log[0]["id"]), "{got:#?}");
    assert_eq!(log[0]["type"], "run.cancelled");
    assert!(log[0]["next_attempt_at"].is_null(), "{log:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_delivery_is_dead_lettered_and_redelivered_once_the_receiver_is_back() {
    let r = WebhookReceiver::start(&[NEW.into()]).unwrap();
    let t = stack("http://127.0.0.1:9", &[0, 200, 200], 5000, vec![]).await;
    // Fails the three tries of the schedule, then answers 200.
    let id = waiting_run(
        &t,
        json!({"url": format!("{}/flaky/d?fail=3", r.url()), "events": ["run.cancelled"]}),
    )
    .await;
    t.client.action(&id, "cancel").await.unwrap();
    let log = wait_deliveries(&t, &id, Duration::from_secs(20), "dead", |l| {
        l.len() == 1 && l[0]["state"] == "dead"
    })
    .await;
    assert_eq!(statuses(&log[0]), [json!(500), json!(500), json!(500)]);
    let msg = log[0]["id"].as_str().unwrap().to_owned();

    let http = reqwest::Client::new();
    let (status, dead) = send(http.get(format!("{}/v1/deliveries?state=dead", t.stack.url))).await;
    assert_eq!(status, 200, "{dead}");
    assert_eq!(dead["deliveries"].as_array().unwrap().len(), 1, "{dead}");
    assert_eq!(dead["deliveries"][0]["id"], msg.as_str());
    assert!(dead["next_cursor"].is_null(), "{dead}");
    let bad = send(http.get(format!("{}/v1/deliveries?state=pending", t.stack.url))).await;
    expect_error(&bad, 400, "validation_failed");

    let missing = send(http.post(format!(
        "{}/v1/runs/{id}/deliveries/msg_nope/redeliver",
        t.stack.url
    )))
    .await;
    expect_error(&missing, 404, "not_found");
    let (status, again) = send(http.post(format!(
        "{}/v1/runs/{id}/deliveries/{msg}/redeliver",
        t.stack.url
    )))
    .await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["state"], "pending", "{again}");
    let log = wait_deliveries(&t, &id, Duration::from_secs(20), "delivered", |l| {
        l[0]["state"] == "delivered"
    })
    .await;
    assert_eq!(
        statuses(&log[0]),
        [json!(500), json!(500), json!(500), json!(200)]
    );
    let got = r.records_of("/flaky/d").unwrap();
    assert_eq!(got.len(), 4);
    assert_verified(&got);
    assert!(got.iter().all(|g| g["id"] == msg.as_str()), "{got:#?}");
    let (_, dead) = send(http.get(format!("{}/v1/deliveries", t.stack.url))).await;
    assert_eq!(dead["deliveries"], json!([]), "{dead}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_stops_delivery_to_that_url() {
    let r = WebhookReceiver::start(&[NEW.into()]).unwrap();
    let t = stack(
        "http://127.0.0.1:9",
        &[0, 200, 200],
        5000,
        vec![endpoint(
            "audit",
            format!("{}/ok/audit", r.url()),
            &["run.cancelled"],
        )],
    )
    .await;
    let id = waiting_run(
        &t,
        json!({"url": format!("{}/gone/g", r.url()), "events": ["run.created", "run.cancelled"]}),
    )
    .await;
    let log = wait_deliveries(&t, &id, Duration::from_secs(20), "disabled", |l| {
        l.len() == 1 && l[0]["state"] == "disabled"
    })
    .await;
    assert_eq!(statuses(&log[0]), [json!(410)], "tried once: {log:#?}");
    t.client.action(&id, "cancel").await.unwrap();
    // The endpoint gets the cancellation; the run's URL, disabled, gets nothing more.
    wait_records(&r, "/ok/audit", 1, Duration::from_secs(20)).await;
    let log = wait_deliveries(&t, &id, Duration::from_secs(20), "audit delivered", |l| {
        l.iter()
            .any(|d| d["endpoint"] == "audit" && d["state"] == "delivered")
    })
    .await;
    assert_eq!(log.len(), 2, "{log:#?}");
    assert_eq!(r.records_of("/gone/g").unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_refusals_and_redirects_fail_and_retry_after_is_honoured() {
    let r = WebhookReceiver::start(&[NEW.into()]).unwrap();
    let t = stack("http://127.0.0.1:9", &[0, 200, 200], 1000, vec![]).await;
    let hook =
        |path: &str| json!({"url": format!("{}{path}", r.url()), "events": ["run.cancelled"]});
    let slow = waiting_run(&t, hook("/slow/s?s=4")).await;
    let moved = waiting_run(&t, hook("/moved/m")).await;
    let limited = waiting_run(&t, hook("/limited/l?n=1&after=2")).await;
    // A receiver that is down: nothing listens on the port.
    let down_url = format!("http://127.0.0.1:{}/down", spaceport_testkit::free_port());
    let down = waiting_run(&t, json!({"url": down_url, "events": ["run.cancelled"]})).await;
    for id in [&slow, &moved, &limited, &down] {
        t.client.action(id, "cancel").await.unwrap();
    }

    let log = wait_deliveries(&t, &slow, Duration::from_secs(30), "dead", |l| {
        l.len() == 1 && l[0]["state"] == "dead"
    })
    .await;
    for a in log[0]["attempts"].as_array().unwrap() {
        assert!(a["status"].is_null(), "{a}");
        let error = a["error"].as_str().unwrap();
        assert!(error.contains("no answer within 1s"), "{a}");
        // Bounded by the 1 s timeout, not the receiver's 4 s.
        assert!(a["latency_ms"].as_u64().unwrap() < 3000, "{a}");
    }

    let log = wait_deliveries(&t, &down, Duration::from_secs(20), "dead", |l| {
        l.len() == 1 && l[0]["state"] == "dead"
    })
    .await;
    for a in log[0]["attempts"].as_array().unwrap() {
        assert!(a["status"].is_null(), "{a}");
        assert_eq!(a["error"], "could not connect", "{a}");
    }
    assert_eq!(log[0]["attempts"].as_array().unwrap().len(), 3);

    let log = wait_deliveries(&t, &moved, Duration::from_secs(20), "dead", |l| {
        l.len() == 1 && l[0]["state"] == "dead"
    })
    .await;
    assert_eq!(statuses(&log[0]), [json!(301), json!(301), json!(301)]);
    assert!(r.records_of("/ok/m").unwrap().is_empty(), "followed");

    let log = wait_deliveries(&t, &limited, Duration::from_secs(20), "delivered", |l| {
        l.len() == 1 && l[0]["state"] == "delivered"
    })
    .await;
    assert_eq!(statuses(&log[0]), [json!(429), json!(200)]);
    let got = r.records_of("/limited/l").unwrap();
    let gap = got[1]["at"].as_f64().unwrap() - got[0]["at"].as_f64().unwrap();
    // Retry-After: 2 wins over the schedule's 200 ms.
    assert!(gap >= 1.9, "retried after {gap} s");
    assert_verified(&got);
}

#[tokio::test]
async fn webhooks_that_may_not_be_called_or_signed_are_refused_when_the_run_is_created() {
    let create = |t: &TestStack, url: &str| {
        let body = json!({"pipeline": "vggt", "webhook": {"url": url},
            "inputs": {"images": [{"filename": "a.png", "content_type": "image/png", "size": 10}]}});
        send(
            reqwest::Client::new()
                .post(format!("{}/v1/runs", t.stack.url))
                .json(&body),
        )
    };
    // Signing secrets but no allow-list: loopback, private and metadata addresses are refused.
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        webhook_secrets: vec![Secret::new(NEW)],
        ..config(dir.path(), "http://127.0.0.1:9")
    };
    let t = TestStack::start_config(cfg).await.unwrap();
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://100.64.0.1/hook",
    ] {
        let got = create(&t, url).await;
        let e = expect_error(&got, 422, "validation_failed");
        assert_eq!(e["field"], "webhook.url", "{url}: {e}");
    }
    let (_, list) = send(reqwest::Client::new().get(format!("{}/v1/runs", t.stack.url))).await;
    assert_eq!(list["runs"], json!([]), "nothing stored: {list}");

    // Allowed, but no secret to sign with: refused rather than sent unsigned.
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        outbound_allow: vec!["127.0.0.1".into()],
        ..config(dir.path(), "http://127.0.0.1:9")
    };
    let t = TestStack::start_config(cfg).await.unwrap();
    let got = create(&t, "http://127.0.0.1:8080/hook").await;
    let e = expect_error(&got, 422, "validation_failed");
    assert_eq!(e["field"], "webhook", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("SPACEPORT_WEBHOOK_SECRETS"),
        "{e}"
    );
}
