//! The persisted job handle: everything another process needs to open a joined job's stream,
//! download its files or cancel it. Stored as JSON on the run, one shape per protocol family;
//! the queue family's shape is the one every stored run has, so it must never change.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use spaceport_core::{Error, ErrorCode};

use crate::protocol::Protocol;

/// A joined Gradio job, in the shape of its protocol family.
#[derive(Debug, Clone, PartialEq)]
pub enum JobHandle {
    /// Joined on a session's queue stream (`sse_v1` … `sse_v3`).
    Queue(QueueJob),
    /// A job that lives only as long as the one connection that sent its data: a websocket
    /// (`ws`, Gradio 3.x) or an SSE stream (`sse`, Gradio 4.0–4.8).
    Live(LiveJob),
}

/// A `ws` (Gradio 3.x) or `sse` (Gradio 4.0–4.8) job: the server knows a job only while the
/// connection that sent its data stays open (gradio-protocol-legacy.md §8). So "joining" records
/// the call and the job starts when its stream is opened; a stream lost for any reason (a crash
/// of the worker holding it included) can only be a new attempt, which poll-status counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveJob {
    /// The base URL we reached the Space at.
    pub root: String,
    /// Empty on every 3.x server; kept for symmetry with the queue family.
    pub api_prefix: String,
    /// `ws` or `sse`; it tells a stored handle's family apart.
    pub protocol: Protocol,
    pub fn_index: u64,
    pub session_hash: String,
    /// The call's positional data, sent when the server asks for it (`send_data`).
    pub data: Vec<Value>,
    #[serde(default)]
    pub cookies: String,
}

/// A job of the queue family: `POST {prefix}/queue/join` gave `event_id` for our `session_hash`,
/// whose `GET {prefix}/queue/data` stream carries its messages. Field order is the stored order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueJob {
    /// The base URL we reached the Space at (kept over `/config`'s `root`, which may be wrong
    /// behind a proxy).
    pub root: String,
    /// `/gradio_api` from Gradio 5.0, empty before.
    pub api_prefix: String,
    /// The protocol `/config` named when the job was joined.
    pub protocol: Protocol,
    /// The dependency that was called.
    pub fn_index: u64,
    /// The session hash we chose; its stream carries the job's messages.
    pub session_hash: String,
    /// The id `/queue/join` gave the job.
    pub event_id: String,
    /// The `Cookie` header the Space set during submit (replica stickiness), empty if none.
    #[serde(default)]
    pub cookies: String,
}

impl Serialize for JobHandle {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Untagged: a queue job is written exactly as the single struct it replaced.
        match self {
            JobHandle::Queue(job) => job.serialize(s),
            JobHandle::Live(job) => job.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for JobHandle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The family is told apart by the protocol the handle names: `ws` and `sse` have the
        // live shape, every other protocol the queue shape.
        let v = Value::deserialize(d)?;
        let protocol = v.get("protocol").and_then(Value::as_str);
        if protocol == Some(Protocol::Ws.as_str()) || protocol == Some(Protocol::Sse.as_str()) {
            LiveJob::deserialize(v)
                .map(JobHandle::Live)
                .map_err(serde::de::Error::custom)
        } else {
            QueueJob::deserialize(v)
                .map(JobHandle::Queue)
                .map_err(serde::de::Error::custom)
        }
    }
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

    /// The protocol the job was joined with: it picks the code that opens and cancels it.
    pub fn protocol(&self) -> Protocol {
        match self {
            JobHandle::Queue(job) => job.protocol,
            JobHandle::Live(job) => job.protocol,
        }
    }

    /// The base URL of the Space.
    pub fn root(&self) -> &str {
        match self {
            JobHandle::Queue(job) => &job.root,
            JobHandle::Live(job) => &job.root,
        }
    }

    /// The API prefix its files are served under.
    pub fn api_prefix(&self) -> &str {
        match self {
            JobHandle::Queue(job) => &job.api_prefix,
            JobHandle::Live(job) => &job.api_prefix,
        }
    }

    /// The `Cookie` header to send again, empty if none.
    pub fn cookies(&self) -> &str {
        match self {
            JobHandle::Queue(job) => &job.cookies,
            JobHandle::Live(job) => &job.cookies,
        }
    }

