//! The machine-readable surface: `/v1/openapi.json` is an OpenAPI 3 document covering every
//! route of API.md this server implements, `/readyz` reports every step queue, and a pipeline's
//! settings come as a JSON Schema with the pipeline file's ranges, defaults and enums.

use serde_json::Value;
use spaceport_cli::stack::StackOptions;
use spaceport_core::ports::QueueName;

use crate::common::*;

async fn get(t: &TestStack, path: &str) -> (u16, Value) {
    send(reqwest::Client::new().get(format!("{}{path}", t.stack.url))).await
}

async fn stack() -> TestStack {
    let dead = format!("http://127.0.0.1:{}", spaceport_testkit::free_port());
    TestStack::start(&dead).await.unwrap()
}

/// Every `"$ref"` string anywhere under `v`.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_covers_every_route_and_its_refs_resolve() {
    let t = stack().await;
    let (status, doc) = get(&t, "/v1/openapi.json").await;
    assert_eq!(status, 200, "{doc}");
    let version = doc["openapi"].as_str().expect("an openapi version");
    assert!(version.starts_with("3."), "{version}");
    assert!(
        doc["info"]["title"].as_str().is_some_and(|s| !s.is_empty()),
        "{}",
        doc["info"]
    );
    assert!(doc["info"]["version"].is_string(), "{}", doc["info"]);

    let paths = doc["paths"].as_object().expect("paths");
    let routes: [(&str, &[&str]); 15] = [
        ("/v1/pipelines", &["get"]),
        ("/v1/pipelines/{name}", &["get"]),
        ("/v1/runs", &["get", "post"]),
        ("/v1/runs/{id}", &["get", "delete"]),
        ("/v1/runs/{id}/start", &["post"]),
        ("/v1/runs/{id}/cancel", &["post"]),
        ("/v1/runs/{id}/retry", &["post"]),
        ("/v1/runs/{id}/artifacts/{name}", &["get"]),
        ("/v1/runs/{id}/events", &["get"]),
        ("/v1/events", &["get"]),
        ("/v1/runs/{id}/deliveries", &["get"]),
        (
            "/v1/runs/{id}/deliveries/{delivery_id}/redeliver",
            &["post"],
        ),
        ("/v1/deliveries", &["get"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
    ];
    for (path, methods) in routes {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is missing; paths: {:?}", paths.keys()));
        for m in methods {
            let op = &item[*m];
            assert!(op.is_object(), "{m} {path} is missing: {item}");
            let responses = op["responses"].as_object().expect("responses");
            assert!(!responses.is_empty(), "{m} {path} lists no responses");
            // Every `{param}` of the path is declared as a path parameter.
            for name in path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            {
                let declared = op["parameters"].as_array().is_some_and(|ps| {
                    ps.iter()
                        .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true)
                });
                assert!(
                    declared,
                    "{m} {path} does not declare the path parameter {name}: {op}"
                );
            }
        }
    }
    // Errors are documented with the error body on the routes that take an id.
    let not_found = &paths["/v1/runs/{id}"]["get"]["responses"]["404"];
    let mut r = vec![];
    refs(not_found, &mut r);
    assert_eq!(r, ["#/components/schemas/ErrorBody"], "{not_found}");
    let created = &paths["/v1/runs"]["post"]["responses"]["201"];
    let mut r = vec![];
    refs(created, &mut r);
    assert_eq!(r, ["#/components/schemas/RunView"], "{created}");

    let schemas = doc["components"]["schemas"]
        .as_object()
        .expect("components.schemas");
    for name in ["RunView", "ErrorBody", "CreateRunRequest", "RunList"] {
        assert!(
            schemas.contains_key(name),
            "components lack {name}: {:?}",
            schemas.keys()
        );
    }
    let run_view = &schemas["RunView"]["properties"];
    for field in [
        "id",
        "pipeline",
        "status",
        "settings",
        "inputs",
        "progress",
        "backend",
        "error",
        "artifacts",
        "created_at",
        "deadline_at",
        "retry_of",
    ] {
        assert!(
            run_view.get(field).is_some(),
            "RunView lacks {field}: {run_view}"
        );
    }
    let err = &schemas["ErrorBody"]["properties"]["error"];
    assert!(err.is_object(), "{}", schemas["ErrorBody"]);

    // A valid document: every reference points at a schema it defines.
    let mut all = vec![];
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("a reference outside components.schemas: {r}"));
        assert!(schemas.contains_key(name), "{r} does not resolve");
    }
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_report_every_step_queue() {
    // API only: no worker takes the message queued below.
    let dead = format!("http://127.0.0.1:{}", spaceport_testkit::free_port());
    let opts = StackOptions {
        queues: vec![],
        ..fast_options()
    };
    let t = TestStack::start_with(&dead, opts).await.unwrap();
    let (status, health) = get(&t, "/healthz").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");

    let (status, ready) = get(&t, "/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "ok", "{ready}");
    assert_eq!(ready["problems"], serde_json::json!([]), "{ready}");
    let queues = ready["queues"].as_object().expect("queues");
    assert_eq!(queues.len(), QueueName::ALL.len(), "{ready}");
    for q in QueueName::ALL {
        let s = &queues[q.as_str()];
        for k in ["depth", "in_flight", "dead"] {
            assert_eq!(s[k], 0, "{} {k}: {ready}", q.as_str());
        }
        assert!(s.get("oldest_age_s").is_some(), "{ready}");
    }

    // A queued message shows in its queue's depth.
    t.stack
        .steps
        .ports
        .queue
        .send(QueueName::NotifyWebhook, "{}", std::time::Duration::ZERO)
        .await
        .unwrap();
    let (_, ready) = get(&t, "/readyz").await;
    assert_eq!(ready["queues"]["notify-webhook"]["depth"], 1, "{ready}");
    assert!(
        ready["queues"]["notify-webhook"]["oldest_age_s"].is_number(),
        "{ready}"
    );

    // An unknown route answers the error body too.
    let got = get(&t, "/v1/nowhere").await;
    expect_error(&got, 404, "not_found");
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vggt_pipeline_shows_its_settings_as_a_json_schema() {
    let t = stack().await;
    let (status, list) = get(&t, "/v1/pipelines").await;
    assert_eq!(status, 200, "{list}");
    let names: Vec<&str> = list["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(names.contains(&"vggt"), "{list}");

    let (status, p) = get(&t, "/v1/pipelines/vggt").await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["name"], "vggt");
    assert_eq!(
        p["backend"],
        serde_json::json!({"kind": "space", "space": "facebook/vggt"})
    );
    let images = &p["inputs"]["images"];
    assert_eq!(
        (images["min"].as_u64(), images["max"].as_u64()),
        (Some(1), Some(200)),
        "{p}"
    );
    assert_eq!(images["max_bytes"], 20_000_000);
    assert_eq!(
        images["content_types"],
        serde_json::json!(["image/jpeg", "image/png", "image/webp"])
    );
    assert_eq!(p["outputs"]["scene"]["content_type"], "model/gltf-binary");

    let s = &p["settings"];
    assert_eq!(s["type"], "object", "{s}");
    assert_eq!(s["additionalProperties"], false, "{s}");
    let conf = &s["properties"]["conf_thres"];
    assert_eq!(conf["type"], "number", "{conf}");
    assert_eq!(conf["minimum"].as_f64(), Some(0.0), "{conf}");
    assert_eq!(conf["maximum"].as_f64(), Some(100.0), "{conf}");
    assert_eq!(conf["default"].as_f64(), Some(50.0), "{conf}");
    let mode = &s["properties"]["prediction_mode"];
    assert_eq!(mode["type"], "string", "{mode}");
    assert_eq!(
        mode["enum"],
        serde_json::json!(["depth", "pointmap"]),
        "{mode}"
    );
    assert_eq!(mode["default"], "depth", "{mode}");
    for b in ["show_cam", "mask_sky", "mask_black_bg", "mask_white_bg"] {
        assert_eq!(s["properties"][b]["type"], "boolean", "{b}: {s}");
    }
    assert_eq!(s["properties"]["show_cam"]["default"], true);
    // Every setting has a default, so none is required.
    assert_eq!(s["required"], serde_json::json!([]), "{s}");

    let got = get(&t, "/v1/pipelines/nope").await;
    let e = expect_error(&got, 404, "not_found");
    assert!(e["message"].as_str().unwrap().contains("nope"), "{e}");
    t.stack.shutdown().await;
}
