//! The webhook receiver peer (`tests/peers/webhook_receiver/app.py`): a real HTTP server that
//! verifies each delivery with the Standard Webhooks reference library and answers as the path
//! asks (ok, flaky, slow, moved, gone, rate-limited), started from `.venv` and killed on drop.

use anyhow::{Context, Result, bail};

use crate::peer::{Peer, start_venv_peer};

/// A running webhook receiver.
pub struct WebhookReceiver {
    peer: Peer,
    url: String,
}

impl std::fmt::Debug for WebhookReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookReceiver")
            .field("url", &self.url)
            .finish()
    }
}

impl WebhookReceiver {
    /// Starts a receiver that verifies deliveries with any of `secrets` (`whsec_…`).
    pub fn start(secrets: &[String]) -> Result<WebhookReceiver> {
        let secrets = secrets.join(",");
        let (peer, port) = start_venv_peer(
            "tests/peers/webhook_receiver/app.py",
            &[("WEBHOOK_SECRETS", &secrets)],
            "the webhook receiver answering",
        )?;
        Ok(WebhookReceiver {
            peer,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    /// The base URL (`http://127.0.0.1:PORT`); append `/ok/<name>` and the like.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every request received so far (`path`, `id`, `timestamp`, `signature`, `body`,
    /// `verified`, the `status` it answered, `at`).
    pub fn records(&self) -> Result<Vec<serde_json::Value>> {
        let port: u16 = self
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .context("the receiver's port")?;
        let out = crate::peer::http_get_body(port, "/_records")?;
        let v: serde_json::Value = serde_json::from_str(&out).context("the receiver's records")?;
        match v {
            serde_json::Value::Array(a) => Ok(a),
            other => bail!("records are not a list: {other}"),
        }
    }

    /// The records of requests to `path`.
    pub fn records_of(&self, path: &str) -> Result<Vec<serde_json::Value>> {
        Ok(self
            .records()?
            .into_iter()
            .filter(|r| r["path"] == path)
            .collect())
    }

    /// What the receiver printed so far.
    pub fn output(&self) -> String {
        self.peer.output()
    }
}
