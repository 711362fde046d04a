//! The loader's checks of an `http_model` backend: the server, each request (names, image
//! slots, templates' placeholders, schemas, options, caps) and where `[outputs]` and `[values]`
//! read the answers.

use super::{AnswerForm, Part, each_part};
use crate::pipeline::load::{LoadError, load_err};
use crate::pipeline::spec::Pipeline;

impl Pipeline {
    /// The loader's checks of an `http_model` backend.
    pub(in crate::pipeline) fn check_model_server(&self, file: &str) -> Result<(), LoadError> {
        let Some(server) = self.model_server() else {
            return Ok(());
        };
        if !(server.url.starts_with("http://") || server.url.starts_with("https://")) {
            return Err(load_err(
                file,
                "backend.url",
                format!("{:?} is not an http(s) URL", server.url),
            ));
        }
        if server.model.is_empty() {
            return Err(load_err(file, "backend.model", "is empty"));
        }
        if server.timeout_s == 0 {
            return Err(load_err(file, "backend.timeout_s", "must be positive"));
        }
        if server.requests.is_empty() {
            return Err(load_err(
                file,
                "backend.requests",
                "a model server backend makes at least one request",
            ));
        }
        let mut earlier: Vec<&str> = vec![];
        for (i, req) in server.requests.iter().enumerate() {
            let key = format!("backend.requests[{i}]");
            let err = |k: &str, m: String| Err(load_err(file, format!("{key}.{k}"), m));
            if req.name.is_empty()
                || !req
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return err("name", format!("{:?} must be snake_case", req.name));
            }
            if earlier.contains(&req.name.as_str()) {
                return err("name", format!("{:?} is listed twice", req.name));
            }
            match (&req.images, req.images_per_request) {
                (Some(slot), _) if !self.inputs.contains_key(slot) => {
                    return err("images", format!("no input slot {slot:?}"));
                }
                (_, Some(0)) => return err("images_per_request", "must be positive".into()),
                (None, Some(_)) => {
                    return err("images_per_request", "the request sends no images".into());
                }
                _ => {}
            }
            for (k, template) in [
                ("prompt", Some(&req.prompt)),
                ("system", req.system.as_ref()),
            ] {
                let Some(template) = template else { continue };
                each_part(template, |part| {
                    let Part::Name(name) = part else {
                        return Ok(());
                    };
                    let known = matches!(
                        name,
                        "batch" | "batches" | "images" | "first" | "last" | "filenames"
                    ) || self.settings.contains_key(name)
                        || name
                            .strip_prefix("answers.")
                            .is_some_and(|r| earlier.contains(&r));
                    if known {
                        Ok(())
                    } else {
                        Err(format!(
                            "{{{name}}} is no setting, batch field or earlier request's answers"
                        ))
                    }
                })
                .or_else(|m| err(k, m))?;
            }
            match (&req.schema, req.answer) {
                (Some(toml::Value::Table(_)), AnswerForm::Json) | (None, _) => {}
                (Some(_), AnswerForm::Json) => {
                    return err("schema", "a JSON Schema is a table".into());
                }
                (Some(_), AnswerForm::Text) => {
                    return err(
                        "schema",
                        "only a JSON answer (answer = \"json\") has one".into(),
                    );
                }
            }
            for (name, opt) in &req.options {
                match (&opt.setting, &opt.value) {
                    (Some(s), None) if !self.settings.contains_key(s) => {
                        return err(&format!("options.{name}"), format!("no setting {s:?}"));
                    }
                    (Some(_), None) | (None, Some(_)) => {}
                    _ => {
                        return err(
                            &format!("options.{name}"),
                            "give exactly one of setting and value".into(),
                        );
                    }
                }
            }
            if req.max_answer_bytes == Some(0) {
                return err("max_answer_bytes", "must be positive".into());
            }
            earlier.push(&req.name);
        }
        let named = self
            .outputs
            .iter()
            .map(|(n, o)| (format!("outputs.{n}"), o.from, Some(&o.content_type)))
            .chain(
                self.values
                    .iter()
                    .map(|(n, v)| (format!("values.{n}"), Some(v.from), None)),
            );
        for (key, from, content_type) in named {
            let Some(from) = from else {
                return Err(load_err(
                    file,
                    format!("{key}.from"),
                    "say which request's answers it holds: from = { call = 0, index = N }",
                ));
            };
            if from.call != 0 || from.index >= server.requests.len() {
                return Err(load_err(
                    file,
                    format!("{key}.from"),
                    format!(
                        "call 0, index 0..{} (the request's number) name a model server's answers",
                        server.requests.len()
                    ),
                ));
            }
            if let Some(ct) = content_type
                && ct != "application/json"
                && ct != "text/plain"
            {
                return Err(load_err(
                    file,
                    format!("{key}.content_type"),
                    format!(
                        "{ct:?}: a model server's answers are kept as application/json or text/plain"
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::pipeline::spec::Pipeline;

    /// A small model server pipeline with `request` as its one request (TOML, the inside of
    /// `[[backend.requests]]`) and `extra` appended.
    fn pipeline(request: &str, extra: &str) -> Result<Pipeline, String> {
        let text = format!(
            r#"name = "p"
title = "t"
[backend]
kind = "http_model"
protocol = "openai"
url = "http://127.0.0.1:8000"
model = "m"
[[backend.requests]]
{request}
[inputs.images]
min = 1
max = 9
content_types = ["image/png"]
max_bytes = 1000
[settings.detail]
type = "string"
default = "short"
[outputs.answers]
content_type = "application/json"
filename = "answers.json"
from = {{ call = 0, index = 0 }}
{extra}"#
        );
        Pipeline::from_toml("p.toml", &text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_bad_model_server_pipeline_fails_at_load_naming_the_key() {
        let ok = "name = \"describe\"\nimages = \"images\"\nimages_per_request = 2\nprompt = \"{detail} {first}-{last} {{x}}\"";
        pipeline(ok, "").unwrap();
        let cases = [
            (
                "name = \"d\"\nprompt = \"{nope}\"",
                "",
                "requests[0].prompt",
            ),
            (
                "name = \"d\"\nprompt = \"{answers.d}\"",
                "",
                "requests[0].prompt",
            ),
            (
                "name = \"d\"\nprompt = \"unclosed {\"",
                "",
                "requests[0].prompt",
            ),
            (
                "name = \"d\"\nprompt = \"p\"\nimages = \"nope\"",
                "",
                "requests[0].images",
            ),
            (
                "name = \"d\"\nprompt = \"p\"\nimages_per_request = 2",
                "",
                "images_per_request",
            ),
            (
                "name = \"d\"\nprompt = \"p\"\nschema = { type = \"object\" }",
                "",
                "requests[0].schema",
            ),
            ("name = \"D\"\nprompt = \"p\"", "", "requests[0].name"),
            (
                "name = \"d\"\nprompt = \"p\"\noptions = { seed = { setting = \"nope\" } }",
                "",
                "options.seed",
            ),
            (
                "name = \"d\"\nprompt = \"p\"",
                "[outputs.more]\ncontent_type = \"image/png\"\nfilename = \"m.png\"\nfrom = { call = 0, index = 0 }",
                "outputs.more.content_type",
            ),
            (
                "name = \"d\"\nprompt = \"p\"",
                "[values.v]\ntype = \"json\"\nfrom = { call = 0, index = 1 }",
                "values.v.from",
            ),
        ];
        for (request, extra, key) in cases {
            let e = pipeline(request, extra).unwrap_err();
            assert!(e.contains(key), "{request} / {extra}: {e}");
        }
    }
}
