//! Prints (never asserts) webhook delivery figures through the embedded stack on 127.0.0.1,
//! to an in-process receiver (axum) that answers 200 and notes when each message arrived:
//!
//! (a) latency from a run's terminal state to its webhook's 2xx: the run is cancelled through
//!     the API (the change is committed before the cancel answers), measured from just before
//!     the cancel is sent to the receiver's answer, beside the cancel's own round trip;
//! (b) deliveries/s sustained: K runs with webhooks cancelled together (32 cancels in flight),
//!     from the first cancel to the last delivery, beside the raw limit: K signed POSTs sent
//!     straight to the same receiver by the same sender, as many at once as the runner's
//!     concurrency.
//!
//!     cargo bench -p spaceport-cli --bench webhooks -- --runs 200 --k 1000
//!
//! Options (also as env, e.g. HOOKS_K=200): --runs N (part a), --k N (part b).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use futures::StreamExt;
use serde_json::{Value, json};
use spaceport_cli::config::{Config, Secret};
use spaceport_cli::stack::{EmbeddedStack, StackOptions};
use spaceport_core::outbound::{Allow, OutboundGuard};
use spaceport_core::ports::WebhookSender;
use spaceport_steps::runner::RunnerConfig;
use spaceport_testkit::stats::{Summary, bench_opt, header_fine, machine_line, ms};
use spaceport_webhooks::{HttpSender, SigningSecret};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// How long the bench waits for the deliveries of one part.
const PATIENCE: Duration = Duration::from_secs(300);

/// When each message reached the receiver, by the run (or raw message) it names.
#[derive(Clone, Default)]
struct Arrivals {
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    changed: Arc<tokio::sync::Notify>,
}

impl Arrivals {
    async fn record(State(a): State<Arrivals>, body: Bytes) -> &'static str {
        let at = Instant::now();
        let key = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["data"]["id"].as_str().map(str::to_owned))
            .unwrap_or_default();
        a.seen.lock().unwrap().entry(key).or_insert(at);
        a.changed.notify_waiters();
        "ok"
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Waits until `n` distinct messages arrived; when the last did.
    async fn until(&self, n: usize) -> Result<Instant> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let wake = self.changed.notified();
            if self.count() >= n {
                return Ok(self.seen.lock().unwrap().values().copied().max().unwrap());
            }
            ensure!(
                Instant::now() < deadline,
                "{} of {n} messages within {PATIENCE:?}",
                self.count()
            );
            let _ = tokio::time::timeout(Duration::from_millis(200), wake).await;
        }
    }

    /// When the message for `key` arrived, waiting for it.
    async fn of(&self, key: &str) -> Result<Instant> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let wake = self.changed.notified();
            if let Some(at) = self.seen.lock().unwrap().get(key) {
                return Ok(*at);
            }
            ensure!(Instant::now() < deadline, "no message for {key}");
            let _ = tokio::time::timeout(Duration::from_millis(200), wake).await;
        }
    }
}

