//! An `http_model` backend: a model server (Ollama, or anything speaking the OpenAI chat API:
//! vLLM, llama.cpp's server) asked a sequence of requests. A request over an input slot is sent
//! once per batch of its images; a request without images once. Prompts are templates over the
//! run's settings, the batch, and earlier requests' answers; every answer is text or JSON
//! checked against a schema in the file. The requests' answers are the backend's outputs, in
//! request order: `from = { call = 0, index = N }` names request N's (a list, one per batch, for
//! a request over images), so `[outputs]` and `[values]` read them as they read a Space's.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::spec::{BackendSpec, Pipeline, toml_to_json};

mod check;

/// The wire protocol a model server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatProtocol {
    /// Ollama's `POST /api/chat`: base64 images on the message, NDJSON stream.
    Ollama,
    /// `POST /v1/chat/completions`: `image_url` data URLs, a Server-Sent Events stream.
    Openai,
}

/// What an answer is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerForm {
    #[default]
    Text,
    /// A JSON value (checked against `schema` when the request gives one).
    Json,
}

/// Where a request option's value comes from: exactly one of a setting and a constant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setting: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<toml::Value>,
}

/// One request of an `http_model` backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// Names the request in progress, errors and other prompts (`{answers.describe}`).
    pub name: String,
    /// The served model, when not the backend's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The system message's template, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The user message's template: `{setting}` for a setting's backend spelling; `{batch}`,
    /// `{batches}`, `{images}`, `{first}`, `{last}` (1-based image numbers of the batch) and
    /// `{filenames}`; `{answers.NAME}` for an earlier request's answers; `{{` and `}}` for braces.
    pub prompt: String,
    /// The input slot whose images go with the request, `images_per_request` at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<String>,
    /// Images per request (seed 003's `IMAGE_BATCH_SIZE`); unset: all of them in one request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images_per_request: Option<usize>,
    #[serde(default)]
    pub answer: AnswerForm,
    /// A JSON Schema the answer must satisfy (and that the server is asked to follow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<toml::Value>,
    /// Sampling options in the server's spelling (`temperature`, `seed`, `num_predict` …):
    /// Ollama's `options`, or the OpenAI request's own fields.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, OptionSpec>,
    /// The most bytes one answer may have (default `DEFAULT_MAX_ANSWER_BYTES`): a server that
    /// streams more fails the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_answer_bytes: Option<usize>,
}

/// An answer's cap when the request names none: far more than a description, far less than
/// memory.
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 256 * 1024;

/// How long one request may take when the backend does not say (a VLM on a CPU is slow).
pub const DEFAULT_REQUEST_TIMEOUT_S: u64 = 300;

impl RequestSpec {
    /// The most bytes one answer may have.
    pub fn max_answer_bytes(&self) -> usize {
        self.max_answer_bytes.unwrap_or(DEFAULT_MAX_ANSWER_BYTES)
    }

    /// The schema as JSON.
    pub fn schema_json(&self) -> Option<Value> {
        self.schema.as_ref().map(toml_to_json)
    }

    /// The batches a request over `count` images is sent in (image index ranges, in order);
    /// one empty batch for a request without images.
    pub fn batches(&self, count: usize) -> Vec<Range<usize>> {
        if self.images.is_none() {
            // One request, with no images.
            return std::iter::once(0..0).collect();
        }
        let per = self.images_per_request.unwrap_or(count).max(1);
        (0..count.div_ceil(per))
            .map(|b| b * per..((b + 1) * per).min(count))
            .collect()
    }

    /// The request's output from its answers, one per batch: the list for a request over
    /// images, the one answer otherwise.
    pub fn output(&self, answers: Vec<Value>) -> Value {
        match self.images {
            Some(_) => Value::Array(answers),
            None => answers.into_iter().next().unwrap_or(Value::Null),
        }
    }
}

