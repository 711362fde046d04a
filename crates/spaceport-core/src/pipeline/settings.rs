//! A run's settings: checked against the pipeline's specs (types, ranges, enum values), defaults
//! filled in, and mapped to the backend's spellings. Errors name `settings.<key>`.

use serde_json::{Map, Value, json};

use super::spec::{Pipeline, SettingSpec, toml_to_json};
use crate::error::Error;

impl Pipeline {
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
