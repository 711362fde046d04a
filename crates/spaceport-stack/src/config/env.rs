//! How environment variables become settings: `SPACEPORT_` and a file key in capitals, the
//! per-pipeline patterns (`SPACEPORT_SPACE_URL_<PIPELINE>`, `SPACEPORT_SERVER_URL_<PIPELINE>`,
//! `SPACEPORT_MODEL_<PIPELINE>`, `SPACEPORT_MAX_IN_FLIGHT_<PIPELINE>`), and the
//! ecosystem's own `HF_TOKEN` and `ORT_DYLIB_PATH`. Values stay strings until extraction.

use std::collections::BTreeMap;

use figment::value::{Dict, Value};
use spaceport_core::ports::QueueName;

use super::{Config, ConfigError, err};

/// The prefix of every variable.
pub const ENV_PREFIX: &str = "SPACEPORT_";

/// The variable naming a config file (default `./spaceport.toml`, when it exists).
pub const CONFIG_FILE_VAR: &str = "SPACEPORT_CONFIG";

/// Variables with the prefix that are not settings: the file above, and the CLI's log filter.
const NOT_SETTINGS: &[&str] = &[CONFIG_FILE_VAR, "SPACEPORT_LOG"];

/// The variable of a file key: `SPACEPORT_` and the key in capitals.
pub fn env_var(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
}

/// The variable that overrides pipeline `name`'s Space URL (`SPACEPORT_SPACE_URL_VGGT_ONNX`).
pub fn space_url_var(pipeline: &str) -> String {
    format!(
        "{ENV_PREFIX}SPACE_URL_{}",
        pipeline.to_ascii_uppercase().replace('-', "_")
    )
}

/// The variable that points model server pipeline `name` at another server
/// (`SPACEPORT_SERVER_URL_VLM_DESCRIBE`).
pub fn server_url_var(pipeline: &str) -> String {
    format!(
        "{ENV_PREFIX}SERVER_URL_{}",
        pipeline.to_ascii_uppercase().replace('-', "_")
    )
}

/// The variable that overrides pipeline `name`'s model path (`SPACEPORT_MODEL_VGGT_ONNX`).
pub fn model_var(pipeline: &str) -> String {
    format!(
        "{ENV_PREFIX}MODEL_{}",
        pipeline.to_ascii_uppercase().replace('-', "_")
    )
}

/// The variables of `queue`'s URL and its dead-letter queue's URL: the step's name in capitals
/// (`SPACEPORT_POLL_STATUS_QUEUE_URL`, `SPACEPORT_POLL_STATUS_DLQ_URL`).
pub fn queue_vars(queue: QueueName) -> (String, String) {
    let step = queue.as_str().to_ascii_uppercase().replace('-', "_");
    (
        format!("{ENV_PREFIX}{step}_QUEUE_URL"),
        format!("{ENV_PREFIX}{step}_DLQ_URL"),
    )
}

/// The step queue a `<step>_queue_url` / `<step>_dlq_url` name (lower case, after the prefix)
/// is about, as its file key (`queues.poll-status.url`).
fn queue_key(name: &str) -> Option<String> {
    let (step, field) = if let Some(step) = name.strip_suffix("_queue_url") {
        (step, "url")
    } else {
        (name.strip_suffix("_dlq_url")?, "dlq_url")
    };
    let queue = QueueName::ALL
        .into_iter()
        .find(|q| q.as_str().replace('-', "_") == step)?;
    Some(format!("queues.{}.{field}", queue.as_str()))
}

/// Settings whose value may be kept in AWS Secrets Manager: `SPACEPORT_<SETTING>_ARN` names the
/// secret, whose string is what `SPACEPORT_<SETTING>` would hold. The AWS functions read them
/// before the configuration (`Config::load_with_secrets`); anywhere else such a variable is an
/// error, not silently ignored.
pub const SECRET_SETTINGS: &[&str] = &[
    "hf_token",
    "webhook_secrets",
    "api_keys",
    "run_token_secret",
    "edge_secret",
];

/// The variable naming `setting`'s secret (`SPACEPORT_HF_TOKEN_ARN`).
pub fn secret_arn_var(setting: &str) -> String {
    format!("{}_ARN", env_var(setting))
}

