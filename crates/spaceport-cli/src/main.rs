//! `spaceport`: serve the API with embedded defaults, run a pipeline, inspect runs.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use serde_json::Value;
use spaceport_cli::batch_cmd::{self, BatchArgs};
use spaceport_cli::client::ApiClient;
use spaceport_cli::config::Config;
use spaceport_cli::pipelines_cmd;
use spaceport_cli::run_cmd::{self, RunArgs};
use spaceport_cli::stack::{EmbeddedStack, StackOptions};
use spaceport_core::pipeline::BackendDescription;
use spaceport_core::ports::QueueName;
use spaceport_steps::runner::LOCAL_QUEUES;

/// Images in, 3D model or picture out: durable jobs on Gradio Spaces and local models.
#[derive(Debug, Parser)]
#[command(
    name = "spaceport",
    version,
    after_help = "Configuration: defaults, then spaceport.toml (or --config, or SPACEPORT_CONFIG), then SPACEPORT_* variables (SPACEPORT_DATA_DIR, SPACEPORT_BIND, SPACEPORT_SERVER, SPACEPORT_HF_TOKEN or HF_TOKEN, SPACEPORT_PIPELINES_DIR, SPACEPORT_SPACE_URL_<PIPELINE>, SPACEPORT_MODEL_<PIPELINE>, …; README.md lists every setting), then flags."
)]
struct Cli {
    /// A config file instead of ./spaceport.toml.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// The data directory of the embedded stack (default ./spaceport-data).
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// A running Spaceport server; without it, `run` and `runs` start the embedded stack in-process.
    #[arg(long, global = true)]
    server: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API and run the step workers (embedded defaults).
    Serve {
        /// Address to listen on.
        #[arg(long)]
        bind: Option<String>,
        /// Which step workers this process runs: a comma-separated list of submit-space,
        /// poll-status, fetch-artifact, reconstruct, call-model, notify-webhook, or `none` for
        /// an API-only process.
        #[arg(
            long,
            default_value = "submit-space,poll-status,fetch-artifact,reconstruct,call-model,notify-webhook"
        )]
        steps: String,
        /// Serve a non-loopback address without API keys (anyone reaching it can do anything).
        #[arg(long)]
        insecure_no_auth: bool,
    },
    /// Run a pipeline on files and download its artifacts.
    Run {
        pipeline: String,
        /// Input files (`slot=path` for pipelines with several inputs).
        #[arg(required_unless_present = "batch", conflicts_with = "batch")]
        files: Vec<String>,
        /// One run per entry of this folder, as one batch: a file is a run's one input, a
        /// folder a run's files (named after their slots when there are several); each run's
        /// results are written as it ends, under --out/<entry>/ and in --out/results.ndjson.
        #[arg(long, value_name = "DIR")]
        batch: Option<PathBuf>,
        /// A setting, `key=value` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Where to save the artifacts (default ./spaceport-out/<run id>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the final run as JSON instead of a progress bar.
        #[arg(long)]
        json: bool,
        /// Seconds before the run expires.
        #[arg(long)]
        deadline: Option<u64>,
    },
    /// List, show or cancel runs.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// List the pipelines; check a pipeline file against a live Space; start one from a Space.
    Pipelines {
        #[command(subcommand)]
        command: Option<PipelinesCommand>,
    },
    /// Make API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PipelinesCommand {
    /// Name every mismatch between a pipeline file and the live Space's /config, or check that a
    /// model server pipeline's server serves its models (exit 1 on any).
    Check {
        file: PathBuf,
        /// The Space's or model server's URL (default: the file's `url`, else
        /// https://<owner>-<name>.hf.space for a Space).
        #[arg(long)]
        space: Option<String>,
    },
    /// Print a starting pipeline file for one endpoint of a live Space.
    New {
        /// The Space's URL.
        #[arg(long)]
        space: String,
        /// The endpoint, by name (`/tryon`).
        #[arg(long, conflicts_with = "fn_index")]
        api_name: Option<String>,
        /// The endpoint, by fn_index (Gradio 3.x apps without names).
        #[arg(long)]
        fn_index: Option<u64>,
        /// The Space id written in the file (default: from an *.hf.space URL).
        #[arg(long)]
        id: Option<String>,
        /// The pipeline's name (default: the Space's).
        #[arg(long)]
        name: Option<String>,
        /// Write it here instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Print a new API key once, with the entry that configures it (only its hash is stored).
    New {
        /// Names the key in logs and errors.
        #[arg(long)]
        name: String,
        /// The tenant its runs belong to.
        #[arg(long)]
        tenant: String,
        /// Comma-separated: runs:read, runs:write, admin.
        #[arg(long, default_value = "runs:read,runs:write")]
        scopes: String,
    },
}

