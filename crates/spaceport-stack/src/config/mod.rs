//! The one configuration of every Spaceport binary (the CLI, each Lambda, the reconstruct
//! worker): defaults, then a TOML file, then environment variables, read by figment. Every
//! setting has one file key and one variable, `SPACEPORT_` and the key in capitals; the only
//! patterns are the per-pipeline overrides `SPACEPORT_SPACE_URL_<PIPELINE>` and
//! `SPACEPORT_MODEL_<PIPELINE>`. Unknown keys and variables are errors, so a typo fails at start.

mod env;
mod front;
#[cfg(feature = "aws")]
mod secrets;
mod webhooks;

pub use front::ApiKeyConfig;
pub use webhooks::EndpointConfig;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::{Figment, Profile};
use serde::{Deserialize, Serialize};
use spaceport_core::PipelineSet;
use spaceport_core::limits::{Rate, TenantCaps};
use spaceport_core::ports::QueueName;
use spaceport_core::webhook::BusEvents;
use spaceport_steps::runner::RunnerConfig;
use spaceport_steps::{StepsConfig, WebhookSettings};

pub use env::{
    CONFIG_FILE_VAR, ENV_PREFIX, SECRET_SETTINGS, env_var, model_var, queue_vars, secret_arn_var,
    server_url_var, space_url_var,
};
#[cfg(feature = "aws")]
pub use secrets::resolve_secret_vars;

/// A configuration that cannot be used; the message names the variable or file key.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

fn err(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
}

/// A secret (a token): its Debug and its serialized form never show it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// Where runs, queues and blobs live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Storage {
    /// SQLite and a blob directory under `data_dir` (one machine).
    #[default]
    Embedded,
    /// DynamoDB (`runs_table`), SQS (`queues`) and S3 (`blobs_bucket`).
    Aws,
}

/// Where local models run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelProvider {
    #[default]
    Cpu,
    Cuda,
    #[serde(rename = "tensorrt")]
    TensorRt,
}

/// Per-pipeline overrides: a duplicated or local Space, or another model file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineOverride {
    /// `SPACEPORT_SPACE_URL_<PIPELINE>`.
    pub space_url: Option<String>,
    /// `SPACEPORT_SERVER_URL_<PIPELINE>`: a model server pipeline's server (your Ollama, vLLM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_url: Option<String>,
    /// `SPACEPORT_MODEL_<PIPELINE>` (relative paths resolve against the working directory).
    pub model: Option<String>,
    /// `SPACEPORT_MAX_IN_FLIGHT_<PIPELINE>`: the most jobs at the pipeline's backend at once,
    /// across every process sharing the store (0: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
}

/// Where one step queue lives on SQS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// `SPACEPORT_<STEP>_QUEUE_URL`.
    pub url: Option<String>,
    /// Its dead-letter queue (read for `/readyz`'s dead counts): `SPACEPORT_<STEP>_DLQ_URL`.
    pub dlq_url: Option<String>,
}

