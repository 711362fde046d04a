//! The messages Gradio's queue sends, whatever carries them: every protocol frames the same JSON
//! (`{"msg": ..., "event_id": ...}`), an SSE `data:` record or a websocket text frame, so they are
//! parsed once here and each protocol decides what they mean for a job.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use spaceport_core::Error;

use super::diff::GeneratingState;
use super::protocol_error;
use crate::stream::{JobUpdate, Outcome};

/// One step of a `gr.Progress` report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgressUnit {
    #[serde(default)]
    pub index: Option<f64>,
    #[serde(default)]
    pub length: Option<f64>,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub progress: Option<f64>,
    #[serde(default)]
    pub desc: Option<String>,
}

impl ProgressUnit {
    /// The fraction done, from `progress` or `index / length`.
    pub fn fraction(&self) -> Option<f64> {
        if let Some(p) = self.progress {
            return Some(p.clamp(0.0, 1.0));
        }
        match (self.index, self.length) {
            (Some(i), Some(l)) if l > 0.0 => Some((i / l).clamp(0.0, 1.0)),
            _ => None,
        }
    }
}

/// A queue message, whatever the protocol that carried it.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The job waits in the queue.
    Estimation {
        event_id: Option<String>,
        rank: Option<u64>,
        queue_size: Option<u64>,
        rank_eta: Option<f64>,
    },
    /// A worker took the job.
    ProcessStarts {
        event_id: Option<String>,
        eta: Option<f64>,
    },
    /// `gr.Progress` steps.
    Progress {
        event_id: Option<String>,
        units: Vec<ProgressUnit>,
    },
    /// `gr.Info`/`gr.Warning` or a log line.
    Log {
        event_id: Option<String>,
        log: String,
        level: Option<String>,
    },
    /// Keeps the stream alive.
    Heartbeat,
    /// A generator's intermediate output (`output.data`, diffs after the first).
    ProcessGenerating {
        event_id: Option<String>,
        output: Value,
    },
    /// The job ended: `success` false carries the error in `output.error`.
    ProcessCompleted {
        event_id: Option<String>,
        success: bool,
        output: Value,
        title: Option<String>,
    },
    /// The session has nothing pending; the server ends the response.
    CloseStream,
    /// The server does not know the session (or failed); the stream is cut after it.
    UnexpectedError {
        message: String,
        session_not_found: bool,
    },
    /// Any other `msg` (kept so a new server does not break an old client).
    Other { msg: String, raw: Value },
}

impl Message {
    /// The event the message is about, if any.
    pub fn event_id(&self) -> Option<&str> {
        match self {
            Message::Estimation { event_id, .. }
            | Message::ProcessStarts { event_id, .. }
            | Message::Progress { event_id, .. }
            | Message::Log { event_id, .. }
            | Message::ProcessGenerating { event_id, .. }
            | Message::ProcessCompleted { event_id, .. } => event_id.as_deref(),
            _ => None,
        }
    }
}

/// Parses one message (a queue stream's `data:` payload, a websocket's text frame).
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

/// The units of a progress message as one progress value: the innermost unit with a fraction.
pub fn progress_summary(units: &[ProgressUnit]) -> (Option<f64>, Option<String>) {
    let fraction = units.iter().rev().find_map(ProgressUnit::fraction);
    let message = units.iter().rev().find_map(|u| u.desc.clone());
    (fraction, message)
}

/// What a message about our job (or the whole session) means for it; `None` when nothing.
/// `ids`: whether the protocol tags a job's messages with its `event_id` (all but `ws`), in
/// which case a `process_completed` without one is not about our job.
pub(crate) fn to_update(
    msg: Message,
    generating: &mut GeneratingState,
    ids: bool,
) -> Result<Option<JobUpdate>, Error> {
    Ok(match msg {
        Message::Estimation {
            rank,
            queue_size,
            rank_eta,
            ..
        } => Some(JobUpdate::Queued {
            rank,
            queue_size,
            eta_s: rank_eta,
        }),
        Message::ProcessStarts { eta, .. } => Some(JobUpdate::Started { eta_s: eta }),
        Message::Progress { units, .. } => {
            let (fraction, message) = progress_summary(&units);
            Some(JobUpdate::Progress { fraction, message })
        }
        Message::Log { log, .. } => Some(JobUpdate::Log { message: log }),
        Message::Heartbeat | Message::Other { .. } => None,
        Message::ProcessGenerating { .. } if !generating.tracks() => None,
        Message::ProcessGenerating { output, .. } => Some(JobUpdate::Generating {
            outputs: generating.apply(&output)?,
        }),
        Message::ProcessCompleted {
            success,
            output,
            title,
            event_id,
        } => {
            if ids && event_id.is_none() {
                return Ok(None);
            }
            Some(JobUpdate::Finished(outcome(
                success,
                &output,
                title.as_deref(),
            )?))
        }
        // sse_v3 closes a session only once nothing is pending, so ours cannot complete now.
        Message::CloseStream => Some(JobUpdate::Lost {
            reason: "the Space closed the stream before the job completed".into(),
        }),
        Message::UnexpectedError {
            message,
            session_not_found,
        } => Some(JobUpdate::Lost {
            reason: if session_not_found {
                format!("the Space does not know the session ({message})")
            } else {
                format!("the Space failed the stream: {message}")
            },
        }),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

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
