//! `POST /v1/batches`: many runs of one pipeline in one request. Each item becomes a run of its
//! own (its own uploads, its own idempotency), checked with `validate_create` like any run; a
//! batch is only the list of them. Every item is checked before any run is created, and an
//! error names the item (`runs[3].settings.conf_thres`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::create::{CreateRunRequest, DeclaredInput, NewRun, validate_create};
use crate::error::Error;
use crate::outbound::OutboundGuard;
use crate::pipeline::PipelineSet;

/// The most runs one batch creates.
pub const MAX_BATCH_RUNS: usize = 500;

/// `POST /v1/batches`, as clients send it. Batch-wide fields apply to every run; an item's own
/// `settings` and `metadata` keys override the batch's.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateBatchRequest {
    /// The pipeline every run uses.
    pub pipeline: String,
    /// The runs, in order (at most 500).
    pub runs: Vec<BatchItem>,
    /// Settings every run takes unless it names its own.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub settings: Map<String, Value>,
    /// Client data on every run (an item's keys win).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Map<String, Value>,
    /// Every run's webhook.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub webhook: Option<Value>,
    /// Each run's deadline, in seconds.
    #[serde(default)]
    pub deadline_s: Option<u64>,
    /// `false`: no run is answered from the result cache.
    #[serde(default)]
    pub cache: Option<bool>,
}

/// One run of a batch.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BatchItem {
    /// Declared files per input slot (uploaded to the URLs the answer gives).
    #[serde(default)]
    pub inputs: BTreeMap<String, Vec<DeclaredInput>>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub settings: Map<String, Value>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Map<String, Value>,
    /// This run's own Idempotency-Key (else the batch's key and the item's position).
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

impl CreateBatchRequest {
    /// Each item as the run request it makes.
    pub fn run_requests(&self) -> Vec<CreateRunRequest> {
        self.runs
            .iter()
            .map(|item| {
                let mut settings = self.settings.clone();
                settings.extend(item.settings.clone());
                let mut metadata = self.metadata.clone();
                metadata.extend(item.metadata.clone());
                CreateRunRequest {
                    pipeline: self.pipeline.clone(),
                    settings,
                    inputs: item.inputs.clone(),
                    webhook: self.webhook.clone(),
                    deadline_s: self.deadline_s,
                    metadata,
                    start: None,
                    cache: self.cache,
                }
            })
            .collect()
    }
}

/// Checks every item; the first error names its item's position.
pub fn validate_batch(
    pipelines: &PipelineSet,
    guard: &OutboundGuard,
    req: &CreateBatchRequest,
) -> Result<Vec<NewRun>, Error> {
    if req.runs.is_empty() {
        return Err(Error::validation("runs", "a batch needs at least one run"));
    }
    if req.runs.len() > MAX_BATCH_RUNS {
        return Err(Error::validation(
            "runs",
            format!(
                "a batch takes at most {MAX_BATCH_RUNS} runs, not {}",
                req.runs.len()
            ),
        ));
    }
    let mut out = vec![];
    for (i, run) in req.run_requests().iter().enumerate() {
        if run.inputs.values().flatten().any(|f| f.url.is_some()) {
            return Err(Error::validation(
                format!("runs[{i}].inputs"),
                "a batch's inputs are uploaded; URL inputs are taken by POST /v1/runs",
            ));
        }
        let item_field = |field: Option<String>| match field.as_deref() {
            // Fields that come from the batch are named as the batch's.
            Some("pipeline" | "webhook" | "deadline_s") => field,
            Some(f) => Some(format!("runs[{i}].{f}")),
            None => Some(format!("runs[{i}]")),
        };
        out.push(validate_create(pipelines, guard, run).map_err(|e| match e {
            Error::Validation { field, message } => Error::Validation {
                field: item_field(field),
                message,
            },
            Error::PayloadTooLarge { field, message } => Error::PayloadTooLarge {
                field: item_field(field),
                message,
            },
            Error::UnsupportedMediaType { field, message } => Error::UnsupportedMediaType {
                field: item_field(field),
                message,
            },
            other => other,
        })?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn batch(v: Value) -> CreateBatchRequest {
        serde_json::from_value(v).unwrap()
    }

    fn image(name: &str) -> Value {
        json!({"images": [{"filename": name, "content_type": "image/png", "size": 10}]})
    }

    #[test]
    fn items_take_the_batch_fields_and_override_them() {
        let b = batch(json!({
            "pipeline": "vggt", "settings": {"conf_thres": 40}, "metadata": {"job": "j"},
            "runs": [{"inputs": image("a.png")},
                     {"inputs": image("b.png"), "settings": {"conf_thres": 60}, "metadata": {"i": 1}}]
        }));
        let reqs = b.run_requests();
        assert_eq!(reqs[0].settings["conf_thres"], 40);
        assert_eq!(reqs[1].settings["conf_thres"], 60);
        assert_eq!(reqs[1].metadata["job"], "j");
        assert_eq!(reqs[1].metadata["i"], 1);
        let set = PipelineSet::builtin();
        let ok = validate_batch(&set, &OutboundGuard::default(), &b).unwrap();
        assert_eq!(ok.len(), 2);
    }

    #[test]
    fn an_error_names_its_item() {
        let set = PipelineSet::builtin();
        let g = OutboundGuard::default();
        let bad = batch(json!({
            "pipeline": "vggt",
            "runs": [{"inputs": image("a.png")},
                     {"inputs": image("b.png"), "settings": {"conf_thres": 500}}]
        }));
        let e = validate_batch(&set, &g, &bad).unwrap_err();
        assert_eq!(e.field(), Some("runs[1].settings.conf_thres"), "{e}");
        let empty = batch(json!({"pipeline": "vggt", "runs": []}));
        assert_eq!(
            validate_batch(&set, &g, &empty).unwrap_err().field(),
            Some("runs")
        );
        let unknown = batch(json!({"pipeline": "nope", "runs": [{"inputs": image("a.png")}]}));
        assert_eq!(
            validate_batch(&set, &g, &unknown).unwrap_err().field(),
            Some("pipeline")
        );
    }
}
