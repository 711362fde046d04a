//! Gradio's output diffs (`sse_v2` onwards): a generator's later `process_generating` messages
//! carry, per output, a list of `[op, path, value]` edits against the previous value
//! (`replace`, `append`, `add`, `delete`), as gradio_client's `apply_diff` applies them.

use serde_json::Value;
use spaceport_core::Error;

use super::protocol_error;

/// Applies one output's edit list to its previous value.
pub fn apply_diff(mut target: Value, diff: &Value) -> Result<Value, String> {
    let edits = diff
        .as_array()
        .ok_or_else(|| format!("a diff is a list of edits, got {diff}"))?;
    for edit in edits {
        let parts = edit
            .as_array()
            .filter(|a| a.len() == 3)
            .ok_or_else(|| format!("an edit is [op, path, value], got {edit}"))?;
        let op = parts[0]
            .as_str()
            .ok_or_else(|| format!("an edit's op is a string, got {}", parts[0]))?;
        let path = parts[1]
            .as_array()
            .ok_or_else(|| format!("an edit's path is a list, got {}", parts[1]))?;
        target = apply_edit(target, path, op, parts[2].clone())?;
    }
    Ok(target)
}

/// A generator's running output: the first `process_generating` is the full value; on protocols
/// that send diffs (`sse_v2` onwards) later ones are per-output diffs against it, on the others
/// (`ws`, `sse_v1`) full values again.
#[derive(Debug, Clone)]
pub struct GeneratingState {
    current: Option<Vec<Value>>,
    diffs: bool,
    tracking: bool,
}

impl Default for GeneratingState {
    fn default() -> Self {
        GeneratingState::new(true)
    }
}

impl GeneratingState {
    /// A state for a protocol that sends diffs after the first update (or not).
    pub fn new(diffs: bool) -> GeneratingState {
        GeneratingState {
            current: None,
            diffs,
            tracking: true,
        }
    }

    /// Whether intermediate outputs are kept at all: a caller that never looks at them (the
    /// steps want the final outputs, which `process_completed` carries whole) turns it off, so
    /// a Space's diffs, however many, cost nothing.
    pub fn tracking(mut self, on: bool) -> GeneratingState {
        self.tracking = on;
        self
    }

    /// See [`GeneratingState::tracking`].
    pub fn tracks(&self) -> bool {
        self.tracking
    }

    /// Applies one `process_generating` output and returns the full current values.
    pub fn apply(&mut self, output: &Value) -> Result<Vec<Value>, Error> {
        let data = output
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                protocol_error(format!("process_generating without data: {output:.200}"))
            })?;
        let next = match self.current.take() {
            None => data.clone(),
            Some(_) if !self.diffs => data.clone(),
            Some(prev) => {
                if prev.len() != data.len() {
                    return Err(protocol_error(format!(
                        "a diff for {} outputs against {}",
                        data.len(),
                        prev.len()
                    )));
                }
                prev.into_iter()
                    .zip(data)
                    .map(|(p, d)| apply_diff(p, d).map_err(protocol_error))
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        self.current = Some(next.clone());
        Ok(next)
    }

    /// The last full values, if any arrived.
    pub fn current(&self) -> Option<&[Value]> {
        self.current.as_deref()
    }
}

fn apply_edit(mut target: Value, path: &[Value], op: &str, value: Value) -> Result<Value, String> {
    let Some((last, parents)) = path.split_last() else {
        return match op {
            "replace" => Ok(value),
            "append" => append(target, value),
            _ => Err(format!("op {op:?} needs a path")),
        };
    };
    let mut current = &mut target;
    for key in parents {
        current = step(current, key)?;
    }
    match op {
        "replace" => *step(current, last)? = value,
        "append" => {
            let slot = step(current, last)?;
            *slot = append(slot.take(), value)?;
        }
        "add" => match current {
            Value::Array(a) => {
                let i = index(last)?;
                if i > a.len() {
                    return Err(format!("add at {i} past the end ({})", a.len()));
                }
                a.insert(i, value);
            }
            Value::Object(o) => {
                o.insert(key(last)?, value);
            }
            other => return Err(format!("cannot add into {other}")),
        },
        "delete" => match current {
            Value::Array(a) => {
                let i = index(last)?;
                if i >= a.len() {
                    return Err(format!("delete at {i} past the end ({})", a.len()));
                }
                a.remove(i);
            }
            Value::Object(o) => {
                o.remove(&key(last)?);
            }
            other => return Err(format!("cannot delete from {other}")),
        },
        _ => return Err(format!("unknown diff op {op:?}")),
    }
    Ok(target)
}

