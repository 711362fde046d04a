//! Pipelines are data: one TOML file per pipeline under `pipelines/` says what inputs it takes, its
//! user-facing settings (with backend spellings), how its backend is called and which outputs become
//! artifacts. Everything is checked at load, so a bad file fails naming the file and the key.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::Error;

/// An error in a pipeline file, naming the file and the key.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct LoadError {
    pub file: String,
    pub key: String,
    pub message: String,
}

fn load_err(file: &str, key: impl Into<String>, message: impl Into<String>) -> LoadError {
    LoadError {
        file: file.to_string(),
        key: key.into(),
        message: message.into(),
    }
}

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

/// Refers to output `index` of call number `call` (0-based) in the backend's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputRef {
    pub call: usize,
    pub index: usize,
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
        calls: Vec<CallSpec>,
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
}

/// A pipeline, as loaded and checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    pub name: String,
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Another pipeline that can do the same job when this one's backend is down.
    #[serde(default)]
    pub fallback: Option<String>,
    /// Default run deadline in seconds (a request may ask for less or more, up to `max_deadline_s`).
    #[serde(default = "default_deadline_s")]
    pub deadline_s: u64,
    #[serde(default = "default_max_deadline_s")]
    pub max_deadline_s: u64,
    /// How many times a job the backend lost is submitted again.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    pub backend: BackendSpec,
    pub inputs: BTreeMap<String, InputSpec>,
    #[serde(default)]
    pub settings: BTreeMap<String, SettingSpec>,
    pub outputs: BTreeMap<String, OutputSpec>,
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

/// A declared input file of a create request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredFile {
    pub filename: String,
    pub content_type: String,
    pub size: u64,
}

