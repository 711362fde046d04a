//! `WebhookSender` over HTTP: one attempt of one message, signed with the endpoint's secrets,
//! sent only to addresses the outbound guard allows (resolved right before sending, and the
//! connection pinned to them), never following a redirect, bounded in time and in how much of
//! the answer it reads.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use spaceport_core::outbound::OutboundGuard;
use spaceport_core::ports::{SendOutcome, WebhookSender};
use url::Url;

use crate::guard::resolve;
use crate::signing::{SigningSecret, sign};

/// The most of a receiver's answer read (the rest is dropped with the connection).
const MAX_ANSWER: usize = 64 * 1024;

/// Sends webhook messages over HTTP.
#[derive(Debug, Clone)]
pub struct HttpSender {
    guard: OutboundGuard,
    timeout: Duration,
    /// The secrets of messages to the runs' own webhooks and to endpoints without their own.
    secrets: Vec<SigningSecret>,
    /// Endpoints' own secrets, by endpoint name.
    endpoint_secrets: BTreeMap<String, Vec<SigningSecret>>,
}

impl HttpSender {
    /// A sender signing with `secrets` (the current first), allowed by `guard`, giving each
    /// receiver `timeout` to answer.
    pub fn new(guard: OutboundGuard, timeout: Duration, secrets: Vec<SigningSecret>) -> HttpSender {
        HttpSender {
            guard,
            timeout,
            secrets,
            endpoint_secrets: BTreeMap::new(),
        }
    }

    /// The same sender, signing messages to endpoint `name` with its own `secrets`.
    pub fn with_endpoint_secrets(mut self, name: &str, secrets: Vec<SigningSecret>) -> Self {
        self.endpoint_secrets.insert(name.to_owned(), secrets);
        self
    }

    fn secrets_of(&self, endpoint: &str) -> &[SigningSecret] {
        self.endpoint_secrets
            .get(endpoint)
            .map_or(&self.secrets, Vec::as_slice)
    }

    async fn attempt(
        &self,
        endpoint: &str,
        url: &str,
        id: &str,
        body: &str,
    ) -> Result<(u16, Option<Duration>), String> {
        let secrets = self.secrets_of(endpoint);
        if secrets.is_empty() {
            return Err("no webhook signing secret is configured (webhook_secrets)".into());
        }
        let parsed = Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        let addrs = resolve(&self.guard, "url", &parsed)
            .await
            .map_err(|e| e.to_string())?;
        let host = parsed.host_str().unwrap_or_default().to_owned();
        // Pinned to the checked addresses: a second lookup cannot point it elsewhere.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .resolve_to_addrs(&host, &addrs)
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        let timestamp = chrono::Utc::now().timestamp();
        let resp = client
            .post(parsed)
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("Spaceport-Webhooks/", env!("CARGO_PKG_VERSION")),
            )
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                sign(secrets, id, timestamp, body.as_bytes()),
            )
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| describe(&e, self.timeout))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        // Read a bounded part of the answer, so a receiver cannot hold memory or the worker.
        let mut read = 0;
        let mut answer = resp.bytes_stream();
        while let Some(Ok(chunk)) = answer.next().await {
            read += chunk.len();
            if read > MAX_ANSWER {
                break;
            }
        }
        Ok((status, retry_after))
    }
}

fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("no answer within {timeout:?}")
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        let mut out = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            out.push_str(": ");
            out.push_str(&s.to_string());
            src = s.source();
        }
        out
    }
}

/// `Retry-After`: seconds, or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v.trim()).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

#[async_trait]
impl WebhookSender for HttpSender {
    async fn send(&self, endpoint: &str, url: &str, id: &str, body: &str) -> SendOutcome {
        let start = Instant::now();
        match self.attempt(endpoint, url, id, body).await {
            Ok((status, retry_after)) => SendOutcome {
                status: Some(status),
                retry_after,
                latency: start.elapsed(),
                error: match status {
                    200..=299 => None,
                    300..=399 => Some(format!(
                        "redirected (HTTP {status}); redirects are not followed"
                    )),
                    _ => Some(format!("HTTP {status}")),
                },
            },
            Err(error) => SendOutcome {
                status: None,
                retry_after: None,
                latency: start.elapsed(),
                error: Some(error),
            },
        }
    }

    fn can_send(&self, endpoint: &str) -> bool {
        !self.secrets_of(endpoint).is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let d = parse_retry_after(&later).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
