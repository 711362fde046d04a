//! `sse_v3` (Gradio 5.x–6.x): `POST {prefix}/queue/join` with a session hash returns an
//! `event_id`; `GET {prefix}/queue/data?session_hash=` streams `data: {json}` records for every
//! event of that session, buffered until someone reads them (gradio-protocol.md §3).

use serde_json::{Value, json};
use spaceport_core::Error;

use super::diff::apply_diff;
use super::{Message, ProgressUnit, protocol_error};

/// The join endpoint.
pub fn join_url(base: &str, api_prefix: &str) -> String {
    format!("{base}{api_prefix}/queue/join")
}

/// The session's event stream.
pub fn data_url(base: &str, api_prefix: &str, session_hash: &str) -> String {
    format!("{base}{api_prefix}/queue/data?session_hash={session_hash}")
}

/// The cancel endpoint.
pub fn cancel_url(base: &str, api_prefix: &str) -> String {
    format!("{base}{api_prefix}/cancel")
}

/// The body of a join.
pub fn join_body(
    data: &[Value],
    fn_index: u64,
    trigger_id: Option<u64>,
    session_hash: &str,
) -> Value {
    json!({
        "data": data,
        "event_data": null,
        "fn_index": fn_index,
        "trigger_id": trigger_id,
        "session_hash": session_hash,
    })
}

/// Parses one `data:` payload of the stream.
pub fn parse_message(data: &str) -> Result<Message, Error> {
    let v: Value = serde_json::from_str(data)
        .map_err(|e| protocol_error(format!("a queue message is not JSON ({e}): {data:.200}")))?;
    let msg = v
        .get("msg")
        .and_then(Value::as_str)
        .ok_or_else(|| protocol_error(format!("a queue message has no `msg`: {data:.200}")))?
        .to_string();
    let event_id = v
        .get("event_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let f64_of = |k: &str| v.get(k).and_then(Value::as_f64);
    let u64_of = |k: &str| v.get(k).and_then(Value::as_u64);
    Ok(match msg.as_str() {
        "estimation" => Message::Estimation {
            event_id,
            rank: u64_of("rank"),
            queue_size: u64_of("queue_size"),
            rank_eta: f64_of("rank_eta"),
        },
        "process_starts" => Message::ProcessStarts {
            event_id,
            eta: f64_of("eta"),
        },
        "progress" => {
            let units = match v.get("progress_data") {
                None | Some(Value::Null) => vec![],
                Some(p) => serde_json::from_value(p.clone())
                    .map_err(|e| protocol_error(format!("bad progress_data ({e}): {data:.200}")))?,
            };
            Message::Progress { event_id, units }
        }
        "log" => Message::Log {
            event_id,
            log: v
                .get("log")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            level: v.get("level").and_then(Value::as_str).map(str::to_string),
        },
        "heartbeat" => Message::Heartbeat,
        "process_generating" => Message::ProcessGenerating {
            event_id,
            output: v.get("output").cloned().unwrap_or(Value::Null),
        },
        "process_completed" => Message::ProcessCompleted {
            event_id,
            success: v.get("success").and_then(Value::as_bool).unwrap_or(false),
            output: v.get("output").cloned().unwrap_or(Value::Null),
            title: v.get("title").and_then(Value::as_str).map(str::to_string),
        },
        "close_stream" => Message::CloseStream,
        "unexpected_error" => Message::UnexpectedError {
            message: v
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unexpected error")
                .to_string(),
            session_not_found: v
                .get("session_not_found")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        },
        _ => Message::Other { msg, raw: v },
    })
}

/// How one event ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `success: true` with `output.data`.
    Completed(Vec<Value>),
    /// `success: true` and no `output.data`: the event was cancelled.
    Cancelled,
    /// `success: false`: the function raised; the Space's message.
    Failed(String),
}

/// What `process_completed` means.
pub fn outcome(success: bool, output: &Value, title: Option<&str>) -> Result<Outcome, Error> {
    if !success {
        let message = output
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| title.map(str::to_string))
            .unwrap_or_else(|| "the Space reported an error without a message".into());
        return Ok(Outcome::Failed(message));
    }
    match output.get("data") {
        None | Some(Value::Null) => Ok(Outcome::Cancelled),
        Some(Value::Array(d)) => Ok(Outcome::Completed(d.clone())),
        Some(other) => Err(protocol_error(format!(
            "process_completed output.data is not a list: {other:.200}"
        ))),
    }
}

/// A generator's running output: the first `process_generating` is the full value, later ones
/// are per-output diffs against it.
#[derive(Debug, Default, Clone)]
pub struct GeneratingState {
    current: Option<Vec<Value>>,
}

