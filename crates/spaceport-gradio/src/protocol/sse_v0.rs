//! `sse` (Gradio 4.0–4.8; gradio_client calls it v0): one SSE stream per job,
//! `GET {prefix}/queue/join?fn_index=&session_hash=`. The server queues the job (`estimation`),
//! asks for its data when a worker is free (`send_data` with the event's id), which is POSTed to
//! `{prefix}/queue/data`, then streams progress, full generator values and `process_completed`
//! on the same response, and ends it. Like `ws`, the job exists only while that stream is open
//! (`protocol/live.rs`): joining records the call, opening the stream starts the job, a lost
//! stream is a new attempt. No `/cancel`: the app's Stop dependency is called instead.

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use serde_json::Value;
use spaceport_core::{Error, ErrorCode};

use super::diff::GeneratingState;
use super::live::{self, Asked, asked};
use super::message::{parse_message, to_update};
use super::{Wire, cancel};
use crate::client::{Cookies, GradioClient};
use crate::config::{Endpoint, SpaceConfig};
use crate::handle::{JobHandle, LiveJob};
use crate::sse::SseParser;
use crate::stream::{JobStream, JobUpdate, UpdateSource};

/// Speaks `sse`.
pub(crate) struct SseV0;

#[async_trait]
impl Wire for SseV0 {
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
        let req = client
            .http()
            .get(client.url(&job.api_prefix, "queue/join")?)
            .query(&[
                ("fn_index", job.fn_index.to_string()),
                ("session_hash", job.session_hash.clone()),
            ])
            .header(reqwest::header::ACCEPT, "text/event-stream");
        let resp = client
            .send(
                "opening the Space's event stream",
                req,
                &Cookies::parse(&job.cookies),
            )
            .await?;
        Ok(JobStream::new(Box::new(Updates {
            client: client.clone(),
            job: job.clone(),
            body: resp.bytes_stream().boxed(),
            parser: SseParser::new(),
            pending: VecDeque::new(),
            generating: GeneratingState::new(false).tracking(client.options().generator_updates),
            idle: client.options().idle_timeout,
        })))
    }

    async fn cancel(&self, client: &GradioClient, handle: &JobHandle) -> Result<(), Error> {
        cancel::by_dependency(client, handle).await
    }
}

/// A job's stream read as its updates; it answers `send_data` with a POST.
struct Updates {
    client: GradioClient,
    job: LiveJob,
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    parser: SseParser,
    pending: VecDeque<String>,
    generating: GeneratingState,
    idle: Duration,
}

/// Answers `send_data`: `POST {prefix}/queue/data` with the call and the event's id.
async fn post_data(client: &GradioClient, job: &LiveJob, body: Value) -> Result<(), String> {
    let req = client
        .http()
        .post(
            client
                .url(&job.api_prefix, "queue/data")
                .map_err(|e| e.to_string())?,
        )
        .timeout(client.options().request_timeout)
        .json(&body);
    client
        .send(
            "sending the job's data to the Space",
            req,
            &Cookies::parse(&job.cookies),
        )
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

#[async_trait]
impl UpdateSource for Updates {
    async fn next(&mut self) -> Result<JobUpdate, Error> {
        loop {
            while let Some(data) = self.pending.pop_front() {
                let msg = parse_message(&data)?;
                match asked(&msg, &self.job) {
                    Some(Asked::Send(body)) => {
                        if let Err(reason) = post_data(&self.client, &self.job, body).await {
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
            let reason = match tokio::time::timeout(self.idle, self.body.next()).await {
                Err(_) => format!("the Space sent nothing for {:?}", self.idle),
                Ok(None) => "the Space ended the stream before the job completed".into(),
                Ok(Some(Err(e))) => format!("the stream broke before the job completed: {e}"),
                Ok(Some(Ok(chunk))) => {
                    for rec in self.parser.feed(&chunk)? {
                        self.pending.push_back(rec.data);
                    }
                    continue;
                }
            };
            return Ok(JobUpdate::Lost { reason });
        }
    }

    async fn settle(&mut self) {
        // The server ends the response after `process_completed`.
    }
}
