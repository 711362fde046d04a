//! The model server adapter of the `http_model` backend: one HTTP client, two protocol
//! adapters (`ollama.rs`, `openai.rs`) that each build their request body and read their
//! stream's lines into answer text. Everything a server sends is bounded: the whole request by
//! the pipeline's timeout, each line and the answer by the request's answer cap, an error body
//! by a few KiB.

mod lines;
mod ollama;
mod openai;

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::Value;
use spaceport_core::pipeline::ChatProtocol;
use spaceport_core::ports::{ChatRequest, ChatServer, TextSink};
use spaceport_core::{Error, ErrorCode};

use lines::Lines;

/// What one line of a stream said: answer text (often empty: a keep-alive, a role-only
/// chunk, an SSE comment), and whether the answer is complete.
#[derive(Debug, PartialEq)]
struct Piece {
    text: String,
    done: bool,
}

impl Piece {
    fn text(t: &str) -> Piece {
        Piece {
            text: t.to_string(),
            done: false,
        }
    }

    fn skip() -> Piece {
        Piece::text("")
    }

    fn done(t: &str) -> Piece {
        Piece {
            text: t.to_string(),
            done: true,
        }
    }
}

/// Talks to model servers over HTTP (`reqwest`, rustls).
#[derive(Clone)]
pub struct HttpChat {
    client: reqwest::Client,
}

impl HttpChat {
    /// A client; each request brings its own timeout.
    pub fn new() -> Result<HttpChat, Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // A model server is a configured peer, not a user's URL: no redirects to follow.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Internal(format!("building the model server client: {e}")))?;
        Ok(HttpChat { client })
    }
}

impl HttpChat {
    /// The models a server serves (Ollama's `GET /api/tags`, the OpenAI API's `GET /v1/models`),
    /// for `spaceport pipelines check`.
    pub async fn served_models(
        &self,
        protocol: ChatProtocol,
        url: &str,
    ) -> Result<Vec<String>, Error> {
        let (path, list, field) = match protocol {
            ChatProtocol::Ollama => ("/api/tags", "/models", "name"),
            ChatProtocol::Openai => ("/v1/models", "/data", "id"),
        };
        let url = format!("{}{path}", url.trim_end_matches('/'));
        let resp = self
            .client
            .get(&url)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| unavailable(format!("{url}: {}", describe(&e)), None))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(refused(format!(
                "{url} answered {status}: {}",
                error_body(resp).await
            )));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| unavailable(format!("{url}: {}", describe(&e)), None))?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| refused(format!("{url} answered something not JSON: {e}")))?;
        Ok(v.pointer(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| m[field].as_str().map(str::to_string))
            .collect())
    }
}

fn unavailable(message: String, retry_after: Option<Duration>) -> Error {
    Error::upstream_after(ErrorCode::ModelUnavailable, message, retry_after)
}

fn refused(message: String) -> Error {
    Error::upstream(ErrorCode::ModelError, false, message)
}

/// The most of an error body read into a message.
const ERROR_BODY_BYTES: usize = 4096;

#[async_trait]
impl ChatServer for HttpChat {
    async fn chat(&self, req: ChatRequest, text: TextSink<'_>) -> Result<String, Error> {
        let (path, body) = match req.protocol {
            ChatProtocol::Ollama => ("/api/chat", ollama::body(&req)),
            ChatProtocol::Openai => ("/v1/chat/completions", openai::body(&req)),
        };
        let url = format!("{}{path}", req.url.trim_end_matches('/'));
        let server = format!("model server {} ({})", req.url, req.model);
        let work = async {
            let resp = self
                .client
                .post(&url)
                .json(&body)
                .send()
                .await
                .map_err(|e| unavailable(format!("{server}: {}", describe(&e)), None))?;
            let status = resp.status();
            if !status.is_success() {
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let said = error_body(resp).await;
                let message = format!("{server} answered {status}: {said}");
                return Err(if status.as_u16() == 429 || status.is_server_error() {
                    unavailable(message, retry_after)
                } else {
                    refused(message)
                });
            }
            let mut lines = Lines::new(req.max_answer_bytes + 64 * 1024);
            let mut answer = String::new();
            let mut stream = resp.bytes_stream();
            loop {
                let Some(chunk) = stream.next().await else {
                    // A final line without a newline still counts.
                    if let Some(line) = lines.rest()
                        && piece(&req, &server, &line, &mut answer, text)?
                    {
                        return Ok(answer);
                    }
                    return Err(unavailable(
                        format!("{server}: the stream ended before the answer did"),
                        None,
                    ));
                };
                let chunk = chunk.map_err(|e| {
                    unavailable(
                        format!("{server}: reading the answer: {}", describe(&e)),
                        None,
                    )
                })?;
                for line in lines
                    .push(&chunk)
                    .map_err(|m| refused(format!("{server}: {m}")))?
                {
                    if piece(&req, &server, &line, &mut answer, text)? {
                        return Ok(answer);
                    }
                }
            }
        };
        match tokio::time::timeout(req.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(unavailable(
                format!(
                    "{server}: no whole answer within {} s",
                    req.timeout.as_secs()
                ),
                None,
            )),
        }
    }
}

/// Reads one stream line into the answer, passing its text on; true once the answer is
/// complete.
fn piece(
    req: &ChatRequest,
    server: &str,
    line: &str,
    answer: &mut String,
    text: TextSink<'_>,
) -> Result<bool, Error> {
    let piece = match req.protocol {
        ChatProtocol::Ollama => ollama::piece(line),
        ChatProtocol::Openai => openai::piece(line),
    }
    .map_err(|m| refused(format!("{server}: {m}")))?;
    let t = &piece.text;
    if !t.is_empty() {
        if answer.len() + t.len() > req.max_answer_bytes {
            return Err(refused(format!(
                "{server}: the answer is longer than {} bytes",
                req.max_answer_bytes
            )));
        }
        answer.push_str(t);
        text(t);
    }
    Ok(piece.done)
}

/// A server's error body, bounded, with the message pulled out of its JSON where it has one
/// (`{"error": "…"}` from Ollama, `{"error": {"message": "…"}}` from OpenAI servers).
async fn error_body(resp: reqwest::Response) -> String {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        body.extend_from_slice(&chunk[..chunk.len().min(ERROR_BODY_BYTES - body.len())]);
        if body.len() >= ERROR_BODY_BYTES {
            break;
        }
    }
    let text = String::from_utf8_lossy(&body).trim().to_string();
    match serde_json::from_str::<Value>(&text) {
        Ok(v) => error_message(&v).unwrap_or(text),
        Err(_) => text,
    }
}

/// The message in an error object of either protocol.
fn error_message(v: &Value) -> Option<String> {
    let e = v.get("error")?;
    Some(
        e.as_str()
            .or_else(|| e.get("message").and_then(Value::as_str))
            .map(str::to_string)
            .unwrap_or_else(|| e.to_string()),
    )
}

/// A transport error without its URL (which the message already names).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "cannot connect"
    } else if e.is_timeout() {
        "timed out"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    match last {
        Some(s) => format!("{kind}: {s}"),
        None => kind.to_string(),
    }
}
