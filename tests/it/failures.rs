//! Spaces failing in each way users meet on Hugging Face, through the testkit's front (the
//! `*.hf.space` proxy and the Hub's runtime endpoint, which cannot be reached from here) before
//! real Gradio mirrors: a sleeping Space woken and waited for, a Space the Hub calls broken, a
//! full queue (Gradio's own, and one that never empties), a ZeroGPU quota waited out to the
//! second it frees (or refused when that is past the deadline), 5xx and 429 retried with
//! backoff, a stream cut mid-job, and failover from a down Space to a fallback Space to the
//! local model. Each ends in the right state and code within its deadline.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use spaceport_cli::config::{Config, PipelineOverride};
use spaceport_testkit::{SpaceFront, demo_model, ort_dylib};

use crate::common::*;

/// The plain vggt mirror, shared: each test puts its own front before it.
fn mirror() -> &'static MirrorSpace {
    static MIRROR: OnceLock<MirrorSpace> = OnceLock::new();
    MIRROR.get_or_init(|| MirrorSpace::start().expect("starting the vggt mirror"))
}

/// A mirror whose ZeroGPU quota, once spent, frees in an hour.
fn spent_mirror() -> &'static MirrorSpace {
    static MIRROR: OnceLock<MirrorSpace> = OnceLock::new();
    MIRROR.get_or_init(|| {
        MirrorSpace::start_with_env(&[("MIRROR_QUOTA_WAIT_S", "3600")])
            .expect("starting the vggt mirror")
    })
}

fn image(name: &str) -> Vec<(&'static str, Vec<u8>)> {
    vec![(
        Box::leak(name.to_string().into_boxed_str()) as &'static str,
        png(40, 30, 90),
    )]
}

/// A stack whose `vggt` calls `space_url` and asks the Hub at `hub`.
async fn stack(space_url: &str, hub: &str) -> TestStack {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir.path().join("data"), space_url);
    cfg.hub_url = Some(hub.to_string());
    let t = TestStack::start_config(cfg).await.unwrap();
    std::mem::forget(dir);
    t
}

/// Every event of a run, as `GET /v1/runs/{id}/events?format=json` lists them.
async fn events(t: &TestStack, id: &str) -> Vec<Value> {
    let url = format!("{}/v1/runs/{id}/events?after=0&format=json", t.stack.url);
    let (status, body) = send(reqwest::Client::new().get(url)).await;
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().unwrap().clone()
}

/// The events whose progress is in `stage`.
fn in_stage<'a>(events: &'a [Value], stage: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["progress"]["stage"] == stage)
        .collect()
}

fn outcomes(run: &Value) -> Vec<(String, String, String)> {
    run["backend"]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["pipeline"].as_str().unwrap().to_string(),
                a["target"].as_str().unwrap().to_string(),
                a["outcome"].as_str().unwrap_or("open").to_string(),
            )
        })
        .collect()
}

