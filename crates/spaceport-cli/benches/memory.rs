//! Prints (never asserts) the peak memory (VmHWM) of a real `spaceport serve` process while
//! bytes flow through it, at several sizes side by side, so flat is seen as flat:
//! (a) a Space (the testkit's `HostileSpace`, here well-behaved and large) serves a result file
//!     of each size, which fetch-artifact streams into the blob store;
//! (b) a client uploads N inputs of M MB each to one run's presigned URLs (the peak then is
//!     shown), then the run is started and submit-space streams them to the Space as one
//!     multipart request.
//! Each size gets a fresh process, so each peak is its own; beside it, the process's RSS idle.
//!
//!     cargo bench -p spaceport-cli --bench memory
//!     cargo bench -p spaceport-cli --bench memory -- --artifact-mib 256,1024,2048 --uploads 200 --upload-mb 20
//!
//! Options (also as env, e.g. MEMORY_UPLOADS=50): --artifact-mib LIST, --uploads N,
//! --upload-mb M, --upload-sizes LIST (counts of uploads to compare, default N/4,N).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use spaceport_testkit::stats::machine_line;
use spaceport_testkit::{Elsewhere, HostileSpace, Misbehaviour, free_port};

const MIB: u64 = 1 << 20;

fn opt(name: &str, default: &str) -> String {
    let flag = format!("--{name}");
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| *a == flag)
        && let Some(v) = args.get(i + 1)
    {
        return v.clone();
    }
    let var = format!("MEMORY_{}", name.replace('-', "_").to_ascii_uppercase());
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

fn list(name: &str, default: &str) -> Result<Vec<u64>> {
    opt(name, default)
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<u64>()
                .with_context(|| format!("--{name}: {s:?}"))
        })
        .collect()
}

