//! What a pipeline file says, as types: input slots, settings with their backend spellings, the
//! backend (a Space and its calls, or a local model) and the artifacts. Serde reads the TOML
//! straight into these; `load` checks what serde cannot.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::chain::StageSpec;
pub use super::failover::Failover;
use super::local::LocalFunction;
use super::model_server::{ChatProtocol, RequestSpec};
use crate::backend::BackendKind;

/// The most images a local-model run takes when the deployment does not say (`max_frames`).
pub const DEFAULT_MAX_FRAMES: usize = 64;

/// One input slot: how many files and of which kinds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub min: usize,
    pub max: usize,
    pub content_types: Vec<String>,
    pub max_bytes: u64,
    /// `filename` sorts the slot's files by filename before they reach the backend; `given` keeps them.
    #[serde(default)]
    pub order: InputOrder,
}

/// The order files of a slot reach the backend in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputOrder {
    #[default]
    Filename,
    Given,
}

/// A user-facing setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SettingSpec {
    Number {
        #[serde(default)]
        description: Option<String>,
        #[serde(default)]
        minimum: Option<f64>,
        #[serde(default)]
        maximum: Option<f64>,
        #[serde(default)]
        default: Option<f64>,
    },
    Integer {
        #[serde(default)]
        description: Option<String>,
        #[serde(default)]
        minimum: Option<i64>,
        #[serde(default)]
        maximum: Option<i64>,
        #[serde(default)]
        default: Option<i64>,
    },
    Boolean {
        #[serde(default)]
        description: Option<String>,
        #[serde(default)]
        default: Option<bool>,
    },
    String {
        #[serde(default)]
        description: Option<String>,
        #[serde(default)]
        max_length: Option<usize>,
        #[serde(default)]
        default: Option<String>,
    },
    /// A choice among user spellings, each mapped to the backend's spelling.
    Enum {
        #[serde(default)]
        description: Option<String>,
        values: BTreeMap<String, toml::Value>,
        #[serde(default)]
        default: Option<String>,
    },
}

/// Refers to output `index` of call number `call` (0-based) in the backend's sequence, and
/// within it to list element `item` when the output is a list (a Gallery's images).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputRef {
    pub call: usize,
    pub index: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
}

impl OutputRef {
    /// The value this reference names in a call's outputs; `None` when the Space returned
    /// nothing there (a null, a short list).
    pub fn pick<'a>(&self, outputs: &'a [Value]) -> Option<&'a Value> {
        let v = outputs.get(self.index).filter(|v| !v.is_null())?;
        match self.item {
            None => Some(v),
            Some(i) => v.as_array()?.get(i).filter(|v| !v.is_null()),
        }
    }
}

/// How a slot's files are shaped for a Gradio component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileForm {
    /// A list of files (`gr.File(file_count="multiple")`).
    Files,
    /// One file (`gr.File`, `gr.Image` with type filepath): the slot's first file.
    File,
    /// A list of `{image, caption}` (`gr.Gallery`).
    Gallery,
    /// One image (`gr.Image`): a file on Gradio 4.x+, a base64 data URL on 3.x, which accepts
    /// nothing else for an Image.
    Image,
    /// `gr.ImageEditor` (Gradio 4.x+): `{background, layers: [], composite: null}` with the
    /// slot's first file as the background.
    Editor,
}

/// Where one positional argument of a call comes from, as written in the file: exactly one of
/// `input`, `setting`, `value`, `null = true`, `output`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(default, rename = "as", skip_serializing_if = "Option::is_none")]
    pub form: Option<FileForm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setting: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<toml::Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub null: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputRef>,
}

/// A positional argument, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// The files of an input slot, shaped as `form`.
    Input { slot: String, form: FileForm },
    /// A setting's value in the backend's spelling.
    Setting(String),
    /// A constant (JSON null for `null = true`).
    Value(Value),
    /// An output of an earlier call.
    Output(OutputRef),
}

impl ArgSpec {
    /// The resolved argument.
    pub fn arg(&self) -> Arg {
        if let Some(slot) = &self.input {
            return Arg::Input {
                slot: slot.clone(),
                form: self.form.unwrap_or(FileForm::Files),
            };
        }
        if let Some(s) = &self.setting {
            return Arg::Setting(s.clone());
        }
        if let Some(v) = &self.value {
            return Arg::Value(toml_to_json(v));
        }
        if let Some(o) = self.output {
            return Arg::Output(o);
        }
        Arg::Value(Value::Null)
    }
}