    /// The Space's id for the job, where the protocol has one.
    pub fn event_id(&self) -> Option<&str> {
        match self {
            JobHandle::Queue(job) => Some(&job.event_id),
            JobHandle::Live(_) => None,
        }
    }

    /// The dependency that was called.
    pub fn fn_index(&self) -> u64 {
        match self {
            JobHandle::Queue(job) => job.fn_index,
            JobHandle::Live(job) => job.fn_index,
        }
    }

    /// The session hash the job was joined in.
    pub fn session_hash(&self) -> &str {
        match self {
            JobHandle::Queue(job) => &job.session_hash,
            JobHandle::Live(job) => &job.session_hash,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handle as runs stored it before the handle was an enum (field order as written).
    const STORED: &str = r#"{"root":"http://127.0.0.1:7861","api_prefix":"/gradio_api","protocol":"sse_v3","fn_index":4,"session_hash":"abc","event_id":"e1","cookies":"a=b"}"#;

    #[test]
    fn a_handle_round_trips_through_json() {
        let h = JobHandle::Queue(QueueJob {
            root: "http://127.0.0.1:7861".into(),
            api_prefix: "/gradio_api".into(),
            protocol: Protocol::SseV3,
            fn_index: 4,
            session_hash: "abc".into(),
            event_id: "e1".into(),
            cookies: "a=b".into(),
        });
        let v = h.to_json();
        assert_eq!(v["protocol"], "sse_v3");
        assert_eq!(JobHandle::from_json(&v).unwrap(), h);
        assert!(JobHandle::from_json(&serde_json::json!({"root": 1})).is_err());
    }

    #[test]
    fn a_stored_sse_v3_handle_round_trips_byte_for_byte() {
        let stored: Value = serde_json::from_str(STORED).unwrap();
        let h = JobHandle::from_json(&stored).unwrap();
        let JobHandle::Queue(job) = &h else {
            panic!("{h:?}")
        };
        assert_eq!(
            (job.protocol, job.fn_index, job.event_id.as_str()),
            (Protocol::SseV3, 4, "e1")
        );
        assert_eq!(h.to_json(), stored);
        assert_eq!(
            serde_json::to_string(&h.to_json()).unwrap(),
            serde_json::to_string(&stored).unwrap()
        );
        assert_eq!(serde_json::to_string(&h).unwrap(), STORED);
    }

    #[test]
    fn a_ws_handle_round_trips_and_is_told_apart_by_its_protocol() {
        let h = JobHandle::Live(LiveJob {
            root: "http://127.0.0.1:7860".into(),
            api_prefix: String::new(),
            protocol: Protocol::Ws,
            fn_index: 1,
            session_hash: "s".into(),
            data: vec![Value::from("data:image/png;base64,AA=="), Value::Null],
            cookies: String::new(),
        });
        let v = h.to_json();
        assert_eq!(JobHandle::from_json(&v).unwrap(), h);
        assert_eq!((h.event_id(), h.fn_index()), (None, 1));
        let mut no_data = v.clone();
        no_data.as_object_mut().unwrap().remove("data");
        assert!(JobHandle::from_json(&no_data).is_err());
    }

    #[test]
    fn a_stored_handle_without_cookies_still_decodes() {
        let mut stored: Value = serde_json::from_str(STORED).unwrap();
        stored.as_object_mut().unwrap().remove("cookies");
        assert_eq!(JobHandle::from_json(&stored).unwrap().cookies(), "");
    }

    #[test]
    fn a_malformed_handle_is_an_error_never_a_default() {
        let stored: Value = serde_json::from_str(STORED).unwrap();
        for (key, bad) in [
            ("event_id", None),
            ("session_hash", None),
            ("root", None),
            ("fn_index", Some(Value::from("four"))),
            ("protocol", Some(Value::from("sse_v9"))),
        ] {
            let mut v = stored.clone();
            match bad {
                Some(b) => v[key] = b,
                None => drop(v.as_object_mut().unwrap().remove(key)),
            }
            let e = JobHandle::from_json(&v).expect_err(key);
            assert!(e.to_string().contains("not a Gradio job handle"), "{e}");
            assert!(!e.retryable(), "{e}");
        }
        for v in [Value::Null, Value::from("sse_v3"), serde_json::json!({})] {
            assert!(JobHandle::from_json(&v).is_err(), "{v}");
        }
    }
}
