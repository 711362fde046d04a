//! Runs built on runs: an input given as another run's artifact (`{"run", "artifact"}`),
//! through the embedded stack with API keys for two tenants. A try-on result becomes the person
//! of a second try-on (Kolors mirror on Gradio 4.44), then the images a VLM describes (the model
//! server mirror): the bytes each backend got are the artifact's, copied in the store (a hard
//! link), and stay when the first run is deleted. Another tenant's run, a run not succeeded, an
//! unknown artifact and a type the slot does not take are each refused naming the input, with
//! nothing stored.

use std::time::Duration;

use serde_json::{Value, json};
use spaceport_cli::config::PipelineOverride;
use spaceport_testkit::{Gradio, ModelServerMirror};

use crate::common::*;

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(b);
        }
        send(req).await
    }

    /// Creates a run, uploads the files its uploads name (`files` by slot), and waits for its end.
    async fn run(&self, body: Value, files: &[(&str, Vec<u8>)]) -> Value {
        let (status, created) = self.call("POST", "/v1/runs", Some(&body)).await;
        assert_eq!(status, 201, "{created}");
        for up in created["uploads"].as_array().into_iter().flatten() {
            let slot = up["slot"].as_str().unwrap();
            let (_, bytes) = files.iter().find(|(s, _)| *s == slot).unwrap();
            let mut req = self
                .http
                .request(
                    up["method"].as_str().unwrap().parse().unwrap(),
                    up["url"].as_str().unwrap(),
                )
                .body(bytes.clone());
            for (k, v) in up["headers"].as_object().into_iter().flatten() {
                req = req.header(k, v.as_str().unwrap());
            }
            let (s, b) = send(req).await;
            assert!(s < 300, "upload: {s} {b}");
        }
        let id = created["id"].as_str().unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let (_, run) = self
                .call("GET", &format!("/v1/runs/{id}?wait=5"), None)
                .await;
            if matches!(
                run["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled" | "expired")
            ) {
                return run;
            }
            assert!(std::time::Instant::now() < until, "{run}");
        }
    }
}