/// One Gradio call of a Space pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallSpec {
    /// The endpoint's api_name, with its leading slash (`/gradio_demo`).
    #[serde(default)]
    pub api_name: Option<String>,
    /// For unnamed endpoints (Gradio 3.x): the dependency index.
    #[serde(default)]
    pub fn_index: Option<usize>,
    /// Positional inputs, in the endpoint's order.
    pub inputs: Vec<ArgSpec>,
}

impl CallSpec {
    /// How messages name the call: its api_name, else `fn_index N`.
    pub fn label(&self) -> String {
        match (&self.api_name, self.fn_index) {
            (Some(name), _) => name.clone(),
            (None, Some(i)) => format!("fn_index {i}"),
            (None, None) => "(unnamed)".into(),
        }
    }

    /// The resolved positional arguments.
    pub fn args(&self) -> Vec<Arg> {
        self.inputs.iter().map(ArgSpec::arg).collect()
    }
}

/// How the pipeline's jobs are run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BackendSpec {
    /// A Gradio Space and the calls made to it.
    Space {
        /// The Space id (`facebook/vggt`).
        space: String,
        /// Base URL; by default `https://<owner>-<name>.hf.space`. Overridable per deployment.
        #[serde(default)]
        url: Option<String>,
        /// The calls, in order (empty when `layouts` lists them instead).
        #[serde(default)]
        calls: Vec<CallSpec>,
        /// Alternative call sequences, the first whose endpoints the live Space has being used.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        layouts: Vec<LayoutSpec>,
    },
    /// A local ONNX model run by the `reconstruct` worker.
    Onnx {
        /// Path of the `.onnx` file (relative paths resolve against the data directory).
        model: String,
        /// Model I/O names, when they differ from the VGGT export's.
        #[serde(default)]
        io: BTreeMap<String, String>,
        /// Pre-processing mode: `pad` (default) or `crop`.
        #[serde(default)]
        preprocess: Option<String>,
    },
    /// A model server (Ollama or the OpenAI chat API) asked `requests` in order
    /// (`model_server.rs`).
    HttpModel {
        protocol: ChatProtocol,
        /// The server's base URL (`http://127.0.0.1:11434`). Overridable per deployment.
        url: String,
        /// The served model (`llava:7b`); a request may name another.
        model: String,
        requests: Vec<RequestSpec>,
        /// How long one request may take, in seconds (default 300).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_s: Option<u64>,
    },
    /// A function of ours over earlier artifacts (`local.rs`).
    Local { function: LocalFunction },
    /// Stages, each a child run of another pipeline (`chain.rs`).
    Chain { stages: Vec<StageSpec> },
}

/// One artifact a run produces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub content_type: String,
    /// Name of the stored file (`scene.glb`).
    pub filename: String,
    /// For Space backends: which call output holds the file.
    #[serde(default)]
    pub from: Option<OutputRef>,
    /// The Space may return nothing there (a null): the run succeeds without this artifact.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
    /// The most bytes the artifact may have (default `DEFAULT_ARTIFACT_MAX_BYTES`): a backend
    /// that sends more fails the run, and nothing of it is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// For a chain: the stage whose artifact `artifact` this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
}

/// An artifact's cap when its pipeline names none: room for a large scene, not for a disk.
pub const DEFAULT_ARTIFACT_MAX_BYTES: u64 = 8 << 30;

impl OutputSpec {
    /// The most bytes this artifact may have.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes.unwrap_or(DEFAULT_ARTIFACT_MAX_BYTES)
    }
}

/// A non-file output of a Space (a Textbox, a Number, JSON): kept on the run under `outputs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueSpec {
    /// Which output of the last call holds it.
    pub from: OutputRef,
    /// What it is: the Space's value is checked (and a 3.x float such as `42.0` made an integer).
    #[serde(rename = "type")]
    pub kind: ValueKind,
    #[serde(default)]
    pub description: Option<String>,
    /// The Space may return nothing there: the run's `outputs` then holds null.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// The type of a non-file output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueKind {
    Text,
    Number,
    Integer,
    Boolean,
    Json,
}