/// What a template's placeholders stand for in one request.
pub struct PromptContext<'a> {
    /// The run's settings, in the backend's spelling.
    pub settings: &'a serde_json::Map<String, Value>,
    /// 0-based batch number and the batch count.
    pub batch: usize,
    pub batches: usize,
    /// The batch's image index range over the slot's ordered files, and their names.
    pub images: Range<usize>,
    pub filenames: &'a [String],
    /// Earlier requests' outputs, by name.
    pub answers: &'a BTreeMap<String, Value>,
}

/// Fills `template`'s placeholders; an unknown one is an error naming it (the loader checks
/// every template, so a run only meets one through a file changed under it).
pub fn render(template: &str, ctx: &PromptContext) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    each_part(template, |part| {
        match part {
            Part::Text(t) => out.push_str(t),
            Part::Name(name) => out.push_str(&placeholder(name, ctx)?),
        }
        Ok(())
    })?;
    Ok(out)
}

fn placeholder(name: &str, ctx: &PromptContext) -> Result<String, String> {
    Ok(match name {
        "batch" => (ctx.batch + 1).to_string(),
        "batches" => ctx.batches.to_string(),
        "images" => ctx.images.len().to_string(),
        "first" => (ctx.images.start + 1).to_string(),
        "last" => ctx.images.end.to_string(),
        "filenames" => ctx.filenames.join(", "),
        _ => {
            if let Some(req) = name.strip_prefix("answers.") {
                let v = ctx
                    .answers
                    .get(req)
                    .ok_or_else(|| format!("no earlier request {req:?}"))?;
                answers_text(v)
            } else {
                let v = ctx
                    .settings
                    .get(name)
                    .ok_or_else(|| format!("no setting {name:?}"))?;
                text_of(v)
            }
        }
    })
}

/// An earlier request's output as prompt text: each batch's answer on its own numbered line
/// for a list, the answer itself otherwise.
fn answers_text(v: &Value) -> String {
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, a)| format!("[{}] {}", i + 1, text_of(a)))
            .collect::<Vec<_>>()
            .join("\n"),
        other => text_of(other),
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

enum Part<'a> {
    Text(&'a str),
    Name(&'a str),
}

/// Splits a template into text and `{name}` placeholders (`{{`, `}}` are literal braces).
fn each_part<'a>(
    template: &'a str,
    mut f: impl FnMut(Part<'a>) -> Result<(), String>,
) -> Result<(), String> {
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        f(Part::Text(&rest[..i]))?;
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            f(Part::Text("{"))?;
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            f(Part::Text("}"))?;
            rest = after;
        } else if tail.starts_with('}') {
            return Err("a lone '}' (write '}}' for a brace)".into());
        } else {
            let end = tail
                .find('}')
                .ok_or("a '{' that is never closed (write '{{' for a brace)")?;
            f(Part::Name(tail[1..end].trim()))?;
            rest = &tail[end + 1..];
        }
    }
    f(Part::Text(rest))
}

/// The protocol, server and requests of an `http_model` pipeline's backend.
pub struct ModelServer<'a> {
    pub protocol: ChatProtocol,
    pub url: &'a str,
    pub model: &'a str,
    pub requests: &'a [RequestSpec],
    pub timeout_s: u64,
}
impl Pipeline {
    /// The model server this pipeline asks, if it is an `http_model` one.
    pub fn model_server(&self) -> Option<ModelServer<'_>> {
        match &self.backend {
            BackendSpec::HttpModel {
                protocol,
                url,
                model,
                requests,
                timeout_s,
            } => Some(ModelServer {
                protocol: *protocol,
                url,
                model,
                requests,
                timeout_s: timeout_s.unwrap_or(DEFAULT_REQUEST_TIMEOUT_S),
            }),
            _ => None,
        }
    }
}

