//! How the API shows a pipeline: its settings as a JSON Schema (defaults, ranges, enums) and the
//! `GET /v1/pipelines/{name}` description.

use serde_json::{Map, Value, json};

use serde::{Deserialize, Serialize};

use super::local::LocalFunction;
use super::model_server::ChatProtocol;
use super::spec::{BackendSpec, Pipeline, SettingSpec};

/// A pipeline's backend as the API shows it: `{"kind": "space", "space": "facebook/vggt"}` or
/// `{"kind": "onnx", "model": "models/vggt.onnx"}` or
/// `{"kind": "http_model", "protocol": "ollama", "model": "llava:7b"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BackendDescription {
    Space {
        space: String,
    },
    Onnx {
        model: String,
    },
    /// The server's URL is the deployment's business and stays out of the API.
    HttpModel {
        protocol: ChatProtocol,
        model: String,
    },
    Local {
        function: LocalFunction,
    },
    /// The pipelines the stages run, in order.
    Chain {
        stages: Vec<String>,
    },
}

impl BackendDescription {
    /// The description of `spec`.
    pub fn of(spec: &BackendSpec) -> BackendDescription {
        match spec {
            BackendSpec::Space { space, .. } => BackendDescription::Space {
                space: space.clone(),
            },
            BackendSpec::Onnx { model, .. } => BackendDescription::Onnx {
                model: model.clone(),
            },
            BackendSpec::HttpModel {
                protocol, model, ..
            } => BackendDescription::HttpModel {
                protocol: *protocol,
                model: model.clone(),
            },
            BackendSpec::Local { function } => BackendDescription::Local {
                function: *function,
            },
            BackendSpec::Chain { stages } => BackendDescription::Chain {
                stages: stages.iter().map(|s| s.pipeline.clone()).collect(),
            },
        }
    }

    /// The Space id or the model path.
    pub fn target(&self) -> &str {
        match self {
            BackendDescription::Space { space } => space,
            BackendDescription::Onnx { model } | BackendDescription::HttpModel { model, .. } => {
                model
            }
            BackendDescription::Local { function } => function.as_str(),
            BackendDescription::Chain { .. } => "chain",
        }
    }
}

impl Pipeline {
    /// The settings as a JSON Schema object (with defaults, ranges and enums) for the API.
    pub fn settings_schema(&self) -> Value {
        let mut props = Map::new();
        let mut required = vec![];
        for (name, spec) in &self.settings {
            let mut s = Map::new();
            let (desc, default) = match spec {
                SettingSpec::Number {
                    description,
                    minimum,
                    maximum,
                    default,
                } => {
                    s.insert("type".into(), json!("number"));
                    if let Some(m) = minimum {
                        s.insert("minimum".into(), json!(m));
                    }
                    if let Some(m) = maximum {
                        s.insert("maximum".into(), json!(m));
                    }
                    (description, default.map(|d| json!(d)))
                }
                SettingSpec::Integer {
                    description,
                    minimum,
                    maximum,
                    default,
                } => {
                    s.insert("type".into(), json!("integer"));
                    if let Some(m) = minimum {
                        s.insert("minimum".into(), json!(m));
                    }
                    if let Some(m) = maximum {
                        s.insert("maximum".into(), json!(m));
                    }
                    (description, default.map(|d| json!(d)))
                }
                SettingSpec::Boolean {
                    description,
                    default,
                } => {
                    s.insert("type".into(), json!("boolean"));
                    (description, default.map(|d| json!(d)))
                }
                SettingSpec::String {
                    description,
                    max_length,
                    default,
                } => {
                    s.insert("type".into(), json!("string"));
                    if let Some(m) = max_length {
                        s.insert("maxLength".into(), json!(m));
                    }
                    (description, default.as_ref().map(|d| json!(d)))
                }
                SettingSpec::Enum {
                    description,
                    values,
                    default,
                } => {
                    s.insert("type".into(), json!("string"));
                    s.insert("enum".into(), json!(values.keys().collect::<Vec<_>>()));
                    (description, default.as_ref().map(|d| json!(d)))
                }
            };
            if let Some(d) = desc {
                s.insert("description".into(), json!(d));
            }
            match default {
                Some(d) => {
                    s.insert("default".into(), d);
                }
                None => required.push(name.clone()),
            }
            props.insert(name.clone(), Value::Object(s));
        }
        json!({"type": "object", "additionalProperties": false, "properties": props, "required": required})
    }

    /// The pipeline as `GET /v1/pipelines/{name}` shows it.
    pub fn describe(&self) -> Value {
        let backend =
            serde_json::to_value(BackendDescription::of(&self.backend)).unwrap_or(Value::Null);
        let inputs: Map<String, Value> = self
            .inputs
            .iter()
            .map(|(k, s)| (k.clone(), json!({"min": s.min, "max": s.max, "content_types": s.content_types, "max_bytes": s.max_bytes})))
            .collect();
        let outputs: Map<String, Value> = self
            .outputs
            .iter()
            .map(|(k, o)| {
                (
                    k.clone(),
                    json!({"content_type": o.content_type, "filename": o.filename}),
                )
            })
            .collect();
        json!({
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "backend": backend,
            "inputs": inputs,
            "settings": self.settings_schema(),
            "outputs": outputs,
            "fallback": self.fallbacks().first(),
            "failover": {
                "to": self.fallbacks(),
                "when_down": self.failover.when_down,
                "when_quota_wait_over_s": self.failover.when_quota_wait_over_s,
                "when_queue_rank_over": self.failover.when_queue_rank_over,
            },
            "deadline_s": self.deadline_s,
        })
    }
}
