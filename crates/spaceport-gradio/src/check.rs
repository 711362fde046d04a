//! `spaceport pipelines check`: a pipeline file against a live Space's `/config`. Every call of
//! every layout is matched to its endpoint (by api_name or fn_index), every argument to the
//! component in its slot, and every artifact and value to an output; each mismatch names the
//! file's key. A file passes when one of its layouts fits without a mismatch (the others are
//! the Space's other shapes); a file with one layout must fit it.

use serde_json::Value;
use spaceport_core::pipeline::{
    Arg, CallSpec, FileForm, LayoutSpec, Pipeline, SettingSpec, toml_to_json,
};

use crate::config::{Component, Endpoint, SpaceConfig};

/// One thing the file says that the Space does not do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The key in the pipeline file (`backend.calls[0].inputs[2]`).
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// How each layout fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutReport {
    pub name: String,
    /// The file key its calls live under.
    pub key: String,
    pub mismatches: Vec<Mismatch>,
}

/// The verdict on a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub layouts: Vec<LayoutReport>,
}

impl Report {
    /// The layout the Space would run (the first without a mismatch), if any.
    pub fn fitting(&self) -> Option<&LayoutReport> {
        self.layouts.iter().find(|l| l.mismatches.is_empty())
    }

    /// Whether the file fits the Space.
    pub fn passes(&self) -> bool {
        self.fitting().is_some()
    }
}

/// Checks `pipeline` against the Space `config` describes.
pub fn check(pipeline: &Pipeline, config: &SpaceConfig) -> Report {
    let layouts = pipeline.layouts();
    let single = layouts.len() == 1;
    Report {
        layouts: layouts
            .iter()
            .enumerate()
            .map(|(i, layout)| {
                let key = if single {
                    "backend".to_string()
                } else {
                    format!("backend.layouts[{i}]")
                };
                LayoutReport {
                    name: layout.name.clone(),
                    mismatches: check_layout(pipeline, config, layout, &key),
                    key,
                }
            })
            .collect(),
    }
}

fn check_layout(
    pipeline: &Pipeline,
    config: &SpaceConfig,
    layout: &LayoutSpec,
    key: &str,
) -> Vec<Mismatch> {
    let mut out = vec![];
    let mut endpoints = vec![];
    for (i, call) in layout.calls.iter().enumerate() {
        let ckey = format!("{key}.calls[{i}]");
        match find(config, call) {
            Err(message) => {
                out.push(Mismatch { key: ckey, message });
                endpoints.push(None);
            }
            Ok(ep) => {
                if ep.inputs.len() != call.inputs.len() {
                    out.push(Mismatch {
                        key: format!("{ckey}.inputs"),
                        message: format!(
                            "{} takes {} inputs ({}), the file gives {}",
                            call.label(),
                            ep.inputs.len(),
                            kinds(&ep.inputs),
                            call.inputs.len()
                        ),
                    });
                } else {
                    for (j, (arg, component)) in call.args().iter().zip(&ep.inputs).enumerate() {
                        if let Some(message) = check_arg(pipeline, arg, component) {
                            out.push(Mismatch {
                                key: format!("{ckey}.inputs[{j}]"),
                                message,
                            });
                        }
                    }
                }
                endpoints.push(Some(ep));
            }
        }
    }
    // Artifacts and values come from the last call.
    let Some(Some(last)) = endpoints.last() else {
        return out;
    };
    let named = pipeline
        .outputs
        .keys()
        .map(|n| (format!("outputs.{n}"), n, true))
        .chain(
            pipeline
                .values
                .keys()
                .map(|n| (format!("values.{n}"), n, false)),
        );
    for (okey, name, is_file) in named {
        let Some(from) = pipeline.output_ref(name, Some(&layout.name)) else {
            continue;
        };
        let Some(component) = last.outputs.get(from.index) else {
            out.push(Mismatch {
                key: format!("{okey}.from"),
                message: format!(
                    "{} has {} outputs ({}): there is no output {}",
                    layout.calls.last().map(CallSpec::label).unwrap_or_default(),
                    last.outputs.len(),
                    kinds(&last.outputs),
                    from.index
                ),
            });
            continue;
        };
        let fits = if is_file {
            component.holds_files()
        } else {
            !component.holds_files()
        };
        if !fits {
            out.push(Mismatch {
                key: format!("{okey}.from"),
                message: format!(
                    "output {} is a {}, which holds {}",
                    from.index,
                    describe(component),
                    if is_file {
                        "no file: make it a [values] entry"
                    } else {
                        "a file: make it an [outputs] entry"
                    }
                ),
            });
        }
    }
    out
}

fn find<'a>(config: &'a SpaceConfig, call: &CallSpec) -> Result<&'a Endpoint, String> {
    match (&call.api_name, call.fn_index) {
        (Some(name), _) => config.endpoint(name).ok_or_else(|| {
            let names: Vec<String> = config
                .endpoints
                .iter()
                .filter(|e| e.shown)
                .filter_map(|e| e.api_name.as_ref().map(|n| format!("/{n}")))
                .collect();
            format!(
                "the Space has no endpoint {name:?} (it has {})",
                if names.is_empty() {
                    "none with a name".to_string()
                } else {
                    names.join(", ")
                }
            )
        }),
        (None, Some(i)) => config.by_fn_index(i as u64).ok_or_else(|| {
            format!(
                "the Space has no fn_index {i} (it has 0 to {})",
                config.endpoints.len().saturating_sub(1)
            )
        }),
        (None, None) => Err("the call names no endpoint".into()),
    }
}

