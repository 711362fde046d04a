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
use std::time::Duration;

use anyhow::{Context, Result, bail};
use spaceport_steps::runner::RunnerConfig;
use spaceport_testkit::stats::machine_line;

mod latency;
mod throughput;

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
            latency::part_a(&opts).await?;
        }
        if opts.part_b {
            throughput::part_b(&opts).await?;
        }
        anyhow::Ok(())
    })
}