/// Every setting. Each field is a file key; its variable is `SPACEPORT_` and the key in
/// capitals. README.md's configuration reference lists each (a test keeps them in step).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `embedded` (default) or `aws`.
    pub storage: Storage,
    /// The embedded stack's SQLite file and blobs (default `./spaceport-data`).
    pub data_dir: Option<PathBuf>,
    /// DynamoDB table of runs (`storage = "aws"`).
    pub runs_table: Option<String>,
    /// S3 bucket of inputs and artifacts (`storage = "aws"`).
    pub blobs_bucket: Option<String>,
    /// Path-style S3 URLs, for S3-compatible stores that do not route by host name.
    pub s3_force_path_style: bool,
    /// Each step queue's URLs on SQS, by step name (`[queues.poll-status]`).
    pub queues: BTreeMap<QueueName, QueueConfig>,
    /// Where `spaceport serve` listens (default `127.0.0.1:8080`).
    pub bind: Option<String>,
    /// A running Spaceport server for `spaceport run` and `runs` (else an in-process stack).
    pub server: Option<String>,
    /// A directory of pipeline files replacing the built-in ones.
    pub pipelines_dir: Option<PathBuf>,
    /// Per-pipeline overrides, by pipeline name.
    pub pipelines: BTreeMap<String, PipelineOverride>,
    /// Hugging Face token sent to Spaces (also read from `HF_TOKEN`); never logged.
    pub hf_token: Option<Secret>,
    /// The Hugging Face Hub asked whether a Space that does not answer is asleep, building or
    /// broken (default `https://huggingface.co`; empty: never ask).
    pub hub_url: Option<String>,
    /// The `https` hosts the Hugging Face token is sent to (default `*.hf.space`); a Space
    /// URL elsewhere gets no token.
    pub space_token_hosts: Option<Vec<String>>,
    /// Seconds a worker's claim on a run lasts without renewal (default 30).
    pub lease_s: Option<u64>,
    /// Seconds a received step message stays hidden between heartbeats (default 30).
    pub visibility_s: Option<u64>,
    /// Seconds one poll-status invocation holds a Space's stream (default a day; 840 on Lambda).
    pub poll_window_s: Option<u64>,
    /// Messages a worker handles at once per queue (default 8; the reconstruct worker 1).
    pub concurrency: Option<usize>,
    /// `cpu` (default), `cuda` or `tensorrt` (a GPU build; never a silent CPU fallback).
    pub model_provider: ModelProvider,
    /// What relative model paths resolve against (default: the data dir, or `.` on AWS).
    pub model_dir: Option<PathBuf>,
    /// The most images one local-model run takes (default 64; size it from memory).
    pub max_frames: Option<usize>,
    /// The ONNX Runtime library (also read from ort's own `ORT_DYLIB_PATH`).
    pub ort_dylib_path: Option<PathBuf>,
    /// Where outbound requests (webhooks) may go besides public addresses: host names,
    /// addresses or networks (`127.0.0.1`, `10.0.0.0/8`, `hooks.internal`).
    pub outbound_allow: Vec<String>,
    /// Webhook signing secrets (`whsec_…`): every one signs each message, the first is current.
    pub webhook_secrets: Vec<Secret>,
    /// Another process signs this deployment's webhooks (on AWS, notify-webhook holds the
    /// secrets): runs with a webhook are accepted here though this process holds none.
    pub webhook_signing_elsewhere: Option<bool>,
    /// Endpoints that receive every run's events (`[[webhooks]]`).
    pub webhooks: Vec<EndpointConfig>,
    /// Seconds before each try of a delivery (default `0,5,300,1800,7200,18000,36000,36000`).
    pub webhook_schedule_s: Option<Vec<u64>>,
    /// Seconds a webhook receiver has to answer (default 15).
    pub webhook_timeout_s: Option<u64>,
    /// The EventBridge bus run events are published to (`storage = "aws"`; on one machine the
    /// feed `GET /v1/events` is the bus).
    pub event_bus: Option<String>,
    /// Which events go to the bus: `terminal` (default), `all` or `off`.
    pub event_bus_events: Option<BusEvents>,
    /// Host names the API answers to besides the loopback ones (`api.example.com`); a request
    /// naming another is refused (DNS rebinding).
    pub public_hosts: Vec<String>,
    /// Browser origins allowed to call the API (`https://app.example.com`); none by default.
    pub cors_origins: Vec<String>,
    /// The API keys the server accepts (`[[api_keys]]`: name, tenant, scopes, hash).
    pub api_keys: Vec<ApiKeyConfig>,
    /// The key `spaceport run`, `runs` and `cancel` send to a server (never logged).
    pub api_key: Option<Secret>,
    /// The most bytes an API request body may have (default 1 MiB; uploads are held to their
    /// declared size instead).
    pub max_body_bytes: Option<u64>,
    /// Seconds an upload's body (a presigned PUT, a multipart create) may go without a byte
    /// before it is abandoned, 408 `request_timeout`, nothing stored (default 30).
    pub upload_idle_s: Option<u64>,
    /// Each key's request rate per scope (`[rate_limits."runs:write"]`: `per_second`, `burst`);
    /// unset scopes keep the defaults (10/s, burst 600 for `runs:write`; 50/s, burst 3000 for
    /// the others), a zero rate turns a scope's limit off.
    pub rate_limits: BTreeMap<String, Rate>,
    /// The secret run tokens are signed with (`rt_…`, returned when a run is created). Without
    /// one the embedded stack draws one at start (tokens then die with the process) and AWS
    /// issues none: every Lambda must share it.
    pub run_token_secret: Option<Secret>,
    /// Seconds a run token lasts (default 900).
    pub run_token_ttl_s: Option<u64>,
    /// The secret an edge in front of the API (orchestrator/) sends with each request it has
    /// authenticated; the API then takes the principal it names (never logged).
    pub edge_secret: Option<Secret>,
    /// The most runs in flight (not yet finished) each tenant may have; none by default.
    pub tenant_max_runs_in_flight: Option<u64>,
    /// The most bytes of inputs and artifacts each tenant may store; none by default.
    pub tenant_max_stored_bytes: Option<u64>,
    /// Days a finished run's inputs and artifacts are kept when its pipeline does not say
    /// (`retain_days`); unset: until deleted.
    pub retention_days: Option<u32>,
}

