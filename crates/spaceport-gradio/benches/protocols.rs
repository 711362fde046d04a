//! Prints (never asserts) our Gradio client's latency per protocol beside python's
//! `gradio_client` against the same server in the same run: the protocol-matrix app
//! (tests/peers/matrix/app.py) under Gradio 3.50.2 (`ws`), 4.15.0 (`sse_v1`), 4.17.0 (`sse_v2`),
//! 4.44.1 (`sse_v3`) and 6.31.0 (`sse_v3` under `/gradio_api`), each client making N sequential
//! calls of
//!   fn1      fn_index 1 (x*2): join, stream to completion;
//!   process  an image in (uploaded, or a data URL on 3.x) and out (downloaded).
//! Ours is measured twice for fn1: as a client holding `/config` (as gradio_client holds it from
//! its construction), and as the Space backend the steps use (one per worker, keeping each
//! Space's `/config` for five minutes). python's figures come from tests/bench/gradio_client_matrix.py, run with the venv of
//! the server's Gradio, so the client is the one that ships with it.
//!
//!     cargo bench -p spaceport-gradio --bench protocols -- --n 30
//!
//! Options (also as env, e.g. PROTOCOLS_N=50): --n N.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use spaceport_core::RunId;
use spaceport_core::pipeline::Pipeline;
use spaceport_core::ports::{JobInput, SpaceBackend, SpaceEvent, SpaceJob};
use spaceport_gradio::backend::new_session_hash;
use spaceport_gradio::{ClientOptions, Cookies, GradioBackend, GradioClient, Outcome};
use spaceport_testkit::stats::{Summary, bench_opt, header, machine_line, ms};
use spaceport_testkit::{Gradio, MirrorSpace, matrix_pipeline, png, repo_root};

/// One call through the backend: submit, watch to the end, download the first output when asked.
async fn backend_call(
    b: &GradioBackend,
    url: &str,
    p: &Pipeline,
    image: Option<&Bytes>,
    download: bool,
) -> Result<()> {
    let inputs = image
        .map(|bytes| {
            let bytes = bytes.clone();
            let f = JobInput {
                filename: "in.png".into(),
                content_type: "image/png".into(),
                size: bytes.len() as u64,
                body: futures::stream::once(async move { Ok(bytes) }).boxed(),
            };
            [("image".to_string(), vec![f])].into()
        })
        .unwrap_or_default();
    let job = SpaceJob {
        run_id: RunId::new(1, 1),
        space: "test/matrix".into(),
        url: url.into(),
        layouts: p.layouts(),
        settings: Default::default(),
        inputs,
    };
    let handle = b.submit(job).await?.handle;
    let mut events = b.watch(&handle).await?;
    let mut outputs = None;
    while let Some(e) = events.next().await {
        if let SpaceEvent::Completed { outputs: o } = e? {
            outputs = Some(o);
        }
    }
    let outputs = outputs.context("no completion")?;
    if download {
        let (mut body, _) = b.download(&handle, &outputs[0]).await?;
        while let Some(chunk) = body.next().await {
            chunk?;
        }
    }
    Ok(())
}

/// gradio_client's figures against `url`, by endpoint.
fn python(g: Gradio, url: &str, n: u64) -> Result<Vec<Value>> {
    let out = Command::new(g.python()?)
        .arg(repo_root().join("tests/bench/gradio_client_matrix.py"))
        .args(["--url", url, "--n", &n.to_string()])
        .env("GRADIO_ANALYTICS_ENABLED", "False")
        .env("HF_HUB_OFFLINE", "1")
        .output()?;
    if !out.status.success() {
        bail!(
            "gradio_client bench: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

async fn timed<F, Fut>(n: u64, mut f: F) -> Result<Summary>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    f().await?; // warm-up, untimed (as the python side does)
    let mut samples = vec![];
    for _ in 0..n {
        let t = Instant::now();
        f().await?;
        samples.push(ms(t.elapsed()));
    }
    Ok(Summary::of(&samples))
}

#[tokio::main]
async fn main() -> Result<()> {
    let n = bench_opt("PROTOCOLS", "n", 30)?;
    println!("{}", machine_line("protocols"));
    let image = Bytes::from(png(4, 3, 7));
    let fn1 = matrix_pipeline("{ fn_index = 1, inputs = [{ value = 21 }] }");
    let process = matrix_pipeline(
        r#"{ api_name = "/process", inputs = [{ input = "image", as = "image" }, { value = 2 }, { value = true }] }"#,
    );
    let mut ratios = vec![];
    for g in Gradio::ALL {
        let mirror = MirrorSpace::start_under(g, "tests/peers/matrix/app.py", &[], &[])?;
        let url = mirror.url().to_string();
        let client = GradioClient::new(&url, ClientOptions::default())?;
        let config = client.config(&Cookies::default()).await?;
        let double = config.by_fn_index(1).context("fn_index 1")?.clone();

        let ours_client = timed(n, || {
            let (client, config, double) = (&client, &config, &double);
            async move {
                let h = client
                    .join(
                        config,
                        double,
                        &[json!(21)],
                        &new_session_hash(),
                        &Cookies::default(),
                    )
                    .await?;
                match client.open(&h).await?.finish().await? {
                    Ok(Outcome::Completed(_)) => Ok(()),
                    other => bail!("{other:?}"),
                }
            }
        })
        .await?;
        // One backend per Space, as a worker holds one: it keeps the Space's /config.
        let b = GradioBackend::new(ClientOptions::default());
        let ours_fn1 = timed(n, || backend_call(&b, &url, &fn1, None, false)).await?;
        let ours_process =
            timed(n, || backend_call(&b, &url, &process, Some(&image), true)).await?;
        let theirs = python(g, &url, n)?;
        let p50 = |endpoint: &str| {
            theirs
                .iter()
                .find(|v| v["endpoint"] == endpoint)
                .and_then(|v| v["p50_ms"].as_f64())
                .unwrap_or(f64::NAN)
        };
        let client_name = theirs
            .first()
            .and_then(|v| v["client"].as_str())
            .unwrap_or("gradio_client")
            .to_string();
        println!(
            "\nGradio {} ({}), {n} sequential calls each, ms:",
            g.version(),
            g.protocol()
        );
        println!("{}", header("ms"));
        println!("{}", ours_client.row("fn1: ours, client (config held)"));
        println!("{}", ours_fn1.row("fn1: ours, backend"));
        println!(
            "  {:<34} {:>9.1}",
            format!("fn1: {client_name}"),
            p50("fn1")
        );
        println!("{}", ours_process.row("process: ours, backend"));
        println!(
            "  {:<34} {:>9.1}",
            format!("process: {client_name}"),
            p50("process")
        );
        ratios.push((
            g,
            ours_client.p50 / p50("fn1"),
            ours_fn1.p50 / p50("fn1"),
            ours_process.p50 / p50("process"),
        ));
    }
    println!("\np50 ours / gradio_client (below 1: ours is faster)");
    println!(
        "  {:<22} {:>14} {:>14} {:>14}",
        "", "fn1 client", "fn1 backend", "process"
    );
    for (g, a, b, c) in ratios {
        println!(
            "  {:<22} {a:>14.2} {b:>14.2} {c:>14.2}",
            format!("{} {}", g.version(), g.protocol())
        );
    }
    Ok(())
}
