//! Model server pipelines (`http_model`) through the embedded stack against the model server
//! mirror (tests/peers/model_server, speaking Ollama's and the OpenAI chat API): `vlm-describe`
//! over 12 images in batches of 5 makes three requests in image order on either protocol,
//! streams each answer's text into the run's events and stores the answers; `vlm-task-events`
//! turns the descriptions into JSON events checked against its schema; a server that fails is
//! tried again, one that refuses fails the run with its reason, and a run cancelled while the
//! server thinks ends at once; a worker killed mid-run loses no answer it had.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use spaceport_cli::config::{Config, PipelineOverride};
use spaceport_testkit::ModelServerMirror;

use crate::common::*;

/// Every step of `spaceport serve` (its default).
const STEPS: &str = "submit-space,poll-status,fetch-artifact,reconstruct,call-model,notify-webhook";

/// Twelve distinct PNG frames, `f01.png` … `f12.png`.
fn frames() -> Vec<(String, Vec<u8>)> {
    (1..=12)
        .map(|i| (format!("f{i:02}.png"), png(24 + i, 16, i as u8)))
        .collect()
}

fn sha12(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))[..12].to_string()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What the mirror answers for a batch of images and a prompt (its documented rule).
fn mirror_answer(batch: &[(String, Vec<u8>)], prompt: &str) -> String {
    let named: Vec<String> = batch
        .iter()
        .enumerate()
        .map(|(i, (_, b))| format!("[{}] {}", i + 1, sha12(b)))
        .collect();
    format!(
        "Batch of {} image(s): {} Prompt: {}.",
        batch.len(),
        named.join(" "),
        prompt.lines().next().unwrap_or_default()
    )
}

/// A config whose model server pipelines ask `url`, with the built-in pipelines, or with
/// `pipelines_dir` when given.
fn model_config(
    data: &std::path::Path,
    url: &str,
    pipelines_dir: Option<&std::path::Path>,
) -> Config {
    let mut cfg = Config {
        data_dir: Some(data.to_path_buf()),
        hub_url: Some(String::new()),
        pipelines_dir: pipelines_dir.map(Into::into),
        ..Config::default()
    };
    for p in ["vlm-describe", "vlm-task-events"] {
        cfg.pipelines.insert(
            p.into(),
            PipelineOverride {
                server_url: Some(url.into()),
                ..PipelineOverride::default()
            },
        );
    }
    cfg
}

/// A pipelines dir holding the built-in model server pipelines switched to `protocol`.
fn pipelines_speaking(dir: &std::path::Path, protocol: &str) -> std::path::PathBuf {
    let out = dir.join(format!("pipelines-{protocol}"));
    std::fs::create_dir_all(&out).unwrap();
    for name in ["vlm-describe", "vlm-task-events"] {
        let text = std::fs::read_to_string(
            spaceport_testkit::repo_root().join(format!("pipelines/{name}.toml")),
        )
        .unwrap();
        let text = text.replace(
            "protocol = \"ollama\"",
            &format!("protocol = \"{protocol}\""),
        );
        std::fs::write(out.join(format!("{name}.toml")), text).unwrap();
    }
    out
}

/// Creates a run of `pipeline` with `files` in `slot`, uploads them, and returns its id.
async fn start_run(
    client: &spaceport_cli::client::ApiClient,
    pipeline: &str,
    slot: &str,
    files: &[(String, Vec<u8>)],
    settings: Value,
) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let inputs: Vec<Value> = files
        .iter()
        .map(|(n, b)| json!({"filename": n, "content_type": "image/png", "size": b.len()}))
        .collect();
    let run = client
        .create_run(
            &json!({"pipeline": pipeline, "settings": settings, "inputs": {slot: inputs}}),
            None,
        )
        .await
        .unwrap();
    let mut uploads = vec![];
    for up in run["uploads"].as_array().unwrap() {
        let i = up["index"].as_u64().unwrap() as usize;
        let path = tmp.path().join(&files[i].0);
        std::fs::write(&path, &files[i].1).unwrap();
        uploads.push((up.clone(), path));
    }
    client.upload_all(&uploads).await.unwrap();
    run["id"].as_str().unwrap().to_string()
}

