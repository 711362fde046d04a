//! Prints (never asserts) what a run costs end to end on this machine, in two parts:
//! (a) latency of sequential `vggt` runs through the embedded stack's HTTP API against the vggt
//!     mirror Space (MIRROR_INSTANT=1), interleaved with a warm Python `gradio_client` making the
//!     same two calls against the same mirror (tests/bench/gradio_client_vggt.py);
//! (b) throughput of concurrent runs through the real steps, Runner, SQLite store and queues and
//!     directory blob store, with the Space replaced by `InstantSpace` (a benchmark harness),
//!     beside the raw SQLite commit rate and the store/queue writes one run costs.
//!
//!     cargo bench -p spaceport-cli --bench e2e                              # both parts
//!     cargo bench -p spaceport-cli --bench e2e -- --part a --runs 50 --warmup 2
//!     cargo bench -p spaceport-cli --bench e2e -- --part b --k 200 --concurrency 8
//!
//! Options (also as env, e.g. E2E_RUNS=20): --part a|b|all, --runs N, --warmup N, --k K,
//! --concurrency C (Runner, per queue), --idle-poll-ms MS (Runner), --wait-s S (`GET ?wait=`),
//! --commits M (raw SQLite loop). Part (a) needs the venv (`bash scripts/test-env.sh`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{Value, json};
use spaceport_cli::client::ApiClient;
use spaceport_cli::config::{Config, PipelineOverride};
use spaceport_cli::stack::{EmbeddedStack, StackOptions};
use spaceport_core::ports::{ListQuery, RunStore, SystemClock};
use spaceport_core::{CreateRunRequest, DeclaredInput, Run, RunId, Status};
use spaceport_local::LocalStack;
use spaceport_steps::runner::{LOCAL_QUEUES, Runner, RunnerConfig};
use spaceport_steps::{Ports, Steps, StepsConfig};
use spaceport_testkit::fakes::{CountingBlobs, CountingQueue, CountingStore, Counts, InstantSpace};
use spaceport_testkit::stats::{Summary, header, machine_line, ms};
use spaceport_testkit::{MirrorSpace, SpaceFront, png, repo_root, venv_python};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Opts {
    part_a: bool,
    part_b: bool,
    runs: usize,
    warmup: usize,
    k: usize,
    concurrency: usize,
    idle_poll: Duration,
    wait_s: f64,
    commits: usize,
}

impl Opts {
    fn parse() -> Result<Opts> {
        let mut given: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in std::env::vars() {
            if let Some(name) = k.strip_prefix("E2E_") {
                given.insert(name.to_ascii_lowercase().replace('_', "-"), v);
            }
        }
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            // `cargo bench` passes `--bench`; libtest filters may follow. Ignore what is not ours.
            let Some(name) = a.strip_prefix("--") else {
                continue;
            };
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (name.to_string(), None),
            };
            if !KNOWN.contains(&name.as_str()) {
                continue;
            }
            let value = match value {
                Some(v) => v,
                None => args
                    .next()
                    .with_context(|| format!("--{name} needs a value"))?,
            };
            given.insert(name, value);
        }
        let num = |k: &str, default: f64| -> Result<f64> {
            given.get(k).map_or(Ok(default), |v| {
                v.parse::<f64>()
                    .with_context(|| format!("--{k} {v:?} is not a number"))
            })
        };
        let part = given.get("part").map_or("all", String::as_str);
        if !matches!(part, "a" | "b" | "all") {
            bail!("--part is a, b or all, not {part:?}");
        }
        Ok(Opts {
            part_a: part != "b",
            part_b: part != "a",
            runs: num("runs", 50.0)? as usize,
            warmup: num("warmup", 2.0)? as usize,
            k: num("k", 200.0)? as usize,
            concurrency: num("concurrency", RunnerConfig::default().concurrency as f64)? as usize,
            idle_poll: Duration::from_secs_f64(num("idle-poll-ms", 5.0)? / 1000.0),
            wait_s: num("wait-s", 30.0)?,
            commits: num("commits", 2000.0)? as usize,
        })
    }
}