/// A Space layout: one named sequence of calls (and where its artifacts and values are), for
/// a Space whose apps exist in more than one shape (Hunyuan3D-2's 7- and 13-input apps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayoutSpec {
    pub name: String,
    pub calls: Vec<CallSpec>,
    /// Where this layout puts an artifact or value (and in which format, for an artifact), when
    /// not where `[outputs]`/`[values]` say.
    #[serde(default)]
    pub outputs: BTreeMap<String, LayoutOutput>,
}

/// An artifact or value of one layout: where it is, and for an artifact the format this layout
/// returns it in when it differs (Hunyuan3D-2.1 returns its white mesh as OBJ, the Space as GLB).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayoutOutput {
    pub from: OutputRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

/// A pipeline, as loaded and checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    pub name: String,
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Another pipeline that can do the same job when this one's backend is down (the first
    /// of the failover list; `[failover]` names more, and when to use them).
    #[serde(default)]
    pub fallback: Option<String>,
    #[serde(default)]
    pub failover: Failover,
    /// Default run deadline in seconds (a request may ask for less or more, up to `max_deadline_s`).
    #[serde(default = "default_deadline_s")]
    pub deadline_s: u64,
    #[serde(default = "default_max_deadline_s")]
    pub max_deadline_s: u64,
    /// How many times a job the backend lost is submitted again.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The most jobs of this pipeline's backend (its Space or model) in flight at once, across
    /// every process sharing the store; the rest wait in `queued` with their position shown.
    /// Unset: no limit for a Space, 1 for a local model (one GPU runs one job at a time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Days a finished run's inputs and artifacts are kept before the sweeper deletes them (the
    /// record stays, marked); unset: the deployment's `retention_days`, else kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_days: Option<u32>,
    pub backend: BackendSpec,
    pub inputs: BTreeMap<String, InputSpec>,
    #[serde(default)]
    pub settings: BTreeMap<String, SettingSpec>,
    pub outputs: BTreeMap<String, OutputSpec>,
    /// Non-file outputs, shown on the run as `outputs`.
    #[serde(default)]
    pub values: BTreeMap<String, ValueSpec>,
}

impl Pipeline {
    /// The most jobs of this pipeline's backend in flight at once (`None`: no limit).
    pub fn in_flight_limit(&self) -> Option<u32> {
        match (&self.backend, self.max_in_flight) {
            (_, Some(0)) => None,
            (_, Some(n)) => Some(n),
            (BackendSpec::Onnx { .. }, None) => Some(1),
            (
                BackendSpec::Space { .. }
                | BackendSpec::HttpModel { .. }
                | BackendSpec::Local { .. }
                | BackendSpec::Chain { .. },
                None,
            ) => None,
        }
    }

    /// The key the slots of this pipeline's backend are counted under: one per Space (by its
    /// id) or model file, whichever pipelines use it.
    pub fn slot_key(&self) -> String {
        match &self.backend {
            BackendSpec::Space { space, .. } => format!("space:{space}"),
            BackendSpec::Onnx { model, .. } => format!("onnx:{model}"),
            BackendSpec::HttpModel { url, model, .. } => format!("http_model:{url}#{model}"),
            BackendSpec::Local { function } => format!("local:{}", function.as_str()),
            BackendSpec::Chain { .. } => format!("chain:{}", self.name),
        }
    }

    /// The pipelines a run may fail over to, in order: `fallback`, then `[failover] to`.
    pub fn fallbacks(&self) -> Vec<&str> {
        let mut out: Vec<&str> = vec![];
        for name in self.fallback.iter().chain(&self.failover.to) {
            if !out.contains(&name.as_str()) {
                out.push(name);
            }
        }
        out
    }
}

fn default_deadline_s() -> u64 {
    900
}
fn default_max_deadline_s() -> u64 {
    86_400
}
fn default_max_attempts() -> u32 {
    3
}

/// The name of the one layout of a Space pipeline that lists plain `calls`.
pub const DEFAULT_LAYOUT: &str = "default";