/// Checks a client-supplied filename: a plain name, no path, no control characters.
pub fn check_filename(field: &str, name: &str) -> Result<(), Error> {
    let bad = |why: &str| {
        Err(Error::validation(
            field,
            format!("filename {name:?} is not allowed: {why}"),
        ))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 255 {
        return bad("it is longer than 255 bytes");
    }
    if name.chars().any(|c| c.is_control()) {
        return bad("it contains a control character (NUL, newline …)");
    }
    if name.contains('/') || name.contains('\\') {
        return bad("it contains a path separator");
    }
    if name == "." || name == ".." || name.contains("..") {
        return bad("it contains '..'");
    }
    Ok(())
}

impl Pipeline {
    /// Parses and checks one pipeline file's text. `file` names it in errors.
    pub fn from_toml(file: &str, text: &str) -> Result<Pipeline, LoadError> {
        let p: Pipeline = toml::from_str(text).map_err(|e| {
            let key = e.span().map(|s| snippet(text, s)).unwrap_or_default();
            load_err(file, key, e.message().to_string())
        })?;
        p.check(file)?;
        Ok(p)
    }

    fn check(&self, file: &str) -> Result<(), LoadError> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(load_err(
                file,
                "name",
                format!("{:?} must be lowercase letters, digits and '-'", self.name),
            ));
        }
        if self.deadline_s == 0 || self.deadline_s > self.max_deadline_s {
            return Err(load_err(
                file,
                "deadline_s",
                format!("{} must be in 1..={}", self.deadline_s, self.max_deadline_s),
            ));
        }
        if self.max_attempts == 0 {
            return Err(load_err(file, "max_attempts", "must be at least 1"));
        }
        if self.inputs.is_empty() {
            return Err(load_err(
                file,
                "inputs",
                "a pipeline takes at least one input slot",
            ));
        }
        for (slot, spec) in &self.inputs {
            let key = format!("inputs.{slot}");
            if spec.max == 0 || spec.min > spec.max {
                return Err(load_err(
                    file,
                    key,
                    format!("min {} / max {} is not a valid range", spec.min, spec.max),
                ));
            }
            if spec.content_types.is_empty() {
                return Err(load_err(
                    file,
                    format!("{key}.content_types"),
                    "lists no content type",
                ));
            }
            if spec.max_bytes == 0 {
                return Err(load_err(
                    file,
                    format!("{key}.max_bytes"),
                    "must be positive",
                ));
            }
        }
        for (name, spec) in &self.settings {
            check_setting(file, name, spec)?;
        }
        if self.outputs.is_empty() {
            return Err(load_err(
                file,
                "outputs",
                "a pipeline produces at least one artifact",
            ));
        }
        for (name, out) in &self.outputs {
            check_filename("", &out.filename)
                .map_err(|e| load_err(file, format!("outputs.{name}.filename"), e.to_string()))?;
        }
        match &self.backend {
            BackendSpec::Space { space, calls, url } => {
                if !space.contains('/') {
                    return Err(load_err(
                        file,
                        "backend.space",
                        format!("{space:?} is not an owner/name Space id"),
                    ));
                }
                if let Some(u) = url
                    && !(u.starts_with("http://") || u.starts_with("https://"))
                {
                    return Err(load_err(
                        file,
                        "backend.url",
                        format!("{u:?} is not an http(s) URL"),
                    ));
                }
                if calls.is_empty() {
                    return Err(load_err(
                        file,
                        "backend.calls",
                        "a Space backend makes at least one call",
                    ));
                }
                for (i, call) in calls.iter().enumerate() {
                    let key = format!("backend.calls[{i}]");
                    match (&call.api_name, call.fn_index) {
                        (Some(n), None) if n.starts_with('/') => {}
                        (Some(n), None) => {
                            return Err(load_err(
                                file,
                                format!("{key}.api_name"),
                                format!("{n:?} must start with '/'"),
                            ));
                        }
                        (None, Some(_)) => {}
                        _ => {
                            return Err(load_err(
                                file,
                                key,
                                "give exactly one of api_name and fn_index",
                            ));
                        }
                    }
                    for (j, arg) in call.inputs.iter().enumerate() {
                        self.check_arg(file, &format!("{key}.inputs[{j}]"), i, arg)?;
                    }
                }
                for (name, out) in &self.outputs {
                    let key = format!("outputs.{name}.from");
                    let Some(from) = out.from else {
                        return Err(load_err(
                            file,
                            key,
                            "a Space pipeline says which call output holds the file",
                        ));
                    };
                    if from.call >= calls.len() {
                        return Err(load_err(
                            file,
                            key,
                            format!("call {} does not exist", from.call),
                        ));
                    }
                    if from.call != calls.len() - 1 {
                        return Err(load_err(file, key, "artifacts come from the last call"));
                    }
                }
            }
            BackendSpec::Onnx {
                model, preprocess, ..
            } => {
                if model.is_empty() {
                    return Err(load_err(file, "backend.model", "is empty"));
                }
                if let Some(m) = preprocess
                    && m != "pad"
                    && m != "crop"
                {
                    return Err(load_err(
                        file,
                        "backend.preprocess",
                        format!("{m:?} is not pad or crop"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_arg(
        &self,
        file: &str,
        key: &str,
        call: usize,
        arg: &ArgSpec,
    ) -> Result<(), LoadError> {
        let sources = [
            arg.input.is_some(),
            arg.setting.is_some(),
            arg.value.is_some(),
            arg.null,
            arg.output.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(load_err(
                file,
                key,
                "give exactly one of input, setting, value, null = true, output",
            ));
        }
        if arg.form.is_some() && arg.input.is_none() {
            return Err(load_err(
                file,
                format!("{key}.as"),
                "only an input argument has a form",
            ));
        }
        if let Some(slot) = &arg.input
            && !self.inputs.contains_key(slot)
        {
            return Err(load_err(
                file,
                format!("{key}.input"),
                format!("no input slot {slot:?}"),
            ));
        }
        if let Some(s) = &arg.setting
            && !self.settings.contains_key(s)
        {
            return Err(load_err(
                file,
                format!("{key}.setting"),
                format!("no setting {s:?}"),
            ));
        }
        if let Some(o) = arg.output
            && o.call >= call
        {
            return Err(load_err(
                file,
                format!("{key}.output"),
                format!("call {} is not an earlier call", o.call),
            ));
        }
        Ok(())
    }

    /// The default deadline as a duration.
    pub fn default_deadline(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.deadline_s as i64)
    }

    /// The Space id or model path, for `backend.target`.
    pub fn target(&self) -> &str {
        match &self.backend {
            BackendSpec::Space { space, .. } => space,
            BackendSpec::Onnx { model, .. } => model,
        }
    }

    /// `space` or `onnx`.
    pub fn backend_kind(&self) -> &'static str {
        match &self.backend {
            BackendSpec::Space { .. } => "space",
            BackendSpec::Onnx { .. } => "onnx",
        }
    }

    /// Checks request settings and fills defaults. Errors name `settings.<key>`.
    pub fn resolve_settings(
        &self,
        given: &Map<String, Value>,
    ) -> Result<Map<String, Value>, Error> {
        for key in given.keys() {
            if !self.settings.contains_key(key) {
                let known: Vec<&str> = self.settings.keys().map(String::as_str).collect();
                return Err(Error::validation(
                    format!("settings.{key}"),
                    format!(
                        "unknown setting {key:?} for pipeline {:?} (known: {})",
                        self.name,
                        known.join(", ")
                    ),
                ));
            }
        }
        let mut out = Map::new();
        for (name, spec) in &self.settings {
            let field = format!("settings.{name}");
            let value = match given.get(name) {
                Some(v) => check_value(&field, spec, v)?,
                None => match default_of(spec) {
                    Some(d) => d,
                    None => {
                        return Err(Error::validation(
                            field,
                            format!("setting {name:?} is required"),
                        ));
                    }
                },
            };
            out.insert(name.clone(), value);
        }
        Ok(out)
    }

    /// Resolved settings in the backend's spelling (enums mapped).
    pub fn backend_settings(&self, resolved: &Map<String, Value>) -> Map<String, Value> {
        resolved
            .iter()
            .map(|(k, v)| {
                let mapped = match (self.settings.get(k), v) {
                    (Some(SettingSpec::Enum { values, .. }), Value::String(s)) => {
                        values.get(s).map(toml_to_json).unwrap_or_else(|| v.clone())
                    }
                    _ => v.clone(),
                };
                (k.clone(), mapped)
            })
            .collect()
    }

    /// Checks the declared files of a create request against the input slots.
    pub fn check_inputs(
        &self,
        declared: &BTreeMap<String, Vec<DeclaredFile>>,
    ) -> Result<(), Error> {
        for slot in declared.keys() {
            if !self.inputs.contains_key(slot) {
                return Err(Error::validation(
                    format!("inputs.{slot}"),
                    format!("pipeline {:?} has no input slot {slot:?}", self.name),
                ));
            }
        }
        for (slot, spec) in &self.inputs {
            let files = declared.get(slot).map(Vec::as_slice).unwrap_or(&[]);
            let field = format!("inputs.{slot}");
            if files.len() < spec.min || files.len() > spec.max {
                return Err(Error::validation(
                    field,
                    format!(
                        "{} file(s) given; {slot} takes {} to {}",
                        files.len(),
                        spec.min,
                        spec.max
                    ),
                ));
            }
            let mut seen = std::collections::BTreeSet::new();
            for (i, f) in files.iter().enumerate() {
                let ff = format!("{field}[{i}]");
                check_filename(&format!("{ff}.filename"), &f.filename)?;
                if !seen.insert(f.filename.as_str()) {
                    return Err(Error::validation(
                        format!("{ff}.filename"),
                        format!("filename {:?} appears twice", f.filename),
                    ));
                }
                if !spec.content_types.iter().any(|t| t == &f.content_type) {
                    return Err(Error::UnsupportedMediaType {
                        field: Some(format!("{ff}.content_type")),
                        message: format!(
                            "content type {:?} is not accepted; use one of {}",
                            f.content_type,
                            spec.content_types.join(", ")
                        ),
                    });
                }
                if f.size == 0 {
                    return Err(Error::validation(
                        format!("{ff}.size"),
                        "size must be positive",
                    ));
                }
                if f.size > spec.max_bytes {
                    return Err(Error::PayloadTooLarge {
                        field: Some(format!("{ff}.size")),
                        message: format!(
                            "{} bytes declared; the limit is {} bytes",
                            f.size, spec.max_bytes
                        ),
                    });
                }
            }
        }
        Ok(())
    }

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
        let backend = match &self.backend {
            BackendSpec::Space { space, .. } => json!({"kind": "space", "space": space}),
            BackendSpec::Onnx { model, .. } => json!({"kind": "onnx", "model": model}),
        };
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
            "fallback": self.fallback,
            "deadline_s": self.deadline_s,
        })
    }
}

fn snippet(text: &str, span: std::ops::Range<usize>) -> String {
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text[..start].rsplit('\n').next().unwrap_or("");
    let rest = text[start..].split('\n').next().unwrap_or("");
    format!("line {line_no}: {}", format!("{line}{rest}").trim())
}

fn check_setting(file: &str, name: &str, spec: &SettingSpec) -> Result<(), LoadError> {
    let key = format!("settings.{name}");
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(load_err(file, key, "setting names are snake_case"));
    }
    let range_err = |what: String| Err(load_err(file, format!("{key}.default"), what));
    match spec {
        SettingSpec::Number {
            minimum,
            maximum,
            default,
            ..
        } => {
            if let (Some(lo), Some(hi)) = (minimum, maximum)
                && lo > hi
            {
                return Err(load_err(
                    file,
                    format!("{key}.minimum"),
                    format!("{lo} is above maximum {hi}"),
                ));
            }
            if let Some(d) = default
                && (minimum.is_some_and(|m| *d < m) || maximum.is_some_and(|m| *d > m))
            {
                return range_err(format!("{d} is outside [{minimum:?}, {maximum:?}]"));
            }
        }
        SettingSpec::Integer {
            minimum,
            maximum,
            default,
            ..
        } => {
            if let (Some(lo), Some(hi)) = (minimum, maximum)
                && lo > hi
            {
                return Err(load_err(
                    file,
                    format!("{key}.minimum"),
                    format!("{lo} is above maximum {hi}"),
                ));
            }
            if let Some(d) = default
                && (minimum.is_some_and(|m| *d < m) || maximum.is_some_and(|m| *d > m))
            {
                return range_err(format!("{d} is outside [{minimum:?}, {maximum:?}]"));
            }
        }
        SettingSpec::Boolean { .. } => {}
        SettingSpec::String {
            max_length,
            default,
            ..
        } => {
            if let (Some(m), Some(d)) = (max_length, default)
                && d.chars().count() > *m
            {
                return range_err(format!("is longer than max_length {m}"));
            }
        }
        SettingSpec::Enum {
            values, default, ..
        } => {
            if values.is_empty() {
                return Err(load_err(
                    file,
                    format!("{key}.values"),
                    "an enum lists at least one value",
                ));
            }
            if let Some(d) = default
                && !values.contains_key(d)
            {
                return range_err(format!("{d:?} is not one of the values"));
            }
        }
    }
    Ok(())
}

