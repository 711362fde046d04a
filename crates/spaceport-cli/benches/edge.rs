//! Prints (never asserts) what the edge costs: the same requests sent straight to
//! `spaceport serve` and through the edge component under `wasmtime serve` in front of it,
//! side by side in one run — per-request latency (p50, p95, p99) at one request at a time, and
//! requests per second with `--concurrency` in flight — plus the release component's size. Three
//! processes: the API, the WASI-HTTP host, and this one sending the load, all on 127.0.0.1.
//!
//!     cargo bench -p spaceport-cli --bench edge -- --requests 2000
//!
//! Options (also as env, e.g. EDGE_REQUESTS=500): --requests N, --concurrency N.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::StreamExt;
use spaceport_core::auth::{hash_text, key_hash};
use spaceport_testkit::stats::{Summary, bench_opt, header_fine, machine_line, ms};

const SECRET: &str = "edge-bench-secret-0123456789-0123456789";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(port: u16, child: &mut Child, what: &str) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if child.try_wait()?.is_some() {
            bail!("{what} exited");
        }
        if Instant::now() > until {
            bail!("{what} did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Latencies of `n` requests to `url`, one at a time.
async fn sequential(http: &reqwest::Client, url: &str, key: &str, n: usize) -> Result<Summary> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = http.get(url).bearer_auth(key).send().await?;
        if !r.status().is_success() {
            bail!("{url}: {}", r.status());
        }
        r.bytes().await?;
        samples.push(ms(t.elapsed()));
    }
    Ok(Summary::of(&samples))
}

/// Requests per second for `n` requests with `c` in flight.
async fn throughput(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    n: usize,
    c: usize,
) -> Result<f64> {
    let t = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(0..n)
        .map(|_| async {
            let r = http.get(url).bearer_auth(key).send().await?;
            if !r.status().is_success() {
                bail!("{url}: {}", r.status());
            }
            r.bytes().await?;
            Ok(())
        })
        .buffer_unordered(c)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let requests = bench_opt("EDGE", "requests", 2000)? as usize;
    let concurrency = bench_opt("EDGE", "concurrency", 8)? as usize;
    let wasm = spaceport_testkit::build::edge_component()?;
    let serve_bin = spaceport_testkit::build::cargo_artifact(
        &[
            "-q",
            "-p",
            "spaceport-cli",
            "--bin",
            "spaceport",
            "--release",
        ],
        "spaceport",
    )?;
    let data = tempfile::tempdir()?;
    let key = format!("sk_bench_{:032x}", rand::random::<u128>());
    let keys = serde_json::json!([{"name": "bench", "tenant": "bench",
        "scopes": ["runs:read", "runs:write"], "hash": hash_text(&key_hash(&key))}]);
    let off = serde_json::json!({"per_second": 0, "burst": 0});
    let rates = serde_json::json!({"runs:read": off, "runs:write": off, "admin": off});

    let api_port = spaceport_testkit::free_port();
    let mut api = Killed(
        Command::new(&serve_bin)
            .args([
                "--data",
                data.path().to_str().unwrap(),
                "serve",
                "--steps",
                "none",
                "--bind",
            ])
            .arg(format!("127.0.0.1:{api_port}"))
            .env("SPACEPORT_API_KEYS", keys.to_string())
            .env("SPACEPORT_RATE_LIMITS", rates.to_string())
            .env("SPACEPORT_EDGE_SECRET", SECRET)
            .env("SPACEPORT_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_port(api_port, &mut api.0, "spaceport serve")?;
    let edge_port = spaceport_testkit::free_port();
    let wasmtime = spaceport_testkit::build::wasmtime();
    let mut edge = Killed(
        Command::new(wasmtime)
            .args([
                "serve",
                "-Scli",
                "--addr",
                &format!("127.0.0.1:{edge_port}"),
            ])
            .args([
                "--env",
                "SPACEPORT_EDGE_UPSTREAM",
                "--env",
                "SPACEPORT_EDGE_SECRET",
            ])
            .args(["--env", "SPACEPORT_API_KEYS"])
            .arg(&wasm)
            .env(
                "SPACEPORT_EDGE_UPSTREAM",
                format!("http://127.0.0.1:{api_port}"),
            )
            .env("SPACEPORT_EDGE_SECRET", SECRET)
            .env("SPACEPORT_API_KEYS", keys.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_port(edge_port, &mut edge.0, "wasmtime serve")?;

    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let http = reqwest::Client::new();
        let path = "/v1/runs?limit=1";
        let direct = format!("http://127.0.0.1:{api_port}{path}");
        let via = format!("http://127.0.0.1:{edge_port}{path}");
        // Warm both (the host compiles the component on its first request).
        sequential(&http, &direct, &key, 50).await?;
        sequential(&http, &via, &key, 50).await?;
        let d = sequential(&http, &direct, &key, requests).await?;
        let e = sequential(&http, &via, &key, requests).await?;
        let d_rps = throughput(&http, &direct, &key, requests, concurrency).await?;
        let e_rps = throughput(&http, &via, &key, requests, concurrency).await?;
        println!("{}", machine_line("edge"));
        println!(
            "component: {} ({} bytes, release)",
            wasm.display(),
            std::fs::metadata(&wasm)?.len()
        );
        println!("GET {path} with a key, one at a time ({requests} requests):");
        println!("{}", header_fine("ms"));
        println!("{}", d.row_fine("direct to spaceport serve"));
        println!("{}", e.row_fine("through the edge (wasmtime serve)"));
        println!(
            "  added by the edge: p50 {:+.2} ms, p99 {:+.2} ms",
            e.p50 - d.p50,
            e.p99 - d.p99
        );
        println!("requests/s with {concurrency} in flight ({requests} requests):");
        println!(
            "  direct {d_rps:>9.0}   through the edge {e_rps:>9.0}   ratio {:.2}",
            e_rps / d_rps
        );
        anyhow::Ok(())
    })
}
