//! The model server port: one chat request (a prompt, maybe images) to a server speaking
//! Ollama's or the OpenAI chat API, its answer streamed back piece by piece.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::pipeline::ChatProtocol;

/// An image sent with a chat request.
#[derive(Debug, Clone)]
pub struct ChatImage {
    pub filename: String,
    pub content_type: String,
    pub bytes: Bytes,
}

/// What the answer must be.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatFormat {
    Text,
    /// JSON, following the schema when there is one (the server is asked to constrain its
    /// output; the step checks it either way).
    Json(Option<Value>),
}

/// One request to a model server.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub protocol: ChatProtocol,
    /// The server's base URL.
    pub url: String,
    pub model: String,
    pub system: Option<String>,
    pub prompt: String,
    pub images: Vec<ChatImage>,
    /// Sampling options in the server's spelling.
    pub options: Map<String, Value>,
    pub format: ChatFormat,
    /// The whole request, answer streamed included, ends within this.
    pub timeout: Duration,
    /// An answer longer than this fails the request.
    pub max_answer_bytes: usize,
}

/// Receives each piece of an answer as it streams.
pub type TextSink<'a> = &'a mut (dyn FnMut(&str) + Send);

/// Talks to model servers. A server that cannot be reached, times out, cuts its stream or
/// answers 5xx or 429 fails with a retryable `ModelUnavailable` (carrying `Retry-After`); one
/// that refuses the request (4xx: an unknown model, a bad option) or streams something
/// malformed or too long fails with `ModelError`, not retryable.
#[async_trait]
pub trait ChatServer: Send + Sync {
    /// Sends `req` and returns the whole answer, passing each piece to `text` as it arrives.
    async fn chat(&self, req: ChatRequest, text: TextSink<'_>) -> Result<String, Error>;
}
