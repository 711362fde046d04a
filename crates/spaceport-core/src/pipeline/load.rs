//! Loading a pipeline file: parse the TOML, then check every rule serde cannot (ranges, references
//! between calls, slots and settings, defaults inside their ranges), so a bad file fails at load
//! naming the file and the key.

use super::inputs::check_filename;
use super::spec::{ArgSpec, BackendSpec, CallSpec, Pipeline, SettingSpec};

/// An error in a pipeline file, naming the file and the key.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct LoadError {
    pub file: String,
    pub key: String,
    pub message: String,
}

pub(super) fn load_err(
    file: &str,
    key: impl Into<String>,
    message: impl Into<String>,
) -> LoadError {
    LoadError {
        file: file.to_string(),
        key: key.into(),
        message: message.into(),
    }
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
            if out.max_bytes == Some(0) {
                return Err(load_err(
                    file,
                    format!("outputs.{name}.max_bytes"),
                    "must be positive",
                ));
            }
        }
        if self.retain_days == Some(0) {
            return Err(load_err(file, "retain_days", "must be positive"));
        }
        for (name, out) in &self.outputs {
            if out.max_bytes == Some(0) {
                return Err(load_err(
                    file,
                    format!("outputs.{name}.max_bytes"),
                    "must be positive",
                ));
            }
        }
        if let Some(name) = self.values.keys().find(|n| self.outputs.contains_key(*n)) {
            return Err(load_err(
                file,
                format!("values.{name}"),
                "is also an artifact in [outputs]: names are shared",
            ));
        }
        if !self.values.is_empty()
            && matches!(
                self.backend,
                BackendSpec::Onnx { .. } | BackendSpec::Local { .. }
            )
        {
            return Err(load_err(
                file,
                "values",
                "only a Space or a model server returns values",
            ));
        }
        match &self.backend {
            BackendSpec::Space {
                space,
                calls,
                url,
                layouts,
            } => {
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
                if calls.is_empty() == layouts.is_empty() {
                    return Err(load_err(
                        file,
                        "backend.calls",
                        "a Space backend lists its calls, or its layouts, not both",
                    ));
                }
                let mut names = std::collections::BTreeSet::new();
                for (l, layout) in self.layouts().iter().enumerate() {
                    let key = if layouts.is_empty() {
                        "backend".to_string()
                    } else {
                        format!("backend.layouts[{l}]")
                    };
                    if !names.insert(layout.name.clone()) {
                        return Err(load_err(
                            file,
                            format!("{key}.name"),
                            format!("layout {:?} is listed twice", layout.name),
                        ));
                    }
                    self.check_calls(file, &key, &layout.calls)?;
                    for (name, out) in &layout.outputs {
                        let okey = format!("{key}.outputs.{name}");
                        if !self.outputs.contains_key(name) && !self.values.contains_key(name) {
                            return Err(load_err(file, okey, "names no output or value"));
                        }
                        if let Some(f) = &out.filename {
                            check_filename("", f).map_err(|e| {
                                load_err(file, format!("{okey}.filename"), e.to_string())
                            })?;
                        }
                    }
                    let last = layout.calls.len() - 1;
                    let named = self
                        .outputs
                        .keys()
                        .map(|n| (format!("outputs.{n}.from"), n))
                        .chain(self.values.keys().map(|n| (format!("values.{n}.from"), n)));
                    for (okey, name) in named {
                        let Some(from) = self.output_ref(name, Some(&layout.name)) else {
                            return Err(load_err(
                                file,
                                okey,
                                "a Space pipeline says which call output holds it",
                            ));
                        };
                        if from.call != last {
                            return Err(load_err(
                                file,
                                okey,
                                format!(
                                    "call {} is not the last call of layout {:?}: outputs come \
                                     from the last call",
                                    from.call, layout.name
                                ),
                            ));
                        }
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
            BackendSpec::HttpModel { .. } => self.check_model_server(file)?,
            // Which function is all there is to say; serde refused an unknown one.
            BackendSpec::Local { .. } => {}
            BackendSpec::Chain { .. } => self.check_chain(file)?,
        }
        Ok(())
    }

    fn check_calls(&self, file: &str, key: &str, calls: &[CallSpec]) -> Result<(), LoadError> {
        if calls.is_empty() {
            return Err(load_err(
                file,
                format!("{key}.calls"),
                "a Space backend makes at least one call",
            ));
        }
        for (i, call) in calls.iter().enumerate() {
            let key = format!("{key}.calls[{i}]");
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
