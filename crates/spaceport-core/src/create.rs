//! A create request, checked once for every edge: the HTTP server, the Lambda front and the Spin
//! component (wasm) all call `validate_create`, so a request the edge accepts is one the store
//! accepts, with the same messages. It also owns the list-query limits and the idempotency hash.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Error;
use crate::outbound::OutboundGuard;
use crate::pipeline::{DeclaredFile, PipelineSet};
use crate::ports::{DEFAULT_PAGE, MAX_PAGE};
use crate::run::StartMode;
use crate::status::Status;
use crate::webhook::WebhookTarget;

/// The most bytes a run's `metadata` may take, as JSON.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// `POST /v1/runs`, as clients send it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateRunRequest {
    /// The pipeline's name (`vggt`).
    pub pipeline: String,
    /// Settings; see the pipeline's JSON Schema. Missing ones take their defaults.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub settings: Map<String, Value>,
    /// Declared files per input slot.
    #[serde(default)]
    pub inputs: BTreeMap<String, Vec<DeclaredInput>>,
    /// Webhook target (deliveries come in a later version of this server).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub webhook: Option<Value>,
    /// Seconds until the run is ended `expired` if not finished.
    #[serde(default)]
    pub deadline_s: Option<u64>,
    /// Free-form client data, returned as given (at most 16 KiB).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Map<String, Value>,
    /// `auto` (queue when every input has landed) or `manual` (wait for `POST /start`).
    #[serde(default)]
    pub start: Option<String>,
    /// `false`: never answer from an earlier identical run's results (default true).
    #[serde(default)]
    pub cache: Option<bool>,
}

/// One declared input file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeclaredInput {
    pub filename: Option<String>,
    pub content_type: Option<String>,
    /// Exact size in bytes; the upload must match it.
    pub size: Option<u64>,
    /// A URL to fetch the file from instead of uploading it.
    pub url: Option<String>,
    /// Another succeeded run of the same tenant whose artifact `artifact` is this input (a run
    /// built on a run: re-rendering a scene, converting a mesh); copied in the store, not
    /// through the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
}

/// A create request that passed every check: what the run is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    /// The pipeline's name.
    pub pipeline: String,
    /// Settings checked and with defaults filled in (user-facing spellings).
    pub settings: Map<String, Value>,
    /// Declared files per slot, checked against the slots.
    pub inputs: BTreeMap<String, Vec<DeclaredFile>>,
    /// Seconds from creation to the deadline, within the pipeline's range.
    pub deadline_s: u64,
    pub metadata: Map<String, Value>,
    pub start: StartMode,
    /// The run's own webhook, checked (an allowed URL, known event types).
    pub webhook: Option<WebhookTarget>,
    /// Whether an earlier identical run's results may answer it.
    pub cache: bool,
}

/// Checks a create request against the deployment's pipelines and outbound rules (a webhook URL
/// must be one `guard` allows). A rejected request names the field at fault; nothing is stored
/// for it.
pub fn validate_create(
    pipelines: &PipelineSet,
    guard: &OutboundGuard,
    req: &CreateRunRequest,
) -> Result<NewRun, Error> {
    let start = parse_start(req.start.as_deref())?;
    let pipeline = pipelines.get(&req.pipeline).map_err(|_| {
        let known: Vec<&str> = pipelines.iter().map(|p| p.name.as_str()).collect();
        Error::validation(
            "pipeline",
            format!(
                "unknown pipeline {:?} (known: {})",
                req.pipeline,
                known.join(", ")
            ),
        )
    })?;
    let inputs = declared_files(req, pipeline, guard)?;
    let settings = pipeline.resolve_settings(&req.settings)?;
    pipeline.check_inputs(&inputs)?;
    let deadline_s = req.deadline_s.unwrap_or(pipeline.deadline_s);
    if deadline_s == 0 || deadline_s > pipeline.max_deadline_s {
        return Err(Error::validation(
            "deadline_s",
            format!(
                "deadline_s = {deadline_s} is out of range [1, {}]",
                pipeline.max_deadline_s
            ),
        ));
    }
    if Value::Object(req.metadata.clone()).to_string().len() > MAX_METADATA_BYTES {
        return Err(Error::validation(
            "metadata",
            format!("metadata is larger than {MAX_METADATA_BYTES} bytes"),
        ));
    }
    let webhook = req
        .webhook
        .as_ref()
        .filter(|h| !h.is_null())
        .map(|h| WebhookTarget::parse(guard, h))
        .transpose()?;
    Ok(NewRun {
        pipeline: pipeline.name.clone(),
        settings,
        inputs,
        deadline_s,
        metadata: req.metadata.clone(),
        start,
        webhook,
        cache: req.cache.unwrap_or(true),
    })
}