/// Every event of a finished run, through the SSE stream (which ends after the terminal one).
async fn all_events(client: &spaceport_cli::client::ApiClient, id: &str) -> Vec<Value> {
    let stream = client.events(id, 0).await.unwrap();
    let events: Vec<Value> = tokio::time::timeout(
        Duration::from_secs(30),
        stream.map(|e| e.unwrap().data).collect::<Vec<_>>(),
    )
    .await
    .expect("the event stream ends after the terminal event");
    events
}

/// Each batch's streamed text, by (request, batch), from the last try that streamed.
fn streamed(events: &[Value]) -> BTreeMap<(String, u64), (u64, String)> {
    let mut out: BTreeMap<(String, u64), (u64, String)> = BTreeMap::new();
    for e in events.iter().filter(|e| !e["text"].is_null()) {
        let t = &e["text"];
        let key = (
            t["request"].as_str().unwrap().to_string(),
            t["batch"].as_u64().unwrap(),
        );
        let attempt = t["try"].as_u64().unwrap();
        let entry = out.entry(key).or_insert((attempt, String::new()));
        if attempt > entry.0 {
            *entry = (attempt, String::new());
        }
        entry.1.push_str(t["text"].as_str().unwrap());
    }
    out
}

async fn download_text(t: &TestStack, id: &str, name: &str, filename: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = t
        .client
        .download_artifact(id, name, filename, dir.path())
        .await
        .unwrap();
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test]
async fn vlm_describe_sends_batches_in_order_and_streams_the_answers_on_both_protocols() {
    let mirror = ModelServerMirror::start(&[("MIRROR_TOKEN_DELAY_S", "0.03")]).unwrap();
    let files = frames();
    let tmp = tempfile::tempdir().unwrap();
    for protocol in ["ollama", "openai"] {
        let dir = pipelines_speaking(tmp.path(), protocol);
        let data = tmp.path().join(format!("data-{protocol}"));
        let t = TestStack::start_config(model_config(&data, mirror.url(), Some(&dir)))
            .await
            .unwrap();
        let before = mirror.requests().unwrap().len();
        let id = start_run(
            &t.client,
            "vlm-describe",
            "images",
            &files,
            json!({"detail": "long", "temperature": 0.5}),
        )
        .await;
        let run = wait_terminal(&t.client, &id, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            run["status"],
            "succeeded",
            "{protocol}: {run}\n{}",
            mirror.output()
        );
        assert_eq!(run["backend"]["kind"], "http_model");

        // Three requests, in image order, one after another.
        let requests: Vec<Value> = mirror.requests().unwrap().split_off(before);
        assert_eq!(requests.len(), 3, "{protocol}: {requests:#?}");
        let batches = [&files[0..5], &files[5..10], &files[10..12]];
        for (r, batch) in requests.iter().zip(batches) {
            assert_eq!(r["protocol"], protocol);
            assert_eq!(r["model"], "llava:7b");
            let want: Vec<String> = batch.iter().map(|(_, b)| sha(b)).collect();
            assert_eq!(
                r["images"],
                json!(want),
                "{protocol}: the batch's images, in filename order"
            );
            let names: Vec<&str> = batch.iter().map(|(n, _)| n.as_str()).collect();
            assert!(
                r["prompt"].as_str().unwrap().contains(&names.join(", ")),
                "{r}"
            );
            assert!(
                r["prompt"]
                    .as_str()
                    .unwrap()
                    .contains("a detailed paragraph"),
                "the setting's backend spelling: {r}"
            );
            assert!(
                r["system"]
                    .as_str()
                    .unwrap()
                    .starts_with("You are a careful"),
                "{r}"
            );
            assert_eq!(r["options"]["temperature"], 0.5, "{r}");
            assert_eq!(r["options"]["seed"], 0, "{r}");
        }
        assert!(requests[1]["at"].as_f64() > requests[0]["at"].as_f64());
        assert!(requests[2]["at"].as_f64() > requests[1]["at"].as_f64());

        // The answers, in order: on the run, as JSON and as text.
        let want: Vec<String> = requests
            .iter()
            .zip(batches)
            .map(|(r, batch)| mirror_answer(batch, r["prompt"].as_str().unwrap()))
            .collect();
        assert_eq!(run["outputs"]["answers"], json!(want), "{protocol}");
        let stored: Value = serde_json::from_str(
            &download_text(&t, &id, "descriptions", "descriptions.json").await,
        )
        .unwrap();
        assert_eq!(stored, json!(want));
        assert_eq!(
            download_text(&t, &id, "transcript", "descriptions.txt").await,
            want.join("\n\n")
        );

        // Tokens streamed into the events as they came: each batch's pieces make its answer,
        // in more than one piece, all before the run ended.
        let events = all_events(&t.client, &id).await;
        let text = streamed(&events);
        let pieces = events.iter().filter(|e| !e["text"].is_null()).count();
        assert_eq!(text.len(), 3, "{protocol}: {text:?}");
        for (b, answer) in want.iter().enumerate() {
            let (attempt, got) = &text[&("describe".to_string(), b as u64 + 1)];
            assert_eq!(
                (*attempt, got.trim()),
                (1, answer.as_str()),
                "{protocol} batch {}",
                b + 1
            );
        }
        assert!(pieces > 3, "{protocol}: {pieces} text events for 3 answers");
        let last_text = events.iter().rposition(|e| !e["text"].is_null()).unwrap();
        assert!(
            events[last_text + 1..]
                .iter()
                .any(|e| e["type"] == "run.succeeded")
        );
    }
}

