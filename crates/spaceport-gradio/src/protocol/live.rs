//! What `ws` (Gradio 3.x) and `sse` (4.0–4.8) share: the server drives the job over the one
//! connection that holds it, asking for our session hash (`send_hash`, ws only) and then for the
//! call's data (`send_data`, with the event's id on `sse`) once a worker is free; it may say its
//! queue is full instead. Each protocol answers on its own transport (a websocket frame, a POST).

use serde_json::{Value, json};
use spaceport_core::Error;

use super::message::Message;
use super::protocol_error;
use crate::client::{Cookies, GradioClient};
use crate::config::{Endpoint, SpaceConfig};
use crate::handle::{JobHandle, LiveJob};

/// "Joins" a live job: records the call, which starts when its connection is opened.
pub(crate) fn record(
    client: &GradioClient,
    config: &SpaceConfig,
    endpoint: &Endpoint,
    data: &[Value],
    session_hash: &str,
    cookies: &Cookies,
) -> JobHandle {
    JobHandle::Live(LiveJob {
        root: client.base().to_string(),
        api_prefix: config.api_prefix.clone(),
        protocol: config.protocol,
        fn_index: endpoint.fn_index,
        session_hash: session_hash.to_string(),
        data: data.to_vec(),
        cookies: cookies.header(),
    })
}

/// The live job inside `handle`; a handle of the queue family is a bug of ours.
pub(crate) fn job(handle: &JobHandle) -> Result<&LiveJob, Error> {
    match handle {
        JobHandle::Live(job) => Ok(job),
        other => Err(protocol_error(format!(
            "a {} handle reached the ws/sse protocols' code",
            other.protocol()
        ))),
    }
}

/// What the server asked of the client holding `job`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Asked {
    /// Send this (our session hash, or the call's data).
    Send(Value),
    /// The queue is full: the job was not taken.
    QueueFull,
}

/// Whether `msg` asks something of us, and what to answer.
pub(crate) fn asked(msg: &Message, job: &LiveJob) -> Option<Asked> {
    let Message::Other { msg: kind, raw } = msg else {
        return None;
    };
    match kind.as_str() {
        "send_hash" => Some(Asked::Send(json!({
            "fn_index": job.fn_index,
            "session_hash": job.session_hash,
        }))),
        "send_data" => {
            let mut body = json!({
                "data": job.data,
                "event_data": null,
                "fn_index": job.fn_index,
                "session_hash": job.session_hash,
            });
            if let Some(id) = raw.get("event_id").filter(|v| v.is_string()) {
                body["event_id"] = id.clone();
            }
            Some(Asked::Send(body))
        }
        "queue_full" => Some(Asked::QueueFull),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Protocol;
    use crate::protocol::message::parse_message;

    fn job(protocol: Protocol) -> LiveJob {
        LiveJob {
            root: "http://h".into(),
            api_prefix: String::new(),
            protocol,
            fn_index: 3,
            session_hash: "s".into(),
            data: vec![json!(2)],
            cookies: String::new(),
        }
    }

    #[test]
    fn the_server_asks_for_the_hash_then_the_data() {
        let j = job(Protocol::Ws);
        let hash = parse_message(r#"{"msg":"send_hash"}"#).unwrap();
        assert_eq!(
            asked(&hash, &j),
            Some(Asked::Send(json!({"fn_index": 3, "session_hash": "s"})))
        );
        let data = parse_message(r#"{"msg":"send_data"}"#).unwrap();
        assert_eq!(
            asked(&data, &j),
            Some(Asked::Send(
                json!({"data": [2], "event_data": null, "fn_index": 3, "session_hash": "s"})
            ))
        );
        // `sse` names the event in send_data, and the answer carries it back.
        let data = parse_message(r#"{"msg": "send_data", "event_id": "e9"}"#).unwrap();
        let Some(Asked::Send(body)) = asked(&data, &job(Protocol::Sse)) else {
            panic!()
        };
        assert_eq!(body["event_id"], "e9");
        let full = parse_message(r#"{"msg":"queue_full"}"#).unwrap();
        assert_eq!(asked(&full, &j), Some(Asked::QueueFull));
        let other = parse_message(r#"{"msg":"process_starts"}"#).unwrap();
        assert_eq!(asked(&other, &j), None);
    }
}