/// The secret a variable names, when it is one of `SECRET_SETTINGS`' `_ARN` variables: the
/// setting's own variable and the ARN.
pub fn secret_ref(var: &str, value: &str) -> Option<(String, String)> {
    SECRET_SETTINGS
        .iter()
        .find(|s| secret_arn_var(s) == var)
        .map(|s| (env_var(s), value.to_owned()))
}

/// Settings that are lists: comma-separated in a variable.
const LISTS: &[&str] = &[
    "outbound_allow",
    "space_token_hosts",
    "webhook_secrets",
    "webhook_schedule_s",
    "public_hosts",
    "cors_origins",
];
/// Settings that are structured: JSON in a variable (`SPACEPORT_WEBHOOKS='[{"name": …}]'`).
const JSON: &[&str] = &["webhooks", "api_keys", "rate_limits"];

/// The settings `vars` give, as a dict keyed like the file, and the variable behind each
/// dotted key (for error messages). Values stay strings: `extract_lossy` turns `"30"` into a
/// number where a number is wanted and leaves a token such as `"12345"` a string.
pub(super) fn env_dict(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(Dict, BTreeMap<String, String>), ConfigError> {
    let keys = Config::keys();
    let mut vars: Vec<(String, String)> = vars.into_iter().collect();
    // Ours win over the ecosystem's own spellings, whatever the order they come in.
    vars.sort_by_key(|(k, _)| k.starts_with(ENV_PREFIX));
    let mut dict = Dict::new();
    let mut names = BTreeMap::new();
    for (var, value) in vars {
        let key = match var.as_str() {
            "HF_TOKEN" => "hf_token".to_owned(),
            "ORT_DYLIB_PATH" => "ort_dylib_path".to_owned(),
            v if !v.starts_with(ENV_PREFIX) || NOT_SETTINGS.contains(&v) => continue,
            v if secret_ref(v, "").is_some() => {
                return Err(err(format!(
                    "{v} names a secret in AWS Secrets Manager, which only the AWS functions read (storage = \"aws\"); set {} itself here",
                    v.trim_end_matches("_ARN")
                )));
            }
            v => {
                let name = v[ENV_PREFIX.len()..].to_ascii_lowercase();
                if keys.contains(&name) {
                    name
                } else if let Some(key) = queue_key(&name) {
                    key
                } else if let Some(p) = name.strip_prefix("space_url_") {
                    format!("pipelines.{}.space_url", p.replace('_', "-"))
                } else if let Some(p) = name.strip_prefix("server_url_") {
                    format!("pipelines.{}.server_url", p.replace('_', "-"))
                } else if let Some(p) = name.strip_prefix("max_in_flight_") {
                    format!("pipelines.{}.max_in_flight", p.replace('_', "-"))
                } else if let Some(p) = name.strip_prefix("model_") {
                    format!("pipelines.{}.model", p.replace('_', "-"))
                } else {
                    return Err(err(format!(
                        "unknown environment variable {var} (see the configuration reference in README.md)"
                    )));
                }
            }
        };
        names.insert(key.clone(), var.clone());
        let value = if LISTS.contains(&key.as_str()) {
            // Comma-separated in a variable; each item stays a string until extraction.
            Value::from(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::from(s.to_owned()))
                    .collect::<Vec<_>>(),
            )
        } else if JSON.contains(&key.as_str()) {
            // Set but empty (a template parameter left blank): none.
            let value = if value.trim().is_empty() {
                "[]"
            } else {
                &value
            };
            serde_json::from_str::<Value>(value)
                .map_err(|e| err(format!("{var} is not JSON: {e}")))?
        } else {
            Value::from(value)
        };
        merge(&mut dict, &key, value);
    }
    Ok((dict, names))
}

/// Sets the dotted `key` in `dict`, creating the tables on the way.
fn merge(dict: &mut Dict, key: &str, value: Value) {
    match key.split_once('.') {
        None => {
            dict.insert(key.to_owned(), value);
        }
        Some((head, rest)) => {
            let entry = dict
                .entry(head.to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                merge(inner, rest, value);
            } else {
                let mut inner = Dict::new();
                merge(&mut inner, rest, value);
                *entry = Value::from(inner);
            }
        }
    }
}
