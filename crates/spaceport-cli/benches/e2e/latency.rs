//! Part (a) of the e2e bench: latency of sequential `vggt` runs against the mirror, ours beside
//! a warm `gradio_client`, and our overhead outside the Space calls.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use spaceport_cli::client::ApiClient;
use spaceport_cli::config::{Config, PipelineOverride};
use spaceport_cli::stack::{EmbeddedStack, StackOptions};
use spaceport_testkit::stats::{Summary, header, ms};
use spaceport_testkit::{MirrorSpace, SpaceFront, png, repo_root, venv_python};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::Opts;

// ---------------------------------------------------------------------------------------------
// Part (a): latency against the mirror, ours beside gradio_client
// ---------------------------------------------------------------------------------------------

/// One run through our API, with where its time went.
struct OurRun {
    total: f64,
    create_upload: f64,
    wait: f64,
    download: f64,
    gets: usize,
    /// From the stored timestamps: queued → submitting, submitting → succeeded.
    queued_to_started: f64,
    started_to_finished: f64,
    /// From the run's `finished_at` to the client holding the `succeeded` answer.
    finished_to_seen: f64,
    /// When the run began and ended on the client's clock (to find the Space's share).
    window: (Instant, Instant),
}

/// How long, within `window`, at least one of the `spans` was open (their union, clipped).
fn open_within(window: (Instant, Instant), spans: &[(Instant, Instant)]) -> Duration {
    let mut parts: Vec<(Instant, Instant)> = spans
        .iter()
        .map(|&(a, b)| (a.max(window.0), b.min(window.1)))
        .filter(|(a, b)| a < b)
        .collect();
    parts.sort();
    let mut total = Duration::ZERO;
    let mut current: Option<(Instant, Instant)> = None;
    for (a, b) in parts {
        current = match current {
            Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += cb - ca;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    if let Some((ca, cb)) = current {
        total += cb - ca;
    }
    total
}

fn stamp(run: &Value, key: &str) -> Result<DateTime<Utc>> {
    let s = run[key]
        .as_str()
        .with_context(|| format!("{key} missing: {run}"))?;
    Ok(DateTime::parse_from_rfc3339(s)?.with_timezone(&Utc))
}

fn between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_microseconds().unwrap_or(0) as f64 / 1000.0
}

async fn our_run(
    client: &ApiClient,
    images: &[(String, PathBuf, u64)],
    wait_s: f64,
    out: &Path,
) -> Result<OurRun> {
    let t0 = Instant::now();
    let inputs: Vec<Value> = images
        .iter()
        .map(|(name, _, size)| json!({"filename": name, "content_type": "image/png", "size": size}))
        .collect();
    let body = json!({"pipeline": "vggt", "inputs": {"images": inputs}, "cache": false});
    let run = client.create_run(&body, None).await?;
    let id = run["id"].as_str().context("a run id")?.to_string();
    // As `spaceport run` sends them: together (`ApiClient::upload_all`).
    let mut files = vec![];
    for up in run["uploads"].as_array().context("uploads")? {
        let i = up["index"].as_u64().context("upload index")? as usize;
        files.push((up.clone(), images[i].1.clone()));
    }
    client.upload_all(&files).await?;
    let t1 = Instant::now();
    let mut gets = 0;
    let done = loop {
        let run = client.get_run(&id, Some(wait_s)).await?;
        gets += 1;
        match run["status"].as_str() {
            Some("succeeded") => break run,
            Some("failed" | "cancelled" | "expired") => bail!("run {id} did not succeed: {run}"),
            _ => {}
        }
    };
    let seen = Utc::now();
    let t2 = Instant::now();
    let path = client
        .download_artifact(&id, "scene", "scene.glb", out)
        .await?;
    let t3 = Instant::now();
    let size = tokio::fs::metadata(&path).await?.len();
    if size == 0 {
        bail!("run {id} gave an empty GLB");
    }
    let (queued, started, finished) = (
        stamp(&done, "queued_at")?,
        stamp(&done, "started_at")?,
        stamp(&done, "finished_at")?,
    );
    Ok(OurRun {
        total: ms(t3 - t0),
        create_upload: ms(t1 - t0),
        wait: ms(t2 - t1),
        download: ms(t3 - t2),
        gets,
        queued_to_started: between(queued, started),
        started_to_finished: between(started, finished),
        finished_to_seen: between(finished, seen),
        window: (t0, t3),
    })
}

/// The warm Python baseline, one run per `run` line.
struct GradioClient {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl GradioClient {
    async fn start(url: &str, images: &[(String, PathBuf, u64)]) -> Result<GradioClient> {
        let script = repo_root().join("tests/bench/gradio_client_vggt.py");
        let mut cmd = tokio::process::Command::new(venv_python()?);
        cmd.arg(&script)
            .arg(url)
            .args(images.iter().map(|(_, p, _)| p))
            .env("GRADIO_ANALYTICS_ENABLED", "False")
            .env("HF_HUB_OFFLINE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", script.display()))?;
        let stdin = child.stdin.take().context("the helper's stdin")?;
        let stdout = child.stdout.take().context("the helper's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .context("gradio_client did not connect within 120 s")??;
        if ready.as_deref() != Some("READY") {
            bail!("the gradio_client helper said {ready:?} instead of READY");
        }
        Ok(GradioClient {
            child,
            stdin,
            lines,
        })
    }

    /// One run; its duration as measured inside the helper (pipe round trip excluded).
    async fn run(&mut self) -> Result<f64> {
        self.stdin.write_all(b"run\n").await?;
        self.stdin.flush().await?;
        let line = tokio::time::timeout(Duration::from_secs(120), self.lines.next_line())
            .await
            .context("a gradio_client run took over 120 s")??
            .context("the gradio_client helper exited")?;
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some("MS"), Some(v)) => Ok(v.parse()?),
            _ => bail!("the gradio_client helper said {line:?}"),
        }
    }

    async fn stop(mut self) {
        drop(self.stdin);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

pub(crate) async fn part_a(opts: &Opts) -> Result<()> {
    println!(
        "\n== (a) end-to-end latency: sequential vggt runs, 2 PNGs in, GLB out, against the vggt mirror (MIRROR_INSTANT=1)"
    );
    let mirror =
        tokio::task::spawn_blocking(|| MirrorSpace::start_with_env(&[("MIRROR_INSTANT", "1")]))
            .await??;
    // Both clients reach the mirror through a recording proxy (the testkit's Hugging Face
    // front stand-in): the time our Space calls were open is what it saw, and the hop it adds
    // is paid by both.
    let front = SpaceFront::start(mirror.url()).await?;
    let work = tempfile::tempdir()?;
    let images: Vec<(String, PathBuf, u64)> =
        [("a.png", png(40, 30, 0)), ("b.png", png(43, 30, 40))]
            .into_iter()
            .map(|(name, bytes)| {
                let p = work.path().join(name);
                std::fs::write(&p, &bytes).expect("writing a fixture");
                (name.to_string(), p, bytes.len() as u64)
            })
            .collect();

    let data = work.path().join("data");
    let mut cfg = Config {
        data_dir: Some(data),
        ..Config::default()
    };
    cfg.pipelines.insert(
        "vggt".into(),
        PipelineOverride {
            space_url: Some(front.url.clone()),
            model: None,
            ..PipelineOverride::default()
        },
    );
    let mut stack_opts = StackOptions {
        bind: "127.0.0.1:0".into(),
        ..StackOptions::default()
    };
    stack_opts.runner.idle_poll = opts.idle_poll;
    let stack = EmbeddedStack::start(&cfg, stack_opts.clone()).await?;
    let client = ApiClient::new(&stack.url);
    let mut py = GradioClient::start(&front.url, &images).await?;
    let out = work.path().join("out");
    println!(
        "   mirror {} behind a recording proxy {}; embedded stack {} on a temp data dir; Runner idle_poll = {:?}, concurrency = {}; client polls GET /v1/runs/{{id}}?wait={}",
        mirror.url(),
        front.url,
        stack.url,
        stack_opts.runner.idle_poll,
        stack_opts.runner.concurrency,
        opts.wait_s
    );
    println!(
        "   {} warm-up run(s) each, then {} measured runs each, interleaved (ours first on even i, gradio_client first on odd i)",
        opts.warmup, opts.runs
    );

    for _ in 0..opts.warmup {
        our_run(&client, &images, opts.wait_s, &out).await?;
        py.run().await?;
    }
    let mut ours = Vec::with_capacity(opts.runs);
    let mut theirs = Vec::with_capacity(opts.runs);
    for i in 0..opts.runs {
        if i % 2 == 0 {
            ours.push(our_run(&client, &images, opts.wait_s, &out).await?);
            theirs.push(py.run().await?);
        } else {
            theirs.push(py.run().await?);
            ours.push(our_run(&client, &images, opts.wait_s, &out).await?);
        }
    }
    py.stop().await;

    // What the Gradio client reads before each job and ours keeps (config_cache.rs): GET /config.
    let http = reqwest::Client::new();
    let mut config_ms = vec![];
    for _ in 0..10 {
        let t = Instant::now();
        let body = http
            .get(format!("{}/config", mirror.url()))
            .send()
            .await?
            .bytes()
            .await?;
        config_ms.push(ms(t.elapsed()));
        if body.is_empty() {
            bail!("the mirror's /config was empty");
        }
    }

    let o = Summary::of(&ours.iter().map(|r| r.total).collect::<Vec<_>>());
    let g = Summary::of(&theirs);
    println!("{}", header("total per run (ms)"));
    println!("{}", o.row("spaceport embedded stack (HTTP)"));
    println!("{}", g.row("gradio_client 2.7.2 (warm)"));
    println!(
        "  {:<34} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
        "ratio ours / gradio_client",
        o.p50 / g.p50,
        o.p95 / g.p95,
        o.mean / g.mean,
        o.min / g.min,
        o.max / g.max
    );
    // Our overhead: a run's time outside its calls to the Space (their union, as the proxy saw
    // them open, within the run's window on the client's clock).
    let spans = front.open_spans();
    let in_space: Vec<f64> = ours
        .iter()
        .map(|r| ms(open_within(r.window, &spans)))
        .collect();
    let outside: Vec<f64> = ours
        .iter()
        .zip(&in_space)
        .map(|(r, s)| r.total - s)
        .collect();
    println!(
        "{}",
        Summary::of(&in_space).row("  of ours: inside Space calls")
    );
    println!(
        "{}",
        Summary::of(&outside).row("  of ours: outside them (overhead)")
    );
    println!("   where our time went:");
    println!("{}", header("client side (ms)"));
    let col = |f: fn(&OurRun) -> f64| Summary::of(&ours.iter().map(f).collect::<Vec<_>>());
    println!("{}", col(|r| r.create_upload).row("POST /runs + 2 uploads"));
    println!("{}", col(|r| r.wait).row("GET ?wait= until succeeded"));
    println!("{}", col(|r| r.download).row("GET artifact (GLB)"));
    println!("{}", header("server side, stored stamps (ms)"));
    println!(
        "{}",
        col(|r| r.queued_to_started).row("queued -> submitting (queue hop)")
    );
    println!(
        "{}",
        col(|r| r.started_to_finished).row("submitting -> succeeded")
    );
    println!(
        "{}",
        col(|r| r.finished_to_seen).row("succeeded -> client sees it")
    );
    println!(
        "  GETs per run: mean {:.2}; one mirror GET /config (read by gradio_client for each job, cached by us): {}",
        ours.iter().map(|r| r.gets as f64).sum::<f64>() / ours.len().max(1) as f64,
        {
            let c = Summary::of(&config_ms);
            format!("p50 {:.1} ms, max {:.1} ms", c.p50, c.max)
        }
    );
    stack.shutdown().await;
    drop(mirror);
    Ok(())
}