/// The bytes of an artifact holding a request's answers: JSON as JSON, or the text (a list's
/// answers one after another, separated by a blank line).
pub fn answer_file(content_type: &str, value: &Value) -> Vec<u8> {
    if content_type == "text/plain" {
        let text = match value {
            Value::Array(items) => items.iter().map(text_of).collect::<Vec<_>>().join("\n\n"),
            other => text_of(other),
        };
        return text.into_bytes();
    }
    let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// The JSON in a model's answer: the whole text, else the one fenced block or the outermost
/// object or list in it (models wrap JSON in prose and ``` fences however they are asked).
pub fn json_in_answer(text: &str) -> Option<Value> {
    let trimmed = text.trim();
    if let Ok(v) = serde_json::from_str(trimmed) {
        return Some(v);
    }
    if let Some(start) = trimmed.find("```") {
        let body = &trimmed[start + 3..];
        let body = body.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
        if let Some(end) = body.find("```")
            && let Ok(v) = serde_json::from_str(body[..end].trim())
        {
            return Some(v);
        }
    }
    for (open, close) in [('{', '}'), ('[', ']')] {
        if let (Some(a), Some(b)) = (trimmed.find(open), trimmed.rfind(close))
            && a < b
            && let Ok(v) = serde_json::from_str(&trimmed[a..=b])
        {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(images: Option<&str>, per: Option<usize>) -> RequestSpec {
        RequestSpec {
            name: "describe".into(),
            model: None,
            system: None,
            prompt: String::new(),
            images: images.map(Into::into),
            images_per_request: per,
            answer: AnswerForm::Text,
            schema: None,
            options: BTreeMap::new(),
            max_answer_bytes: None,
        }
    }

    #[test]
    fn images_are_split_into_batches_in_order() {
        assert_eq!(
            req(Some("images"), Some(5)).batches(12),
            vec![0..5, 5..10, 10..12]
        );
        assert_eq!(req(Some("images"), None).batches(7), vec![0..7]);
        assert_eq!(req(Some("images"), Some(5)).batches(5), vec![0..5]);
        assert_eq!(req(None, None).batches(12), vec![0..0]);
    }

    #[test]
    fn templates_fill_settings_batches_and_answers() {
        let settings = json!({"detail": "short", "n": 3})
            .as_object()
            .unwrap()
            .clone();
        let answers = BTreeMap::from([("describe".to_string(), json!(["a cat", "a dog"]))]);
        let files = vec!["f6.png".to_string(), "f7.png".to_string()];
        let ctx = PromptContext {
            settings: &settings,
            batch: 1,
            batches: 3,
            images: 5..7,
            filenames: &files,
            answers: &answers,
        };
        let out = render(
            "{detail} {n}: batch {batch}/{batches}, images {first}-{last} ({images}: {filenames}) {{\"x\": 1}}\n{answers.describe}",
            &ctx,
        )
        .unwrap();
        assert_eq!(
            out,
            "short 3: batch 2/3, images 6-7 (2: f6.png, f7.png) {\"x\": 1}\n[1] a cat\n[2] a dog"
        );
        assert!(render("{nope}", &ctx).unwrap_err().contains("nope"));
        assert!(render("{open", &ctx).is_err());
        assert!(render("close}", &ctx).is_err());
    }

    #[test]
    fn json_is_found_in_fenced_or_wrapped_answers() {
        assert_eq!(json_in_answer(" {\"a\": 1} "), Some(json!({"a": 1})));
        assert_eq!(
            json_in_answer("Here:\n```json\n[1, 2]\n```\nDone."),
            Some(json!([1, 2]))
        );
        assert_eq!(
            json_in_answer("The events are {\"events\": []} as asked."),
            Some(json!({"events": []}))
        );
        assert_eq!(json_in_answer("no json here"), None);
    }

    #[test]
    fn answer_files_hold_json_or_text() {
        assert_eq!(
            answer_file("text/plain", &json!(["one", "two"])),
            b"one\n\ntwo"
        );
        let v: Value =
            serde_json::from_slice(&answer_file("application/json", &json!({"a": [1]}))).unwrap();
        assert_eq!(v, json!({"a": [1]}));
    }
}