#[tokio::test]
async fn vlm_task_events_turns_the_descriptions_into_json_events_checked_against_its_schema() {
    let mirror = ModelServerMirror::start(&[("MIRROR_TOKEN_DELAY_S", "0")]).unwrap();
    let files = frames();
    let tmp = tempfile::tempdir().unwrap();
    let t = TestStack::start_config(model_config(tmp.path(), mirror.url(), None))
        .await
        .unwrap();
    let id = start_run(&t.client, "vlm-task-events", "frames", &files, json!({})).await;
    let run = wait_terminal(&t.client, &id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(run["status"], "succeeded", "{run}\n{}", mirror.output());
    let requests = mirror.requests().unwrap();
    assert_eq!(
        requests.len(),
        4,
        "three batches, then the events: {requests:#?}"
    );
    let last = &requests[3];
    assert_eq!(last["model"], "llama3.2:3b", "the request's own model");
    assert_eq!(last["images"], json!([]));
    assert_eq!(
        last["format"]["required"],
        json!(["events"]),
        "Ollama is asked to follow the schema: {last}"
    );
    // The descriptions went into its prompt, numbered.
    let prompt = last["prompt"].as_str().unwrap();
    for (k, r) in requests[..3].iter().enumerate() {
        let batch = &files[k * 5..(k * 5 + 5).min(12)];
        let line = format!(
            "[{}] {}",
            k + 1,
            mirror_answer(batch, r["prompt"].as_str().unwrap())
        );
        assert!(prompt.contains(&line), "{prompt}");
    }
    assert!(
        prompt.contains("{\"events\": [{\"batch\""),
        "literal braces: {prompt}"
    );
    let events = &run["outputs"]["task"]["events"];
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["task_start", "progress", "task_end"], "{run}");
    assert_eq!(events[2]["batch"], 3);
    let stored: Value =
        serde_json::from_str(&download_text(&t, &id, "events", "events.json").await).unwrap();
    assert_eq!(&stored, &run["outputs"]["task"]);
}

