//! Gradio's wire protocols. `/config` names one; each has its own module that turns the server's
//! frames into [`Message`]s. Only `sse_v3` (Gradio 5.x–6.x) is spoken today; `ws` (3.x) and
//! `sse`/`sse_v1`/`sse_v2`/`sse_v2.1` (4.x) are recognised and refused with `space_protocol`.

pub mod diff;
pub mod sse_v3;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use spaceport_core::{Error, ErrorCode};

/// A queue protocol as `/config` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// Gradio 3.x: a websocket per job.
    #[serde(rename = "ws")]
    Ws,
    /// Gradio 4.0: SSE, one stream per job.
    #[serde(rename = "sse")]
    Sse,
    #[serde(rename = "sse_v1")]
    SseV1,
    #[serde(rename = "sse_v2")]
    SseV2,
    #[serde(rename = "sse_v2.1")]
    SseV2_1,
    /// Gradio 4.3x–6.x: join, then one stream per session carrying every event.
    #[serde(rename = "sse_v3")]
    SseV3,
}

impl Protocol {
    /// Every protocol this crate knows of.
    pub const ALL: [Protocol; 6] = [
        Protocol::Ws,
        Protocol::Sse,
        Protocol::SseV1,
        Protocol::SseV2,
        Protocol::SseV2_1,
        Protocol::SseV3,
    ];

    /// The spelling `/config` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Ws => "ws",
            Protocol::Sse => "sse",
            Protocol::SseV1 => "sse_v1",
            Protocol::SseV2 => "sse_v2",
            Protocol::SseV2_1 => "sse_v2.1",
            Protocol::SseV3 => "sse_v3",
        }
    }

    /// Parses `/config`'s `protocol`; an unknown one is a `space_protocol` error.
    pub fn parse(s: &str) -> Result<Protocol, Error> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| protocol_error(format!("unknown Gradio protocol {s:?}")))
    }

    /// Whether this client can join and stream jobs with it.
    pub fn is_supported(self) -> bool {
        matches!(self, Protocol::SseV3)
    }

    /// Fails with `space_protocol` unless the protocol is supported.
    pub fn ensure_supported(self) -> Result<(), Error> {
        if self.is_supported() {
            Ok(())
        } else {
            Err(protocol_error(format!(
                "Gradio protocol {:?} is not supported yet (only sse_v3, Gradio 5.x-6.x)",
                self.as_str()
            )))
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `space_protocol` error: the Space said something we cannot understand.
pub fn protocol_error(message: impl Into<String>) -> Error {
    Error::upstream(ErrorCode::SpaceProtocol, false, message)
}

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