#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// Runs, newest first.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        pipeline: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One run as JSON.
    Show { id: String },
    /// Cancel a run.
    Cancel { id: String },
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SPACEPORT_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = real_main().await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn real_main() -> Result<()> {
    let cli = Cli::parse();
    let mut cfg = Config::load(cli.config.as_deref())?;
    if let Some(d) = cli.data {
        cfg.data_dir = Some(d);
    }
    if let Some(s) = cli.server {
        cfg.server = Some(s);
    }
    // Secrets print redacted, so the whole configuration can be logged.
    tracing::debug!(config = ?cfg, "configuration");
    match cli.command {
        Command::Serve {
            bind,
            steps,
            insecure_no_auth,
        } => {
            let bind = bind
                .or(cfg.bind.clone())
                .unwrap_or_else(|| "127.0.0.1:8080".into());
            let queues = parse_steps(&steps)?;
            let stack = EmbeddedStack::start(
                &cfg,
                StackOptions {
                    bind,
                    queues,
                    insecure_no_auth,
                    ..StackOptions::default()
                },
            )
            .await?;
            eprintln!(
                "spaceport: serving {} (data in {})",
                stack.url,
                cfg.data_dir().display()
            );
            shutdown_signal().await;
            eprintln!("spaceport: stopping");
            stack.shutdown().await;
            Ok(())
        }
        Command::Run {
            pipeline,
            batch: Some(dir),
            set,
            out,
            deadline,
            ..
        } => {
            with_client(&cfg, |client| async move {
                batch_cmd::run(
                    &client,
                    BatchArgs {
                        pipeline,
                        dir,
                        set,
                        out,
                        deadline_s: deadline,
                    },
                )
                .await
                .map(|_| ())
            })
            .await
        }
        Command::Run {
            pipeline,
            files,
            set,
            out,
            json,
            deadline,
            batch: None,
        } => {
            with_client(&cfg, |client| async move {
                run_cmd::run(
                    &client,
                    RunArgs {
                        pipeline,
                        files,
                        set,
                        out,
                        json,
                        deadline_s: deadline,
                    },
                )
                .await
                .map(|_| ())
            })
            .await
        }
        Command::Runs { command } => {
            with_client(&cfg, |client| async move {
                let v = match command {
                    RunsCommand::List {
                        status,
                        pipeline,
                        limit,
                    } => {
                        let mut q = vec![("limit", limit.to_string())];
                        if let Some(s) = status {
                            q.push(("status", s));
                        }
                        if let Some(p) = pipeline {
                            q.push(("pipeline", p));
                        }
                        let v = client.list_runs(&q).await?;
                        print_runs(&v);
                        return Ok(());
                    }
                    RunsCommand::Show { id } => client.get_run(&id, None).await?,
                    RunsCommand::Cancel { id } => client.action(&id, "cancel").await?,
                };
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(())
            })
            .await
        }
        Command::Keys {
            command:
                KeysCommand::New {
                    name,
                    tenant,
                    scopes,
                },
        } => new_key(name, tenant, &scopes),
        Command::Pipelines {
            command: Some(PipelinesCommand::Check { file, space }),
        } => {
            print!(
                "{}",
                pipelines_cmd::check_file(&file, space.as_deref(), cfg.space_client_options())
                    .await?
            );
            Ok(())
        }
        Command::Pipelines {
            command:
                Some(PipelinesCommand::New {
                    space,
                    api_name,
                    fn_index,
                    id,
                    name,
                    out,
                }),
        } => {
            let args = pipelines_cmd::NewArgs {
                url: space,
                id,
                api_name,
                fn_index,
                name,
            };
            let text = pipelines_cmd::new_file(&args, cfg.space_client_options()).await?;
            match out {
                Some(path) => {
                    if path.exists() {
                        bail!("{} exists: not overwriting it", path.display());
                    }
                    std::fs::write(&path, &text)?;
                    eprintln!("wrote {}", path.display());
                }
                None => print!("{text}"),
            }
            Ok(())
        }
        Command::Pipelines { command: None } => {
            with_client(&cfg, |client| async move {
                let v = client.pipelines().await?;
                for p in v["pipelines"].as_array().cloned().unwrap_or_default() {
                    let backend: Option<BackendDescription> =
                        serde_json::from_value(p["backend"].clone()).ok();
                    println!(
                        "{:<14} {:<6} {:<28} {}",
                        p["name"].as_str().unwrap_or(""),
                        p["backend"]["kind"].as_str().unwrap_or(""),
                        backend.as_ref().map_or("", |b| b.target()),
                        p["title"].as_str().unwrap_or("")
                    );
                }
                Ok(())
            })
            .await
        }
    }
}

