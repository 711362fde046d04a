//! Part (b) of the e2e bench: throughput of concurrent runs with an instant backend, beside
//! the raw SQLite commit rate and what the writer thread did.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bytes::Bytes;
use futures::StreamExt;
use spaceport_cli::config::Config;
use spaceport_core::ports::{ListQuery, RunStore, SystemClock};
use spaceport_core::{CreateRunRequest, DeclaredInput, Run, RunId, Status};
use spaceport_local::LocalStack;
use spaceport_steps::runner::{LOCAL_QUEUES, Runner, RunnerConfig};
use spaceport_steps::{Ports, Steps, StepsConfig};
use spaceport_testkit::fakes::{CountingBlobs, CountingQueue, CountingStore, Counts, InstantSpace};
use spaceport_testkit::png;
use spaceport_testkit::stats::{Summary, ms};

use super::Opts;

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
                    ..DeclaredInput::default()
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

pub(crate) async fn part_b(opts: &Opts) -> Result<()> {
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
        chat: Arc::new(spaceport_chat::HttpChat::new().unwrap()),
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
    let unsynced = writer_after.unsynced - writer_before.unsynced;
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
        "   SQLite commits per run:      {commits_per_run:>8.2}  ({:.2} of them without an fsync: only queue receives/deletes; {:.1} writes per commit, blobs included) -> commit-bound ceiling {:.1} runs/s; measured runs/s is {:.0}% of it",
        unsynced as f64 / k,
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
