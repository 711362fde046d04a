//! `/config` discovery: the protocol, the API prefix and the endpoints (fn_index = a dependency's
//! `id`, trigger = the first target's component), so a call named by `api_name` can be joined.

use serde_json::Value;
use spaceport_core::Error;
use spaceport_core::pipeline::CallSpec;

use crate::protocol::{Protocol, protocol_error};

/// One callable endpoint (a backend dependency).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub fn_index: u64,
    /// Without the leading slash, as `/config` spells it.
    pub api_name: Option<String>,
    pub trigger_id: Option<u64>,
    /// How many positional inputs and outputs it has.
    pub inputs: usize,
    pub outputs: usize,
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
        let deps = v
            .get("dependencies")
            .and_then(Value::as_array)
            .ok_or_else(|| protocol_error("/config has no dependencies list"))?;
        let endpoints = deps
            .iter()
            .enumerate()
            .map(|(i, d)| Endpoint {
                fn_index: d.get("id").and_then(Value::as_u64).unwrap_or(i as u64),
                api_name: d
                    .get("api_name")
                    .and_then(Value::as_str)
                    .map(|s| s.trim_start_matches('/').to_string()),
                trigger_id: d
                    .get("targets")
                    .and_then(|t| t.get(0))
                    .and_then(|t| t.get(0))
                    .and_then(Value::as_u64),
                inputs: d
                    .get("inputs")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len),
                outputs: d
                    .get("outputs")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len),
            })
            .collect();
        Ok(SpaceConfig {
            version: v.get("version").and_then(Value::as_str).map(str::to_string),
            protocol,
            api_prefix,
            root: v.get("root").and_then(Value::as_str).map(str::to_string),
            endpoints,
        })
    }

    /// The endpoint named `api_name` (with or without its leading slash).
    pub fn endpoint(&self, api_name: &str) -> Option<&Endpoint> {
        let name = api_name.trim_start_matches('/');
        self.endpoints
            .iter()
            .find(|e| e.api_name.as_deref() == Some(name))
    }

    /// The endpoint a pipeline call means, checked against its argument count.
    pub fn resolve(&self, call: &CallSpec) -> Result<&Endpoint, Error> {
        let ep = match (&call.api_name, call.fn_index) {
            (Some(name), _) => self
                .endpoint(name)
                .ok_or_else(|| protocol_error(format!("the Space has no endpoint {name:?}")))?,
            (None, Some(i)) => self
                .endpoints
                .iter()
                .find(|e| e.fn_index == i as u64)
                .ok_or_else(|| protocol_error(format!("the Space has no fn_index {i}")))?,
            (None, None) => return Err(protocol_error("a call names no endpoint")),
        };
        if ep.inputs != call.inputs.len() {
            return Err(protocol_error(format!(
                "endpoint {} takes {} inputs, the pipeline gives {}",
                call.api_name.as_deref().unwrap_or("(unnamed)"),
                ep.inputs,
                call.inputs.len()
            )));
        }
        Ok(ep)
    }
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
        assert_eq!((ep.fn_index, ep.trigger_id, ep.outputs), (14, Some(8), 4));
        assert_eq!(cfg.endpoint("gradio_demo").unwrap().trigger_id, None);
    }

    #[test]
    fn an_unknown_protocol_is_a_protocol_error() {
        let e =
            SpaceConfig::from_json(&json!({"protocol": "sse_v9", "dependencies": []})).unwrap_err();
        assert!(e.to_string().contains("sse_v9"), "{e}");
        assert!(!e.retryable());
    }
}
