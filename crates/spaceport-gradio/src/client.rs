//! The HTTP side of a Gradio Space: `/config`, upload, join, the event stream, file download and
//! cancel, on one reqwest client with bounded waits. Cookies are kept per job (not per client) so
//! they can be persisted in the handle and sent again by whichever process picks the job up.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, HeaderValue, SET_COOKIE};
use reqwest::{RequestBuilder, Response};
use serde_json::Value;
use spaceport_core::ports::{ByteStream, JobInput};
use spaceport_core::{Error, ErrorCode};

use crate::config::{Endpoint, SpaceConfig};
use crate::error::{status, transport};
use crate::handle::JobHandle;
use crate::protocol::sse_v3::{self, GeneratingState, Outcome};
use crate::protocol::{Message, protocol_error};
use crate::sse::SseParser;

/// A Hugging Face token. Its Debug never shows it, and it has no Display.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// Wraps a token (`hf_…`).
    pub fn new(token: impl Into<String>) -> Token {
        Token(token.into())
    }

    fn header(&self) -> Option<HeaderValue> {
        let mut v = HeaderValue::from_str(&format!("Bearer {}", self.0)).ok()?;
        v.set_sensitive(true);
        Some(v)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Timeouts and credentials.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Sent as `Authorization: Bearer` on every request to the Space.
    pub token: Option<Token>,
    /// TCP/TLS connect.
    pub connect_timeout: Duration,
    /// A whole small request (`/config`, join, cancel).
    pub request_timeout: Duration,
    /// The longest silence on a stream or a transfer; longer than Gradio's 15 s heartbeat.
    pub idle_timeout: Duration,
}

impl ClientOptions {
    /// The default timeouts, with `token` (a Hugging Face token) when there is one.
    pub fn with_token(token: Option<String>) -> ClientOptions {
        ClientOptions {
            token: token.map(Token::new),
            ..ClientOptions::default()
        }
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            token: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(45),
        }
    }
}

/// The cookies a Space set during one job (sticky replicas), sent back on later requests.
#[derive(Debug, Clone, Default)]
pub struct Cookies(Arc<Mutex<BTreeMap<String, String>>>);

impl Cookies {
    /// Reads a `Cookie` header value (`a=b; c=d`).
    pub fn parse(header: &str) -> Cookies {
        let c = Cookies::default();
        for pair in header.split(';') {
            c.set(pair);
        }
        c
    }