fn default_of(spec: &SettingSpec) -> Option<Value> {
    match spec {
        SettingSpec::Number { default, .. } => default.map(|d| json!(d)),
        SettingSpec::Integer { default, .. } => default.map(|d| json!(d)),
        SettingSpec::Boolean { default, .. } => default.map(|d| json!(d)),
        SettingSpec::String { default, .. } => default.as_ref().map(|d| json!(d)),
        SettingSpec::Enum { default, .. } => default.as_ref().map(|d| json!(d)),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check_value(field: &str, spec: &SettingSpec, v: &Value) -> Result<Value, Error> {
    let wrong = |want: &str| {
        Err(Error::validation(
            field,
            format!("{field} must be {want}, got {}", type_name(v)),
        ))
    };
    match spec {
        SettingSpec::Number {
            minimum, maximum, ..
        } => {
            let Some(n) = v.as_f64() else {
                return wrong("a number");
            };
            if minimum.is_some_and(|m| n < m) || maximum.is_some_and(|m| n > m) {
                return Err(Error::validation(
                    field,
                    format!(
                        "{field} = {n} is out of range [{}, {}]",
                        fmt_bound(*minimum),
                        fmt_bound(*maximum)
                    ),
                ));
            }
            Ok(v.clone())
        }
        SettingSpec::Integer {
            minimum, maximum, ..
        } => {
            let Some(n) = v.as_i64() else {
                return wrong("an integer");
            };
            if minimum.is_some_and(|m| n < m) || maximum.is_some_and(|m| n > m) {
                return Err(Error::validation(
                    field,
                    format!(
                        "{field} = {n} is out of range [{}, {}]",
                        fmt_bound(minimum.map(|m| m as f64)),
                        fmt_bound(maximum.map(|m| m as f64))
                    ),
                ));
            }
            Ok(v.clone())
        }
        SettingSpec::Boolean { .. } => match v {
            Value::Bool(_) => Ok(v.clone()),
            _ => wrong("a boolean"),
        },
        SettingSpec::String { max_length, .. } => {
            let Some(s) = v.as_str() else {
                return wrong("a string");
            };
            if max_length.is_some_and(|m| s.chars().count() > m) {
                return Err(Error::validation(
                    field,
                    format!(
                        "{field} is longer than {} characters",
                        max_length.unwrap_or(0)
                    ),
                ));
            }
            Ok(v.clone())
        }
        SettingSpec::Enum { values, .. } => {
            let Some(s) = v.as_str() else {
                return wrong("a string");
            };
            if !values.contains_key(s) {
                let allowed: Vec<&str> = values.keys().map(String::as_str).collect();
                return Err(Error::validation(
                    field,
                    format!("{field} = {s:?} is not one of {}", allowed.join(", ")),
                ));
            }
            Ok(v.clone())
        }
    }
}

fn fmt_bound(b: Option<f64>) -> String {
    b.map(|x| x.to_string()).unwrap_or_else(|| "…".into())
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

/// Every pipeline of a deployment, checked together (fallbacks must exist).
#[derive(Debug, Clone, Default)]
pub struct PipelineSet {
    pipelines: BTreeMap<String, Pipeline>,
}

impl PipelineSet {
    /// Loads every `*.toml` under `dir`. The file stem must equal the pipeline's name.
    pub fn load_dir(dir: &Path) -> Result<PipelineSet, LoadError> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| load_err(&dir.display().to_string(), "", e.to_string()))?;
        let mut files = vec![];
        for entry in entries {
            let path = entry
                .map_err(|e| load_err(&dir.display().to_string(), "", e.to_string()))?
                .path();
            if path.extension().is_some_and(|x| x == "toml") {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| load_err(&path.display().to_string(), "", e.to_string()))?;
                files.push((path.display().to_string(), text));
            }
        }
        files.sort();
        PipelineSet::from_files(files.iter().map(|(f, t)| (f.as_str(), t.as_str())))
    }

    /// Loads pipelines from `(file name, text)` pairs.
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<PipelineSet, LoadError> {
        let mut pipelines = BTreeMap::new();
        for (file, text) in files {
            let p = Pipeline::from_toml(file, text)?;
            let stem = Path::new(file)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("");
            if stem != p.name {
                return Err(load_err(
                    file,
                    "name",
                    format!("{:?} must match the file name {stem:?}", p.name),
                ));
            }
            pipelines.insert(p.name.clone(), p);
        }
        for p in pipelines.values() {
            if let Some(fb) = &p.fallback
                && (!pipelines.contains_key(fb) || fb == &p.name)
            {
                return Err(load_err(
                    &format!("{}.toml", p.name),
                    "fallback",
                    format!("no other pipeline named {fb:?}"),
                ));
            }
        }
        Ok(PipelineSet { pipelines })
    }

    /// The pipeline called `name`.
    pub fn get(&self, name: &str) -> Result<&Pipeline, Error> {
        self.pipelines.get(name).ok_or_else(|| Error::NotFound {
            what: "pipeline",
            id: name.to_string(),
        })
    }

    /// Every pipeline, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Pipeline> {
        self.pipelines.values()
    }

    /// Replaces a Space pipeline's base URL (a duplicated or local Space).
    pub fn set_space_url(&mut self, name: &str, new_url: &str) -> Result<(), Error> {
        let p = self
            .pipelines
            .get_mut(name)
            .ok_or_else(|| Error::NotFound {
                what: "pipeline",
                id: name.to_string(),
            })?;
        match &mut p.backend {
            BackendSpec::Space { url, .. } => {
                *url = Some(new_url.trim_end_matches('/').to_string());
                Ok(())
            }
            BackendSpec::Onnx { .. } => Err(Error::validation(
                "space_url",
                format!("pipeline {name:?} does not call a Space"),
            )),
        }
    }

    /// Replaces an ONNX pipeline's model path.
    pub fn set_model(&mut self, name: &str, path: &str) -> Result<(), Error> {
        let p = self
            .pipelines
            .get_mut(name)
            .ok_or_else(|| Error::NotFound {
                what: "pipeline",
                id: name.to_string(),
            })?;
        match &mut p.backend {
            BackendSpec::Onnx { model, .. } => {
                *model = path.to_string();
                Ok(())
            }
            BackendSpec::Space { .. } => Err(Error::validation(
                "model",
                format!("pipeline {name:?} does not run a local model"),
            )),
        }
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

/// The sha256 of a canonical JSON rendering, for idempotency checks.
pub fn request_hash(v: &Value) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(v.to_string().as_bytes()))
}