fn parse_steps(list: &str) -> Result<Vec<QueueName>> {
    if list.trim() == "none" {
        return Ok(vec![]);
    }
    list.split(',')
        .map(|s| {
            let s = s.trim();
            LOCAL_QUEUES
                .into_iter()
                .find(|q| q.as_str() == s)
                .ok_or_else(|| {
                    let known: Vec<&str> = LOCAL_QUEUES.iter().map(|q| q.as_str()).collect();
                    anyhow::anyhow!(
                        "--steps: unknown step {s:?} (use {} or none)",
                        known.join(", ")
                    )
                })
        })
        .collect()
}

fn print_runs(v: &Value) {
    for r in v["runs"].as_array().cloned().unwrap_or_default() {
        println!(
            "{}  {:<10} {:<10} {}  {}",
            r["id"].as_str().unwrap_or(""),
            r["pipeline"].as_str().unwrap_or(""),
            r["status"].as_str().unwrap_or(""),
            r["created_at"].as_str().unwrap_or(""),
            r["error"]["code"].as_str().unwrap_or("")
        );
    }
    if let Some(c) = v["next_cursor"].as_str() {
        println!("(more: --cursor {c})");
    }
}

/// Runs `f` against `--server`, or against an embedded stack started in-process for the call.
async fn with_client<F, Fut>(cfg: &Config, f: F) -> Result<()>
where
    F: FnOnce(ApiClient) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    if let Some(s) = &cfg.server {
        if !(s.starts_with("http://") || s.starts_with("https://")) {
            bail!("--server {s:?} must be an http(s) URL");
        }
        return f(ApiClient::new(s).with_key(api_key(cfg))).await;
    }
    let stack = EmbeddedStack::start(
        cfg,
        StackOptions {
            bind: "127.0.0.1:0".into(),
            ..StackOptions::default()
        },
    )
    .await?;
    let result = f(ApiClient::new(&stack.url).with_key(api_key(cfg))).await;
    stack.shutdown().await;
    result
}

fn api_key(cfg: &Config) -> Option<String> {
    cfg.api_key.as_ref().map(|k| k.expose().to_owned())
}

/// `spaceport keys new`: the key (shown once) and its configuration entry, in both forms.
fn new_key(name: String, tenant: String, scopes: &str) -> Result<()> {
    use spaceport_cli::config::ApiKeyConfig;
    use spaceport_core::auth::{format_key, hash_text, key_hash};
    let key = format_key(rand::random());
    let entry = ApiKeyConfig {
        name,
        tenant,
        scopes: scopes
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        hash: hash_text(&key_hash(&key)),
        revoked: false,
    };
    // The same checks as loading it.
    Config {
        api_keys: vec![entry.clone()],
        ..Config::default()
    }
    .key_ring()?;
    let toml_entry = toml::to_string(&std::collections::BTreeMap::from([(
        "api_keys",
        vec![&entry],
    )]))?;
    println!(
        "API key {:?} for tenant {:?} (shown once; keep it secret):\n",
        entry.name, entry.tenant
    );
    println!("  {key}\n");
    println!("Add to spaceport.toml:\n\n{toml_entry}");
    println!(
        "or to SPACEPORT_API_KEYS (a JSON list of entries):\n\n  {}",
        serde_json::to_string(&entry)?
    );
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
