//! The queue family (`sse_v1` … `sse_v3`, Gradio 4.15–6.x): `POST {prefix}/queue/join` with our
//! session hash returns an `event_id`, and one `GET {prefix}/queue/data?session_hash=` stream
//! carries every event of that session. What differs by version (stream end, diffs, cancel) is
//! left to each protocol's module; the join and the session stream are shared here.

pub mod sse_v1;
pub mod sse_v3;

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use serde_json::{Value, json};
use spaceport_core::{Error, ErrorCode};

use super::diff::GeneratingState;
use super::message::{Message, parse_message, to_update};
use super::{Protocol, protocol_error};
use crate::client::{Cookies, GradioClient};
use crate::config::{Endpoint, SpaceConfig};
use crate::handle::{JobHandle, QueueJob};
use crate::sse::SseParser;
use crate::stream::{JobUpdate, UpdateSource};

/// How long a finished job's stream is read on, so the Space can send `close_stream` (or end
/// the response) before our disconnect makes it clean the session.
const SETTLE: Duration = Duration::from_secs(2);

/// The queue job inside a handle; a handle of another family is a bug of ours.
pub(crate) fn queue_job(handle: &JobHandle) -> Result<&QueueJob, Error> {
    match handle {
        JobHandle::Queue(job) => Ok(job),
        other => Err(Error::upstream(
            ErrorCode::Internal,
            false,
            format!("a {} handle reached the queue protocols", other.protocol()),
        )),
    }
}

/// A session stream read as one job's updates, diffs applied as the protocol sends them.
pub(crate) struct Updates {
    session: SessionStream,
    generating: GeneratingState,
}

impl Updates {
    pub(crate) fn new(session: SessionStream, protocol: Protocol) -> Updates {
        Updates {
            session,
            generating: GeneratingState::new(protocol.sends_diffs()),
        }
    }
}

#[async_trait]
impl UpdateSource for Updates {
    async fn next(&mut self) -> Result<JobUpdate, Error> {
        loop {
            let msg = match self.session.next().await? {
                Read::Message(msg) => msg,
                Read::Lost(reason) => return Ok(JobUpdate::Lost { reason }),
            };
            if let Some(update) = to_update(msg, &mut self.generating, true)? {
                return Ok(update);
            }
        }
    }

    async fn settle(&mut self) {
        self.session.linger(SETTLE).await;
    }
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

/// Joins the queue in `session_hash`; the job it returns names `/config`'s protocol.
pub(crate) async fn join(
    client: &GradioClient,
    config: &SpaceConfig,
    endpoint: &Endpoint,
    data: &[Value],
    session_hash: &str,
    cookies: &Cookies,
) -> Result<JobHandle, Error> {
    let doing = "joining the Space's queue";
    let body = join_body(data, endpoint.fn_index, endpoint.trigger_id, session_hash);
    let req = client
        .http()
        .post(client.url(&config.api_prefix, "queue/join")?)
        .timeout(client.options().request_timeout)
        .json(&body);
    let resp = client.send(doing, req, cookies).await?;
    let v = client.json(doing, resp).await?;
    let event_id = v
        .get("event_id")
        .and_then(Value::as_str)
        .ok_or_else(|| protocol_error(format!("{doing}: no event_id in {v:.200}")))?;
    Ok(JobHandle::Queue(QueueJob {
        root: client.base().to_string(),
        api_prefix: config.api_prefix.clone(),
        protocol: config.protocol,
        fn_index: endpoint.fn_index,
        session_hash: session_hash.to_string(),
        event_id: event_id.to_string(),
        cookies: cookies.header(),
    }))
}

/// Opens a queue job's session stream as its updates (diffs applied as its protocol sends them).
pub(crate) async fn open_updates(
    client: &GradioClient,
    handle: &JobHandle,
) -> Result<crate::stream::JobStream, Error> {
    let job = queue_job(handle)?;
    let mut updates = Updates::new(open(client, job).await?, job.protocol);
    updates.generating = updates
        .generating
        .tracking(client.options().generator_updates);
    Ok(crate::stream::JobStream::new(Box::new(updates)))
}

/// Opens the session's stream, keeping only `job`'s messages and the session-wide ones.
pub(crate) async fn open(client: &GradioClient, job: &QueueJob) -> Result<SessionStream, Error> {
    let cookies = Cookies::parse(&job.cookies);
    let req = client
        .http()
        .get(client.url(&job.api_prefix, "queue/data")?)
        .query(&[("session_hash", &job.session_hash)])
        .header(reqwest::header::ACCEPT, "text/event-stream");
    let resp = client
        .send("opening the Space's event stream", req, &cookies)
        .await?;
    Ok(SessionStream {
        body: resp.bytes_stream().boxed(),
        parser: SseParser::new(),
        pending: VecDeque::new(),
        event_id: job.event_id.clone(),
        idle: client.options().idle_timeout,
    })
}

/// What reading a session stream gave.
#[derive(Debug)]
pub(crate) enum Read {
    /// A message about our event or the whole session.
    Message(Message),
    /// The stream ended, broke or went silent: why.
    Lost(String),
}

/// A session's `/queue/data` stream as the messages that concern one event.
pub(crate) struct SessionStream {
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    parser: SseParser,
    pending: VecDeque<String>,
    event_id: String,
    idle: Duration,
}

impl SessionStream {
    /// The next message for our event; never waits longer than the idle timeout.
    pub(crate) async fn next(&mut self) -> Result<Read, Error> {
        loop {
            while let Some(data) = self.pending.pop_front() {
                let msg = parse_message(&data)?;
                // One stream carries every event of the session: keep ours and the session-wide ones.
                if msg.event_id().is_some_and(|id| id != self.event_id) {
                    continue;
                }
                return Ok(Read::Message(msg));
            }
            match tokio::time::timeout(self.idle, self.body.next()).await {
                Err(_) => {
                    return Ok(Read::Lost(format!(
                        "the Space sent nothing for {:?} (no heartbeat)",
                        self.idle
                    )));
                }
                Ok(None) => {
                    return Ok(Read::Lost(
                        "the Space ended the stream before the job completed".into(),
                    ));
                }
                Ok(Some(Err(e))) => {
                    return Ok(Read::Lost(format!(
                        "the stream broke before the job completed: {e}"
                    )));
                }
                Ok(Some(Ok(chunk))) => {
                    for rec in self.parser.feed(&chunk)? {
                        self.pending.push_back(rec.data);
                    }
                }
            }
        }
    }