/// A `spaceport serve` child on its own data dir; killed on drop.
struct Serve {
    child: Child,
    base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    async fn start(data: &Path, pipelines: &Path) -> Result<Serve> {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_spaceport"))
            .args(["--data", data.to_str().unwrap(), "serve", "--bind"])
            .arg(format!("127.0.0.1:{port}"))
            .env("SPACEPORT_PIPELINES_DIR", pipelines)
            .env("SPACEPORT_HUB_URL", "")
            .env("SPACEPORT_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let base = format!("http://127.0.0.1:{port}");
        let serve = Serve { child, base };
        let until = Instant::now() + Duration::from_secs(30);
        while reqwest::get(format!("{}/healthz", serve.base))
            .await
            .is_err()
        {
            if Instant::now() > until {
                bail!("spaceport serve did not answer within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(serve)
    }

    /// (VmRSS, VmHWM) in bytes.
    fn rss(&self) -> Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |name: &str| -> Result<u64> {
            let kib: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .with_context(|| format!("{name} in /proc/PID/status"))?;
            Ok(kib * 1024)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }
}

fn pipeline(url: &str, max_files: u64, max_input: u64, max_output: u64) -> String {
    format!(
        r#"name = "big"
title = "Large files through one run"
deadline_s = 3600
max_attempts = 1

[backend]
kind = "space"
space = "test/big"
url = "{url}"
calls = [ {{ api_name = "/predict", inputs = [ {{ input = "images", as = "image" }} ] }} ]

[inputs.images]
min = 1
max = {max_files}
content_types = ["image/png"]
max_bytes = {max_input}

[outputs.result]
content_type = "application/octet-stream"
filename = "result.bin"
from = {{ call = 0, index = 0 }}
max_bytes = {max_output}
"#
    )
}

/// Bytes that pass the PNG signature check, `size` long, streamed in 64 KiB pieces.
fn png_like(size: u64) -> reqwest::Body {
    const CHUNK: u64 = 64 << 10;
    let mut first = vec![0u8; CHUNK.min(size) as usize];
    let n = 8.min(first.len());
    first[..n].copy_from_slice(&b"\x89PNG\r\n\x1a\n"[..n]);
    let first = Bytes::from(first);
    let zeros = Bytes::from(vec![0u8; CHUNK as usize]);
    let rest = futures::stream::iter((CHUNK..size).step_by(CHUNK as usize))
        .map(move |at| Ok::<_, std::io::Error>(zeros.slice(..(size - at).min(CHUNK) as usize)));
    reqwest::Body::wrap_stream(futures::stream::once(async move { Ok(first) }).chain(rest))
}

async fn wait_terminal(http: &reqwest::Client, base: &str, id: &str) -> Result<Value> {
    let until = Instant::now() + Duration::from_secs(1800);
    loop {
        let run: Value = http
            .get(format!("{base}/v1/runs/{id}?wait=30"))
            .send()
            .await?
            .json()
            .await?;
        if matches!(
            run["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled" | "expired")
        ) {
            return Ok(run);
        }
        if Instant::now() > until {
            bail!("run {id} did not end: {run}");
        }
    }
}

/// Creates a `big` run declaring `files` inputs of `size` bytes; returns it.
async fn create(http: &reqwest::Client, base: &str, files: u64, size: u64) -> Result<Value> {
    let inputs: Vec<Value> = (0..files)
        .map(|i| json!({"filename": format!("f{i:04}.png"), "content_type": "image/png", "size": size}))
        .collect();
    let resp = http
        .post(format!("{base}/v1/runs"))
        .json(&json!({"pipeline": "big", "inputs": {"images": inputs}, "start": "manual"}))
        .send()
        .await?;
    let status = resp.status();
    let run: Value = resp.json().await?;
    if !status.is_success() {
        bail!("create: {status} {run}");
    }
    Ok(run)
}

async fn upload_all(http: &reqwest::Client, run: &Value, size: u64) -> Result<()> {
    for up in run["uploads"].as_array().context("uploads")? {
        let url = up["url"].as_str().context("url")?;
        let resp = http
            .put(url)
            .header("content-type", "image/png")
            .header("content-length", size)
            .body(png_like(size))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("upload: {} {}", resp.status(), resp.text().await?);
        }
    }
    Ok(())
}

fn mib(b: u64) -> f64 {
    b as f64 / MIB as f64
}

async fn artifacts(sizes: &[u64]) -> Result<()> {
    println!("\n(a) a Space serves one result file; fetch-artifact streams it to the blob store");
    println!(
        "   {:>10}  {:>9}  {:>9}  {:>12}  {:>14}",
        "file MiB", "wall s", "MiB/s", "idle RSS MiB", "peak RSS MiB"
    );
    let elsewhere = Elsewhere::start().await?;
    let http = reqwest::Client::new();
    for &size_mib in sizes {
        let size = size_mib * MIB;
        let space = HostileSpace::start(Misbehaviour::SizedArtifact(size), &elsewhere.url).await?;
        let dir = tempfile::tempdir()?;
        let pipelines = dir.path().join("pipelines");
        std::fs::create_dir_all(&pipelines)?;
        std::fs::write(
            pipelines.join("big.toml"),
            pipeline(&space.url, 1, 1_000_000, size + 1),
        )?;
        let serve = Serve::start(&dir.path().join("data"), &pipelines).await?;
        let (idle, _) = serve.rss()?;
        let run = create(&http, &serve.base, 1, 1000).await?;
        let t0 = Instant::now();
        upload_all(&http, &run, 1000).await?;
        http.post(format!(
            "{}/v1/runs/{}/start",
            serve.base,
            run["id"].as_str().unwrap()
        ))
        .send()
        .await?
        .error_for_status()?;
        let done = wait_terminal(&http, &serve.base, run["id"].as_str().unwrap()).await?;
        let wall = t0.elapsed().as_secs_f64();
        if done["status"] != "succeeded" || done["artifacts"][0]["size"] != size {
            bail!("the run did not store the file: {done}");
        }
        let (_, peak) = serve.rss()?;
        println!(
            "   {:>10}  {:>9.2}  {:>9.0}  {:>12.1}  {:>14.1}",
            size_mib,
            wall,
            size_mib as f64 / wall,
            mib(idle),
            mib(peak)
        );
    }
    Ok(())
}

async fn uploads(counts: &[u64], size_mb: u64) -> Result<()> {
    println!(
        "\n(b) a client uploads N inputs of {size_mb} MB to one run; submit-space streams them to the Space"
    );
    println!(
        "   {:>6}  {:>9}  {:>9}  {:>9}  {:>12}  {:>20}  {:>14}",
        "N", "total MB", "upload s", "MB/s", "idle RSS MiB", "peak uploads MiB", "peak RSS MiB"
    );
    let elsewhere = Elsewhere::start().await?;
    let http = reqwest::Client::new();
    let size = size_mb * 1_000_000;
    for &n in counts {
        let space = HostileSpace::start(Misbehaviour::None, &elsewhere.url).await?;
        let dir = tempfile::tempdir()?;
        let pipelines = dir.path().join("pipelines");
        std::fs::create_dir_all(&pipelines)?;
        std::fs::write(
            pipelines.join("big.toml"),
            pipeline(&space.url, n, size, 1 << 20),
        )?;
        let serve = Serve::start(&dir.path().join("data"), &pipelines).await?;
        let (idle, _) = serve.rss()?;
        let run = create(&http, &serve.base, n, size).await?;
        let t0 = Instant::now();
        upload_all(&http, &run, size).await?;
        let wall = t0.elapsed().as_secs_f64();
        let (_, uploaded) = serve.rss()?;
        // The inputs then go to the Space, streamed: the run ends when that and the rest did.
        let id = run["id"].as_str().unwrap();
        http.post(format!("{}/v1/runs/{id}/start", serve.base))
            .send()
            .await?
            .error_for_status()?;
        let done = wait_terminal(&http, &serve.base, id).await?;
        if done["status"] != "succeeded" {
            bail!("the run did not succeed: {done}");
        }
        let (_, peak) = serve.rss()?;
        let total = (n * size) as f64 / 1e6;
        println!(
            "   {:>6}  {:>9.0}  {:>9.2}  {:>9.0}  {:>12.1}  {:>20.1}  {:>14.1}",
            n,
            total,
            wall,
            total / wall,
            mib(idle),
            mib(uploaded),
            mib(peak)
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let sizes = list("artifact-mib", "256,1024,2048")?;
    let n = opt("uploads", "200").parse::<u64>()?;
    let size_mb = opt("upload-mb", "20").parse::<u64>()?;
    let counts = list("upload-sizes", &format!("{},{n}", (n / 4).max(1)))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("{}", machine_line("memory"));
    rt.block_on(async {
        artifacts(&sizes).await?;
        uploads(&counts, size_mb).await
    })
}
