//! `spaceport pipelines new`: a starting pipeline file for one endpoint of a live Space, from its
//! `/config` (component types, ranges, choices, defaults) and `/info` (parameter names). Files
//! become input slots, other inputs settings (or `null` for State), outputs artifacts or values;
//! the user then edits names, limits and descriptions. The file it writes loads and passes
//! `pipelines check` against the Space it came from.

use std::collections::BTreeSet;
use std::fmt::Write;

use serde_json::Value;

use crate::config::{Endpoint, SpaceConfig};

/// What to scaffold.
pub struct Scaffold<'a> {
    pub name: &'a str,
    /// The Space id (`owner/name`).
    pub space: &'a str,
    /// The URL it was read from, written as `url` when it is not the Hub's.
    pub url: Option<&'a str>,
    pub config: &'a SpaceConfig,
    /// `/info`, when the Space serves it.
    pub info: Option<&'a Value>,
    pub endpoint: &'a Endpoint,
}

/// TOML-quotes a string.
fn q(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

fn snake(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    let out = out.trim_end_matches('_').to_string();
    match out.chars().next() {
        Some(c) if c.is_ascii_alphabetic() => out,
        Some(_) => format!("x_{out}"),
        None => String::new(),
    }
}

/// A fresh name from `want`, else `fallback`.
fn unique(taken: &mut BTreeSet<String>, want: Option<&str>, fallback: String) -> String {
    let base = want
        .map(snake)
        .filter(|s| !s.is_empty())
        .unwrap_or(fallback);
    let mut name = base.clone();
    let mut i = 2;
    while !taken.insert(name.clone()) {
        name = format!("{base}_{i}");
        i += 1;
    }
    name
}

/// TOML for a JSON value (scalars and lists of them; anything else as its JSON text).
fn toml_value(v: &Value) -> String {
    match v {
        Value::Null => "\"\"".into(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(toml_value).collect::<Vec<_>>().join(", ")
        ),
        Value::String(s) => q(s),
        Value::Object(_) => q(&v.to_string()),
        other => other.to_string(),
    }
}

const IMAGES: &str = r#"["image/jpeg", "image/png", "image/webp"]"#;

/// The pipeline file, or why this endpoint cannot be one.
pub fn scaffold(s: &Scaffold<'_>) -> Result<String, String> {
    let ep = s.endpoint;
    let info_params = info_of(s.info, ep, "parameters");
    let info_returns = info_of(s.info, ep, "returns");
    let mut names = BTreeSet::new();
    let mut args = vec![];
    let mut inputs = String::new();
    let mut settings = String::new();
    let mut params = info_params.iter();
    for (j, c) in ep.inputs.iter().enumerate() {
        if c.is_state() {
            args.push("{ null = true },  # State: kept by the Space per session".to_string());
            continue;
        }
        // /info lists every input but State, in order.
        let p = params.next();
        let pname = p
            .and_then(|p| p.get("parameter_name").or_else(|| p.get("label")))
            .and_then(Value::as_str)
            .or(c.label.as_deref());
        let default = p
            .and_then(|p| p.get("parameter_default"))
            .or_else(|| c.props.get("value"))
            .cloned()
            .unwrap_or(Value::Null);
        let form = match c.kind.as_str() {
            "image" => Some(("image", IMAGES, 1)),
            "imageeditor" | "sketchpad" | "paint" => Some(("editor", IMAGES, 1)),
            "gallery" => Some(("gallery", IMAGES, 50)),
            "file" | "files" | "uploadbutton" | "model3d" | "video" | "audio" => {
                let many = c.props.get("file_count").and_then(Value::as_str) == Some("multiple");
                Some((
                    if many { "files" } else { "file" },
                    r#"["application/octet-stream"]"#,
                    if many { 50 } else { 1 },
                ))
            }
            _ => None,
        };
        if let Some((form, types, max)) = form {
            let slot = unique(&mut names, pname, format!("input_{j}"));
            args.push(format!(
                "{{ input = {}, as = {} }},  # {}",
                q(&slot),
                q(form),
                c.kind
            ));
            let _ = write!(
                inputs,
                "\n[inputs.{slot}]\nmin = 1\nmax = {max}\ncontent_types = {types}\nmax_bytes = 20_000_000\n"
            );
            continue;
        }
        let setting = unique(&mut names, pname, format!("setting_{j}"));
        let label = c.label.clone().unwrap_or_default();
        let desc = format!("description = {}\n", q(&label));
        let body = match c.kind.as_str() {
            "checkbox" => Some(format!(
                "type = \"boolean\"\n{desc}default = {}\n",
                default.as_bool().unwrap_or(false)
            )),
            "number" | "slider" => {
                let step = c.props.get("step").and_then(Value::as_f64);
                let integer = step.is_some_and(|s| s.fract() == 0.0)
                    && default.as_f64().is_none_or(|d| d.fract() == 0.0);
                let num = |k: &str| c.props.get(k).and_then(Value::as_f64);
                let fmt = |v: f64| {
                    if integer {
                        format!("{}", v as i64)
                    } else {
                        format!("{v:?}")
                    }
                };
                let mut b = format!(
                    "type = {}\n{desc}",
                    q(if integer { "integer" } else { "number" })
                );
                if let Some(v) = num("minimum") {
                    let _ = writeln!(b, "minimum = {}", fmt(v));
                }
                if let Some(v) = num("maximum") {
                    let _ = writeln!(b, "maximum = {}", fmt(v));
                }
                if let Some(v) = default.as_f64() {
                    let _ = writeln!(b, "default = {}", fmt(v));
                }
                Some(b)
            }
            "dropdown" | "radio" if c.choices.as_ref().is_some_and(|c| !c.is_empty()) => {
                let choices = c.choices.as_ref().unwrap();
                let mut keys = BTreeSet::new();
                let pairs: Vec<String> = choices
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let shown = v
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string());
                        let key = unique(&mut keys, Some(&shown), format!("choice_{i}"));
                        format!("{} = {}", q(&key), toml_value(v))
                    })
                    .collect();
                let default_key = choices.iter().position(|v| *v == default);
                let mut b = format!(
                    "type = \"enum\"\n{desc}values = {{ {} }}\n",
                    pairs.join(", ")
                );
                if let Some(i) = default_key {
                    let key = pairs[i].split(" = ").next().unwrap_or("\"\"");
                    let _ = writeln!(b, "default = {key}");
                }
                Some(b)
            }
            "textbox" | "textarea" | "code" => Some(format!(
                "type = \"string\"\n{desc}default = {}\n",
                q(default.as_str().unwrap_or(""))
            )),
            _ => None,
        };
        match body {
            Some(b) => {
                args.push(format!("{{ setting = {} }},  # {}", q(&setting), c.kind));
                let _ = write!(settings, "\n[settings.{setting}]\n{b}");
            }
            None => {
                names.remove(&setting);
                args.push(format!(
                    "{{ value = {} }},  # {}: a constant; make it a setting if users choose it",
                    toml_value(&default),
                    c.kind
                ));
            }
        }
    }
    if inputs.is_empty() {
        return Err(format!(
            "{} takes no image or file: a Spaceport pipeline takes at least one input file",
            label(ep)
        ));
    }

    let mut outputs = String::new();
    let mut values = String::new();
    let mut returns = info_returns.iter();
    for (k, c) in ep.outputs.iter().enumerate() {
        if c.is_state() {
            continue;
        }
        let r = returns.next();
        let rname = r
            .and_then(|r| r.get("label"))
            .and_then(Value::as_str)
            .or(c.label.as_deref());
        let name = unique(&mut names, rname, format!("output_{k}"));
        let from = format!("from = {{ call = 0, index = {k} }}");
        let file = c.holds_files().then_some(match c.kind.as_str() {
            "image" | "imageeditor" | "annotatedimage" | "imageslider" | "gallery" => {
                ("image/*", "png")
            }
            "model3d" => ("model/gltf-binary", "glb"),
            "video" => ("video/mp4", "mp4"),
            "audio" => ("audio/wav", "wav"),
            _ => ("application/octet-stream", "bin"),
        });
        match file {
            Some((ct, ext)) => {
                let item = if c.kind == "gallery" {
                    "  # a Gallery: `item = N` picks one image\n"
                } else {
                    ""
                };
                let _ = write!(
                    outputs,
                    "\n[outputs.{name}]\n{item}content_type = {}\nfilename = {}\n{from}\n",
                    q(ct),
                    q(&format!("{name}.{ext}"))
                );
            }
            None => {
                let ty = match c.kind.as_str() {
                    "textbox" | "markdown" | "html" | "code" | "textarea" => "text",
                    "number" | "slider" => "number",
                    "checkbox" => "boolean",
                    _ => "json",
                };
                let _ = write!(
                    values,
                    "\n[values.{name}]\ntype = {}\ndescription = {}\n{from}\noptional = true\n",
                    q(ty),
                    q(c.label.as_deref().unwrap_or(&c.kind))
                );
            }
        }
    }
    if outputs.is_empty() {
        return Err(format!(
            "{} returns no file: a Spaceport pipeline produces at least one artifact",
            label(ep)
        ));
    }

    let call = match &ep.api_name {
        Some(n) => format!("api_name = {}", q(&format!("/{n}"))),
        None => format!("fn_index = {}", ep.fn_index),
    };
    let mut text = format!(
        "# Written by `spaceport pipelines new` from {} (Gradio {}, protocol {}): {}.\n\
         # Edit the names, limits and descriptions, then `spaceport pipelines check` it.\n\
         name = {}\ntitle = {}\ndeadline_s = 900\nmax_attempts = 3\n\n[backend]\nkind = \"space\"\nspace = {}\n",
        s.url.unwrap_or(s.space),
        s.config.version.as_deref().unwrap_or("?"),
        s.config.protocol,
        label(ep),
        q(s.name),
        q(&format!("{} ({})", label(ep), s.space)),
        q(s.space),
    );
    if let Some(u) = s.url {
        let _ = writeln!(text, "url = {}", q(u));
    }
    let _ = write!(text, "calls = [\n  {{ {call}, inputs = [\n");
    for a in &args {
        let _ = writeln!(text, "      {a}");
    }
    text.push_str("  ] },\n]\n");
    text.push_str(&inputs);
    text.push_str(&settings);
    text.push_str(&outputs);
    text.push_str(&values);
    Ok(text)
}

