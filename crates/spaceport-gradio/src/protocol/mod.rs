//! Gradio's wire protocols. `/config` names one, and `wire` is the one place a protocol meets
//! the module that speaks it: join, open and cancel all go through it. Every protocol Gradio
//! has had is spoken: `ws` (3.x), `sse` (4.0–4.8), `sse_v1` (4.9–4.16), `sse_v2` (4.17–4.20),
//! `sse_v2.1` (4.21) and `sse_v3` (4.22–6.x), as their `/config` says (checked on each release).

pub mod cancel;
pub mod diff;
mod live;
pub mod message;
pub mod queue;
pub mod sse_v0;
pub mod ws;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use spaceport_core::{Error, ErrorCode};

use crate::client::{Cookies, GradioClient};
use crate::config::{Endpoint, SpaceConfig};
use crate::handle::JobHandle;
use crate::stream::JobStream;

pub use message::{Message, ProgressUnit};

/// A queue protocol as `/config` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// Gradio 3.x: a websocket per job.
    #[serde(rename = "ws")]
    Ws,
    /// Gradio 4.0–4.8: SSE, one stream per job.
    #[serde(rename = "sse")]
    Sse,
    /// Gradio 4.9–4.16: join, then a session stream that ends by EOF; full data in every update.
    #[serde(rename = "sse_v1")]
    SseV1,
    /// Gradio 4.17–4.20: as `sse_v1`, with diffs after a generator's first update.
    #[serde(rename = "sse_v2")]
    SseV2,
    /// Gradio 4.21: as `sse_v2` on the wire (measured).
    #[serde(rename = "sse_v2.1")]
    SseV2_1,
    /// Gradio 4.22–6.x: join, then one stream per session carrying every event.
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
        wire(self).is_ok()
    }

    /// Fails with `space_protocol` unless the protocol is supported.
    pub fn ensure_supported(self) -> Result<(), Error> {
        wire(self).map(drop)
    }

    /// Whether a generator's updates after the first are diffs (`sse_v2` onwards).
    pub fn sends_diffs(self) -> bool {
        matches!(self, Protocol::SseV2 | Protocol::SseV2_1 | Protocol::SseV3)
    }

    /// Whether files travel in Gradio 3.x's shapes: `{name, data, is_file}` for a file and a
    /// base64 data URL for an image (gradio-protocol-legacy.md §4).
    pub fn is_3x(self) -> bool {
        self == Protocol::Ws
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

/// What speaks one protocol: joins a call, then opens or cancels the joined job from its handle
/// (in any process). The client reaches it only through `wire`.
#[async_trait]
pub(crate) trait Wire: Sync {
    /// Joins `endpoint` with positional `data` in the session `session_hash`.
    async fn join(
        &self,
        client: &GradioClient,
        config: &SpaceConfig,
        endpoint: &Endpoint,
        data: &[Value],
        session_hash: &str,
        cookies: &Cookies,
    ) -> Result<JobHandle, Error>;

    /// Opens the joined job's event stream; the caller holds it to the end.
    async fn open(&self, client: &GradioClient, handle: &JobHandle) -> Result<JobStream, Error>;

    /// Cancels the joined job, queued or running.
    async fn cancel(&self, client: &GradioClient, handle: &JobHandle) -> Result<(), Error>;
}

/// The module that speaks `protocol`, or `space_protocol` when none does. Adding one is a
/// module and its arm here.
pub(crate) fn wire(protocol: Protocol) -> Result<&'static dyn Wire, Error> {
    match protocol {
        Protocol::SseV3 => Ok(&queue::sse_v3::SseV3),
        Protocol::SseV1 | Protocol::SseV2 | Protocol::SseV2_1 => Ok(&queue::sse_v1::SseV1),
        Protocol::Ws => Ok(&ws::Ws),
        Protocol::Sse => Ok(&sse_v0::SseV0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientOptions;
    use serde_json::json;

    fn space_protocol(e: &Error) -> bool {
        matches!(
            e,
            Error::Upstream {
                code: ErrorCode::SpaceProtocol,
                retryable: false,
                ..
            }
        )
    }

    #[test]
    fn every_protocol_is_spoken_and_parsed_back() {
        for p in Protocol::ALL {
            assert!(p.is_supported(), "{p}");
            assert_eq!(Protocol::parse(p.as_str()).unwrap(), p);
        }
        assert!(!Protocol::SseV1.sends_diffs() && Protocol::SseV2.sends_diffs());
        assert!(!Protocol::Sse.sends_diffs() && !Protocol::Ws.sends_diffs());
        let e = Protocol::parse("sse_v9").unwrap_err();
        assert!(space_protocol(&e), "{e:?}");
    }

    #[tokio::test]
    async fn a_handle_reaching_the_wrong_family_is_refused_before_any_request() {
        // Port 9 (discard) is never reached: the refusal comes before any request.
        let client = GradioClient::new("http://127.0.0.1:9", ClientOptions::default()).unwrap();
        let live = JobHandle::from_json(&json!({
            "root": "http://127.0.0.1:9", "api_prefix": "", "protocol": "sse",
            "fn_index": 3, "session_hash": "s", "data": [], "cookies": "",
        }))
        .unwrap();
        assert!(matches!(live, JobHandle::Live(_)));
        let e = queue::sse_v3::SseV3
            .open(&client, &live)
            .await
            .err()
            .unwrap();
        assert!(!e.retryable(), "{e:?}");
        let queued = JobHandle::from_json(&json!({
            "root": "http://127.0.0.1:9", "api_prefix": "", "protocol": "sse_v3",
            "fn_index": 3, "session_hash": "s", "event_id": "e", "cookies": "",
        }))
        .unwrap();
        let e = sse_v0::SseV0.open(&client, &queued).await.err().unwrap();
        assert!(space_protocol(&e), "{e:?}");
        let e = ws::Ws.open(&client, &queued).await.err().unwrap();
        assert!(space_protocol(&e), "{e:?}");
    }
}
