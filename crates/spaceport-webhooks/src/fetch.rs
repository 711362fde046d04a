//! `InputFetcher` over HTTP: URL inputs fetched under the outbound guard. Redirects are
//! followed by hand, at most `MAX_REDIRECTS`, each hop's URL and resolved addresses checked
//! like the first (a public URL redirecting to 127.0.0.1 or the metadata address is refused),
//! and each connection pinned to the addresses checked. The answer's headers must come within
//! the timeout; the body is read by the caller, who counts it against the slot's limit.

use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use reqwest::header::{CONTENT_TYPE, LOCATION, USER_AGENT};
use spaceport_core::Error;
use spaceport_core::outbound::OutboundGuard;
use spaceport_core::ports::{Fetched, InputFetcher};

use crate::guard::resolve;

/// Redirects followed before giving up.
pub const MAX_REDIRECTS: usize = 5;

/// Fetches URL inputs over HTTP.
#[derive(Debug, Clone)]
pub struct HttpFetcher {
    guard: OutboundGuard,
    timeout: Duration,
}

impl HttpFetcher {
    /// A fetcher allowed by `guard`, giving each server `timeout` to answer (and the whole
    /// body `timeout` more to arrive; the caller bounds the size).
    pub fn new(guard: OutboundGuard, timeout: Duration) -> HttpFetcher {
        HttpFetcher { guard, timeout }
    }
}

fn unusable(field: &str, why: String) -> Error {
    Error::validation(field, format!("{field} cannot be fetched: {why}"))
}

#[async_trait]
impl InputFetcher for HttpFetcher {
    async fn fetch(&self, field: &str, url: &str) -> Result<Fetched, Error> {
        let mut url = self.guard.check_url(field, url)?;
        for _ in 0..=MAX_REDIRECTS {
            let addrs = resolve(&self.guard, field, &url)
                .await
                .map_err(|e| match e {
                    e @ Error::Validation { .. } => e,
                    other => unusable(field, other.to_string()),
                })?;
            let host = url.host_str().unwrap_or_default().to_owned();
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(self.timeout)
                // The whole exchange, body included: two timeouts' worth.
                .timeout(self.timeout * 2)
                .resolve_to_addrs(&host, &addrs)
                .build()
                .map_err(|e| Error::Internal(format!("building the HTTP client: {e}")))?;
            let resp = tokio::time::timeout(
                self.timeout,
                client
                    .get(url.clone())
                    .header(USER_AGENT, concat!("Spaceport/", env!("CARGO_PKG_VERSION")))
                    .send(),
            )
            .await
            .map_err(|_| unusable(field, format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| unusable(field, e.without_url().to_string()))?;
            let status = resp.status();
            if status.is_redirection() {
                let next = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| unusable(field, format!("HTTP {status} without a Location")))?;
                let next = url
                    .join(next)
                    .map_err(|e| unusable(field, format!("a bad redirect: {e}")))?;
                url = self.guard.check_url(field, next.as_str())?;
                continue;
            }
            if !status.is_success() {
                return Err(unusable(
                    field,
                    format!("the server answered HTTP {status}"),
                ));
            }
            let content_type = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .map(|v| v.trim().to_ascii_lowercase())
                .filter(|v| !v.is_empty());
            let length = resp.content_length();
            let final_url = url.to_string();
            let body = resp.bytes_stream().map_err(std::io::Error::other);
            return Ok(Fetched {
                body: Box::pin(body),
                content_type,
                length,
                final_url,
            });
        }
        Err(unusable(
            field,
            format!("more than {MAX_REDIRECTS} redirects"),
        ))
    }
}