impl Config {
    /// How the Gradio client reaches Spaces under this configuration: the HF token, the Hub,
    /// and the hosts the token may be sent to. The steps and `spaceport pipelines` both read
    /// Spaces with it, so neither sends the token where the other would not.
    pub fn space_client_options(&self) -> spaceport_gradio::ClientOptions {
        let mut options = spaceport_gradio::ClientOptions::with_token(
            self.hf_token.as_ref().map(|t| t.expose().to_owned()),
        );
        if let Some(hub) = &self.hub_url {
            options.hub_url = Some(hub.clone()).filter(|h| !h.is_empty());
        }
        if let Some(hosts) = &self.space_token_hosts {
            options.token_hosts = hosts.clone();
        }
        options
    }

    /// Every file key (the fields of `Config`).
    pub fn keys() -> Vec<String> {
        match serde_json::to_value(Config::default()) {
            Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
            _ => vec![],
        }
    }

    /// Defaults, then the file (`file`, else `$SPACEPORT_CONFIG`, else `./spaceport.toml` when it
    /// exists), then the process's environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_from(file, std::env::vars().collect())
    }

    /// `load`, with `vars` for the process's environment.
    pub fn load_from(
        file: Option<&Path>,
        vars: Vec<(String, String)>,
    ) -> Result<Config, ConfigError> {
        let path = match file {
            Some(p) => Some(p.to_path_buf()),
            None => match vars.iter().find(|(k, _)| k == CONFIG_FILE_VAR) {
                Some((_, p)) => Some(PathBuf::from(p)),
                None => Some(PathBuf::from("spaceport.toml")).filter(|p| p.exists()),
            },
        };
        let text = match &path {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| err(format!("reading {}: {e}", p.display())))?,
            ),
            None => None,
        };
        let name = path.as_ref().map(|p| p.display().to_string());
        Config::from_sources(
            text.as_deref().map(|t| (name.as_deref().unwrap_or(""), t)),
            vars,
        )
    }

    /// Defaults, then `file` (`(name, TOML text)`), then `vars` (variables other than ours are
    /// ignored). For `load` and for tests.
    pub fn from_sources(
        file: Option<(&str, &str)>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if let Some((name, text)) = file {
            // Check the file on its own first, so its errors name the file, not the merge.
            let _: Config = Figment::from(Toml::string(text))
                .extract_lossy()
                .map_err(|e| err(format!("{name}: {}", first_error(e))))?;
            figment = figment.merge(Toml::string(text));
        }
        let (env, names) = env::env_dict(vars)?;
        figment = figment.merge(Serialized::from(env, Profile::Default));
        let cfg: Config = figment.extract_lossy().map_err(|e| {
            // The variable behind the bad key: the one set at that key, else within it.
            let key = e.path.join(".");
            let var = names
                .get(&key)
                .or_else(|| {
                    names
                        .iter()
                        .find(|(k, _)| k.starts_with(&format!("{key}.")))
                        .map(|(_, v)| v)
                })
                .cloned()
                .unwrap_or_else(|| env_var(&key));
            err(format!("{var}: {}", first_error(e)))
        })?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let positive = |key: &str, v: Option<u64>| match v {
            Some(0) => Err(err(format!("{} ({key}) must be positive", env_var(key)))),
            _ => Ok(()),
        };
        positive("lease_s", self.lease_s)?;
        positive("visibility_s", self.visibility_s)?;
        positive("poll_window_s", self.poll_window_s)?;
        positive("concurrency", self.concurrency.map(|n| n as u64))?;
        positive("max_frames", self.max_frames.map(|n| n as u64))?;
        positive("webhook_timeout_s", self.webhook_timeout_s)?;
        positive("retention_days", self.retention_days.map(u64::from))?;
        self.outbound_guard()?;
        self.signing_secrets()?;
        self.webhook_settings(WebhookSettings::default())?;
        self.front_door(None)?;
        self.key_ring()?;
        self.gate()?;
        match self.storage {
            Storage::Aws => {
                for (key, v) in [
                    ("runs_table", &self.runs_table),
                    ("blobs_bucket", &self.blobs_bucket),
                ] {
                    if v.as_deref().is_none_or(str::is_empty) {
                        return Err(err(format!(
                            "{} ({key}) is required with storage = \"aws\"",
                            env_var(key)
                        )));
                    }
                }
            }
            Storage::Embedded => {
                if self.runs_table.is_some() {
                    return Err(err(format!(
                        "{} is set but storage is embedded; set {}=aws to use DynamoDB, SQS and S3",
                        env_var("runs_table"),
                        env_var("storage")
                    )));
                }
            }
        }
        Ok(())
    }

    /// Fails naming the variable unless `queue`'s URL is set (on AWS; the embedded queues need
    /// none). A function checks the queue it consumes at start.
    pub fn require_queue(self, queue: QueueName) -> Result<Config, ConfigError> {
        if self.storage == Storage::Aws && self.queue_urls(queue).is_none() {
            return Err(err(format!(
                "{} (queues.{}.url) is required",
                queue_vars(queue).0,
                queue.as_str()
            )));
        }
        Ok(self)
    }

    /// `queue`'s URL and its dead-letter queue's URL, when set.
    pub fn queue_urls(&self, queue: QueueName) -> Option<(String, Option<String>)> {
        let q = self.queues.get(&queue)?;
        let url = q.url.clone().filter(|u| !u.is_empty())?;
        Some((url, q.dlq_url.clone().filter(|u| !u.is_empty())))
    }

    /// The data directory (default `./spaceport-data`).
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("spaceport-data"))
    }

    /// What relative model paths resolve against.
    pub fn model_dir(&self) -> PathBuf {
        match (&self.model_dir, self.storage) {
            (Some(d), _) => d.clone(),
            (None, Storage::Embedded) => self.data_dir(),
            (None, Storage::Aws) => PathBuf::from("."),
        }
    }

    /// The pipelines (built in, or `pipelines_dir`), with the overrides applied.
    pub fn pipelines(&self) -> Result<PipelineSet, ConfigError> {
        let mut set = match &self.pipelines_dir {
            Some(dir) => PipelineSet::load_dir(dir).map_err(|e| {
                err(format!(
                    "{} ({}): {e}",
                    env_var("pipelines_dir"),
                    dir.display()
                ))
            })?,
            None => PipelineSet::builtin(),
        };
        for (name, o) in &self.pipelines {
            if let Some(u) = &o.space_url {
                set.set_space_url(name, u)
                    .map_err(|e| err(format!("{}: {e}", space_url_var(name))))?;
            }
            if let Some(u) = &o.server_url {
                set.set_server_url(name, u)
                    .map_err(|e| err(format!("{}: {e}", server_url_var(name))))?;
            }
            if let Some(m) = &o.model {
                // An override given on this machine is relative to the working directory.
                let m = std::path::absolute(m)
                    .map_err(|e| err(format!("{}: {m:?}: {e}", model_var(name))))?;
                set.set_model(name, &m.display().to_string())
                    .map_err(|e| err(format!("{}: {e}", model_var(name))))?;
            }
            if let Some(n) = o.max_in_flight {
                set.set_max_in_flight(name, n)
                    .map_err(|e| err(format!("[pipelines.{name}] max_in_flight: {e}")))?;
            }
        }
        // The same limit the model runner holds to, checked when a run is created.
        set.cap_frames(
            self.max_frames
                .unwrap_or(spaceport_core::pipeline::DEFAULT_MAX_FRAMES),
        );
        Ok(set)
    }

    /// The steps' tunables: `base` with the lease, poll window, outbound rules and webhook
    /// settings set here.
    pub fn steps_config(&self, mut base: StepsConfig) -> StepsConfig {
        // Both were checked when the configuration loaded.
        if let Ok(guard) = self.outbound_guard() {
            base.outbound = guard;
        }
        if let Ok(webhook) = self.webhook_settings(base.webhook.clone()) {
            base.webhook = webhook;
        }
        if let Some(s) = self.lease_s {
            base.lease = Duration::from_secs(s);
            base.heartbeat = base.heartbeat.min(Duration::from_secs(s) / 3);
        }
        if let Some(s) = self.poll_window_s {
            base.poll_window = Duration::from_secs(s);
        }
        base.caps = TenantCaps {
            runs_in_flight: self.tenant_max_runs_in_flight,
            stored_bytes: self.tenant_max_stored_bytes,
        };
        base.retention_days = self.retention_days;
        base
    }

    /// The local runner's tunables: `base` with the visibility, concurrency and (from the
    /// lease) the stall time set here.
    pub fn runner_config(&self, mut base: RunnerConfig) -> RunnerConfig {
        if let Some(s) = self.lease_s {
            base.stall_after = base.stall_after.min(Duration::from_secs(s));
        }
        if let Some(s) = self.visibility_s {
            base.visibility = Duration::from_secs(s);
        }
        if let Some(n) = self.concurrency {
            base.concurrency = n;
        }
        base
    }
}

/// The first message of a figment error (it chains one per bad key).
fn first_error(e: figment::Error) -> String {
    let mut e = e;
    e.metadata = None;
    e.path.clear();
    e.to_string()
}

#[cfg(test)]
mod tests;
