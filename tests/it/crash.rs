//! `kill -9` of `spaceport serve` loses nothing: a run killed while `queued`, while `running`
//! (its Space stream held, or not yet opened) and while `fetching` still ends `succeeded` after a
//! restart on the same data dir, with exactly one `scene` artifact; a webhook killed before or
//! between its tries is delivered after the restart, under the same message id.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spaceport_cli::client::ApiClient;

use crate::common::*;

async fn new_run(client: &ApiClient, name: &str) -> String {
    let run = create_and_upload(client, &[(name, png(48, 32, 9))], json!({}), json!({}))
        .await
        .unwrap();
    run["id"].as_str().unwrap().to_string()
}

fn assert_one_scene(done: &Value) {
    assert_eq!(done["status"], "succeeded", "{done}");
    let arts = done["artifacts"].as_array().unwrap();
    assert_eq!(arts.len(), 1, "{done}");
    assert_eq!(arts[0]["name"], "scene");
}

async fn finish_after_restart(data: &Path, port: u16, mirror: &MirrorSpace, id: &str) -> Value {
    let serve = Serve::start(
        data,
        port,
        mirror.url(),
        "submit-space,poll-status,fetch-artifact",
    )
    .await;
    let done = wait_terminal(&serve.client, id, Duration::from_secs(90))
        .await
        .unwrap();
    // Nothing runs twice: the blob store holds exactly the one artifact.
    let scene_files = stored_keys(data)
        .into_iter()
        .filter(|p| p.contains(id) && p.contains("artifacts/scene"))
        .count();
    assert_eq!(
        scene_files,
        1,
        "artifacts for {id} under {}",
        data.display()
    );
    drop(serve);
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_while_queued_then_restart_succeeds() {
    let mirror = MirrorSpace::start().unwrap();
    let data = tempfile::tempdir().unwrap();
    let port = spaceport_testkit::free_port();
    // An API-only process: the run lands and is queued, and nothing takes it.
    let serve = Serve::start(data.path(), port, mirror.url(), "none").await;
    let id = new_run(&serve.client, "a.png").await;
    wait_status(&serve.client, &id, "queued", Duration::from_secs(10))
        .await
        .unwrap();
    serve.kill9();
    let done = finish_after_restart(data.path(), port, &mirror, &id).await;
    assert_one_scene(&done);
    assert_eq!(done["backend"]["attempt"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_while_running_with_the_stream_held_resubmits_as_a_new_attempt() {
    let mirror = MirrorSpace::start().unwrap();
    let data = tempfile::tempdir().unwrap();
    let port = spaceport_testkit::free_port();
    let serve = Serve::start(
        data.path(),
        port,
        mirror.url(),
        "submit-space,poll-status,fetch-artifact",
    )
    .await;
    let id = new_run(&serve.client, "slow.png").await;
    wait_for(
        &serve.client,
        &id,
        Duration::from_secs(30),
        "running at the Space",
        |r| r["status"] == "running" && r["progress"]["stage"] == "running",
    )
    .await
    .unwrap();
    serve.kill9();
    let done = finish_after_restart(data.path(), port, &mirror, &id).await;
    assert_one_scene(&done);
    // The Space drops the result of a job whose stream was cut, so the job ran again.
    assert_eq!(done["backend"]["attempt"], 2, "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_joining_before_the_stream_opened_picks_the_job_up() {
    let mirror = MirrorSpace::start().unwrap();
    let data = tempfile::tempdir().unwrap();
    let port = spaceport_testkit::free_port();
    // Only submit-space runs: the job is joined at the Space and its handle stored; no poller.
    let serve = Serve::start(data.path(), port, mirror.url(), "submit-space").await;
    let id = new_run(&serve.client, "a.png").await;
    wait_status(&serve.client, &id, "running", Duration::from_secs(30))
        .await
        .unwrap();
    serve.kill9();
    let done = finish_after_restart(data.path(), port, &mirror, &id).await;
    assert_one_scene(&done);
    // The Space buffered the job's messages for our session: picked up, not run again.
    assert_eq!(done["backend"]["attempt"], 1, "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_while_fetching_then_restart_succeeds_with_one_artifact() {
    let mirror = MirrorSpace::start().unwrap();
    let data = tempfile::tempdir().unwrap();
    let port = spaceport_testkit::free_port();
    let serve = Serve::start(data.path(), port, mirror.url(), "submit-space,poll-status").await;
    let id = new_run(&serve.client, "a.png").await;
    wait_status(&serve.client, &id, "fetching", Duration::from_secs(30))
        .await
        .unwrap();
    serve.kill9();
    let done = finish_after_restart(data.path(), port, &mirror, &id).await;
    assert_one_scene(&done);
    assert_eq!(done["backend"]["attempt"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spaceport_run_follows_its_run_across_a_kill_9_of_the_server() {
    let mirror = MirrorSpace::start().unwrap();
    let data = tempfile::tempdir().unwrap();
    let port = spaceport_testkit::free_port();
    let steps = "submit-space,poll-status,fetch-artifact";
    let serve = Serve::start(data.path(), port, mirror.url(), steps).await;
    let files = tempfile::tempdir().unwrap();
    let image = write_files(files.path(), &[("slow.png", png(48, 32, 4))]);
    let out = files.path().join("out");
    // The CLI follows the run through the server's event stream.
    let cli = Command::new(env!("CARGO_BIN_EXE_spaceport"))
        .args(["--server", serve.client.base(), "run", "vggt"])
        .arg(&image[0])
        .args(["--json", "--out"])
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let runs = serve.client.list_runs(&[]).await.unwrap();
        let running = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["status"] == "running" && r["progress"]["stage"] == "running");
        if let Some(r) = running {
            break r["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < until, "the CLI's run never ran: {runs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    serve.kill9();
    // The same server comes back on the same address; the CLI resumes its stream.
    let serve = Serve::start(data.path(), port, mirror.url(), steps).await;
    let output = tokio::task::spawn_blocking(move || cli.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "spaceport run failed: {stderr}");
    let run: Value = serde_json::from_slice(&output.stdout).expect("the run as JSON");
    assert_eq!(run["id"], id.as_str());
    assert_one_scene(&run);
    assert!(out.join("scene.glb").is_file(), "the artifact was saved");
    drop(serve);
}

/// `kill -9` between a run's terminal state and its webhook, and again between two tries of it:
/// after each restart the delivery goes on, under the same `webhook-id`, and the log of all three
/// processes (at debug level) never shows the signing secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_survives_kill_9_before_and_between_its_tries() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let receiver = spaceport_testkit::WebhookReceiver::start(&[SECRET.into()]).unwrap();
    let data = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let port = spaceport_testkit::free_port();
    let env = [
        ("SPACEPORT_WEBHOOK_SECRETS", SECRET),
        ("SPACEPORT_OUTBOUND_ALLOW", "127.0.0.1"),
        ("SPACEPORT_WEBHOOK_SCHEDULE_S", "0,3"),
        ("SPACEPORT_WEBHOOK_TIMEOUT_S", "2"),
        ("SPACEPORT_LOG", "trace"),
    ];
    let start = |n: usize, steps: &'static str| {
        let log = std::fs::File::create(logs.path().join(format!("{n}.log"))).unwrap();
        let data = data.path().to_path_buf();
        async move {
            Serve::start_with(&data, port, "http://127.0.0.1:9", steps, &env, log.into()).await
        }
    };
    let all = "submit-space,poll-status,fetch-artifact,reconstruct,notify-webhook";

    // 1: no notify-webhook worker: the run ends (cancelled) and its delivery waits.
    let serve = start(1, "submit-space,poll-status,fetch-artifact,reconstruct").await;
    let run = serve
        .client
        .create_run(
            &json!({"pipeline": "vggt",
                    "webhook": {"url": format!("{}/flaky/k?fail=1", receiver.url()), "events": ["run.cancelled"]},
                    "inputs": {"images": [{"filename": "a.png", "content_type": "image/png", "size": 10}]}}),
            None,
        )
        .await
        .unwrap();
    let id = run["id"].as_str().unwrap().to_owned();
    let done = serve.client.action(&id, "cancel").await.unwrap();
    assert_eq!(done["status"], "cancelled", "{done}");
    serve.kill9();
    assert!(receiver.records().unwrap().is_empty());

    // 2: the first try fails (500); killed once that try is recorded, before the retry 3 s on.
    let serve = start(2, all).await;
    wait_records(&receiver, "/flaky/k", 1, Duration::from_secs(20)).await;
    let deliveries = |client: &ApiClient| {
        let url = format!("{}/v1/runs/{id}/deliveries", client.base());
        async move { send(reqwest::Client::new().get(url)).await.1 }
    };
    let until = Instant::now() + Duration::from_secs(10);
    while deliveries(&serve.client).await["deliveries"][0]["attempts"]
        .as_array()
        .is_none_or(|a| a.is_empty())
    {
        assert!(Instant::now() < until, "the first try was not recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    serve.kill9();

    // 3: the retry goes out from the restarted process, under the same id, and lands.
    let serve = start(3, all).await;
    let got = wait_records(&receiver, "/flaky/k", 2, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(got[0]["id"], got[1]["id"], "{got:#?}");
    assert!(got.iter().all(|g| g["verified"] == true), "{got:#?}");
    assert_eq!(
        (got[0]["status"].clone(), got[1]["status"].clone()),
        (json!(500), json!(200))
    );
    let until = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = deliveries(&serve.client).await;
        if log["deliveries"][0]["state"] == "delivered" {
            break log;
        }
        assert!(Instant::now() < until, "not delivered: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(log["deliveries"].as_array().unwrap().len(), 1, "{log}");
    assert_eq!(log["deliveries"][0]["id"], got[0]["id"]);
    drop(serve);

    let all_logs: String = (1..=3)
        .map(|n| std::fs::read_to_string(logs.path().join(format!("{n}.log"))).unwrap())
        .collect();
    assert!(
        !all_logs.contains(SECRET) && !all_logs.contains(&SECRET[6..]),
        "the secret in a log"
    );
    // The logs cover what handles secrets: the configuration and both tries.
    assert!(all_logs.contains("webhook_secrets"), "{all_logs}");
    assert_eq!(all_logs.matches("webhook attempt").count(), 2, "{all_logs}");
}

/// On `ws` (Gradio 3.x) a job lives only as long as its websocket: a worker killed while holding
/// it loses the job at the Space, and the restart runs it again as a new attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_while_running_over_ws_runs_the_job_again_as_a_new_attempt() {
    let mirror = MirrorSpace::start_under(
        spaceport_testkit::Gradio::V3_50,
        "tests/peers/wonder3d_mirror/app.py",
        &[],
        &[],
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let port = spaceport_testkit::free_port();
    let env = [("SPACEPORT_SPACE_URL_WONDER3D", mirror.url())];
    let steps = "submit-space,poll-status,fetch-artifact";
    let start = || {
        Serve::start_with(
            data.path(),
            port,
            mirror.url(),
            steps,
            &env,
            Stdio::inherit(),
        )
    };
    let serve = start().await;
    // Seed 14 makes the mirror's run_pipeline take about 10 s, reporting progress. The image is
    // large enough that the job's handle lives in the blob store (the restart reads it there).
    let image = crate::spaces::noisy_png(256, 256);
    let body = json!({"pipeline": "wonder3d", "settings": {"seed": 14},
        "inputs": {"image": [{"filename": "o.png", "content_type": "image/png", "size": image.len()}]}});
    let created = serve.client.create_run(&body, None).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("o.png");
    std::fs::write(&path, &image).unwrap();
    serve
        .client
        .upload(&created["uploads"][0], &path)
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    wait_for(
        &serve.client,
        &id,
        Duration::from_secs(60),
        "running at the Space",
        |r| r["status"] == "running" && r["progress"]["stage"] == "running",
    )
    .await
    .unwrap();
    serve.kill9();
    let serve = start().await;
    let done = wait_terminal(&serve.client, &id, Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["backend"]["attempt"], 2, "{done}");
    assert_eq!(done["artifacts"].as_array().unwrap().len(), 12);
    let runs = mirror.output().matches("RUN_PIPELINE").count();
    assert_eq!(runs, 2, "the Space ran the job once per attempt");
}
