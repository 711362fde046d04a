//! The outbound clients a binary was built without (see the crate's features): each Lambda
//! links only the clients its step calls, so the rest of the ports hold `Unbuilt`, which refuses
//! every call by naming the missing feature. A step never reaches one in a correctly wired
//! binary; if a wiring mistake ever does, the run fails with that reason instead of hanging.

use async_trait::async_trait;
use serde_json::Value;
use spaceport_core::Error;
use spaceport_core::ports::{
    ByteStream, ChatRequest, ChatServer, SendOutcome, SpaceBackend, SpaceEvent, SpaceJob,
    Submitted, TextSink, WebhookSender,
};
use std::time::Duration;

/// A client this binary does not have; the string is the cargo feature that would build it.
pub(crate) struct Unbuilt(pub &'static str);

impl Unbuilt {
    fn refusal(&self) -> Error {
        Error::Internal(format!(
            "this binary was built without spaceport-stack's `{}` feature",
            self.0
        ))
    }
}

#[async_trait]
impl SpaceBackend for Unbuilt {
    async fn submit(&self, _job: SpaceJob) -> Result<Submitted, Error> {
        Err(self.refusal())
    }

    async fn watch(
        &self,
        _handle: &Value,
    ) -> Result<futures::stream::BoxStream<'static, Result<SpaceEvent, Error>>, Error> {
        Err(self.refusal())
    }

    async fn download(
        &self,
        _handle: &Value,
        _file: &Value,
    ) -> Result<(ByteStream, Option<String>), Error> {
        Err(self.refusal())
    }

    async fn cancel(&self, _handle: &Value) -> Result<(), Error> {
        Err(self.refusal())
    }
}

#[async_trait]
impl ChatServer for Unbuilt {
    async fn chat(&self, _req: ChatRequest, _text: TextSink<'_>) -> Result<String, Error> {
        Err(self.refusal())
    }
}

#[async_trait]
impl WebhookSender for Unbuilt {
    async fn send(&self, _endpoint: &str, _url: &str, _id: &str, _body: &str) -> SendOutcome {
        SendOutcome {
            status: None,
            retry_after: None,
            latency: Duration::ZERO,
            error: Some(self.refusal().to_string()),
        }
    }

    fn can_send(&self, _endpoint: &str) -> bool {
        false
    }
}