/// `start`: `auto` (the default) or `manual`.
fn parse_start(start: Option<&str>) -> Result<StartMode, Error> {
    match start {
        None | Some("auto") => Ok(StartMode::Auto),
        Some("manual") => Ok(StartMode::Manual),
        Some(other) => Err(Error::validation(
            "start",
            format!("start = {other:?} is not auto or manual"),
        )),
    }
}

/// The declared files of every slot; each needs a filename, content type and size, except a
/// URL input (whose URL must be one the outbound rules allow) and another run's artifact, whose
/// missing parts stand in as placeholders (the slot's first content type, one byte) until it is
/// fetched or copied: checking the request with them first means nothing is brought in for a
/// request that cannot run.
fn declared_files(
    req: &CreateRunRequest,
    pipeline: &crate::Pipeline,
    guard: &OutboundGuard,
) -> Result<BTreeMap<String, Vec<DeclaredFile>>, Error> {
    let mut out = BTreeMap::new();
    for (slot, files) in &req.inputs {
        let mut list = vec![];
        for (i, f) in files.iter().enumerate() {
            let field = |k: &str| format!("inputs.{slot}[{i}].{k}");
            match (&f.url, &f.run, &f.artifact) {
                (Some(_), Some(_), _) => {
                    return Err(Error::validation(
                        field("run"),
                        "give a url or a run's artifact, not both",
                    ));
                }
                (_, Some(_), None) => {
                    return Err(Error::validation(
                        field("artifact"),
                        "name the artifact of the run (\"artifact\": \"scene\")",
                    ));
                }
                (_, None, Some(_)) => {
                    return Err(Error::validation(
                        field("run"),
                        "an artifact input names its run (\"run\": \"run_…\")",
                    ));
                }
                (_, Some(run), Some(_)) if crate::RunId::parse(run).is_err() => {
                    return Err(Error::validation(
                        field("run"),
                        format!("{run:?} is not a run id"),
                    ));
                }
                _ => {}
            }
            if let Some(url) = &f.url {
                guard.check_url(&field("url"), url)?;
            }
            if f.url.is_some() || f.run.is_some() {
                let first_type = pipeline
                    .inputs
                    .get(slot)
                    .and_then(|s| s.content_types.first().cloned());
                list.push(DeclaredFile {
                    filename: f.filename.clone().unwrap_or_else(|| format!("input-{i}")),
                    content_type: f.content_type.clone().or(first_type).unwrap_or_default(),
                    size: f.size.unwrap_or(1),
                });
                continue;
            }
            let missing =
                |k: &str| Error::validation(field(k), format!("{} is required", field(k)));
            list.push(DeclaredFile {
                filename: f.filename.clone().ok_or_else(|| missing("filename"))?,
                content_type: f
                    .content_type
                    .clone()
                    .ok_or_else(|| missing("content_type"))?,
                size: f.size.ok_or_else(|| missing("size"))?,
            });
        }
        out.insert(slot.clone(), list);
    }
    Ok(out)
}

/// Whether the request has inputs the API brings in itself before the run is created: URLs it
/// fetches, other runs' artifacts it copies.
pub fn has_fetched_inputs(req: &CreateRunRequest) -> bool {
    req.inputs
        .values()
        .flatten()
        .any(|f| f.url.is_some() || f.run.is_some())
}

/// `GET /v1/runs`'s `limit`: absent is `DEFAULT_PAGE`, else 1 to `MAX_PAGE` (empty is not a
/// number: the document says integer, and the server holds to it).
pub fn parse_page_limit(limit: Option<&str>) -> Result<usize, Error> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(Error::validation(
                "limit",
                format!("limit = {l:?} must be an integer from 1 to {MAX_PAGE}"),
            )),
        },
    }
}

