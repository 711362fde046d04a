//! The embedded stack: the API and the step workers in one process, built by `spaceport-stack`
//! from the configuration (the embedded defaults: SQLite file + blob directory under a data dir).
//! `spaceport serve` runs it until stopped; `spaceport run` without `--server` runs it in-process.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use spaceport_core::ports::QueueName;
use spaceport_stack::{Config, OpenOptions, Stack};
use spaceport_steps::runner::{LOCAL_QUEUES, Runner, RunnerConfig};
use spaceport_steps::{Steps, StepsConfig};
use tokio_util::sync::CancellationToken;

/// Options of an embedded stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Where to listen (`127.0.0.1:0` picks a free port).
    pub bind: String,
    /// Step tunables (the configuration's lease and poll window apply on top).
    pub steps: StepsConfig,
    /// Worker tunables (the configuration's visibility, concurrency and lease apply on top).
    pub runner: RunnerConfig,
    /// The step queues this process works on (empty: API only).
    pub queues: Vec<QueueName>,
    /// Serve on a non-loopback address without API keys (everyone reaching it may do anything).
    pub insecure_no_auth: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            bind: "127.0.0.1:8080".into(),
            steps: StepsConfig::default(),
            runner: RunnerConfig::default(),
            queues: LOCAL_QUEUES.to_vec(),
            insecure_no_auth: false,
        }
    }
}

/// A running embedded stack.
pub struct EmbeddedStack {
    /// The API's base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    pub addr: SocketAddr,
    /// The wired steps (tests read the store through `steps.ports`).
    pub steps: Steps,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    runner: Option<Runner>,
}

impl EmbeddedStack {
    /// Binds the API, opens the stack the configuration names and starts the step workers.
    pub async fn start(cfg: &Config, opts: StackOptions) -> Result<EmbeddedStack> {
        let listener = tokio::net::TcpListener::bind(&opts.bind)
            .await
            .with_context(|| format!("binding {}", opts.bind))?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() && cfg.key_ring()?.is_empty() {
            if !opts.insecure_no_auth {
                anyhow::bail!(
                    "refusing to serve on {addr} without API keys: anyone who can reach it could read every run and spend the Hugging Face quota. Configure api_keys (spaceport keys new), bind 127.0.0.1, or pass --insecure-no-auth"
                );
            }
            tracing::warn!(%addr, "serving without API keys on a non-loopback address (--insecure-no-auth)");
            eprintln!(
                "spaceport: WARNING: no API keys; anyone who can reach {addr} can use this server"
            );
        }
        let url = format!("http://{addr}");
        let stack = Stack::open(
            cfg,
            OpenOptions {
                steps: cfg.steps_config(opts.steps.clone()),
                // Signed blob URLs point at this server, which verifies and serves them.
                blob_base_url: url.clone(),
                // The workers long-poll: an in-process send wakes them at once.
                receive_wait: Duration::from_secs(20),
                ..OpenOptions::default()
            },
        )
        .await
        .with_context(|| format!("opening the data dir {}", cfg.data_dir().display()))?;
        let app = stack.app(Some(addr))?;
        let steps = stack.steps;
        let stop = CancellationToken::new();
        let server = {
            let stop = stop.clone();
            tokio::spawn(async move {
                // Small JSON answers must not wait for Nagle's algorithm.
                let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                let serve = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await });
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, "the API server stopped");
                }
            })
        };
        let runner = (!opts.queues.is_empty()).then(|| {
            Runner::start(
                steps.clone(),
                &opts.queues,
                cfg.runner_config(opts.runner.clone()),
            )
        });
        Ok(EmbeddedStack {
            url,
            addr,
            steps,
            stop,
            server,
            runner,
        })
    }

    /// Stops the server and the workers.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(r) = self.runner.take() {
            r.shutdown().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.server).await;
    }
}