    fn set(&self, pair: &str) {
        if let Some((k, v)) = pair.trim().split_once('=')
            && !k.trim().is_empty()
        {
            self.lock()
                .insert(k.trim().to_string(), v.trim().to_string());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn absorb(&self, resp: &Response) {
        for v in resp.headers().get_all(SET_COOKIE) {
            if let Ok(s) = v.to_str() {
                self.set(s.split(';').next().unwrap_or(""));
            }
        }
    }

    /// The `Cookie` header value.
    pub fn header(&self) -> String {
        self.lock()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A client for one Space base URL.
#[derive(Clone)]
pub struct GradioClient {
    http: reqwest::Client,
    base: String,
    options: ClientOptions,
}

impl std::fmt::Debug for GradioClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GradioClient")
            .field("base", &self.base)
            .field("options", &self.options)
            .finish()
    }
}

/// What happened to a joined event, as its stream tells it.
#[derive(Debug, Clone, PartialEq)]
pub enum JobUpdate {
    /// Waiting in the Space's queue.
    Queued {
        rank: Option<u64>,
        queue_size: Option<u64>,
        eta_s: Option<f64>,
    },
    /// A worker took it.
    Started { eta_s: Option<f64> },
    /// `gr.Progress`.
    Progress {
        fraction: Option<f64>,
        message: Option<String>,
    },
    /// `gr.Info`/`gr.Warning`/log lines.
    Log { message: String },
    /// A generator's current outputs (diffs applied).
    Generating { outputs: Vec<Value> },
    /// It ended.
    Finished(Outcome),
    /// The Space no longer knows it, or the stream broke before it ended: its result is gone.
    Lost { reason: String },
}

impl JobUpdate {
    /// Whether nothing follows this update.
    pub fn is_terminal(&self) -> bool {
        matches!(self, JobUpdate::Finished(_) | JobUpdate::Lost { .. })
    }
}

/// The event stream of one joined event. Dropping it before the end drops the connection, which
/// makes the Space forget the session (its result is lost).
pub struct JobStream {
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    parser: SseParser,
    pending: std::collections::VecDeque<String>,
    event_id: String,
    generating: GeneratingState,
    idle: Duration,
    done: bool,
}

impl JobStream {
    /// The next update; `None` after a terminal one. Never waits longer than the idle timeout.
    pub async fn next_update(&mut self) -> Option<Result<JobUpdate, Error>> {
        if self.done {
            return None;
        }
        loop {
            while let Some(data) = self.pending.pop_front() {
                let msg = match sse_v3::parse_message(&data) {
                    Ok(m) => m,
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                };
                match self.update_for(msg) {
                    Ok(Some(u)) => {
                        self.done = u.is_terminal();
                        return Some(Ok(u));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
            let lost = |reason: String| Some(Ok(JobUpdate::Lost { reason }));
            match tokio::time::timeout(self.idle, self.body.next()).await {
                Err(_) => {
                    self.done = true;
                    return lost(format!(
                        "the Space sent nothing for {:?} (no heartbeat)",
                        self.idle
                    ));
                }
                Ok(None) => {
                    self.done = true;
                    return lost("the Space ended the stream before the job completed".into());
                }
                Ok(Some(Err(e))) => {
                    self.done = true;
                    return lost(format!("the stream broke before the job completed: {e}"));
                }
                Ok(Some(Ok(chunk))) => {
                    for rec in self.parser.feed(&chunk) {
                        self.pending.push_back(rec.data);
                    }
                }
            }
        }
    }

    fn update_for(&mut self, msg: Message) -> Result<Option<JobUpdate>, Error> {
        // One stream carries every event of the session: keep ours and the session-wide ones.
        if let Some(id) = msg.event_id()
            && id != self.event_id
        {
            return Ok(None);
        }
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
                let (fraction, message) = sse_v3::progress_summary(&units);
                Some(JobUpdate::Progress { fraction, message })
            }
            Message::Log { log, .. } => Some(JobUpdate::Log { message: log }),
            Message::Heartbeat | Message::Other { .. } => None,
            Message::ProcessGenerating { output, .. } => Some(JobUpdate::Generating {
                outputs: self.generating.apply(&output)?,
            }),
            Message::ProcessCompleted {
                success,
                output,
                title,
                event_id,
            } => {
                if event_id.is_none() {
                    return Ok(None);
                }
                Some(JobUpdate::Finished(sse_v3::outcome(
                    success,
                    &output,
                    title.as_deref(),
                )?))
            }
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

    /// Reads to the end and returns the outcome (for calls whose result feeds a later call).
    pub async fn finish(mut self) -> Result<Result<Outcome, String>, Error> {
        while let Some(u) = self.next_update().await {
            match u? {
                JobUpdate::Finished(o) => {
                    // Let the server send close_stream so our disconnect does not clean the session.
                    let _ = tokio::time::timeout(Duration::from_secs(2), self.body.next()).await;
                    return Ok(Ok(o));
                }
                JobUpdate::Lost { reason } => return Ok(Err(reason)),
                _ => {}
            }
        }
        Ok(Err("the stream ended".into()))
    }

    /// As a `futures` stream.
    pub fn into_stream(self) -> BoxStream<'static, Result<JobUpdate, Error>> {
        futures::stream::unfold(self, |mut s| async move {
            s.next_update().await.map(|u| (u, s))
        })
        .boxed()
    }
}

impl GradioClient {
    /// A client for the Space at `base` (`https://owner-name.hf.space`, `http://127.0.0.1:7860`).
    pub fn new(base: &str, options: ClientOptions) -> Result<GradioClient, Error> {
        let base = base.trim_end_matches('/').to_string();
        url::Url::parse(&base).map_err(|e| {
            Error::upstream(
                ErrorCode::SpaceUnavailable,
                false,
                format!("{base:?} is not a URL: {e}"),
            )
        })?;
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.idle_timeout)
            .build()
            .map_err(|e| Error::Internal(format!("building the HTTP client: {e}")))?;
        Ok(GradioClient {
            http,
            base,
            options,
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn with_auth(&self, req: RequestBuilder, cookies: &Cookies) -> RequestBuilder {
        let mut req = req;
        if let Some(h) = self.options.token.as_ref().and_then(Token::header) {
            req = req.header(AUTHORIZATION, h);
        }
        let c = cookies.header();
        if !c.is_empty() {
            req = req.header(COOKIE, c);
        }
        req
    }

    async fn send(
        &self,
        doing: &str,
        req: RequestBuilder,
        cookies: &Cookies,
    ) -> Result<Response, Error> {
        let resp = self
            .with_auth(req, cookies)
            .send()
            .await
            .map_err(|e| transport(doing, &e))?;
        cookies.absorb(&resp);
        if !resp.status().is_success() {
            let code = resp.status();
            let body = tokio::time::timeout(Duration::from_secs(5), resp.text())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            return Err(status(doing, code, &body));
        }
        Ok(resp)
    }

    async fn json(&self, doing: &str, resp: Response) -> Result<Value, Error> {
        let text = resp.text().await.map_err(|e| transport(doing, &e))?;
        serde_json::from_str(&text).map_err(|e| {
            protocol_error(format!(
                "{doing}: the answer is not JSON ({e}): {text:.200}"
            ))
        })
    }

    /// `GET /config`.
    pub async fn config(&self, cookies: &Cookies) -> Result<SpaceConfig, Error> {
        let doing = "reading the Space's /config";
        let req = self
            .http
            .get(format!("{}/config", self.base))
            .timeout(self.options.request_timeout);
        let resp = self.send(doing, req, cookies).await?;
        SpaceConfig::from_json(&self.json(doing, resp).await?)
    }

    /// `POST {prefix}/upload`: streams the files as multipart `files` fields; returns the server
    /// paths in the same order.
    pub async fn upload(
        &self,
        api_prefix: &str,
        files: Vec<JobInput>,
        cookies: &Cookies,
    ) -> Result<Vec<String>, Error> {
        let doing = "uploading inputs to the Space";
        let count = files.len();
        let mut form = reqwest::multipart::Form::new();
        for f in files {
            let part = reqwest::multipart::Part::stream_with_length(
                reqwest::Body::wrap_stream(f.body),
                f.size,
            )
            .file_name(f.filename.clone())
            .mime_str(&f.content_type)
            .map_err(|e| Error::validation("content_type", format!("{:?}: {e}", f.content_type)))?;
            form = form.part("files", part);
        }
        let req = self
            .http
            .post(format!("{}{api_prefix}/upload", self.base))
            .multipart(form);
        let resp = self.send(doing, req, cookies).await?;
        let paths: Vec<String> = serde_json::from_value(self.json(doing, resp).await?)
            .map_err(|e| protocol_error(format!("{doing}: not a list of paths ({e})")))?;
        if paths.len() != count {
            return Err(protocol_error(format!(
                "{doing}: sent {count} files, the Space stored {}",
                paths.len()
            )));
        }
        Ok(paths)
    }

    /// Joins the queue with our session hash; returns the handle of the joined event.
    pub async fn join(
        &self,
        config: &SpaceConfig,
        endpoint: &Endpoint,
        data: &[Value],
        session_hash: &str,
        cookies: &Cookies,
    ) -> Result<JobHandle, Error> {
        config.protocol.ensure_supported()?;
        let doing = "joining the Space's queue";
        let body = sse_v3::join_body(data, endpoint.fn_index, endpoint.trigger_id, session_hash);
        let req = self
            .http
            .post(sse_v3::join_url(&self.base, &config.api_prefix))
            .timeout(self.options.request_timeout)
            .json(&body);
        let resp = self.send(doing, req, cookies).await?;
        let v = self.json(doing, resp).await?;
        let event_id = v
            .get("event_id")
            .and_then(Value::as_str)
            .ok_or_else(|| protocol_error(format!("{doing}: no event_id in {v:.200}")))?;
        Ok(JobHandle {
            root: self.base.clone(),
            api_prefix: config.api_prefix.clone(),
            protocol: config.protocol,
            fn_index: endpoint.fn_index,
            session_hash: session_hash.to_string(),
            event_id: event_id.to_string(),
            cookies: cookies.header(),
        })
    }

    /// Opens the session's event stream for `handle`'s event. Hold it to the end.
    pub async fn open(&self, handle: &JobHandle) -> Result<JobStream, Error> {
        handle.protocol.ensure_supported()?;
        let cookies = Cookies::parse(&handle.cookies);
        let req = self
            .http
            .get(sse_v3::data_url(
                &self.base,
                &handle.api_prefix,
                &handle.session_hash,
            ))
            .header(reqwest::header::ACCEPT, "text/event-stream");
        let resp = self
            .send("opening the Space's event stream", req, &cookies)
            .await?;
        Ok(JobStream {
            body: resp.bytes_stream().boxed(),
            parser: SseParser::new(),
            pending: Default::default(),
            event_id: handle.event_id.clone(),
            generating: GeneratingState::default(),
            idle: self.options.idle_timeout,
            done: false,
        })
    }

    /// `POST {prefix}/cancel` for the handle's event (queued or running).
    pub async fn cancel(&self, handle: &JobHandle) -> Result<(), Error> {
        handle.protocol.ensure_supported()?;
        let cookies = Cookies::parse(&handle.cookies);
        let req = self
            .http
            .post(sse_v3::cancel_url(&self.base, &handle.api_prefix))
            .timeout(self.options.request_timeout)
            .json(&serde_json::json!({
                "session_hash": handle.session_hash,
                "fn_index": handle.fn_index,
                "event_id": handle.event_id,
            }));
        self.send("cancelling the Space's job", req, &cookies)
            .await
            .map(drop)
    }

    /// Streams a file the Space serves (`{base}{prefix}/file={path}`). Returns the bytes and the
    /// content type the server gave.
    pub async fn download(
        &self,
        api_prefix: &str,
        path: &str,
        cookies: &Cookies,
    ) -> Result<(ByteStream, Option<String>), Error> {
        let doing = "downloading a result file from the Space";
        let req = self
            .http
            .get(format!("{}{api_prefix}/file={path}", self.base));
        let resp = self.send(doing, req, cookies).await.map_err(|e| match e {
            // A file the Space no longer has (its cache was cleaned) will not come back.
            Error::Upstream {
                code: ErrorCode::SpaceProtocol | ErrorCode::SpaceUnavailable,
                retryable,
                message,
            } => {
                let gone = message.contains("HTTP 404");
                Error::upstream(
                    ErrorCode::ArtifactDownloadFailed,
                    retryable && !gone,
                    message,
                )
            }
            other => other,
        })?;
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let stream = resp
            .bytes_stream()
            .map(|r| r.map_err(std::io::Error::other))
            .boxed();
        Ok((stream, content_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_shows_in_debug() {
        let c = GradioClient::new(
            "http://127.0.0.1:9",
            ClientOptions {
                token: Some(Token::new("hf_secret_value")),
                ..Default::default()
            },
        )
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hf_secret_value"), "{dbg}");
        assert!(dbg.contains("redacted"), "{dbg}");
    }

    #[test]
    fn cookies_round_trip_through_the_header() {
        let c = Cookies::parse("b=2; a=1;  ; junk");
        assert_eq!(c.header(), "a=1; b=2");
        assert_eq!(Cookies::parse("").header(), "");
    }
}