/// `GET /v1/runs`'s `status` filter: absent or empty is none.
pub fn parse_status_filter(status: Option<&str>) -> Result<Option<Status>, Error> {
    match status {
        None | Some("") => Ok(None),
        Some(s) => Status::parse(s)
            .map(Some)
            .ok_or_else(|| Error::validation("status", format!("unknown status {s:?}"))),
    }
}

/// The sha256 of a canonical JSON rendering, for idempotency checks.
pub fn request_hash(v: &Value) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(v.to_string().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(v: Value) -> CreateRunRequest {
        serde_json::from_value(v).unwrap()
    }

    fn vggt(extra: Value) -> CreateRunRequest {
        let mut body = json!({
            "pipeline": "vggt",
            "inputs": {"images": [{"filename": "a.png", "content_type": "image/png", "size": 10}]},
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        request(body)
    }

    #[test]
    fn a_good_request_resolves_settings_deadline_and_start() {
        let set = PipelineSet::builtin();
        let new = validate_create(
            &set,
            &OutboundGuard::default(),
            &vggt(json!({"settings": {"conf_thres": 40}, "start": "manual"})),
        )
        .unwrap();
        assert_eq!(new.pipeline, "vggt");
        assert_eq!(new.settings["conf_thres"], json!(40));
        assert_eq!(
            new.settings["prediction_mode"],
            json!("depth"),
            "defaults filled"
        );
        assert_eq!(new.deadline_s, set.get("vggt").unwrap().deadline_s);
        assert_eq!(new.start, StartMode::Manual);
        assert_eq!(new.inputs["images"][0].filename, "a.png");
    }

    #[test]
    fn each_rule_names_its_field() {
        let set = PipelineSet::builtin();
        let field = |extra: Value| {
            validate_create(&set, &OutboundGuard::default(), &vggt(extra))
                .unwrap_err()
                .field()
                .map(str::to_string)
        };
        assert_eq!(field(json!({"start": "later"})).as_deref(), Some("start"));
        assert_eq!(
            field(json!({"pipeline": "nope"})).as_deref(),
            Some("pipeline")
        );
        assert_eq!(
            field(json!({"deadline_s": 0})).as_deref(),
            Some("deadline_s")
        );
        assert_eq!(
            field(json!({"deadline_s": 86_401})).as_deref(),
            Some("deadline_s")
        );
        let big = "x".repeat(MAX_METADATA_BYTES);
        assert_eq!(
            field(json!({"metadata": {"k": big}})).as_deref(),
            Some("metadata")
        );
        assert_eq!(
            field(json!({"webhook": {"url": "ftp://x"}})).as_deref(),
            Some("webhook.url")
        );
        assert_eq!(
            field(json!({"inputs": {"images": [{"filename": "a.png", "size": 3}]}})).as_deref(),
            Some("inputs.images[0].content_type")
        );
        assert_eq!(
            field(json!({"inputs": {"images": [{"url": "http://127.0.0.1/a.png"}]}})).as_deref(),
            Some("inputs.images[0].url")
        );
        assert_eq!(
            field(json!({"inputs": {"images": [{"url": "file:///etc/passwd"}]}})).as_deref(),
            Some("inputs.images[0].url")
        );
        // A public URL passes the shape check with placeholders, so a request that cannot run
        // is refused before anything is fetched.
        let ok = vggt(json!({"inputs": {"images": [{"url": "https://example.com/a.png"}]}}));
        assert!(validate_create(&set, &OutboundGuard::default(), &ok).is_ok());
        assert!(has_fetched_inputs(&ok));
        assert_eq!(
            field(json!({"settings": {"conf_thres": 101}})).as_deref(),
            Some("settings.conf_thres")
        );
    }

    #[test]
    fn list_limits_and_filters() {
        assert_eq!(parse_page_limit(None).unwrap(), DEFAULT_PAGE);
        assert!(parse_page_limit(Some("")).is_err());
        assert_eq!(parse_page_limit(Some("100")).unwrap(), MAX_PAGE);
        for bad in ["0", "101", "-1", "x"] {
            assert_eq!(
                parse_page_limit(Some(bad)).unwrap_err().field(),
                Some("limit")
            );
        }
        assert_eq!(
            parse_status_filter(Some("queued")).unwrap(),
            Some(Status::Queued)
        );
        assert_eq!(parse_status_filter(Some("")).unwrap(), None);
        assert!(parse_status_filter(Some("done")).is_err());
    }
}