    /// Reads (and drops) what the Space sends within `wait`, at most one chunk.
    pub(crate) async fn linger(&mut self, wait: Duration) {
        let _ = tokio::time::timeout(wait, self.body.next()).await;
    }
}

#[cfg(test)]
impl SessionStream {
    /// A stream over canned bytes, for the protocols' tests.
    pub(crate) fn from_chunks(event_id: &str, chunks: Vec<&'static str>) -> SessionStream {
        let body = futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok(Bytes::from_static(c.as_bytes()))),
        );
        SessionStream {
            body: body.boxed(),
            parser: SseParser::new(),
            pending: VecDeque::new(),
            event_id: event_id.to_string(),
            idle: Duration::from_secs(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn reads(mut s: SessionStream) -> Vec<String> {
        let mut out = vec![];
        loop {
            match s.next().await.unwrap() {
                Read::Message(m) => out.push(format!("{m:?}")),
                Read::Lost(reason) => {
                    out.push(format!("lost: {reason}"));
                    return out;
                }
            }
        }
    }

    #[tokio::test]
    async fn a_session_stream_keeps_our_event_and_the_session_wide_messages() {
        let s = SessionStream::from_chunks(
            "ours",
            vec![
                "data: {\"msg\":\"process_starts\",\"event_id\":\"other\"}\n\n",
                "data: {\"msg\":\"heartbeat\",\"event_id\":null}\n\ndata: {\"msg\":\"process_st",
                "arts\",\"event_id\":\"ours\",\"eta\":1.5}\n\n",
            ],
        );
        let got = reads(s).await;
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], "Heartbeat");
        assert!(got[1].contains("\"ours\""), "{got:?}");
        assert_eq!(
            got[2],
            "lost: the Space ended the stream before the job completed"
        );
    }

    #[tokio::test]
    async fn garbage_on_the_stream_is_a_protocol_error() {
        let mut s = SessionStream::from_chunks("e", vec!["data: not json\n\n"]);
        let e = s.next().await.unwrap_err();
        assert!(!e.retryable(), "{e}");
    }

    #[test]
    fn the_join_body_carries_our_session_hash() {
        let b = join_body(&[Value::from(1)], 4, Some(10), "sess");
        assert_eq!(
            b,
            json!({"data": [1], "event_data": null, "fn_index": 4, "trigger_id": 10, "session_hash": "sess"})
        );
    }
}