impl Pipeline {
    /// A Space pipeline's call sequences, in the order they are tried (empty for other kinds).
    pub fn layouts(&self) -> Vec<LayoutSpec> {
        match &self.backend {
            BackendSpec::Space { calls, .. } if !calls.is_empty() => vec![LayoutSpec {
                name: DEFAULT_LAYOUT.into(),
                calls: calls.clone(),
                outputs: BTreeMap::new(),
            }],
            BackendSpec::Space { layouts, .. } => layouts.clone(),
            BackendSpec::Onnx { .. }
            | BackendSpec::HttpModel { .. }
            | BackendSpec::Local { .. }
            | BackendSpec::Chain { .. } => {
                vec![]
            }
        }
    }

    /// Where `layout` puts the artifact or value `name`: the layout's own `from`, else the one
    /// in `[outputs]` or `[values]`.
    pub fn output_ref(&self, name: &str, layout: Option<&str>) -> Option<OutputRef> {
        if let Some(o) = self.layout_output(name, layout) {
            return Some(o.from);
        }
        self.outputs
            .get(name)
            .and_then(|o| o.from)
            .or_else(|| self.values.get(name).map(|v| v.from))
    }

    /// The artifact `name` as `layout` returns it: `[outputs]`'s spec with the layout's place
    /// and format.
    pub fn output_spec(&self, name: &str, layout: Option<&str>) -> Option<OutputSpec> {
        let mut spec = self.outputs.get(name)?.clone();
        if let Some(o) = self.layout_output(name, layout) {
            spec.from = Some(o.from);
            if let Some(c) = &o.content_type {
                spec.content_type = c.clone();
            }
            if let Some(f) = &o.filename {
                spec.filename = f.clone();
            }
        }
        Some(spec)
    }

    fn layout_output(&self, name: &str, layout: Option<&str>) -> Option<&LayoutOutput> {
        let layout = layout.unwrap_or(DEFAULT_LAYOUT);
        match &self.backend {
            BackendSpec::Space { layouts, .. } => layouts
                .iter()
                .find(|l| l.name == layout)
                .and_then(|l| l.outputs.get(name)),
            BackendSpec::Onnx { .. }
            | BackendSpec::HttpModel { .. }
            | BackendSpec::Local { .. }
            | BackendSpec::Chain { .. } => None,
        }
    }

    /// The default deadline as a duration.
    pub fn default_deadline(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.deadline_s as i64)
    }

    /// The Space id, model path or served model, for `backend.target`.
    pub fn target(&self) -> &str {
        match &self.backend {
            BackendSpec::Space { space, .. } => space,
            BackendSpec::Onnx { model, .. } | BackendSpec::HttpModel { model, .. } => model,
            BackendSpec::Local { function } => function.as_str(),
            // The chain runs its stages; its own backend is the chain.
            BackendSpec::Chain { .. } => "chain",
        }
    }

    /// What kind of backend runs the jobs.
    pub fn backend_kind(&self) -> BackendKind {
        self.backend.kind()
    }
}

impl BackendSpec {
    /// The base URL a Space backend is reached at: its override, else the Hub's
    /// `https://<owner>-<name>.hf.space`; `None` for other kinds.
    pub fn space_url(&self) -> Option<String> {
        match self {
            BackendSpec::Space { space, url, .. } => {
                Some(url.clone().unwrap_or_else(|| space_base_url(space)))
            }
            BackendSpec::Onnx { .. }
            | BackendSpec::HttpModel { .. }
            | BackendSpec::Local { .. }
            | BackendSpec::Chain { .. } => None,
        }
    }

    /// What kind of backend this is.
    pub fn kind(&self) -> BackendKind {
        match self {
            BackendSpec::Space { .. } => BackendKind::Space,
            BackendSpec::Onnx { .. } => BackendKind::Onnx,
            BackendSpec::HttpModel { .. } => BackendKind::HttpModel,
            BackendSpec::Local { .. } => BackendKind::Local,
            BackendSpec::Chain { .. } => BackendKind::Chain,
        }
    }
}

/// Converts a TOML value to JSON.
pub fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => json!(i),
        toml::Value::Float(f) => json!(f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// The base URL of a Space: `https://<owner>-<name>.hf.space` (lowercase, `_` and `.` become `-`).
pub fn space_base_url(space: &str) -> String {
    let host: String = space
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c == '/' || c == '_' || c == '.' {
                '-'
            } else {
                c
            }
        })
        .collect();
    format!("https://{host}.hf.space")
}
