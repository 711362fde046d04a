//! Tenancy through the embedded stack: runs belong to the tenant of the key that created them.
//! A second tenant's key — with every scope — walks every route of the OpenAPI document against
//! the first tenant's run, its delivery and its artifact name, and learns nothing: each route
//! naming the run is 404 exactly like an unknown run, the lists, the feed and the dead-letter
//! list hold none of it, and nothing it asks changes the run. Idempotency keys are per tenant.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spaceport_cli::config::{ApiKeyConfig, Secret};

use crate::common::*;

const SECRET: &str = "whsec_dGhlLW5ldy1zZWNyZXQtb2YtMjAyNiEh";

fn key(name: &str, tenant: &str) -> (String, ApiKeyConfig) {
    api_key(name, tenant, &["admin"])
}

/// Sends `method path` with `key` (and `body` as JSON when given).
async fn call(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    key: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = http
        .request(method.parse().unwrap(), format!("{base}{path}"))
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(b);
    }
    send(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_tenant_sees_none_of_the_first_tenants_runs_by_any_route() {
    let (acme, acme_entry) = key("acme-ops", "acme");
    let (globex, globex_entry) = key("globex-ops", "globex");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "http://127.0.0.1:9");
    cfg.api_keys = vec![acme_entry, globex_entry];
    cfg.outbound_allow = vec!["127.0.0.1".into()];
    cfg.webhook_secrets = vec![Secret::new(SECRET)];
    let mut opts = fast_options();
    opts.steps.webhook.schedule = vec![Duration::ZERO];
    let t = TestStack::start_config_with(cfg, opts).await.unwrap();
    let base = t.stack.url.clone();
    let http = reqwest::Client::new();

    // acme's run: created, cancelled, its one webhook delivery (to a port nobody listens on)
    // dead after its single try.
    let down = format!("http://127.0.0.1:{}/down", spaceport_testkit::free_port());
    let create = json!({"pipeline": "vggt", "webhook": {"url": down, "events": ["run.cancelled"]},
        "inputs": {"images": [{"filename": "a.png", "content_type": "image/png", "size": 10}]}});
    let (status, run) = call(&http, &base, "POST", "/v1/runs", &acme, Some(&create)).await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    let (status, _) = call(
        &http,
        &base,
        "POST",
        &format!("/v1/runs/{id}/cancel"),
        &acme,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let until = Instant::now() + Duration::from_secs(20);
    let delivery = loop {
        let (_, dead) = call(&http, &base, "GET", "/v1/deliveries", &acme, None).await;
        if let Some(d) = dead["deliveries"].as_array().and_then(|l| l.first()) {
            break d["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < until, "no dead letter for acme: {dead}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (_, before) = call(&http, &base, "GET", &format!("/v1/runs/{id}"), &acme, None).await;
    // And acme's batch of one run.
    let batch_body = json!({"pipeline": "vggt", "runs": [{"inputs": {"images": [
        {"filename": "b.png", "content_type": "image/png", "size": 10}]}}]});
    let (status, batch) = call(
        &http,
        &base,
        "POST",
        "/v1/batches",
        &acme,
        Some(&batch_body),
    )
    .await;
    assert_eq!(status, 201, "{batch}");
    let batch_id = batch["id"].as_str().unwrap().to_owned();
    // Ended, so its results stream ends too when acme reads it below.
    let batch_run = batch["runs"][0]["id"].as_str().unwrap().to_owned();
    let cancel = format!("/v1/runs/{batch_run}/cancel");
    assert_eq!(
        call(&http, &base, "POST", &cancel, &acme, None).await.0,
        200
    );

    // Every route and method of the document, reads first, then writes.
    let (_, doc) = send(http.get(format!("{base}/v1/openapi.json"))).await;
    let mut routes: Vec<(String, String)> = vec![];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.push((method.to_uppercase(), path.clone()));
        }
    }
    routes.sort_by_key(|(m, _)| m != "GET");
    assert!(routes.len() >= 17, "{routes:?}");
    let mut run_routes = vec![];
    for (method, template) in &routes {
        // A batch route names acme's batch; every other route its run.
        let (id, unknown) = if template.starts_with("/v1/batches/") {
            (
                batch_id.clone(),
                format!("bat_{:026}", rand::random::<u64>()),
            )
        } else {
            (
                id.clone(),
                spaceport_core::RunId::new(1_700_000_000_000, rand::random()).to_string(),
            )
        };
        let path = template
            .replace("{id}", &id)
            .replace("{delivery_id}", &delivery)
            .replace(
                "{name}",
                if template.contains("pipelines") {
                    "vggt"
                } else {
                    "glb"
                },
            );
        let body = (method == "POST" && template == "/v1/runs").then_some(&create);
        let (status, got) = call(&http, &base, method, &path, &globex, body).await;
        let text = got.to_string();
        assert!(
            !text.contains(&delivery),
            "{method} {path} as globex shows acme's delivery: {text}"
        );
        if template.contains("{id}") {
            let e = expect_error(&(status, got.clone()), 404, "not_found");
            // Refused exactly as a run that does not exist, before any artifact or delivery
            // lookup: the answer says nothing but what the caller sent.
            let other = call(
                &http,
                &base,
                method,
                &path.replace(&id, &unknown),
                &globex,
                body,
            )
            .await;
            assert_eq!(
                (status, text.replace(&id, "ID")),
                (other.0, other.1.to_string().replace(&unknown, "ID")),
                "{method} {path}: {e}"
            );
            run_routes.push((method.clone(), path));
        } else {
            assert!(
                !text.contains(&id),
                "{method} {path} as globex shows acme's run: {text}"
            );
            assert!(status < 500, "{method} {path}: {status} {text}");
        }
    }
    assert_eq!(run_routes.len(), 11, "{routes:?}");

    // Nothing globex asked changed acme's run, and no retry of it was made for either tenant.
    let (_, after) = call(&http, &base, "GET", &format!("/v1/runs/{id}"), &acme, None).await;
    for field in ["status", "deleted_at", "finished_at", "inputs"] {
        assert_eq!(after[field], before[field], "{field}: {after}");
    }
    let (_, mine) = call(&http, &base, "GET", "/v1/runs", &acme, None).await;
    assert_eq!(mine["runs"].as_array().unwrap().len(), 2, "{mine}");
    let (_, theirs) = call(&http, &base, "GET", "/v1/runs", &globex, None).await;
    assert!(
        theirs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["id"] != id.as_str() && r["id"] != batch_run.as_str()),
        "{theirs}"
    );
    let (_, feed) = call(&http, &base, "GET", "/v1/events?limit=100", &acme, None).await;
    assert!(
        feed["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["run_id"] == id.as_str() || e["run_id"] == batch_run.as_str()),
        "acme's feed holds another tenant's events: {feed}"
    );

    // The walk means something: acme's own key reaches each of those routes (the artifact
    // aside: a cancelled run has none). Deleting comes last.
    run_routes.sort_by_key(|(m, _)| m == "DELETE");
    for (method, path) in &run_routes {
        let (status, got) = call(&http, &base, method, path, &acme, None).await;
        if !path.ends_with("/glb") {
            assert_ne!(status, 404, "{method} {path} as acme: {got}");
        }
    }

    // The same Idempotency-Key names a different run for each tenant.
    let body = json!({"pipeline": "vggt",
        "inputs": {"images": [{"filename": "b.png", "content_type": "image/png", "size": 10}]}});
    let mut ids = vec![];
    for k in [&acme, &globex, &acme] {
        let r = http
            .post(format!("{base}/v1/runs"))
            .bearer_auth(k)
            .header("Idempotency-Key", "order-17")
            .json(&body);
        let (status, run) = send(r).await;
        assert!(status == 201 || status == 200, "{status} {run}");
        ids.push(run["id"].as_str().unwrap().to_owned());
    }
    assert_ne!(ids[0], ids[1], "two tenants' runs under one key");
    assert_eq!(ids[0], ids[2], "a tenant's repeated key");
}
