//! The persisted job handle: everything another process needs to open a joined job's stream,
//! download its files or cancel it. Stored as JSON on the run.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use spaceport_core::{Error, ErrorCode};

use crate::protocol::Protocol;

/// A joined Gradio job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobHandle {
    /// The base URL we reached the Space at (kept over `/config`'s `root`, which may be wrong
    /// behind a proxy).
    pub root: String,
    pub api_prefix: String,
    pub protocol: Protocol,
    pub fn_index: u64,
    pub session_hash: String,
    pub event_id: String,
    /// The `Cookie` header the Space set during submit (replica stickiness), empty if none.
    #[serde(default)]
    pub cookies: String,
}

impl JobHandle {
    /// The handle as the JSON the `SpaceBackend` port passes around.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Reads a handle back; a malformed one is an internal error (we wrote it).
    pub fn from_json(v: &Value) -> Result<JobHandle, Error> {
        serde_json::from_value(v.clone()).map_err(|e| {
            Error::upstream(
                ErrorCode::Internal,
                false,
                format!("not a Gradio job handle ({e})"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_round_trips_through_json() {
        let h = JobHandle {
            root: "http://127.0.0.1:7861".into(),
            api_prefix: "/gradio_api".into(),
            protocol: Protocol::SseV3,
            fn_index: 4,
            session_hash: "abc".into(),
            event_id: "e1".into(),
            cookies: "a=b".into(),
        };
        let v = h.to_json();
        assert_eq!(v["protocol"], "sse_v3");
        assert_eq!(JobHandle::from_json(&v).unwrap(), h);
        assert!(JobHandle::from_json(&serde_json::json!({"root": 1})).is_err());
    }
}
