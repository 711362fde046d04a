//! The ports: capability-sized async traits the steps depend on. Adapters (SQLite, a directory,
//! DynamoDB, SQS, S3, a Gradio client, ONNX Runtime) implement them; the steps never see an SDK.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

/// A stream of bytes, read in chunks (files are never held whole in memory).
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// Time, behind a port so tests can move it.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

mod backend;
mod blob;
mod chat;
mod fetch;
mod queue;
mod sink;
mod store;
mod webhook;

pub use backend::*;
pub use blob::*;
pub use chat::*;
pub use fetch::*;
pub use queue::*;
pub use sink::*;
pub use store::*;
pub use webhook::*;