fn label(ep: &Endpoint) -> String {
    match &ep.api_name {
        Some(n) => format!("/{n}"),
        None => format!("fn_index {}", ep.fn_index),
    }
}

/// `/info`'s parameters or returns of `ep` (named endpoints by `/name`, 3.x unnamed ones by
/// fn_index).
fn info_of<'a>(info: Option<&'a Value>, ep: &Endpoint, key: &str) -> Vec<&'a Value> {
    let Some(info) = info else { return vec![] };
    let entry = match &ep.api_name {
        Some(n) => info
            .get("named_endpoints")
            .and_then(|e| e.get(format!("/{n}"))),
        None => info
            .get("unnamed_endpoints")
            .and_then(|e| e.get(ep.fn_index.to_string())),
    };
    entry
        .and_then(|e| e.get(key))
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_snake_case_and_unique() {
        let mut taken = BTreeSet::new();
        assert_eq!(
            unique(&mut taken, Some("Person image"), "x".into()),
            "person_image"
        );
        assert_eq!(
            unique(&mut taken, Some("Person-image!"), "x".into()),
            "person_image_2"
        );
        assert_eq!(unique(&mut taken, Some("3D"), "x".into()), "x_3d");
        assert_eq!(unique(&mut taken, None, "output_1".into()), "output_1");
    }
}