fn png_input(name: &str, bytes: &[u8]) -> Value {
    json!({"filename": name, "content_type": "image/png", "size": bytes.len()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_artifact_is_the_input_of_another_run_of_the_same_tenant() {
    let kolors =
        MirrorSpace::start_under(Gradio::V4_44, "tests/peers/kolors_mirror/app.py", &[], &[])
            .unwrap();
    let models = ModelServerMirror::start(&[("MIRROR_TOKEN_DELAY_S", "0")]).unwrap();
    let (acme_key, acme) = api_key("acme-ops", "acme", &["admin"]);
    let (globex_key, globex) = api_key("globex-ops", "globex", &["admin"]);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "http://127.0.0.1:9");
    cfg.api_keys = vec![acme, globex];
    cfg.pipelines.insert(
        "kolors-tryon".into(),
        PipelineOverride {
            space_url: Some(kolors.url().into()),
            ..PipelineOverride::default()
        },
    );
    cfg.pipelines.insert(
        "vlm-describe".into(),
        PipelineOverride {
            server_url: Some(models.url().into()),
            ..PipelineOverride::default()
        },
    );
    let t = TestStack::start_config(cfg).await.unwrap();
    let http = reqwest::Client::new();
    let acme = Api {
        http: http.clone(),
        base: t.stack.url.clone(),
        key: acme_key,
    };
    let globex = Api {
        http,
        base: t.stack.url.clone(),
        key: globex_key,
    };

    // A try-on, then a second one whose person is the first's result.
    let (person, shirt, hat) = (png(60, 90, 1), png(40, 40, 2), png(30, 30, 3));
    let first = acme
        .run(
            json!({"pipeline": "kolors-tryon", "settings": {"seed": 7, "randomize_seed": false},
                   "inputs": {"person": [png_input("me.png", &person)], "garment": [png_input("shirt.png", &shirt)]}}),
            &[("person", person.clone()), ("garment", shirt.clone())],
        )
        .await;
    assert_eq!(first["status"], "succeeded", "{first}");
    let id1 = first["id"].as_str().unwrap().to_string();
    let result = first["artifacts"][0].clone();
    let second = acme
        .run(
            json!({"pipeline": "kolors-tryon", "settings": {"seed": 7, "randomize_seed": false},
                   "inputs": {"person": [{"run": id1, "artifact": "result"}], "garment": [png_input("hat.png", &hat)]}}),
            &[("garment", hat.clone())],
        )
        .await;
    assert_eq!(second["status"], "succeeded", "{second}");
    let input = &second["inputs"]["person"][0];
    assert_eq!(
        input["from_run"],
        json!({"run": id1, "artifact": "result"}),
        "{second}"
    );
    assert_eq!(input["sha256"], result["sha256"]);
    assert_eq!(input["content_type"], result["content_type"]);
    assert_eq!(input["filename"], result["filename"]);
    assert_eq!(input["size"], result["size"]);

    // The second result described by a VLM: the server got exactly the artifact's bytes.
    let id2 = second["id"].as_str().unwrap().to_string();
    let described = acme
        .run(
            json!({"pipeline": "vlm-describe", "inputs": {"images": [{"run": id2, "artifact": "result"}]}}),
            &[],
        )
        .await;
    assert_eq!(described["status"], "succeeded", "{described}");
    let asked = models.requests().unwrap();
    assert_eq!(asked.len(), 1);
    assert_eq!(
        asked[0]["images"],
        json!([second["artifacts"][0]["sha256"]])
    );

    // The input is the new run's own copy: deleting the first run keeps it.
    let (status, _) = acme.call("DELETE", &format!("/v1/runs/{id1}"), None).await;
    assert_eq!(status, 200);
    let stored = t.stored(&id2).await;
    let key = &stored.inputs["person"][0].key;
    let meta = t.stack.steps.ports.blobs.head(key).await.unwrap();
    assert_eq!(
        meta.map(|m| m.sha256),
        result["sha256"].as_str().map(str::to_string)
    );

    // Refusals, each naming the input; nothing is created.
    let garment = json!([png_input("hat.png", &hat)]);
    let refuse = |person: Value| json!({"pipeline": "kolors-tryon", "inputs": {"person": [person], "garment": garment}});
    let (_, before) = acme.call("GET", "/v1/runs?limit=100", None).await;
    let e = expect_error(
        &globex
            .call(
                "POST",
                "/v1/runs",
                Some(&refuse(json!({"run": id2, "artifact": "result"}))),
            )
            .await,
        422,
        "validation_failed",
    );
    assert_eq!(
        e["field"], "inputs.person[0].run",
        "another tenant's run is unknown: {e}"
    );
    let e = expect_error(
        &acme
            .call(
                "POST",
                "/v1/runs",
                Some(&refuse(json!({"run": id1, "artifact": "result"}))),
            )
            .await,
        422,
        "validation_failed",
    );
    assert!(e["message"].as_str().unwrap().contains("deleted"), "{e}");
    let e = expect_error(
        &acme
            .call(
                "POST",
                "/v1/runs",
                Some(&refuse(json!({"run": id2, "artifact": "nope"}))),
            )
            .await,
        422,
        "validation_failed",
    );
    assert_eq!(e["field"], "inputs.person[0].artifact");
    assert!(
        e["message"].as_str().unwrap().contains("result"),
        "names what it has: {e}"
    );
    let e = expect_error(
        &acme
            .call(
                "POST",
                "/v1/runs",
                Some(&refuse(
                    json!({"run": described["id"], "artifact": "descriptions"}),
                )),
            )
            .await,
        415,
        "unsupported_media_type",
    );
    assert_eq!(e["field"], "inputs.person[0].artifact", "{e}");
    let (_, waiting) = acme
        .call(
            "POST",
            "/v1/runs",
            Some(&json!({"pipeline": "vggt", "start": "manual",
            "inputs": {"images": [png_input("a.png", &hat)]}})),
        )
        .await;
    let e = expect_error(
        &acme
            .call(
                "POST",
                "/v1/runs",
                Some(&refuse(json!({"run": waiting["id"], "artifact": "scene"}))),
            )
            .await,
        422,
        "validation_failed",
    );
    assert!(e["message"].as_str().unwrap().contains("created"), "{e}");
    let e = expect_error(
        &acme
            .call("POST", "/v1/runs", Some(&refuse(json!({"run": id2}))))
            .await,
        422,
        "validation_failed",
    );
    assert_eq!(e["field"], "inputs.person[0].artifact");
    let e = expect_error(
        &acme
            .call(
                "POST",
                "/v1/runs",
                Some(&refuse(
                    json!({"run": id2, "artifact": "result", "url": "https://example.com/a.png"}),
                )),
            )
            .await,
        422,
        "validation_failed",
    );
    assert_eq!(e["field"], "inputs.person[0].run");
    let (_, after) = acme.call("GET", "/v1/runs?limit=100", None).await;
    assert_eq!(
        after["runs"].as_array().unwrap().len(),
        before["runs"].as_array().unwrap().len() + 1,
        "only the manual vggt run was created"
    );
    t.stack.shutdown().await;
}
