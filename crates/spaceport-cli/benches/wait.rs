//! Prints (never asserts) how fast a change reaches a client that waits for it, through the
//! embedded stack's HTTP API on 127.0.0.1: a `GET /v1/runs/{id}?wait=30` and a Server-Sent
//! Events stream of the run are parked, then the run is cancelled; measured from just before the
//! cancel is sent to when each answer arrives, beside the cancel request's own round trip (the
//! floor: the change is committed before the cancel answers).
//!
//!     cargo bench -p spaceport-cli --bench wait -- --runs 200
//!
//! Options (also as env, e.g. WAIT_RUNS=50): --runs N, --park-ms MS (how long the waiters get to
//! park before the change; nothing signals that a request is parked inside the server).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use spaceport_cli::config::Config;
use spaceport_cli::stack::{EmbeddedStack, StackOptions};
use spaceport_testkit::stats::{Summary, bench_opt, header_fine, machine_line, ms};

fn opt(name: &str, default: u64) -> Result<u64> {
    bench_opt("WAIT", name, default)
}

/// Reads a stream until an event of `kind` arrives; when it did.
async fn until_event(resp: reqwest::Response, kind: &str) -> Result<Instant> {
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let want = format!("event: {kind}");
    while let Some(chunk) = body.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk?));
        if buf.contains(&want) {
            return Ok(Instant::now());
        }
    }
    bail!("the stream ended without {kind}")
}

fn main() -> Result<()> {
    let runs = opt("runs", 200)? as usize;
    let park = Duration::from_millis(opt("park-ms", 30)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("{}", machine_line("wait"));
    rt.block_on(async move {
        let dir = tempfile::tempdir()?;
        let cfg = Config {
            data_dir: Some(dir.path().to_path_buf()),
            ..Config::default()
        };
        // API only: nothing but the bench changes the runs.
        let stack = EmbeddedStack::start(
            &cfg,
            StackOptions {
                bind: "127.0.0.1:0".into(),
                queues: vec![],
                ..StackOptions::default()
            },
        )
        .await?;
        let http = reqwest::Client::new();
        let base = stack.url.clone();
        let body = json!({"pipeline": "vggt", "start": "manual",
            "inputs": {"images": [{"filename": "a.png", "content_type": "image/png", "size": 10}]}});
        let (mut cancel, mut wait, mut sse) = (vec![], vec![], vec![]);
        for _ in 0..runs {
            let run: Value = http
                .post(format!("{base}/v1/runs"))
                .json(&body)
                .send()
                .await?
                .json()
                .await?;
            let id = run["id"].as_str().context("a run id")?.to_owned();
            let waiter = tokio::spawn({
                let (http, url) = (http.clone(), format!("{base}/v1/runs/{id}?wait=30"));
                async move {
                    let v: Value = http.get(url).send().await?.json().await?;
                    anyhow::Ok((Instant::now(), v))
                }
            });
            let stream = http
                .get(format!("{base}/v1/runs/{id}/events"))
                .header("Last-Event-ID", "1")
                .send()
                .await?;
            let streamer = tokio::spawn(until_event(stream, "run.cancelled"));
            tokio::time::sleep(park).await;
            let t0 = Instant::now();
            let answered = http
                .post(format!("{base}/v1/runs/{id}/cancel"))
                .send()
                .await?;
            let t1 = Instant::now();
            anyhow::ensure!(answered.status().is_success(), "cancel: {}", answered.status());
            let (t2, seen) = waiter.await??;
            anyhow::ensure!(seen["status"] == "cancelled", "the wait saw {seen}");
            let t3 = streamer.await??;
            cancel.push(ms(t1 - t0));
            wait.push(ms(t2 - t0));
            sse.push(ms(t3 - t0));
        }
        stack.shutdown().await;
        println!("\n== the change reaches a waiting client: {runs} runs, cancelled through the API (ms from sending the cancel)");
        println!("{}", header_fine("ms"));
        println!("{}", Summary::of(&cancel).row_fine("POST cancel answered (the floor)"));
        println!("{}", Summary::of(&wait).row_fine("GET ?wait=30 answered"));
        println!("{}", Summary::of(&sse).row_fine("SSE run.cancelled event received"));
        anyhow::Ok(())
    })
}