fn step<'a>(current: &'a mut Value, k: &Value) -> Result<&'a mut Value, String> {
    match current {
        Value::Array(a) => {
            let i = index(k)?;
            let len = a.len();
            a.get_mut(i)
                .ok_or_else(|| format!("index {i} past the end ({len})"))
        }
        Value::Object(o) => {
            let name = key(k)?;
            o.get_mut(&name).ok_or_else(|| format!("no key {name:?}"))
        }
        other => Err(format!("cannot index into {other}")),
    }
}

fn index(k: &Value) -> Result<usize, String> {
    match k {
        Value::Number(n) => n.as_u64().map(|n| n as usize),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("{k} is not a list index"))
}

fn key(k: &Value) -> Result<String, String> {
    match k {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(format!("{k} is not a key")),
    }
}

fn append(target: Value, value: Value) -> Result<Value, String> {
    match (target, value) {
        (Value::String(mut a), Value::String(b)) => {
            a.push_str(&b);
            Ok(Value::String(a))
        }
        (Value::Array(mut a), Value::Array(b)) => {
            a.extend(b);
            Ok(Value::Array(a))
        }
        (t, v) => Err(format!("cannot append {v} to {t}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replace_at_the_root_swaps_the_value() {
        // From gradio-protocol.md: `"data":[[["replace",[],"chunk 1"]]]` after `"data":["chunk 0"]`.
        let out = apply_diff(json!("chunk 0"), &json!([["replace", [], "chunk 1"]])).unwrap();
        assert_eq!(out, json!("chunk 1"));
    }

    #[test]
    fn append_extends_strings_and_lists() {
        let out = apply_diff(json!("chunk 0"), &json!([["append", [], ", chunk 1"]])).unwrap();
        assert_eq!(out, json!("chunk 0, chunk 1"));
        let out = apply_diff(json!({"a": [1]}), &json!([["append", ["a"], [2, 3]]])).unwrap();
        assert_eq!(out, json!({"a": [1, 2, 3]}));
        let out = apply_diff(
            json!([["user", "hi"], ["bot", "he"]]),
            &json!([["append", [1, 1], "llo"]]),
        )
        .unwrap();
        assert_eq!(out, json!([["user", "hi"], ["bot", "hello"]]));
    }

    #[test]
    fn add_inserts_into_lists_and_objects() {
        let out = apply_diff(json!([1, 3]), &json!([["add", [1], 2]])).unwrap();
        assert_eq!(out, json!([1, 2, 3]));
        let out = apply_diff(json!({"a": 1}), &json!([["add", ["b"], 2]])).unwrap();
        assert_eq!(out, json!({"a": 1, "b": 2}));
    }

    #[test]
    fn delete_removes_from_lists_and_objects() {
        let out = apply_diff(json!([1, 2, 3]), &json!([["delete", [0], null]])).unwrap();
        assert_eq!(out, json!([2, 3]));
        let out = apply_diff(json!({"a": 1, "b": 2}), &json!([["delete", ["a"], null]])).unwrap();
        assert_eq!(out, json!({"b": 2}));
    }

    #[test]
    fn several_edits_apply_in_order() {
        let out = apply_diff(
            json!({"rows": [[1], [2]]}),
            &json!([
                ["replace", ["rows", 0, 0], 10],
                ["add", ["rows", 2], [3]],
                ["delete", ["rows", 1], null]
            ]),
        )
        .unwrap();
        assert_eq!(out, json!({"rows": [[10], [3]]}));
    }

    #[test]
    fn malformed_diffs_are_errors() {
        assert!(apply_diff(json!(1), &json!("nope")).is_err());
        assert!(apply_diff(json!(1), &json!([["replace", []]])).is_err());
        assert!(apply_diff(json!([1]), &json!([["frobnicate", [0], 1]])).is_err());
        assert!(apply_diff(json!([1]), &json!([["replace", [5], 1]])).is_err());
        assert!(apply_diff(json!(1), &json!([["append", [], "x"]])).is_err());
    }
}
