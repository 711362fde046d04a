//! A hostile Space (the testkit's `HostileSpace`: Gradio's protocol, broken on purpose one way
//! at a time) against a real `spaceport serve` process: each run ends in a terminal state with a
//! code within its deadline, the process's peak memory stays flat whatever the Space sends, no
//! request reaches the other host the Space points at (its listener proves it), and our token
//! never goes to a Space outside the allow-list. Then a slow result file, in process: the lease
//! is renewed while it flows (one download, no takeover), and a run cancelled while it flows
//! keeps nothing of it.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use spaceport_cli::config::Config;
use spaceport_testkit::{Elsewhere, HostileSpace, Misbehaviour, SLOW_ARTIFACT_BYTES, free_port};

use crate::common::*;

const MIB: u64 = 1 << 20;

fn image() -> Vec<(&'static str, Vec<u8>)> {
    vec![("a.png", png(20, 20, 7))]
}

fn time(run: &Value, field: &str) -> DateTime<Utc> {
    run[field]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .unwrap_or_else(|| panic!("{field} in {run}"))
        .into()
}

/// Every object (file or inline row) of the data directory whose key contains all of `parts`.
fn stored_with(data: &Path, parts: &[&str]) -> Vec<String> {
    stored_keys(data)
        .into_iter()
        .filter(|s| parts.iter().all(|x| s.contains(x)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_space_ends_each_run_with_a_code_in_time_with_flat_memory_and_nothing_elsewhere()
{
    let elsewhere = Elsewhere::start().await.unwrap();
    let cases = [
        (
            Misbehaviour::EndlessLine,
            "endless-line",
            "failed",
            "space_protocol",
            "line longer",
        ),
        (
            Misbehaviour::HugeConfig,
            "huge-config",
            "failed",
            "space_protocol",
            "over 16777216 bytes",
        ),
        (
            Misbehaviour::HeartbeatOnly,
            "heartbeat-only",
            "expired",
            "deadline_exceeded",
            "deadline",
        ),
        (
            Misbehaviour::RedirectElsewhere,
            "redirect",
            "failed",
            "space_protocol",
            "another origin",
        ),
        (
            Misbehaviour::ForeignPrefix,
            "foreign-prefix",
            "failed",
            "space_protocol",
            "not a plain path",
        ),
        (
            Misbehaviour::HugeArtifact,
            "huge-artifact",
            "failed",
            "artifact_download_failed",
            "max_bytes",
        ),
    ];
    let deadline_s = 10;
    let dir = tempfile::tempdir().unwrap();
    let (pipelines, data) = (dir.path().join("pipelines"), dir.path().join("data"));
    std::fs::create_dir_all(&pipelines).unwrap();
    let mut spaces = vec![];
    for (how, name, ..) in &cases {
        let space = HostileSpace::start(*how, &elsewhere.url).await.unwrap();
        let file = space.pipeline(&format!("hostile-{name}"), deadline_s, MIB);
        std::fs::write(pipelines.join(format!("hostile-{name}.toml")), file).unwrap();
        spaces.push(space);
    }
    let serve = Serve::start_with(
        &data,
        free_port(),
        "",
        "submit-space,poll-status,fetch-artifact",
        &[
            ("SPACEPORT_PIPELINES_DIR", pipelines.to_str().unwrap()),
            ("SPACEPORT_HUB_URL", ""),
            ("HF_TOKEN", "hf_hostile_test_token"),
        ],
        Stdio::null(),
    )
    .await;
    let idle_rss = serve.peak_rss();

    let mut ids = vec![];
    for (_, name, ..) in &cases {
        let extra = json!({"pipeline": format!("hostile-{name}")});
        let run = create_and_upload(&serve.client, &image(), json!({}), extra)
            .await
            .unwrap();
        ids.push(run["id"].as_str().unwrap().to_string());
    }
    for ((_, name, status, code, says), id) in cases.iter().zip(&ids) {
        let run = wait_terminal(&serve.client, id, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(run["status"], *status, "{name}: {run:#}");
        assert_eq!(run["error"]["code"], *code, "{name}: {run:#}");
        let message = run["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{name}: {message}");
        assert!(!message.contains("hf_hostile"), "{name}: {message}");
        // Within its deadline (the sweeper's and a heartbeat's granularity aside).
        let (ended, deadline) = (time(&run, "finished_at"), time(&run, "deadline_at"));
        assert!(
            ended <= deadline + chrono::Duration::seconds(2),
            "{name}: ended {ended}, deadline {deadline}"
        );
    }
    let peak = serve.peak_rss();
    eprintln!(
        "hostile Spaces: spaceport serve peak RSS {:.1} MiB (idle {:.1} MiB)",
        peak as f64 / MIB as f64,
        idle_rss as f64 / MIB as f64
    );
    // A 4 GiB /config, an endless line and an endless artifact cost their caps, not their size.
    assert!(peak < 160 * MIB, "peak RSS {} MiB", peak / MIB);
    assert_eq!(
        elsewhere.seen(),
        Vec::<String>::new(),
        "requests reached the other host"
    );
    for (space, (_, name, ..)) in spaces.iter().zip(&cases) {
        let counts = space.counts();
        assert_eq!(
            counts.with_token, 0,
            "{name}: the token went to an http Space off the allow-list"
        );
        if *name == "huge-artifact" {
            assert_eq!(
                counts.downloads, 1,
                "{name}: a capped artifact is not tried again"
            );
        }
    }
    let huge = &ids[5];
    assert_eq!(
        stored_with(&data, &[huge, "artifacts"]),
        Vec::<String>::new(),
        "nothing of the capped artifact is kept"
    );
}

/// Waits up to `timeout` for `pred` to hold.
async fn until(timeout: Duration, what: &str, pred: impl Fn() -> bool) {
    let end = std::time::Instant::now() + timeout;
    while !pred() {
        assert!(
            std::time::Instant::now() < end,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A stack on its own data dir whose only pipeline is `hostile`, calling `space`; and the dir.
async fn stack_for(space: &HostileSpace, deadline_s: u64) -> (TestStack, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    std::fs::write(
        pipelines.join("hostile.toml"),
        space.pipeline("hostile", deadline_s, MIB),
    )
    .unwrap();
    let data = dir.path().join("data");
    let cfg = Config {
        data_dir: Some(data.clone()),
        pipelines_dir: Some(pipelines),
        hub_url: Some(String::new()),
        ..Config::default()
    };
    let t = TestStack::start_config(cfg).await.unwrap();
    std::mem::forget(dir);
    (t, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_download_renews_the_lease_and_is_fetched_once() {
    let elsewhere = Elsewhere::start().await.unwrap();
    // Three leases (3 s each in the test options) long.
    let space = HostileSpace::start_slow(
        Misbehaviour::SlowArtifact,
        &elsewhere.url,
        Duration::from_secs(9),
    )
    .await
    .unwrap();
    let (t, _) = stack_for(&space, 60).await;
    let done = run_to_end(
        &t.client,
        &image(),
        json!({}),
        json!({"pipeline": "hostile"}),
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(
        done["artifacts"][0]["size"], SLOW_ARTIFACT_BYTES,
        "{done:#}"
    );
    let counts = space.counts();
    assert_eq!(
        (counts.downloads, counts.downloads_finished),
        (1, 1),
        "no other worker took the run over while its file flowed: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cancelled_while_its_result_flows_keeps_nothing_of_it() {
    let elsewhere = Elsewhere::start().await.unwrap();
    let space = HostileSpace::start_slow(
        Misbehaviour::SlowArtifact,
        &elsewhere.url,
        Duration::from_secs(6),
    )
    .await
    .unwrap();
    let (t, data) = stack_for(&space, 60).await;
    let run = create_and_upload(
        &t.client,
        &image(),
        json!({}),
        json!({"pipeline": "hostile"}),
    )
    .await
    .unwrap();
    let id = run["id"].as_str().unwrap().to_string();
    until(Duration::from_secs(30), "the download to start", || {
        space.counts().downloads > 0
    })
    .await;
    t.client.action(&id, "cancel").await.unwrap();
    let done = wait_terminal(&t.client, &id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(done["status"], "cancelled", "{done:#}");
    // The transfer is dropped within a heartbeat, not read to its end.
    until(Duration::from_secs(10), "the download to stop", || {
        let c = space.counts();
        c.downloads_dropped + c.downloads_finished > 0
    })
    .await;
    let counts = space.counts();
    assert_eq!(counts.downloads_dropped, 1, "{counts:?}");
    assert_eq!(
        stored_with(&data, &[&id, "artifacts"]),
        Vec::<String>::new(),
        "the cancelled run's late artifact is discarded"
    );
    let again = t.client.get_run(&id, None).await.unwrap();
    assert_eq!(again["artifacts"], json!([]), "{again:#}");
}