#[tokio::test]
async fn a_failing_model_server_is_tried_again_and_a_refusing_one_fails_the_run_with_its_reason() {
    let mirror = ModelServerMirror::start(&[("MIRROR_TOKEN_DELAY_S", "0.01")]).unwrap();
    let files: Vec<(String, Vec<u8>)> = frames().into_iter().take(6).collect();
    let tmp = tempfile::tempdir().unwrap();
    let dir = pipelines_speaking(tmp.path(), "openai");
    let t = TestStack::start_config(model_config(
        &tmp.path().join("data"),
        mirror.url(),
        Some(&dir),
    ))
    .await
    .unwrap();

    // Busy twice (503 with Retry-After), then a stream cut mid-answer: tried again each time.
    mirror.fail(2, 503, "status").unwrap();
    let before = mirror.requests().unwrap().len();
    let id = start_run(&t.client, "vlm-describe", "images", &files, json!({})).await;
    let run = wait_terminal(&t.client, &id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        mirror.requests().unwrap().len() - before,
        2 + 2,
        "two refused tries, then two batches"
    );

    mirror.fail(1, 200, "cut").unwrap();
    let id = start_run(&t.client, "vlm-describe", "images", &files, json!({})).await;
    let run = wait_terminal(&t.client, &id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(run["status"], "succeeded", "{run}");
    let events = all_events(&t.client, &id).await;
    let text = streamed(&events);
    let (attempt, got) = &text[&("describe".to_string(), 1)];
    assert_eq!(*attempt, 2, "the cut answer was asked again: {text:?}");
    assert_eq!(
        got.trim(),
        run["outputs"]["answers"][0].as_str().unwrap(),
        "the second try's pieces make the answer"
    );

    // Down on every try: model_unavailable, retryable, after the configured tries.
    mirror.fail(4, 503, "status").unwrap();
    let before = mirror.requests().unwrap().len();
    let id = start_run(&t.client, "vlm-describe", "images", &files, json!({})).await;
    let run = wait_terminal(&t.client, &id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"]["code"], "model_unavailable", "{run}");
    assert_eq!(run["error"]["retryable"], true);
    assert!(
        run["error"]["message"].as_str().unwrap().contains("503"),
        "{run}"
    );
    assert_eq!(
        mirror.requests().unwrap().len() - before,
        4,
        "submit_tries requests, no more"
    );

    // An unknown model: the server's 404 and its message, asked once.
    let mut cfg = model_config(&tmp.path().join("data2"), mirror.url(), Some(&dir));
    cfg.pipelines_dir = Some({
        let d = tmp.path().join("unknown-model");
        std::fs::create_dir_all(&d).unwrap();
        for name in ["vlm-describe.toml", "vlm-task-events.toml"] {
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            std::fs::write(d.join(name), text.replace("llava:7b", "no-such-model")).unwrap();
        }
        d
    });
    let t2 = TestStack::start_config(cfg).await.unwrap();
    let before = mirror.requests().unwrap().len();
    let id = start_run(&t2.client, "vlm-describe", "images", &files, json!({})).await;
    let run = wait_terminal(&t2.client, &id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"]["code"], "model_error", "{run}");
    assert_eq!(run["error"]["retryable"], false);
    let message = run["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("404") && message.contains("no-such-model"),
        "{message}"
    );
    assert_eq!(mirror.requests().unwrap().len() - before, 1);

    // A server that never answers: cancelling ends the run at once.
    mirror.fail(1, 200, "stall").unwrap();
    let id = start_run(&t.client, "vlm-describe", "images", &files, json!({})).await;
    wait_for(&t.client, &id, Duration::from_secs(30), "calling", |r| {
        r["progress"]["stage"] == "calling"
    })
    .await
    .unwrap();
    t.client.action(&id, "cancel").await.unwrap();
    let run = wait_terminal(&t.client, &id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(run["status"], "cancelled", "{run}");
}

#[tokio::test]
async fn a_worker_killed_mid_run_loses_no_answer_it_had() {
    // Slow answers (about 1.5 s each), so the kill lands between the first and the last.
    let mirror = ModelServerMirror::start(&[("MIRROR_TOKEN_DELAY_S", "0.06")]).unwrap();
    let files = frames();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let env = [("SPACEPORT_SERVER_URL_VLM_DESCRIBE", mirror.url())];
    let port = spaceport_testkit::free_port();
    let serve = Serve::start_with(&data, port, "", STEPS, &env, Stdio::null()).await;
    let id = start_run(&serve.client, "vlm-describe", "images", &files, json!({})).await;
    // The first answer is kept once the progress says a third is done.
    wait_for(
        &serve.client,
        &id,
        Duration::from_secs(30),
        "a third answered",
        |r| r["progress"]["fraction"].as_f64().is_some_and(|f| f > 0.3),
    )
    .await
    .unwrap();
    serve.kill9();
    let port = spaceport_testkit::free_port();
    let serve = Serve::start_with(&data, port, "", STEPS, &env, Stdio::null()).await;
    let run = wait_terminal(&serve.client, &id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(run["status"], "succeeded", "{run}");
    let requests = mirror.requests().unwrap();
    let first_batch: Vec<String> = files[0..5].iter().map(|(_, b)| sha(b)).collect();
    let asked_first = requests
        .iter()
        .filter(|r| r["images"] == json!(first_batch))
        .count();
    assert_eq!(
        asked_first, 1,
        "the kept answer was not asked again: {requests:#?}"
    );
    assert!(
        requests.len() <= 4,
        "at most the batch in flight is asked twice: {}",
        requests.len()
    );
    assert_eq!(run["outputs"]["answers"].as_array().unwrap().len(), 3);
    assert!(
        run["backend"]["attempts"].as_array().unwrap().len() >= 2,
        "the take-over is an attempt: {run}"
    );
}

#[tokio::test]
async fn a_model_server_found_down_hands_the_run_to_the_pipelines_fallback() {
    let mirror = ModelServerMirror::start(&[("MIRROR_TOKEN_DELAY_S", "0")]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // vlm-describe on a server nobody answers, falling back to the same pipeline on the mirror
    // over the OpenAI protocol.
    let dir = tmp.path().join("pipelines");
    std::fs::create_dir_all(&dir).unwrap();
    let read = |name: &str| {
        std::fs::read_to_string(
            spaceport_testkit::repo_root().join(format!("pipelines/{name}.toml")),
        )
        .unwrap()
    };
    let describe = read("vlm-describe");
    std::fs::write(
        dir.join("vlm-describe.toml"),
        describe.replacen(
            "deadline_s = 1800",
            "deadline_s = 1800\nfallback = \"vlm-describe-backup\"",
            1,
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("vlm-describe-backup.toml"),
        describe
            .replace("name = \"vlm-describe\"", "name = \"vlm-describe-backup\"")
            .replace("protocol = \"ollama\"", "protocol = \"openai\""),
    )
    .unwrap();
    std::fs::write(dir.join("vlm-task-events.toml"), read("vlm-task-events")).unwrap();
    let dead = format!("http://127.0.0.1:{}", spaceport_testkit::free_port());
    let mut cfg = model_config(&tmp.path().join("data"), &dead, Some(&dir));
    cfg.pipelines.insert(
        "vlm-describe-backup".into(),
        PipelineOverride {
            server_url: Some(mirror.url().into()),
            ..PipelineOverride::default()
        },
    );
    let t = TestStack::start_config(cfg).await.unwrap();
    let files: Vec<(String, Vec<u8>)> = frames().into_iter().take(3).collect();
    let id = start_run(&t.client, "vlm-describe", "images", &files, json!({})).await;
    let run = wait_terminal(&t.client, &id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(run["status"], "succeeded", "{run}");
    let attempts = run["backend"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{run}");
    assert_eq!(attempts[0]["outcome"], "failed_over", "{run}");
    assert!(
        attempts[0]["message"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{run}"
    );
    assert_eq!(attempts[1]["pipeline"], "vlm-describe-backup");
    let asked = mirror.requests().unwrap();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0]["protocol"], "openai");
    assert_eq!(run["outputs"]["answers"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn pipelines_check_asks_the_model_server_for_every_model_its_requests_use() {
    let file = spaceport_testkit::repo_root().join("pipelines/vlm-task-events.toml");
    let options = Config::default().space_client_options();
    let both = ModelServerMirror::start(&[]).unwrap();
    let report = spaceport_cli::pipelines_cmd::check_file(&file, Some(both.url()), options.clone())
        .await
        .unwrap();
    assert!(
        report.contains("ok: request describe uses llava:7b"),
        "{report}"
    );
    assert!(
        report.contains("ok: request events uses llama3.2:3b"),
        "{report}"
    );
    // The same over the OpenAI API's model list.
    let tmp = tempfile::tempdir().unwrap();
    let openai = pipelines_speaking(tmp.path(), "openai").join("vlm-describe.toml");
    let report =
        spaceport_cli::pipelines_cmd::check_file(&openai, Some(both.url()), options.clone())
            .await
            .unwrap();
    assert!(
        report.contains("Openai") && report.contains("ok: request describe uses llava:7b"),
        "{report}"
    );
    let one = ModelServerMirror::start(&[("MIRROR_MODELS", "llava:7b")]).unwrap();
    let e = spaceport_cli::pipelines_cmd::check_file(&file, Some(one.url()), options)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "request events uses llama3.2:3b, which the server does not serve (it has: llava:7b)"
        ),
        "{e}"
    );
    assert!(e.contains("1 model(s) missing"), "{e}");
}