impl GeneratingState {
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

/// The units of a progress message as one progress value: the innermost unit with a fraction.
pub fn progress_summary(units: &[ProgressUnit]) -> (Option<f64>, Option<String>) {
    let fraction = units.iter().rev().find_map(ProgressUnit::fraction);
    let message = units.iter().rev().find_map(|u| u.desc.clone());
    (fraction, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseParser;

    // Lines captured from Gradio 6.31.0 (gradio-protocol.md §3).
    const CAPTURED: &str = concat!(
        "data: {\"msg\":\"estimation\",\"event_id\":\"e1\",\"rank\":0,\"queue_size\":1,\"rank_eta\":null}\n\n",
        "data: {\"msg\":\"process_starts\",\"event_id\":\"e1\",\"eta\":null}\n\n",
        "data: {\"msg\":\"progress\",\"event_id\":\"e1\",\"progress_data\":[{\"index\":0,\"length\":6,\"unit\":\"steps\",\"progress\":null,\"desc\":\"working\"}]}\n\n",
        "data: {\"msg\":\"heartbeat\",\"event_id\":null}\n\n",
        "data: {\"msg\":\"process_generating\",\"event_id\":\"e1\",\"output\":{\"data\":[\"chunk 0\"],\"is_generating\":true},\"success\":true}\n\n",
        "data: {\"msg\":\"process_generating\",\"event_id\":\"e1\",\"output\":{\"data\":[[[\"replace\",[],\"chunk 1\"]]],\"is_generating\":true}}\n\n",
        "data: {\"msg\":\"process_completed\",\"event_id\":\"e1\",\"output\":{\"data\":[{\"path\":\"/tmp/g/scene.glb\",\"url\":\"http://127.0.0.1:7861/gradio_api/file=/tmp/g/scene.glb\",\"size\":128,\"orig_name\":\"scene.glb\",\"mime_type\":null,\"is_stream\":false,\"meta\":{\"_type\":\"gradio.FileData\"}},\"got 2 images\"],\"is_generating\":false,\"duration\":0.003,\"average_duration\":0.003,\"render_config\":null,\"changed_state_ids\":[],\"used_cache\":null},\"success\":true,\"title\":null,\"used_cache\":null}\n\n",
        "data: {\"msg\":\"close_stream\",\"event_id\":null}\n\n",
    );

    fn messages(text: &str) -> Vec<Message> {
        SseParser::new()
            .feed(text.as_bytes())
            .into_iter()
            .map(|r| parse_message(&r.data).unwrap())
            .collect()
    }

    #[test]
    fn a_captured_stream_parses_in_order() {
        let m = messages(CAPTURED);
        assert_eq!(m.len(), 8);
        assert_eq!(
            m[0],
            Message::Estimation {
                event_id: Some("e1".into()),
                rank: Some(0),
                queue_size: Some(1),
                rank_eta: None
            }
        );
        assert!(matches!(&m[1], Message::ProcessStarts { eta: None, .. }));
        let Message::Progress { units, .. } = &m[2] else {
            panic!("{:?}", m[2])
        };
        assert_eq!(progress_summary(units), (Some(0.0), Some("working".into())));
        assert_eq!(m[3], Message::Heartbeat);
        assert_eq!(m[7], Message::CloseStream);
        let Message::ProcessCompleted {
            success,
            output,
            title,
            ..
        } = &m[6]
        else {
            panic!("{:?}", m[6])
        };
        let Outcome::Completed(data) = outcome(*success, output, title.as_deref()).unwrap() else {
            panic!("not completed")
        };
        assert_eq!(data[0]["path"], "/tmp/g/scene.glb");
        assert_eq!(data[1], "got 2 images");
    }

    #[test]
    fn generating_messages_are_full_then_diffs() {
        let m = messages(CAPTURED);
        let mut state = GeneratingState::default();
        for msg in &m {
            if let Message::ProcessGenerating { output, .. } = msg {
                state.apply(output).unwrap();
            }
        }
        assert_eq!(state.current().unwrap(), &[Value::from("chunk 1")]);
    }

    #[test]
    fn an_error_in_the_function_is_a_failure_with_its_text() {
        let m = messages(
            "data: {\"msg\":\"process_completed\",\"output\":{\"error\":\"could not convert string to float: 'notanumber'\",\"visible\":true},\"success\":false,\"title\":\"Error\"}\n\n",
        );
        let Message::ProcessCompleted {
            success,
            output,
            title,
            ..
        } = &m[0]
        else {
            panic!()
        };
        assert_eq!(
            outcome(*success, output, title.as_deref()).unwrap(),
            Outcome::Failed("could not convert string to float: 'notanumber'".into())
        );
    }

    #[test]
    fn a_cancel_is_a_success_without_data() {
        let m = messages(
            "data: {\"msg\":\"process_completed\",\"event_id\":\"e2\",\"output\":{},\"success\":true}\n\n",
        );
        let Message::ProcessCompleted {
            success, output, ..
        } = &m[0]
        else {
            panic!()
        };
        assert_eq!(outcome(*success, output, None).unwrap(), Outcome::Cancelled);
    }

    #[test]
    fn an_unknown_session_is_an_unexpected_error() {
        let m = messages(
            "data: {\"msg\":\"unexpected_error\",\"event_id\":null,\"message\":\"404: Not Found\",\"session_not_found\":true,\"success\":false}\n\n",
        );
        assert_eq!(
            m[0],
            Message::UnexpectedError {
                message: "404: Not Found".into(),
                session_not_found: true
            }
        );
    }

    #[test]
    fn garbage_is_a_protocol_error_and_new_messages_are_kept() {
        assert!(parse_message("not json").is_err());
        assert!(parse_message("{\"no\":\"msg\"}").is_err());
        assert!(matches!(
            parse_message("{\"msg\":\"something_new\"}").unwrap(),
            Message::Other { .. }
        ));
    }
}
