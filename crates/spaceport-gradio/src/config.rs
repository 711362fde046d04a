//! `/config` discovery: the protocol, the API prefix and the endpoints (fn_index = a dependency's
//! `id`, else its position; trigger = the first target's component; inputs and outputs as the
//! components they are), so a call named by `api_name` or `fn_index` can be joined and checked.

use std::collections::BTreeMap;

use serde_json::Value;
use spaceport_core::Error;
use spaceport_core::pipeline::CallSpec;

use crate::protocol::{Protocol, protocol_error};

/// A component an endpoint reads or writes, as `/config` describes it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Component {
    pub id: u64,
    /// `image`, `state`, `number`, `textbox`, `file`, `gallery`, `model3d` …
    pub kind: String,
    pub label: Option<String>,
    /// A Radio's or Dropdown's choices, as the values the function receives.
    pub choices: Option<Vec<Value>>,
    /// Every prop `/config` gives (`minimum`, `maximum`, `value`, `file_count` …).
    pub props: Value,
}

impl Component {
    /// Whether the slot is server-side session state: sent as null, never shown by `/info`.
    pub fn is_state(&self) -> bool {
        self.kind == "state"
    }

    /// Whether its value is a file (or files): an artifact's source, never a `[values]` entry.
    /// `pipelines check` and `pipelines new` both decide by this one list.
    pub fn holds_files(&self) -> bool {
        matches!(
            self.kind.as_str(),
            "image"
                | "file"
                | "files"
                | "model3d"
                | "gallery"
                | "video"
                | "audio"
                | "downloadbutton"
                | "uploadbutton"
                | "imageeditor"
                | "annotatedimage"
                | "imageslider"
        )
    }
}

/// One callable endpoint (a backend dependency).
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub fn_index: u64,
    /// Without the leading slash, as `/config` spells it.
    pub api_name: Option<String>,
    pub trigger_id: Option<u64>,
    /// Positional inputs and outputs, in order.
    pub inputs: Vec<Component>,
    pub outputs: Vec<Component>,
    /// Whether the app shows it in its API page (`show_api`, or 6.x's `api_visibility`):
    /// hidden ones (gr.Examples loaders, UI glue) can still be called.
    pub shown: bool,
    /// The fn_indexes this dependency cancels (a Stop button's); how 3.x and `sse_v1`/`v2`
    /// servers, which have no `/cancel`, stop a job.
    pub cancels: Vec<u64>,
}

/// What `/config` says about a Space.
#[derive(Debug, Clone, PartialEq)]
pub struct SpaceConfig {
    pub version: Option<String>,
    pub protocol: Protocol,
    /// `/gradio_api` from Gradio 5.0, empty before.
    pub api_prefix: String,
    /// The root the server believes it has (may be wrong behind a proxy: we keep our base URL).
    pub root: Option<String>,
    pub endpoints: Vec<Endpoint>,
    /// A digest of the app's shape (its Gradio version, components and dependencies): the
    /// Space's revision for the result cache when the Hub does not name its commit. Stable
    /// across restarts; changes when the app does.
    pub digest: String,
}

