//! The OpenAPI document as this server enforces it. utoipa writes the shapes from the types;
//! this adds what the types cannot say, from the same sources the checks read: the pipeline
//! names this deployment serves, the page limits, the status and event type names, the
//! Idempotency-Key's characters, and the answers every API route may give (400 for a malformed
//! request, 401/403 for keys, 429 for limits). A client generated from it never sends what the
//! server refuses, and the schema-driven fuzzer in the tests holds the server to it.

use serde_json::{Map, Value, json};
use spaceport_core::ports::MAX_PAGE;
use spaceport_core::{EventType, PipelineSet, Status};
use utoipa::OpenApi;

use crate::routes::ApiDoc;

/// The routes outside the key check: health, the document itself, signed blob URLs.
fn is_open(path: &str) -> bool {
    !path.starts_with("/v1/")
        || path == "/v1/openapi.json"
        || path.starts_with("/v1/uploads/")
        || path.starts_with("/v1/blobs/")
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    })
}

/// Alternatives matching any one of `names`, escaped for a regular expression.
fn alternatives(names: impl IntoIterator<Item = &'static str>) -> String {
    names
        .into_iter()
        .map(|n| n.replace('.', "\\."))
        .collect::<Vec<_>>()
        .join("|")
}

/// The constraint of a query parameter or header, by name: what the handlers accept, exactly.
fn param_schema(name: &str, path: &str) -> Option<Value> {
    let statuses: Vec<&str> = std::iter::once("")
        .chain(Status::ALL.iter().map(|s| s.as_str()))
        .collect();
    Some(match name {
        "limit" => json!({"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
        "wait" => json!({"type": "number", "minimum": 0}),
        // Empty is no filter.
        "status" => json!({"type": "string", "enum": statuses}),
        "format" if path.contains("/artifacts/") => {
            json!({"type": "string", "enum": ["", "obj", "ply"]})
        }
        "format" => json!({"type": "string", "enum": ["", "sse", "json"]}),
        "state" => json!({"type": "string", "enum": ["", "dead"]}),
        "types" => {
            let t = alternatives(EventType::ALL.iter().map(|t| t.as_str()));
            json!({"type": "string", "pattern": format!("^ *({t})? *(, *({t})? *)*$")})
        }
        "after" if path.ends_with("/events") && path.contains("{id}") => {
            json!({"type": "integer", "minimum": 0})
        }
        "Last-Event-ID" => json!({"type": "integer", "minimum": 0}),
        "Idempotency-Key" => json!({"type": "string", "pattern": "^[!-~]{1,255}$"}),
        _ => return None,
    })
}

/// The document for a server serving `pipelines`.
pub fn document(pipelines: &PipelineSet) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    let names: Vec<&str> = pipelines.iter().map(|p| p.name.as_str()).collect();
    let max_deadline = pipelines
        .iter()
        .map(|p| p.max_deadline_s)
        .max()
        .unwrap_or(1);
    if let Some(create) = doc.pointer_mut("/components/schemas/CreateRunRequest/properties") {
        create["pipeline"]["enum"] = json!(names);
        create["deadline_s"]["minimum"] = json!(1);
        create["deadline_s"]["maximum"] = json!(max_deadline);
        create["start"]["enum"] = json!(["auto", "manual", null]);
    }
    if let Some(batch) = doc.pointer_mut("/components/schemas/CreateBatchRequest/properties") {
        batch["pipeline"]["enum"] = json!(names);
        batch["deadline_s"]["minimum"] = json!(1);
        batch["deadline_s"]["maximum"] = json!(max_deadline);
        batch["runs"]["minItems"] = json!(1);
        batch["runs"]["maxItems"] = json!(spaceport_core::batch::MAX_BATCH_RUNS);
    }
    doc["components"]["securitySchemes"] = json!({
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "an API key (sk_…) or, for reading one run, its run token (rt_…)"}
    });
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return doc;
    };
    for (path, item) in paths.iter_mut() {
        let Some(ops) = item.as_object_mut() else {
            continue;
        };
        for op in ops.values_mut().filter_map(Value::as_object_mut) {
            constrain_params(path, op);
            if is_open(path) {
                continue;
            }
            op.insert("security".into(), json!([{"bearer": []}]));
            let responses = op
                .entry("responses")
                .or_insert_with(|| Value::Object(Map::new()));
            for (code, what) in [
                ("400", "a malformed request"),
                ("401", "no key, or an unknown, revoked or expired one"),
                (
                    "403",
                    "the key lacks the scope, or a run token names another run",
                ),
                (
                    "429",
                    "over the key's rate (Retry-After says when to come back) or a tenant cap",
                ),
            ] {
                if responses.get(code).is_none() {
                    responses[code] = error_response(what);
                }
            }
        }
    }
    doc
}

fn constrain_params(path: &str, op: &mut Map<String, Value>) {
    let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
        return;
    };
    for p in params.iter_mut() {
        let name = p["name"].as_str().unwrap_or_default().to_owned();
        if let Some(schema) = param_schema(&name, path) {
            p["schema"] = schema;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_the_pipelines_and_the_limits() {
        let doc = document(&PipelineSet::builtin());
        let create = &doc["components"]["schemas"]["CreateRunRequest"]["properties"];
        assert_eq!(
            create["pipeline"]["enum"],
            json!([
                "hunyuan3d",
                "hunyuan3d-shape",
                "idm-vton",
                "kolors-tryon",
                "mesh-convert",
                "remove-background",
                "segment-then-3d",
                "vggt",
                "vggt-onnx",
                "vggt-ply",
                "vggt-render",
                "vlm-describe",
                "vlm-task-events",
                "wonder3d"
            ])
        );
        let list = &doc["paths"]["/v1/runs"]["get"];
        let limit = list["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap();
        assert_eq!(limit["schema"]["maximum"], MAX_PAGE);
        for code in ["400", "401", "403", "429"] {
            assert!(list["responses"][code].is_object(), "{code}");
        }
        assert!(doc["paths"]["/healthz"]["get"]["security"].is_null());
    }
}