const KNOWN: &[&str] = &[
    "part",
    "runs",
    "warmup",
    "k",
    "concurrency",
    "idle-poll-ms",
    "wait-s",
    "commits",
];

// ---------------------------------------------------------------------------------------------
// Figures
// ---------------------------------------------------------------------------------------------

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
    for up in run["uploads"].as_array().context("uploads")? {
        let i = up["index"].as_u64().context("upload index")? as usize;
        client.upload(up, &images[i].1).await?;
    }
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

async fn part_a(opts: &Opts) -> Result<()> {
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

    // What the Gradio client does before each job and ours does not cache: GET /config.
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

// ---------------------------------------------------------------------------------------------
// Part (b): throughput with an instant backend; counting decorators over the real adapters
// ---------------------------------------------------------------------------------------------

/// Creates a `vggt` run, writes its two inputs with `blobs.put` and records them landed (what
/// the HTTP upload route and the object-created event do), which queues it.
async fn drive_one(steps: &Steps, images: &[(String, Bytes)]) -> Result<RunId> {
    let req = CreateRunRequest {
        pipeline: "vggt".into(),
        inputs: [(
            "images".to_string(),
            images
                .iter()
                .map(|(name, bytes)| DeclaredInput {
                    filename: Some(name.clone()),
                    content_type: Some("image/png".into()),
                    size: Some(bytes.len() as u64),
                    url: None,
                })
                .collect(),
        )]
        .into(),
        // The bench measures the engine and the Space, not answers from the result cache.
        cache: Some(false),
        ..CreateRunRequest::default()
    };
    let api = steps.accept();
    let created = api.create(&req, None).await?;
    let run = created.run;
    for (i, (_, bytes)) in images.iter().enumerate() {
        let key = Run::input_key(&run.id, "images", i);
        let body = futures::stream::iter([Ok(bytes.clone())]).boxed();
        let meta = steps.ports.blobs.put(&key, "image/png", body).await?;
        api.input_landed(&key, &meta).await?;
    }
    Ok(run.id)
}

/// Drives `k` runs at once; returns (time until all were queued, time until all ended).
async fn drive(
    steps: &Steps,
    counts: &Counts,
    images: &[(String, Bytes)],
    k: usize,
) -> Result<(Duration, Duration)> {
    let ended_before =
        counts.succeeded.load(Ordering::Relaxed) + counts.ended_otherwise.load(Ordering::Relaxed);
    let target = ended_before + k as u64;
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..k {
        let steps = steps.clone();
        let images = images.to_vec();
        tasks.spawn(async move { drive_one(&steps, &images).await });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let queued = t0.elapsed();
    let limit = Instant::now() + Duration::from_secs(600);
    loop {
        let notified = counts.ended.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let ended = counts.succeeded.load(Ordering::Relaxed)
            + counts.ended_otherwise.load(Ordering::Relaxed);
        if ended >= target {
            break;
        }
        if Instant::now() > limit {
            bail!(
                "only {} of {k} runs ended within 600 s",
                ended - ended_before
            );
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
    }
    Ok((queued, t0.elapsed()))
}

/// The row size of the raw commit loop before the runs (about a finished `vggt` run's stored JSON;
/// the loop after the runs measures a real one).
const RUN_JSON_BYTES: usize = 1650;

/// Single-row INSERT transactions on a fresh file with the store's pragmas; commits per second.
fn raw_commit_rate(path: &Path, commits: usize, body_len: usize) -> Result<(f64, Summary)> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(spaceport_local::BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("SQLite refused WAL mode ({mode})");
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")?;
    let body = "x".repeat(body_len);
    let mut lat = Vec::with_capacity(commits);
    let t0 = Instant::now();
    for _ in 0..commits {
        let t = Instant::now();
        conn.execute_batch("BEGIN IMMEDIATE")?;
        conn.execute("INSERT INTO t (body) VALUES (?1)", [&body])?;
        conn.execute_batch("COMMIT")?;
        lat.push(ms(t.elapsed()));
    }
    let rate = commits as f64 / t0.elapsed().as_secs_f64();
    Ok((rate, Summary::of(&lat)))
}

async fn part_b(opts: &Opts) -> Result<()> {
    println!(
        "\n== (b) throughput: {} vggt runs at once through Steps + Runner + SQLite store/queues + directory blobs, Space = InstantSpace (bench harness)",
        opts.k
    );
    let work = tempfile::tempdir()?;
    let data = work.path().join("data");
    let local = {
        let d = data.clone();
        tokio::task::spawn_blocking(move || LocalStack::open(&d, "http://127.0.0.1:9")).await??
    };
    let counts = Arc::new(Counts::default());
    let ports = Ports {
        store: Arc::new(CountingStore {
            inner: local.store.clone(),
            counts: counts.clone(),
        }),
        queue: Arc::new(CountingQueue {
            inner: local.queue.clone(),
            counts: counts.clone(),
        }),
        blobs: Arc::new(CountingBlobs {
            inner: local.blobs.clone(),
            counts: counts.clone(),
        }),
        space: Arc::new(InstantSpace::new()),
        model: None,
        clock: Arc::new(SystemClock),
        deliveries: local.store.clone(),
        sender: Arc::new(spaceport_testkit::fakes::NoWebhooks),
        sink: None,
        fetcher: None,
    };
    let steps = Steps::new(
        Arc::new(Config::default().pipelines()?),
        ports,
        StepsConfig::default(),
    );
    let runner_cfg = RunnerConfig {
        concurrency: opts.concurrency,
        idle_poll: opts.idle_poll,
        ..RunnerConfig::default()
    };
    println!(
        "   data dir {} ; Runner idle_poll = {:?}, concurrency = {} per queue; runs created with Steps::create, inputs written with blobs.put + Steps::input_landed (no HTTP)",
        data.display(),
        runner_cfg.idle_poll,
        runner_cfg.concurrency
    );
    let runner = Runner::start(steps.clone(), &LOCAL_QUEUES, runner_cfg);
    let images: Vec<(String, Bytes)> = vec![
        ("a.png".into(), png(40, 30, 0).into()),
        ("b.png".into(), png(43, 30, 40).into()),
    ];

    // The raw commit rate before and after the runs: fsync latency on a shared disk drifts.
    let raw_dir = work.path().to_path_buf();
    let commits = opts.commits;
    let raw_before = tokio::task::spawn_blocking(move || {
        raw_commit_rate(&raw_dir.join("raw-before.db"), commits, RUN_JSON_BYTES)
    })
    .await??;

    let warm = 10.min(opts.k.max(1));
    drive(&steps, &counts, &images, warm).await?;
    let before = counts.snapshot();
    let writer_before = local.db.writer_stats();
    let (queued, wall) = drive(&steps, &counts, &images, opts.k).await?;
    let after = counts.snapshot();
    let writer_after = local.db.writer_stats();
    let batches = writer_after.commits - writer_before.commits;
    let writer_busy_ms = (writer_after.busy_us - writer_before.busy_us) as f64 / 1000.0;
    let writer_commit_ms = (writer_after.commit_us - writer_before.commit_us) as f64 / 1000.0;
    let writer_writes = writer_after.writes - writer_before.writes;
    runner.shutdown().await;
    let d: [u64; 14] = std::array::from_fn(|i| after[i] - before[i]);
    let [
        inserts,
        updates,
        conflicts,
        gets,
        other_reads,
        sends,
        recv_empty,
        recv_nonempty,
        received,
        deletes,
        visibility,
        puts,
        succeeded,
        ended_otherwise,
    ] = d;
    let k = opts.k as f64;
    let runs_per_s = succeeded as f64 / wall.as_secs_f64();

    // The size of a finished run's stored JSON, for the raw commit loop's row.
    let page = local
        .store
        .list(&ListQuery {
            status: Some(Status::Succeeded),
            limit: 1,
            ..ListQuery::default()
        })
        .await?;
    let body_len = page
        .runs
        .first()
        .map(|r| serde_json::to_string(r).map(|s| s.len()))
        .transpose()?
        .unwrap_or(2048);
    let raw_path = work.path().join("raw-after.db");
    let raw_after =
        tokio::task::spawn_blocking(move || raw_commit_rate(&raw_path, commits, body_len))
            .await??;
    let commit_rate = (raw_before.0 + raw_after.0) / 2.0;

    let store_commits = inserts + updates;
    let queue_commits = sends + recv_nonempty + deletes + visibility;
    let writes_per_run = (store_commits + queue_commits) as f64 / k;
    // Transactions the writer thread committed: concurrent writes (small blobs included) share one.
    let commits_per_run = batches as f64 / k;
    println!(
        "   {succeeded} succeeded, {ended_otherwise} ended otherwise; all {} created+queued after {:.0} ms, all ended after {:.0} ms",
        opts.k,
        ms(queued),
        ms(wall)
    );
    println!(
        "   throughput:                  {runs_per_s:>8.1} runs/s  ({:.2} ms of wall clock per run)",
        ms(wall) / k
    );
    for (when, (rate, lat), len) in [
        ("before", raw_before, RUN_JSON_BYTES),
        ("after", raw_after, body_len),
    ] {
        println!(
            "   raw SQLite commits ({when:>6}): {rate:>8.0} commits/s  (single-row INSERT txns, {len} B row, WAL + synchronous=FULL, same disk; commit p50 {:.2} ms, p95 {:.2} ms, n={})",
            lat.p50, lat.p95, lat.n
        );
    }
    println!(
        "   writes per run (counted by decorators around the real adapters; each is a savepoint in a group commit):"
    );
    println!(
        "     store:  {:.2} inserts + {:.2} updates = {:.2} writes   ({:.2} version conflicts, {:.2} gets, {:.2} list/overdue reads)",
        inserts as f64 / k,
        updates as f64 / k,
        store_commits as f64 / k,
        conflicts as f64 / k,
        gets as f64 / k,
        other_reads as f64 / k
    );
    println!(
        "     queue:  {:.2} sends + {:.2} non-empty receives ({:.2} msgs each) + {:.2} deletes + {:.2} visibility changes = {:.2} writes   ({:.2} empty receives)",
        sends as f64 / k,
        recv_nonempty as f64 / k,
        received as f64 / recv_nonempty.max(1) as f64,
        deletes as f64 / k,
        visibility as f64 / k,
        queue_commits as f64 / k,
        recv_empty as f64 / k
    );
    println!(
        "     blobs:  {:.2} puts (up to 128 KiB: a row in the next group commit; larger: a file, fsynced with its folder)",
        puts as f64 / k
    );
    println!(
        "   store+queue writes per run:  {writes_per_run:>8.2}  -> one commit each would cap at {:.1} runs/s (mean raw rate)",
        commit_rate / writes_per_run
    );
    println!(
        "   SQLite commits per run:      {commits_per_run:>8.2}  ({:.1} writes per commit, blobs included) -> commit-bound ceiling {:.1} runs/s; measured runs/s is {:.0}% of it",
        (store_commits + queue_commits + puts) as f64 / batches.max(1) as f64,
        commit_rate / commits_per_run.max(f64::MIN_POSITIVE),
        100.0 * runs_per_s * commits_per_run / commit_rate
    );
    println!(
        "   the writer thread:           busy {:.0} ms of the {:.0} ms ({:.0}%): {:.0} ms running {writer_writes} writes ({:.1} us each), {:.0} ms in COMMIT ({:.2} ms each: WAL frames + fsync)",
        writer_busy_ms,
        ms(wall),
        100.0 * writer_busy_ms / ms(wall),
        writer_busy_ms - writer_commit_ms,
        1000.0 * (writer_busy_ms - writer_commit_ms) / writer_writes.max(1) as f64,
        writer_commit_ms,
        writer_commit_ms / batches.max(1) as f64
    );
    println!(
        "   runs/s vs commits/s:         1 : {:.1}  (runs/s = {:.4} x mean raw commits/s)",
        commit_rate / runs_per_s,
        runs_per_s / commit_rate
    );
    Ok(())
}

fn main() -> Result<()> {
    let opts = Opts::parse()?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("{}", machine_line("e2e"));
    rt.block_on(async {
        if opts.part_a {
            part_a(&opts).await?;
        }
        if opts.part_b {
            part_b(&opts).await?;
        }
        anyhow::Ok(())
    })
}
