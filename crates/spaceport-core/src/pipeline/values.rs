//! Non-file outputs: what a Space's last call returned besides files (a seed, an info text, a
//! log, JSON), picked by the pipeline's `[values]` and checked against their declared type, to
//! be kept on the run as `outputs`.

use serde_json::{Map, Value};

use super::spec::{Pipeline, ValueKind};

/// The most one value may take, serialized: a Space's text is not ours to store unbounded.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

impl Pipeline {
    /// The run's `outputs` from the last call's outputs, or a message naming the value that is
    /// missing or of the wrong type.
    pub fn extract_values(
        &self,
        layout: Option<&str>,
        outputs: &[Value],
    ) -> Result<Map<String, Value>, String> {
        let mut out = Map::new();
        for (name, spec) in &self.values {
            let from = self.output_ref(name, layout).unwrap_or(spec.from);
            let value = match from.pick(outputs) {
                Some(v) => coerce(spec.kind, v).map_err(|e| format!("output {name:?}: {e}"))?,
                None if spec.optional => Value::Null,
                None => {
                    return Err(format!(
                        "the Space returned nothing for output {name:?} (output {}{})",
                        from.index,
                        from.item.map(|i| format!(", item {i}")).unwrap_or_default()
                    ));
                }
            };
            if let Value::String(s) = &value
                && s.len() > MAX_VALUE_BYTES
            {
                // Text is cut at a character boundary, keeping its start (logs begin with the verdict).
                let mut end = MAX_VALUE_BYTES;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                out.insert(name.clone(), Value::String(format!("{}…", &s[..end])));
                continue;
            }
            if value.to_string().len() > MAX_VALUE_BYTES {
                return Err(format!(
                    "output {name:?} is larger than {MAX_VALUE_BYTES} bytes"
                ));
            }
            out.insert(name.clone(), value);
        }
        Ok(out)
    }
}

/// `v` as a value of `kind`, or why not.
fn coerce(kind: ValueKind, v: &Value) -> Result<Value, String> {
    let wrong =
        || format!("expected {kind:?} (lowercase in the file), the Space returned {v:.100}");
    Ok(match kind {
        ValueKind::Json => v.clone(),
        ValueKind::Text => match v {
            Value::String(_) => v.clone(),
            Value::Number(n) => Value::String(n.to_string()),
            Value::Bool(b) => Value::String(b.to_string()),
            _ => return Err(wrong()),
        },
        ValueKind::Number => match v {
            Value::Number(_) => v.clone(),
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(wrong)?,
            _ => return Err(wrong()),
        },
        ValueKind::Integer => {
            // Gradio 3.x returns every Number as a float (`42.0`).
            let f = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            }
            .ok_or_else(wrong)?;
            if f.fract() != 0.0 || !f.is_finite() || f.abs() > 9.0e15 {
                return Err(wrong());
            }
            Value::from(f as i64)
        }
        ValueKind::Boolean => match v {
            Value::Bool(_) => v.clone(),
            _ => return Err(wrong()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_coerced_or_refused() {
        assert_eq!(coerce(ValueKind::Integer, &json!(42.0)).unwrap(), json!(42));
        assert_eq!(coerce(ValueKind::Integer, &json!("7")).unwrap(), json!(7));
        assert!(coerce(ValueKind::Integer, &json!(4.5)).is_err());
        assert_eq!(coerce(ValueKind::Text, &json!(3)).unwrap(), json!("3"));
        assert!(coerce(ValueKind::Text, &json!({"a": 1})).is_err());
        assert_eq!(
            coerce(ValueKind::Number, &json!("2.5")).unwrap(),
            json!(2.5)
        );
        assert!(coerce(ValueKind::Boolean, &json!("true")).is_err());
        assert_eq!(
            coerce(ValueKind::Json, &json!({"a": [1]})).unwrap(),
            json!({"a": [1]})
        );
    }
}