fn describe(c: &Component) -> String {
    match &c.label {
        Some(l) => format!("{} ({l:?})", c.kind),
        None => c.kind.clone(),
    }
}

fn kinds(cs: &[Component]) -> String {
    cs.iter()
        .map(|c| c.kind.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What is wrong with giving `arg` to `component`, if anything.
fn check_arg(pipeline: &Pipeline, arg: &Arg, component: &Component) -> Option<String> {
    let kind = component.kind.as_str();
    if component.is_state() {
        return match arg {
            Arg::Value(Value::Null) => None,
            _ => Some(
                "this slot is a State (kept by the Space per session): give it `null = true`"
                    .into(),
            ),
        };
    }
    match arg {
        Arg::Value(_) | Arg::Output(_) => None,
        Arg::Input { slot, form } => {
            let accepts: &[&str] = match form {
                FileForm::Image => &["image"],
                FileForm::Editor => &["imageeditor", "sketchpad", "paint"],
                FileForm::Gallery => &["gallery"],
                FileForm::Files => &["file", "files", "uploadbutton"],
                FileForm::File => &["file", "image", "model3d", "video", "audio", "uploadbutton"],
            };
            (!accepts.contains(&kind)).then(|| {
                format!(
                    "input slot {slot:?} is sent as {form:?}, but the Space's component is a {}",
                    describe(component)
                )
            })
        }
        Arg::Setting(name) => {
            let spec = pipeline.settings.get(name)?;
            check_setting(name, spec, component)
        }
    }
}

fn check_setting(name: &str, spec: &SettingSpec, component: &Component) -> Option<String> {
    let kind = component.kind.as_str();
    let wrong = |what: &str| {
        Some(format!(
            "setting {name:?} is {what}, but the Space's component is a {}",
            describe(component)
        ))
    };
    let numeric = ["number", "slider"];
    match spec {
        SettingSpec::Boolean { .. } if kind != "checkbox" => wrong("a boolean"),
        SettingSpec::Number { .. } | SettingSpec::Integer { .. }
            if !numeric.contains(&kind) && !has_numeric_choices(component) =>
        {
            wrong("a number")
        }
        SettingSpec::String { .. }
            if !["textbox", "dropdown", "radio", "code", "textarea"].contains(&kind) =>
        {
            wrong("a string")
        }
        SettingSpec::Number {
            minimum, maximum, ..
        } => range_fits(name, *minimum, *maximum, component),
        SettingSpec::Integer {
            minimum, maximum, ..
        } => range_fits(
            name,
            minimum.map(|v| v as f64),
            maximum.map(|v| v as f64),
            component,
        ),
        SettingSpec::Enum { values, .. } => {
            for (user, backend) in values {
                let v = toml_to_json(backend);
                if let Some(message) = value_fits(&v, component) {
                    return Some(format!(
                        "setting {name:?} value {user:?} sends {v}, {message}"
                    ));
                }
            }
            None
        }
        _ => None,
    }
}

/// A numeric setting's range must lie inside the slider's or number's own.
fn range_fits(name: &str, lo: Option<f64>, hi: Option<f64>, c: &Component) -> Option<String> {
    let clo = c.props.get("minimum").and_then(Value::as_f64);
    let chi = c.props.get("maximum").and_then(Value::as_f64);
    let below =
        matches!((lo, clo), (Some(l), Some(cl)) if l < cl) || (lo.is_none() && clo.is_some());
    let above =
        matches!((hi, chi), (Some(h), Some(ch)) if h > ch) || (hi.is_none() && chi.is_some());
    (below || above).then(|| {
        let show = |v: Option<f64>| v.map_or("-".to_string(), |v| v.to_string());
        format!(
            "setting {name:?} allows [{}, {}], beyond the {}'s range [{}, {}]",
            show(lo),
            show(hi),
            describe(c),
            show(clo),
            show(chi)
        )
    })
}

fn has_numeric_choices(c: &Component) -> bool {
    c.choices
        .as_ref()
        .is_some_and(|cs| !cs.is_empty() && cs.iter().all(Value::is_number))
}

/// Why the component would not take `v`, if it would not.
fn value_fits(v: &Value, component: &Component) -> Option<String> {
    let kind = component.kind.as_str();
    let listed = |v: &Value, choices: &[Value]| {
        choices
            .iter()
            .any(|c| c == v || (c.as_f64().is_some() && c.as_f64() == v.as_f64()))
    };
    if let Some(choices) = &component.choices {
        let shown = || {
            choices
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let missing = match v {
            // A CheckboxGroup takes a list of its choices.
            Value::Array(items) if kind == "checkboxgroup" => {
                items.iter().find(|i| !listed(i, choices)).cloned()
            }
            other => (!listed(other, choices)).then(|| other.clone()),
        };
        return missing.map(|m| {
            format!(
                "and {m} is not among the choices of the {} ({})",
                describe(component),
                shown()
            )
        });
    }
    if ["number", "slider"].contains(&kind) {
        let Some(x) = v.as_f64() else {
            return Some(format!("not a number, for a {}", describe(component)));
        };
        let lo = component.props.get("minimum").and_then(Value::as_f64);
        let hi = component.props.get("maximum").and_then(Value::as_f64);
        if lo.is_some_and(|lo| x < lo) || hi.is_some_and(|hi| x > hi) {
            return Some(format!(
                "outside the {}'s range [{}, {}]",
                describe(component),
                lo.map_or("-".into(), |v| v.to_string()),
                hi.map_or("-".into(), |v| v.to_string())
            ));
        }
    }
    if kind == "checkbox" && !v.is_boolean() {
        return Some(format!("not a boolean, for a {}", describe(component)));
    }
    None
}
