//! The HTTP side of a Gradio Space: `/config`, upload and file download here, join / stream /
//! cancel through the protocol module `/config` names, all on one reqwest client with bounded
//! waits. Cookies are kept per job (not per client) so they can be persisted in the handle.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, HeaderName, HeaderValue, SET_COOKIE};
use reqwest::{RequestBuilder, Response};
use serde_json::Value;
use spaceport_core::Error;
use spaceport_core::ports::{ByteStream, JobInput};

use url::Url;

use crate::config::{Endpoint, SpaceConfig};
use crate::error::{HttpError, download_error};
use crate::handle::JobHandle;
use crate::protocol::{protocol_error, wire};
use crate::stream::JobStream;
use crate::{bounds, origin};

/// A Hugging Face token. Its Debug never shows it, and it has no Display.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// Wraps a token (`hf_…`).
    pub fn new(token: impl Into<String>) -> Token {
        Token(token.into())
    }

    pub(crate) fn header(&self) -> Option<HeaderValue> {
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
    /// The Hub asked whether a Space that does not answer is asleep, building or broken
    /// (`None`: no Hub, for deployments whose Spaces are not on Hugging Face).
    pub hub_url: Option<String>,
    /// The `https` hosts the token is sent to (`*.hf.space`: any subdomain); never others.
    pub token_hosts: Vec<String>,
    /// Whether a generator's intermediate outputs are kept (diffs applied): only for callers
    /// that show them; the steps need the final outputs alone.
    pub generator_updates: bool,
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
            hub_url: Some(crate::hub::DEFAULT_HUB_URL.into()),
            token_hosts: crate::origin::DEFAULT_TOKEN_HOSTS
                .iter()
                .map(|h| h.to_string())
                .collect(),
            generator_updates: true,
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
    url: Url,
    /// Whether the token goes to this Space (`https`, on the allow-list).
    send_token: bool,
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

impl GradioClient {
    /// A client for the Space at `base` (`https://owner-name.hf.space`, `http://127.0.0.1:7860`).
    pub fn new(base: &str, options: ClientOptions) -> Result<GradioClient, Error> {
        let base = base.trim_end_matches('/').to_string();
        let url = origin::parse_base(&base)?;
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.idle_timeout)
            .redirect(origin::redirect_policy())
            .build()
            .map_err(|e| Error::Internal(format!("building the HTTP client: {e}")))?;
        Ok(GradioClient {
            http,
            send_token: origin::token_allowed(&url, &options.token_hosts),
            base,
            url,
            options,
        })
    }

    /// `{base}{api_prefix}/{tail}`, never off the Space's origin (`origin.rs`).
    pub(crate) fn url(&self, api_prefix: &str, tail: &str) -> Result<Url, Error> {
        origin::space_url(&self.url, api_prefix, tail)
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The reqwest client the protocol modules build their requests on.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The timeouts (and token) this client was made with.
    pub(crate) fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The headers every request to the Space carries: our token and the job's cookies.
    pub(crate) fn auth_headers(&self, cookies: &Cookies) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = vec![];
        if let Some(h) = self
            .options
            .token
            .as_ref()
            .filter(|_| self.send_token)
            .and_then(Token::header)
        {
            headers.push((AUTHORIZATION, h));
        }
        if let Ok(c) = HeaderValue::from_str(&cookies.header())
            && !c.is_empty()
        {
            headers.push((COOKIE, c));
        }
        headers
    }

    fn with_auth(&self, req: RequestBuilder, cookies: &Cookies) -> RequestBuilder {
        self.auth_headers(cookies)
            .into_iter()
            .fold(req, |req, (name, value)| req.header(name, value))
    }

    /// Sends `req` with our token and the job's cookies (absorbing those the Space sets); a
    /// failure keeps its status so the caller can decide what it means before it is an `Error`.
    pub(crate) async fn send(
        &self,
        doing: &'static str,
        req: RequestBuilder,
        cookies: &Cookies,
    ) -> Result<Response, HttpError> {
        let req = self
            .with_auth(req, cookies)
            .build()
            .map_err(|e| HttpError::transport(doing, e))?;
        // Every URL is built by `url`; this is the one door, so nothing reaches another host.
        if !origin::same_origin(&self.url, req.url()) {
            return Err(HttpError::off_origin(doing, req.url()));
        }
        let resp = self
            .http
            .execute(req)
            .await
            .map_err(|e| HttpError::transport(doing, e))?;
        cookies.absorb(&resp);
        if !resp.status().is_success() {
            let code = resp.status();
            let retry_after = crate::error::retry_after_header(resp.headers());
            let body = bounds::error_text(resp).await;
            return Err(HttpError::status(doing, code, &body).with_retry_after(retry_after));
        }
        Ok(resp)
    }

    /// Asks a sleeping Space to wake: on the Hub, a request to a Space is what starts it. The
    /// answer (a "starting" page, a 503) does not matter, so it is not read.
    pub async fn wake(&self) {
        let req = self
            .http
            .get(self.url.clone())
            .timeout(self.options.connect_timeout);
        if let Err(e) = self.with_auth(req, &Cookies::default()).send().await {
            tracing::debug!(base = %self.base, "waking the Space: {e}");
        }
    }

    /// Reads a JSON answer of a few fields (at most `MAX_ANSWER_BYTES`).
    pub(crate) async fn json(&self, doing: &'static str, resp: Response) -> Result<Value, Error> {
        json_capped(doing, resp, bounds::MAX_ANSWER_BYTES).await
    }

    /// `GET /config`.
    pub async fn config(&self, cookies: &Cookies) -> Result<SpaceConfig, Error> {
        let doing = "reading the Space's /config";
        let req = self
            .http
            .get(self.url("", "config")?)
            .timeout(self.options.request_timeout);
        let resp = self.send(doing, req, cookies).await?;
        SpaceConfig::from_json(&json_capped(doing, resp, bounds::MAX_CONFIG_BYTES).await?)
    }

    /// `GET {prefix}/info`: the API as gradio_client reads it (parameter names and defaults;
    /// State slots left out). `None` when the Space does not serve it.
    pub async fn info(&self, api_prefix: &str, cookies: &Cookies) -> Result<Option<Value>, Error> {
        let doing = "reading the Space's /info";
        let req = self
            .http
            .get(self.url(api_prefix, "info")?)
            .timeout(self.options.request_timeout);
        match self.send(doing, req, cookies).await {
            Ok(resp) => Ok(Some(
                json_capped(doing, resp, bounds::MAX_CONFIG_BYTES).await?,
            )),
            Err(e) if e.status_code().is_some_and(|s| s.is_client_error()) => Ok(None),
            Err(e) => Err(e.into()),
        }
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
            .post(self.url(api_prefix, "upload")?)
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

    /// Joins `endpoint` in the protocol `/config` named, with our session hash; returns the handle
    /// of the joined job.
    pub async fn join(
        &self,
        config: &SpaceConfig,
        endpoint: &Endpoint,
        data: &[Value],
        session_hash: &str,
        cookies: &Cookies,
    ) -> Result<JobHandle, Error> {
        wire(config.protocol)?
            .join(self, config, endpoint, data, session_hash, cookies)
            .await
    }

    /// Opens the event stream of `handle`'s job. Hold it to the end.
    pub async fn open(&self, handle: &JobHandle) -> Result<JobStream, Error> {
        wire(handle.protocol())?.open(self, handle).await
    }

    /// Cancels `handle`'s job (queued or running).
    pub async fn cancel(&self, handle: &JobHandle) -> Result<(), Error> {
        wire(handle.protocol())?.cancel(self, handle).await
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
            .get(self.url(api_prefix, &format!("file={path}"))?);
        let resp = self
            .send(doing, req, cookies)
            .await
            .map_err(download_error)?;
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

/// Reads a JSON answer of at most `limit` bytes.
async fn json_capped(doing: &'static str, resp: Response, limit: usize) -> Result<Value, Error> {
    let bytes = bounds::read_capped(doing, resp, limit).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        protocol_error(format!(
            "{doing}: the answer is not JSON ({e}): {:.200}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(400)])
        ))
    })
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

    #[tokio::test]
    async fn a_failed_request_keeps_no_token_and_no_status() {
        let base = format!("http://127.0.0.1:{}", spaceport_testkit::free_port());
        let c = GradioClient::new(
            &base,
            ClientOptions {
                token: Some(Token::new("hf_secret_value")),
                ..Default::default()
            },
        )
        .unwrap();
        let req = c.http().get(format!("{base}/config"));
        let e = c
            .send("probing", req, &Cookies::default())
            .await
            .unwrap_err();
        assert_eq!(e.status_code(), None);
        let shown = format!("{e} {e:?}");
        let e = Error::from(e);
        let shown = format!("{shown} {e} {e:?}");
        assert!(shown.contains("probing: could not connect"), "{shown}");
        assert!(!shown.contains("hf_secret_value"), "{shown}");
    }
}
