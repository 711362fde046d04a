//! Load and crash together: many runs in flight through two `spaceport serve` processes sharing
//! one data dir, against a Space that answers at once (the testkit's `HostileSpace`, well
//! behaved: Gradio 5's `sse_v3` wire, no Python in the way, so the engine is what is loaded),
//! while one process or the other is `kill -9`ed at random points three times and restarted.
//! Half the runs go to the Space, the rest may be answered from the result cache (the same
//! image each time). Afterwards every run is terminal, every `succeeded` run has exactly one
//! file for its artifact, and no step message is left in any queue. (It found two workers
//! answering one run from the cache, the loser deleting the copies the winner had recorded.)

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use spaceport_testkit::{Elsewhere, HostileSpace, Misbehaviour, free_port};

use crate::common::*;

/// Runs in flight at once (`LOAD_RUNS` overrides, for a longer local soak).
fn runs() -> usize {
    std::env::var("LOAD_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

async fn start(data: &Path, port: u16, pipelines: &Path) -> Serve {
    Serve::start_with(
        data,
        port,
        "",
        "submit-space,poll-status,fetch-artifact",
        &[
            ("SPACEPORT_PIPELINES_DIR", pipelines.to_str().unwrap()),
            ("SPACEPORT_HUB_URL", ""),
            ("SPACEPORT_LOG", "warn"),
        ],
        Stdio::null(),
    )
    .await
}

/// Runs not yet terminal.
fn live_runs(data: &Path) -> i64 {
    let conn = rusqlite::Connection::open(data.join("spaceport.db")).unwrap();
    conn.query_row("SELECT COUNT(*) FROM runs WHERE terminal = 0", [], |r| {
        r.get(0)
    })
    .unwrap()
}

/// Messages left in the embedded queues, by queue.
fn queued_messages(data: &Path) -> Vec<(String, i64)> {
    let conn = rusqlite::Connection::open(data.join("spaceport.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT queue, COUNT(*) FROM queue_messages GROUP BY queue")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_runs_through_two_processes_survive_three_kills() {
    let n = runs();
    let elsewhere = Elsewhere::start().await.unwrap();
    let space = HostileSpace::start(Misbehaviour::None, &elsewhere.url)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (pipelines, data) = (dir.path().join("pipelines"), dir.path().join("data"));
    std::fs::create_dir_all(&pipelines).unwrap();
    // A job lost to a kill is submitted again: attempts enough for three kills.
    let file = space
        .pipeline("hostile", 600, 1 << 20)
        .replace("max_attempts = 1", "max_attempts = 5");
    std::fs::write(pipelines.join("hostile.toml"), file).unwrap();
    let ports = [free_port(), free_port()];
    let mut procs = [
        Some(start(&data, ports[0], &pipelines).await),
        Some(start(&data, ports[1], &pipelines).await),
    ];

    // Every run created with its input landed, held until started: then all are in flight.
    let image = vec![("a.png", png(16, 16, 3))];
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let client = &procs[i % 2].as_ref().unwrap().client;
        // Half go to the Space; the rest may be answered from the result cache.
        let extra = json!({"pipeline": "hostile", "start": "manual", "cache": i % 2 == 1});
        let run = create_and_upload(client, &image, json!({}), extra)
            .await
            .unwrap();
        ids.push(run["id"].as_str().unwrap().to_string());
    }
    // Started 32 at a time, while one process or the other is killed at random points three
    // times and comes back on the same data dir; a start the dying process took may or may
    // not have happened, so it is asked again (409: it had).
    let started = Instant::now();
    let http = reqwest::Client::new();
    let starts = futures::stream::iter(ids.iter().enumerate())
        .map(|(i, id)| {
            let url = format!("http://127.0.0.1:{}/v1/runs/{id}/start", ports[i % 2]);
            let http = http.clone();
            async move {
                for _ in 0..200 {
                    match http.post(&url).send().await {
                        Ok(r) if r.status().is_success() || r.status() == 409 => return,
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                panic!("{url} was not started within 10 s");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>();
    let kill = async {
        let mut live_at_kills = vec![];
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(100 + rand::random::<u64>() % 600)).await;
            let victim = rand::random::<usize>() % 2;
            procs[victim].take().unwrap().kill9();
            live_at_kills.push(live_runs(&data));
            procs[victim] = Some(start(&data, ports[victim], &pipelines).await);
        }
        live_at_kills
    };
    let (_, live_at_kills) = tokio::join!(starts, kill);
    let kills = live_at_kills.len();
    let created_s = started.elapsed().as_secs_f64();
    let client = procs[0].as_ref().unwrap().client.clone();
    let until = Instant::now() + Duration::from_secs(300);
    let mut statuses: Vec<Value> = vec![];
    for id in &ids {
        let left = until.saturating_duration_since(Instant::now());
        statuses.push(wait_terminal(&client, id, left).await.unwrap());
    }
    let done_s = started.elapsed().as_secs_f64();
    let succeeded: Vec<&Value> = statuses
        .iter()
        .filter(|r| r["status"] == "succeeded")
        .collect();
    let again = statuses
        .iter()
        .filter(|r| r["backend"]["attempt"].as_u64() > Some(1))
        .count();
    let cached = statuses.iter().filter(|r| r["cache_hit"] == true).count();
    eprintln!(
        "load: {n} runs started in {created_s:.1} s, all terminal at {done_s:.1} s \
         ({:.0} runs/s), {} succeeded, {kills} kills with {live_at_kills:?} runs live, \
         {again} submitted again after a kill, {cached} answered from the cache",
        n as f64 / done_s,
        succeeded.len()
    );
    assert_eq!(kills, 3);
    assert_eq!(
        succeeded.len(),
        n,
        "runs that did not succeed: {:#?}",
        statuses
            .iter()
            .filter(|r| r["status"] != "succeeded")
            .take(5)
            .collect::<Vec<_>>()
    );
    // Exactly one object per artifact of a succeeded run, and nothing else under its artifacts.
    let blobs = stored_keys(&data);
    for run in &succeeded {
        let id = run["id"].as_str().unwrap();
        let mine = blobs
            .iter()
            .filter(|p| p.contains(id) && p.contains("artifacts"))
            .count();
        assert_eq!(mine, 1, "{id}: {mine} artifact objects");
        assert_eq!(run["artifacts"].as_array().unwrap().len(), 1, "{run}");
    }
    // No message left: duplicates sent around the kills are received and dropped.
    let drained = Instant::now() + Duration::from_secs(60);
    loop {
        let left = queued_messages(&data);
        if left.iter().all(|(_, c)| *c == 0) {
            break;
        }
        assert!(
            Instant::now() < drained,
            "messages left in the queues: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