fn joins(front: &SpaceFront) -> Vec<spaceport_testkit::Seen> {
    front
        .seen()
        .into_iter()
        .filter(|s| s.path.contains("/queue/join"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_space_is_woken_and_the_run_shows_the_wait() {
    let front = SpaceFront::start(mirror().url()).await.unwrap();
    front.sleep(Duration::from_secs(2));
    let t = stack(&front.url, &front.hub_url()).await;
    let done = run_to_end(&t.client, &image("a.png"), json!({}), json!({})).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let id = done["id"].as_str().unwrap();

    let evs = events(&t, id).await;
    let waking = in_stage(&evs, "space_waking");
    assert!(!waking.is_empty(), "no space_waking event: {evs:#?}");
    let msg = waking[0]["progress"]["message"].as_str().unwrap();
    assert!(
        msg.contains("SLEEPING") || msg.contains("APP_STARTING"),
        "{msg}"
    );
    // The wait so far grows while the Space starts.
    let waited: Vec<f64> = waking
        .iter()
        .filter_map(|e| e["progress"]["waited_s"].as_f64())
        .collect();
    assert!(
        waited.len() >= 2 && waited.last() > waited.first(),
        "{waited:?}"
    );
    assert!(front.hub_asks() >= 1);
    // Refused while starting, served once up; one attempt, which succeeded.
    let seen = front.seen();
    let to_space: Vec<_> = seen
        .iter()
        .filter(|s| !s.path.starts_with("/api/spaces/"))
        .collect();
    assert_eq!(to_space[0].refused, Some(503), "{seen:#?}");
    assert!(
        seen.iter()
            .any(|s| s.path.contains("/queue/join") && s.refused.is_none())
    );
    assert_eq!(done["backend"]["attempt"], 1, "{done}");
    assert_eq!(
        outcomes(&done),
        [("vggt".into(), "facebook/vggt".into(), "succeeded".into())]
    );
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_space_the_hub_calls_broken_fails_at_once_naming_its_stage() {
    let front = SpaceFront::start(mirror().url()).await.unwrap();
    front.break_with("RUNTIME_ERROR");
    let t = stack(&front.url, &front.hub_url()).await;
    let started = Instant::now();
    let done = run_to_end(&t.client, &image("a.png"), json!({}), json!({})).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "space_unavailable");
    assert_eq!(
        done["error"]["retryable"], false,
        "a broken Space needs a person"
    );
    let msg = done["error"]["message"].as_str().unwrap();
    assert!(msg.contains("RUNTIME_ERROR"), "{msg}");
    // No retries: the Hub asked for the commit (the result cache's revision) and about the
    // refusal, nothing more.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(front.hub_asks(), 2);
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gradio_queue_full_is_waited_out_and_shown() {
    // A Space whose queue holds one waiting job: one job running and one waiting fill it.
    let mirror = MirrorSpace::start_with_env(&[("MIRROR_QUEUE_MAX", "1")]).unwrap();
    let t = stack(mirror.url(), "").await;
    let first = create_and_upload(&t.client, &image("slow1.png"), json!({}), json!({}))
        .await
        .unwrap();
    let first = first["id"].as_str().unwrap().to_string();
    wait_for(
        &t.client,
        &first,
        Duration::from_secs(30),
        "reconstructing",
        |r| r["progress"]["fraction"].as_f64().is_some_and(|f| f > 0.0),
    )
    .await
    .unwrap();
    let second = create_and_upload(&t.client, &image("b.png"), json!({}), json!({}))
        .await
        .unwrap();
    let second = second["id"].as_str().unwrap().to_string();
    wait_for(
        &t.client,
        &second,
        Duration::from_secs(30),
        "queued at the Space",
        |r| r["progress"]["stage"] == "queued_at_space",
    )
    .await
    .unwrap();
    let third = create_and_upload(&t.client, &image("c.png"), json!({}), json!({}))
        .await
        .unwrap();
    let third = third["id"].as_str().unwrap().to_string();
    let done = wait_terminal(&t.client, &third, Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(done["status"], "succeeded", "{done}");
    let evs = events(&t, &third).await;
    let full = in_stage(&evs, "space_queue_full");
    assert!(!full.is_empty(), "no space_queue_full event: {evs:#?}");
    let msg = full[0]["progress"]["message"].as_str().unwrap();
    assert!(msg.contains("Queue is full"), "{msg}");
    // The refusals did not count as lost jobs.
    assert_eq!(done["backend"]["attempt"], 1, "{done}");
    for id in [&first, &second] {
        let r = wait_terminal(&t.client, id, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_that_stays_full_fails_space_queue_full_before_the_deadline() {
    let front = SpaceFront::start(mirror().url()).await.unwrap();
    front.refuse(
        "/queue/join",
        u32::MAX,
        503,
        r#"{"detail":"Queue is full. Max size is 20 and size is 20."}"#,
        None,
    );
    let t = stack(&front.url, "").await;
    let started = Instant::now();
    let done = run_to_end(
        &t.client,
        &image("a.png"),
        json!({}),
        json!({"deadline_s": 5}),
    )
    .await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "space_queue_full");
    let msg = done["error"]["message"].as_str().unwrap();
    assert!(msg.contains("deadline"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let finished: DateTime<Utc> = done["finished_at"].as_str().unwrap().parse().unwrap();
    let deadline: DateTime<Utc> = done["deadline_at"].as_str().unwrap().parse().unwrap();
    assert!(finished <= deadline, "{done}");
    assert!(joins(&front).len() >= 3, "it kept trying for room");
    // Waiting took fresh messages: none used up its receives and was dead-lettered.
    for (q, _, _, dead) in queue_counts(&t).await {
        assert_eq!(dead, 0, "{q}");
    }
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zerogpu_quota_wait_resumes_when_the_space_said_it_would() {
    // The quota frees 2 s after the first call, and the Space says so ("Try again in 0:00:02").
    let mirror = MirrorSpace::start_with_env(&[("MIRROR_QUOTA_WAIT_S", "2")]).unwrap();
    let front = SpaceFront::start(mirror.url()).await.unwrap();
    let t = stack(&front.url, "").await;
    let done = run_to_end(&t.client, &image("quota.png"), json!({}), json!({})).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let evs = events(&t, done["id"].as_str().unwrap()).await;
    let wait = in_stage(&evs, "space_quota_wait");
    assert!(!wait.is_empty(), "no space_quota_wait event: {evs:#?}");
    let msg = wait[0]["progress"]["message"].as_str().unwrap();
    assert!(msg.contains("Try again in 0:00:0"), "{msg}");
    let retry_at: DateTime<Utc> = wait[0]["progress"]["retry_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let announced_at: DateTime<Utc> = wait[0]["created_at"].as_str().unwrap().parse().unwrap();
    let waited = (retry_at - announced_at).num_milliseconds();
    assert!(
        (1000..=2100).contains(&waited),
        "retry_at {waited} ms after the refusal"
    );
    // The reconstruct call was joined twice: refused, then again no earlier than announced.
    let demo: Vec<_> = joins(&front);
    assert!(demo.len() >= 4, "two submits of two calls each: {demo:#?}");
    let gap = demo[demo.len() - 1].at - demo[1].at;
    assert!(
        gap >= Duration::from_millis(1500),
        "resubmitted after {gap:?}"
    );
    assert_eq!(
        done["backend"]["attempt"], 1,
        "a quota wait is not a lost job"
    );
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_that_frees_after_the_deadline_fails_at_once() {
    let t = stack(spent_mirror().url(), "").await;
    let started = Instant::now();
    let done = run_to_end(
        &t.client,
        &image("quota-late.png"),
        json!({}),
        json!({"deadline_s": 60}),
    )
    .await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "space_quota_exceeded");
    assert_eq!(done["error"]["retryable"], true);
    let msg = done["error"]["message"].as_str().unwrap();
    assert!(msg.contains("after the run's deadline"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it did not wait for nothing"
    );
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_429_are_retried_with_backoff_and_retry_after() {
    let front = SpaceFront::start(mirror().url()).await.unwrap();
    // The first refusal meets the result cache's look at the app, the next two submit-space.
    front.refuse("/config", 3, 502, "Bad Gateway", None);
    front.refuse(
        "/upload",
        1,
        429,
        r#"{"error":"Too Many Requests"}"#,
        Some(1),
    );
    let t = stack(&front.url, "").await;
    let done = run_to_end(&t.client, &image("a.png"), json!({}), json!({})).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let seen = front.seen();
    let at = |path: &str, status: Option<u16>| {
        seen.iter()
            .find(|s| s.path.contains(path) && s.refused == status)
            .unwrap_or_else(|| panic!("no {path} answered {status:?}: {seen:#?}"))
            .at
    };
    // Backed off between the refusals (0.1–0.2 s, then 0.2–0.4 s with jitter) …
    let configs: Vec<Instant> = seen
        .iter()
        .filter(|s| s.path.ends_with("/config"))
        .map(|s| s.at)
        .collect();
    assert!(configs.len() >= 4, "{seen:#?}");
    assert!(configs[2] - configs[1] >= Duration::from_millis(100));
    assert!(configs[3] - configs[2] >= Duration::from_millis(200));
    // … and waited out the Retry-After of the 429.
    let gap = at("/upload", None) - at("/upload", Some(429));
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
    let evs = events(&t, done["id"].as_str().unwrap()).await;
    assert!(!in_stage(&evs, "retrying").is_empty(), "{evs:#?}");
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_mid_job_is_submitted_again_as_a_new_attempt() {
    let front = SpaceFront::start(mirror().url()).await.unwrap();
    // The first stream is the upload call's (held by submit); the reconstruct call's is cut.
    front.cut_streams(1, 1);
    let t = stack(&front.url, "").await;
    let done = run_to_end(&t.client, &image("a.png"), json!({}), json!({})).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["backend"]["attempt"], 2, "{done}");
    let attempts = done["backend"]["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["outcome"], "replaced", "{done}");
    assert!(
        attempts[0]["ended_at"].is_string() && attempts[1]["outcome"] == "succeeded",
        "{done}"
    );
    t.stack.shutdown().await;
}

/// Pipelines: `vggt` → `vggt-b` (the same Space elsewhere) → `vggt-onnx`, failing over when
/// down or when a quota would hold the run more than a minute.
fn failover_pipelines(dir: &std::path::Path) -> std::path::PathBuf {
    let src = spaceport_testkit::repo_root().join("pipelines");
    let dst = dir.join("pipelines");
    std::fs::create_dir_all(&dst).unwrap();
    let vggt = std::fs::read_to_string(src.join("vggt.toml")).unwrap();
    let primary = vggt.replace(
        "fallback = \"vggt-onnx\"",
        "fallback = \"vggt-b\"\n[failover]\nto = [\"vggt-onnx\"]\nwhen_quota_wait_over_s = 60",
    );
    assert_ne!(primary, vggt);
    std::fs::write(dst.join("vggt.toml"), primary).unwrap();
    let b = vggt
        .replace("name = \"vggt\"", "name = \"vggt-b\"")
        .replace("fallback = \"vggt-onnx\"", "")
        .replace("space = \"facebook/vggt\"", "space = \"mirrors/vggt-b\"");
    std::fs::write(dst.join("vggt-b.toml"), b).unwrap();
    std::fs::copy(src.join("vggt-onnx.toml"), dst.join("vggt-onnx.toml")).unwrap();
    dst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_space_fails_over_to_a_fallback_space_then_to_the_local_model() {
    let dir = tempfile::tempdir().unwrap();
    // The primary is broken; the fallback Space's quota frees in an hour (over the minute).
    let down = SpaceFront::start(mirror().url()).await.unwrap();
    down.break_with("PAUSED");
    let spent = SpaceFront::start(spent_mirror().url()).await.unwrap();
    let model = demo_model(dir.path(), "vggt.onnx", &[]);
    let mut cfg = Config {
        data_dir: Some(dir.path().join("data")),
        ort_dylib_path: Some(ort_dylib()),
        pipelines_dir: Some(failover_pipelines(dir.path())),
        hub_url: Some(down.hub_url()),
        ..Config::default()
    };
    for (name, url, model) in [
        ("vggt", Some(down.url.clone()), None),
        ("vggt-b", Some(spent.url.clone()), None),
        ("vggt-onnx", None, Some(model.display().to_string())),
    ] {
        cfg.pipelines.insert(
            name.into(),
            PipelineOverride {
                space_url: url,
                model,
                ..PipelineOverride::default()
            },
        );
    }
    let t = TestStack::start_config(cfg).await.unwrap();
    let files = [
        ("quota-a.png", png(64, 48, 10)),
        ("quota-b.png", png(72, 48, 40)),
    ];
    let done = run_to_end(&t.client, &files, json!({}), json!({})).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["pipeline"], "vggt");
    assert_eq!(done["backend"]["kind"], "onnx", "{done}");
    assert_eq!(done["backend"]["pipeline"], "vggt-onnx", "{done}");
    let got = outcomes(&done);
    assert_eq!(
        got,
        [
            ("vggt".into(), "facebook/vggt".into(), "failed_over".into()),
            (
                "vggt-b".into(),
                "mirrors/vggt-b".into(),
                "failed_over".into()
            ),
            (
                "vggt-onnx".into(),
                model.display().to_string(),
                "succeeded".into()
            ),
        ],
        "{done}"
    );
    let attempts = done["backend"]["attempts"].as_array().unwrap();
    assert!(
        attempts[0]["message"].as_str().unwrap().contains("PAUSED"),
        "{done}"
    );
    assert!(
        attempts[1]["message"].as_str().unwrap().contains("quota"),
        "{done}"
    );
    assert_eq!(done["backend"]["attempt"], 3);
    // The fallback Space was called (and refused), the down one never got a job.
    assert!(joins(&down).is_empty());
    assert!(!joins(&spent).is_empty());
    assert_eq!(artifact_names(&done), ["predictions", "scene"]);
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_too_far_back_in_the_queue_leaves_it_for_the_fallback_space() {
    // The primary runs one job at a time; two jobs ahead put ours at rank 1, over the limit 0.
    let busy = MirrorSpace::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pipelines = failover_pipelines(dir.path());
    let text = std::fs::read_to_string(pipelines.join("vggt.toml")).unwrap();
    let text = text.replace("when_quota_wait_over_s = 60", "when_queue_rank_over = 0");
    std::fs::write(pipelines.join("vggt.toml"), text).unwrap();
    let mut cfg = Config {
        data_dir: Some(dir.path().join("data")),
        pipelines_dir: Some(pipelines),
        hub_url: Some(String::new()),
        ..Config::default()
    };
    for (name, url) in [("vggt", busy.url()), ("vggt-b", mirror().url())] {
        cfg.pipelines.insert(
            name.into(),
            PipelineOverride {
                space_url: Some(url.to_string()),
                model: None,
                ..PipelineOverride::default()
            },
        );
    }
    let t = TestStack::start_config(cfg).await.unwrap();
    let mut ahead = vec![];
    for name in ["slow1.png", "slow2.png"] {
        let run = create_and_upload(&t.client, &image(name), json!({}), json!({}))
            .await
            .unwrap();
        let id = run["id"].as_str().unwrap().to_string();
        wait_for(
            &t.client,
            &id,
            Duration::from_secs(30),
            "at the Space",
            |r| {
                r["status"] == "running"
                    && (r["progress"]["stage"] == "queued_at_space"
                        || r["progress"]["fraction"].as_f64().is_some())
            },
        )
        .await
        .unwrap();
        ahead.push(id);
    }
    let done = run_to_end(&t.client, &image("c.png"), json!({}), json!({})).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let got = outcomes(&done);
    assert_eq!(got[0].2, "failed_over", "{done}");
    assert_eq!(
        got[1],
        ("vggt-b".into(), "mirrors/vggt-b".into(), "succeeded".into())
    );
    let why = done["backend"]["attempts"][0]["message"].as_str().unwrap();
    assert!(why.contains("queue rank"), "{why}");
    // It left the busy Space's queue: cancelled there, so the jobs ahead still finish.
    for id in &ahead {
        let r = wait_terminal(&t.client, id, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    assert!(
        !busy.output().contains("IMAGES c.png"),
        "the busy Space never ran the job that left its queue"
    );
    t.stack.shutdown().await;
}