/// Starts the receiver; its base URL.
async fn receiver(arrivals: Arrivals) -> Result<String> {
    let app = Router::new()
        .route("/hook", post(Arrivals::record))
        .with_state(arrivals);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

async fn create(http: &reqwest::Client, base: &str, hook: &str) -> Result<String> {
    let body = json!({"pipeline": "vggt", "webhook": {"url": hook, "events": ["run.cancelled"]},
        "inputs": {"images": [{"filename": "a.png", "content_type": "image/png", "size": 10}]}});
    let run: Value = http
        .post(format!("{base}/v1/runs"))
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    Ok(run["id"].as_str().context("a run id")?.to_owned())
}

async fn cancel(http: &reqwest::Client, base: &str, id: &str) -> Result<()> {
    let r = http
        .post(format!("{base}/v1/runs/{id}/cancel"))
        .send()
        .await?;
    ensure!(r.status().is_success(), "cancel: {}", r.status());
    Ok(())
}

fn main() -> Result<()> {
    let runs = bench_opt("HOOKS", "runs", 200)? as usize;
    let k = bench_opt("HOOKS", "k", 1000)? as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("{}", machine_line("webhook"));
    rt.block_on(async move {
        let arrivals = Arrivals::default();
        let hook = format!("{}/hook", receiver(arrivals.clone()).await?);
        let dir = tempfile::tempdir()?;
        let cfg = Config {
            data_dir: Some(dir.path().to_path_buf()),
            outbound_allow: vec!["127.0.0.1".into()],
            webhook_secrets: vec![Secret::new(SECRET)],
            ..Config::default()
        };
        let stack = EmbeddedStack::start(
            &cfg,
            StackOptions {
                bind: "127.0.0.1:0".into(),
                ..StackOptions::default()
            },
        )
        .await?;
        let http = reqwest::Client::new();
        let base = stack.url.clone();

        // (a) one run at a time.
        let (mut floor, mut latency) = (vec![], vec![]);
        for _ in 0..runs {
            let id = create(&http, &base, &hook).await?;
            let t0 = Instant::now();
            cancel(&http, &base, &id).await?;
            let t1 = Instant::now();
            let t2 = arrivals.of(&id).await?;
            floor.push(ms(t1 - t0));
            latency.push(ms(t2 - t0));
        }
        println!(
            "\n== (a) terminal state → the receiver's 2xx: {runs} runs, one at a time, cancelled through the API (ms from sending the cancel)"
        );
        println!("{}", header_fine("ms"));
        println!("{}", Summary::of(&floor).row_fine("POST cancel answered (the floor)"));
        println!("{}", Summary::of(&latency).row_fine("webhook run.cancelled received"));

        // (b) K at once.
        let mut ids = Vec::with_capacity(k);
        for _ in 0..k {
            ids.push(create(&http, &base, &hook).await?);
        }
        let before = arrivals.count();
        let t0 = Instant::now();
        let cancels = futures::stream::iter(ids.iter())
            .map(|id| cancel(&http, &base, id))
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
        for c in cancels {
            c?;
        }
        let cancelled = t0.elapsed();
        let last = arrivals.until(before + k).await?;
        let ours = last - t0;
        stack.shutdown().await;

        // The raw limit: the same number of signed POSTs, straight from the sender.
        let sender = Arc::new(HttpSender::new(
            OutboundGuard::new(vec![Allow::parse("127.0.0.1").map_err(anyhow::Error::msg)?]),
            Duration::from_secs(15),
            vec![SigningSecret::parse(SECRET)?],
        ));
        let concurrency = RunnerConfig::default().concurrency;
        let before = arrivals.count();
        let t0 = Instant::now();
        let outcomes = futures::stream::iter(0..k)
            .map(|i| {
                let (sender, hook) = (sender.clone(), hook.clone());
                async move {
                    let body = json!({"type": "run.cancelled", "data": {"id": format!("raw-{i}")}})
                        .to_string();
                    sender
                        .send("bench", &hook, &format!("msg_raw{i}"), &body)
                        .await
                }
            })
            .buffer_unordered(concurrency)
            .collect::<Vec<_>>()
            .await;
        ensure!(
            outcomes.iter().all(|o| o.status == Some(200)),
            "a raw POST failed"
        );
        arrivals.until(before + k).await?;
        let raw = t0.elapsed();

        let rate = |d: Duration| k as f64 / d.as_secs_f64();
        println!(
            "\n== (b) sustained: {k} runs with webhooks cancelled together (32 cancels in flight; runner concurrency {concurrency})"
        );
        println!(
            "{:<52} {:>10.0} /s  ({:.2} s; the cancels took {:.2} s)",
            "webhooks delivered through notify-webhook",
            rate(ours),
            ours.as_secs_f64(),
            cancelled.as_secs_f64()
        );
        println!(
            "{:<52} {:>10.0} /s  ({:.2} s)",
            "raw signed POSTs, same sender and receiver",
            rate(raw),
            raw.as_secs_f64()
        );
        println!(
            "{:<52} {:>10.2}",
            "ours / raw",
            rate(ours) / rate(raw)
        );
        anyhow::Ok(())
    })
}