impl SpaceConfig {
    /// Reads the fields that matter from a `/config` document.
    pub fn from_json(v: &Value) -> Result<SpaceConfig, Error> {
        let protocol = match v.get("protocol").and_then(Value::as_str) {
            Some(p) => Protocol::parse(p)?,
            // Gradio 3.x before `protocol` existed spoke websockets.
            None => Protocol::Ws,
        };
        let api_prefix = v
            .get("api_prefix")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim_end_matches('/')
            .to_string();
        // A prefix naming a host would send every later request there.
        crate::origin::check_prefix(&api_prefix)?;
        let deps = v
            .get("dependencies")
            .and_then(Value::as_array)
            .ok_or_else(|| protocol_error("/config has no dependencies list"))?;
        let components: BTreeMap<u64, Component> = v
            .get("components")
            .and_then(Value::as_array)
            .map(|cs| cs.iter().filter_map(component).map(|c| (c.id, c)).collect())
            .unwrap_or_default();
        let slots = |d: &Value, key: &str| -> Vec<Component> {
            d.get(key)
                .and_then(Value::as_array)
                .map(|ids| {
                    ids.iter()
                        .map(|id| {
                            let id = id.as_u64().unwrap_or(u64::MAX);
                            components.get(&id).cloned().unwrap_or(Component {
                                id,
                                ..Component::default()
                            })
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let endpoints = deps
            .iter()
            .enumerate()
            .map(|(i, d)| Endpoint {
                fn_index: d.get("id").and_then(Value::as_u64).unwrap_or(i as u64),
                // 3.x writes `null`, 4.x `false` and 6.x the string "false" (with
                // `api_visibility: "private"`) for an endpoint with no name.
                api_name: d
                    .get("api_name")
                    .and_then(Value::as_str)
                    .filter(|s| *s != "false")
                    .map(|s| s.trim_start_matches('/').to_string()),
                trigger_id: d
                    .get("targets")
                    .and_then(|t| t.get(0))
                    .and_then(|t| t.get(0))
                    .and_then(Value::as_u64)
                    // 3.x spells a dependency's trigger as `trigger`/`targets: [id]`.
                    .or_else(|| {
                        d.get("targets")
                            .and_then(|t| t.get(0))
                            .and_then(Value::as_u64)
                    }),
                inputs: slots(d, "inputs"),
                outputs: slots(d, "outputs"),
                shown: d.get("show_api").and_then(Value::as_bool).unwrap_or(true)
                    && d.get("api_visibility")
                        .and_then(Value::as_str)
                        .is_none_or(|v| v == "public"),
                cancels: d
                    .get("cancels")
                    .and_then(Value::as_array)
                    .map(|c| c.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default(),
            })
            .collect();
        Ok(SpaceConfig {
            version: v.get("version").and_then(Value::as_str).map(str::to_string),
            protocol,
            api_prefix,
            root: v.get("root").and_then(Value::as_str).map(str::to_string),
            endpoints,
            digest: shape_digest(v),
        })
    }

    /// The endpoint named `api_name` (with or without its leading slash).
    pub fn endpoint(&self, api_name: &str) -> Option<&Endpoint> {
        let name = api_name.trim_start_matches('/');
        self.endpoints
            .iter()
            .find(|e| e.api_name.as_deref() == Some(name))
    }

    /// The endpoint with this fn_index.
    pub fn by_fn_index(&self, fn_index: u64) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.fn_index == fn_index)
    }

    /// The endpoint a pipeline call means, checked against its argument count.
    pub fn resolve(&self, call: &CallSpec) -> Result<&Endpoint, Error> {
        let ep = match (&call.api_name, call.fn_index) {
            (Some(name), _) => self
                .endpoint(name)
                .ok_or_else(|| protocol_error(format!("the Space has no endpoint {name:?}")))?,
            (None, Some(i)) => self
                .by_fn_index(i as u64)
                .ok_or_else(|| protocol_error(format!("the Space has no fn_index {i}")))?,
            (None, None) => return Err(protocol_error("a call names no endpoint")),
        };
        if ep.inputs.len() != call.inputs.len() {
            return Err(protocol_error(format!(
                "endpoint {} takes {} inputs, the pipeline gives {}",
                call.label(),
                ep.inputs.len(),
                call.inputs.len()
            )));
        }
        Ok(ep)
    }

    /// The dependency that cancels `fn_index` (a Stop button's), if the app has one.
    pub fn canceller_of(&self, fn_index: u64) -> Option<&Endpoint> {
        self.endpoints
            .iter()
            .find(|e| e.cancels.contains(&fn_index))
    }
}

/// A component of `/config`'s `components` list.
fn component(c: &Value) -> Option<Component> {
    let props = c.get("props");
    let choices = props
        .and_then(|p| p.get("choices"))
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                // 4.x+ lists `[display, value]` pairs; 3.x plain values.
                .map(|c| match c {
                    Value::Array(pair) if pair.len() == 2 => pair[1].clone(),
                    other => other.clone(),
                })
                .collect()
        });
    Some(Component {
        id: c.get("id")?.as_u64()?,
        kind: c
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        label: props
            .and_then(|p| p.get("label"))
            .and_then(Value::as_str)
            .map(str::to_string),
        choices,
        props: props.cloned().unwrap_or(Value::Null),
    })
}

/// The digest of a `/config` document's app shape: version, components and dependencies (not
/// `root`, which follows the Host header, nor per-launch ids such as `app_id`).
fn shape_digest(v: &Value) -> String {
    use sha2::{Digest, Sha256};
    let shape = serde_json::json!([v.get("version"), v.get("components"), v.get("dependencies")]);
    hex::encode(Sha256::digest(shape.to_string().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_6x_config_is_read() {
        let cfg = SpaceConfig::from_json(&json!({
            "version": "6.31.0", "protocol": "sse_v3", "api_prefix": "/gradio_api",
            "root": "http://127.0.0.1:7861",
            "dependencies": [
                {"id": 0, "targets": [[17, "click"]], "inputs": [], "outputs": [1], "api_name": "js_fn"},
                {"id": 4, "targets": [[null, "then"]], "inputs": [4, 22], "outputs": [14, 13, 23], "api_name": "gradio_demo"},
                {"id": 14, "targets": [[8, "change"]], "inputs": [7, 8], "outputs": [14, 4, 9, 13], "api_name": "update_gallery_on_upload_1"}
            ]
        }))
        .unwrap();
        assert_eq!(cfg.protocol, Protocol::SseV3);
        assert_eq!(cfg.api_prefix, "/gradio_api");
        let ep = cfg.endpoint("/update_gallery_on_upload_1").unwrap();
        assert_eq!(
            (ep.fn_index, ep.trigger_id, ep.outputs.len()),
            (14, Some(8), 4)
        );
        assert_eq!(cfg.endpoint("gradio_demo").unwrap().trigger_id, None);
    }

    #[test]
    fn an_api_prefix_naming_a_host_is_refused() {
        for prefix in ["@127.0.0.1:9", "//evil.example", ".evil.example"] {
            let e = SpaceConfig::from_json(&json!({
                "protocol": "sse_v3", "api_prefix": prefix, "dependencies": [],
            }))
            .unwrap_err();
            assert!(
                !e.retryable() && e.to_string().contains("not a plain path"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_3x_config_is_read_by_position_with_components_and_cancels() {
        // The shape of Gradio 3.50.2's /config (gradio-protocol-legacy.md §3).
        let cfg = SpaceConfig::from_json(&json!({
            "version": "3.50.2",
            "components": [
                {"id": 7, "type": "state", "props": {}},
                {"id": 8, "type": "number", "props": {"label": "add"}},
                {"id": 9, "type": "radio", "props": {"choices": ["a", "b"]}},
                {"id": 10, "type": "radio", "props": {"choices": [["A", "a"], ["B", "b"]]}}
            ],
            "dependencies": [
                {"targets": [9, "click"], "inputs": [7, 8], "outputs": [7], "api_name": null, "cancels": []},
                {"targets": [[5, "click"]], "inputs": [9, 10], "outputs": [], "api_name": "x", "cancels": [0]}
            ]
        }))
        .unwrap();
        assert_eq!(cfg.protocol, Protocol::Ws);
        let ep = cfg.by_fn_index(0).unwrap();
        assert_eq!(ep.api_name, None);
        assert!(ep.inputs[0].is_state());
        assert_eq!(ep.inputs[1].label.as_deref(), Some("add"));
        assert_eq!(cfg.canceller_of(0).unwrap().fn_index, 1);
        let radios = &cfg.by_fn_index(1).unwrap().inputs;
        assert_eq!(radios[0].choices, Some(vec![json!("a"), json!("b")]));
        assert_eq!(radios[1].choices, Some(vec![json!("a"), json!("b")]));
    }

    #[test]
    fn an_unknown_protocol_is_a_protocol_error() {
        let e =
            SpaceConfig::from_json(&json!({"protocol": "sse_v9", "dependencies": []})).unwrap_err();
        assert!(e.to_string().contains("sse_v9"), "{e}");
        assert!(!e.retryable());
    }
}
