//! `ws` (Gradio 3.x, gradio-protocol-legacy.md §8): one websocket per job at
//! `{prefix}/queue/join`. The server asks for our session hash (`send_hash`), queues the job
//! (`estimation`), asks for its data when a worker is free (`send_data`), streams progress and
//! full generator values, and closes after `process_completed`. Messages carry no `event_id`.
//!
//! A job exists at the Space only while its websocket is open, so nothing can be resumed:
//! "joining" records the call in the handle and the job starts when poll-status opens its
//! stream. A worker that crashes while holding it leaves the run's `stream_opened` mark, and the
//! next poll makes that a new attempt (counted against `max_attempts`); the Space drops the
//! first job when the socket dies.

use std::time::Duration;

use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use spaceport_core::{Error, ErrorCode};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message as Frame, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::diff::GeneratingState;
use super::live::{self, Asked, asked};
use super::message::{parse_message, to_update};
use super::{Wire, cancel, protocol_error};
use crate::client::{Cookies, GradioClient};
use crate::config::{Endpoint, SpaceConfig};
use crate::handle::{JobHandle, LiveJob};
use crate::stream::{JobStream, JobUpdate, UpdateSource};

/// The largest message the Space may send: 3.x inlines images as base64 in its messages.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Speaks `ws`.
pub(crate) struct Ws;

/// The websocket URL of the queue: `http` becomes `ws`, `https` `wss`.
pub(crate) fn join_url(client: &GradioClient, api_prefix: &str) -> Result<String, Error> {
    let mut url = client.url(api_prefix, "queue/join")?;
    let ws = if url.scheme() == "https" { "wss" } else { "ws" };
    url.set_scheme(ws)
        .map_err(|()| protocol_error(format!("{url} cannot be a websocket URL")))?;
    Ok(url.into())
}

#[async_trait]
impl Wire for Ws {
    async fn join(
        &self,
        client: &GradioClient,
        config: &SpaceConfig,
        endpoint: &Endpoint,
        data: &[Value],
        session_hash: &str,
        cookies: &Cookies,
    ) -> Result<JobHandle, Error> {
        Ok(live::record(
            client,
            config,
            endpoint,
            data,
            session_hash,
            cookies,
        ))
    }

    async fn open(&self, client: &GradioClient, handle: &JobHandle) -> Result<JobStream, Error> {
        let job = live::job(handle)?;
        let doing = "opening the Space's websocket";
        let mut req = join_url(client, &job.api_prefix)?
            .into_client_request()
            .map_err(|e| protocol_error(format!("{doing}: {e}")))?;
        for (name, value) in client.auth_headers(&Cookies::parse(&job.cookies)) {
            req.headers_mut().insert(name, value);
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES));
        let opts = client.options();
        let connect = tokio_tungstenite::connect_async_with_config(req, Some(config), false);
        let (socket, _) =
            tokio::time::timeout(opts.connect_timeout + opts.request_timeout, connect)
                .await
                .map_err(|_| {
                    Error::upstream(
                        spaceport_core::ErrorCode::SpaceUnavailable,
                        true,
                        format!(
                            "{doing}: no answer in {:?}",
                            opts.connect_timeout + opts.request_timeout
                        ),
                    )
                })?
                .map_err(|e| {
                    Error::upstream(
                        spaceport_core::ErrorCode::SpaceUnavailable,
                        true,
                        format!("{doing}: {e}"),
                    )
                })?;
        Ok(JobStream::new(Box::new(Updates {
            socket,
            job: job.clone(),
            generating: GeneratingState::new(false).tracking(client.options().generator_updates),
            idle: opts.idle_timeout,
        })))
    }

    async fn cancel(&self, client: &GradioClient, handle: &JobHandle) -> Result<(), Error> {
        cancel::by_dependency(client, handle).await
    }
}

/// A job's websocket read as its updates; it answers the server's `send_hash`/`send_data`.
struct Updates {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    job: LiveJob,
    generating: GeneratingState,
    idle: Duration,
}

impl Updates {
    async fn send(&mut self, v: Value) -> Result<(), String> {
        self.socket
            .send(Frame::Text(Utf8Bytes::from(v.to_string())))
            .await
            .map_err(|e| format!("the websocket broke while sending: {e}"))
    }
}

#[async_trait]
impl UpdateSource for Updates {
    async fn next(&mut self) -> Result<JobUpdate, Error> {
        loop {
            // uvicorn pings every 20 s; tungstenite answers while we read.
            let frame = match tokio::time::timeout(self.idle, self.socket.next()).await {
                Err(_) => {
                    return Ok(JobUpdate::Lost {
                        reason: format!("the Space sent nothing for {:?}", self.idle),
                    });
                }
                Ok(None) => {
                    return Ok(JobUpdate::Lost {
                        reason: "the Space closed the websocket before the job completed".into(),
                    });
                }
                Ok(Some(Err(e))) => {
                    return Ok(JobUpdate::Lost {
                        reason: format!("the websocket broke before the job completed: {e}"),
                    });
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let text = match frame {
                Frame::Text(t) => t,
                Frame::Close(_) => {
                    // A cancel (the Stop dependency) ends the socket like this, with no message.
                    return Ok(JobUpdate::Lost {
                        reason: "the Space closed the websocket before the job completed".into(),
                    });
                }
                _ => continue,
            };
            let msg = parse_message(text.as_str())?;
            match asked(&msg, &self.job) {
                Some(Asked::Send(reply)) => {
                    if let Err(reason) = self.send(reply).await {
                        return Ok(JobUpdate::Lost { reason });
                    }
                    continue;
                }
                Some(Asked::QueueFull) => {
                    // Nothing ran: the job waits for room like a refused join, without counting an attempt.
                    return Err(Error::upstream(
                        ErrorCode::SpaceQueueFull,
                        true,
                        "the Space's queue is full",
                    ));
                }
                None => {}
            }
            if let Some(update) = to_update(msg, &mut self.generating, false)? {
                return Ok(update);
            }
        }
    }

    async fn settle(&mut self) {
        // The server closes after `process_completed`; reading on lets the close handshake end.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.socket.close(None)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(base: &str) -> Result<String, Error> {
        let client = GradioClient::new(base, crate::client::ClientOptions::default())?;
        join_url(&client, "")
    }

    #[test]
    fn the_queue_url_follows_the_scheme() {
        assert_eq!(
            url("http://127.0.0.1:7860").unwrap(),
            "ws://127.0.0.1:7860/queue/join"
        );
        assert_eq!(
            url("https://owner-name.hf.space").unwrap(),
            "wss://owner-name.hf.space/queue/join"
        );
        assert!(url("ftp://x").is_err());
    }
}
