//! A small client of the HTTP API (API.md), used by the CLI, the integration tests and the
//! benchmarks: every command goes through the same API a remote app would use.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use eventsource_stream::Eventsource;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// How many files `upload_all` sends at once: a run's images go up together (the server's
/// group commit lands them in shared transactions) without opening a connection per file.
pub const UPLOADS_AT_ONCE: usize = 4;

/// An error answer of the API: its HTTP status and `{"error": {code, message, field}}`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message} (HTTP {status})")]
pub struct ApiFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub field: Option<String>,
}

/// One event of a run's stream.
#[derive(Debug, Clone)]
pub struct StreamedEvent {
    /// The run's event number (what to resume after).
    pub seq: u64,
    /// `run.progress`, `run.succeeded` …
    pub kind: String,
    /// The event as the API shows it (status, progress, error, attempt).
    pub data: Value,
}

/// A Spaceport API client.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    http: reqwest::Client,
    /// The API key sent to the API's own routes (never to upload or download URLs, which carry
    /// their own signature and may be another host's).
    key: Option<String>,
}

impl ApiClient {
    /// A client of the server at `base` (`http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .expect("a reqwest client");
        ApiClient {
            base: base.trim_end_matches('/').to_string(),
            http,
            key: None,
        }
    }

    /// The same client sending `key` (`sk_…`) as its bearer token.
    pub fn with_key(mut self, key: Option<String>) -> Self {
        self.key = key;
        self
    }

    /// A request to the API's route `path`, with the key.
    fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, self.url(path));
        match &self.key {
            Some(k) => req.bearer_auth(k),
            None => req,
        }
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn answer(resp: reqwest::Response) -> Result<Value> {
        let status = resp.status();
        let text = resp.text().await.context("reading the answer")?;
        if status.is_success() {
            return serde_json::from_str(&text)
                .with_context(|| format!("the server answered non-JSON: {text:.200}"));
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let e = &v["error"];
        Err(ApiFailure {
            status: status.as_u16(),
            code: e["code"].as_str().unwrap_or("unknown").to_string(),
            message: e["message"].as_str().unwrap_or(&text).to_string(),
            field: e["field"].as_str().map(str::to_string),
        }
        .into())
    }

    /// `POST /v1/runs`.
    pub async fn create_run(&self, body: &Value, idempotency_key: Option<&str>) -> Result<Value> {
        let mut req = self.api(reqwest::Method::POST, "/v1/runs").json(body);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        Self::answer(req.send().await.context("sending POST /v1/runs")?).await
    }

    /// `POST /v1/batches`.
    pub async fn create_batch(&self, body: &Value, idempotency_key: Option<&str>) -> Result<Value> {
        let mut req = self.api(reqwest::Method::POST, "/v1/batches").json(body);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        Self::answer(req.send().await.context("sending POST /v1/batches")?).await
    }

    /// `GET /v1/batches/{id}`.
    pub async fn get_batch(&self, id: &str) -> Result<Value> {
        let req = self.api(reqwest::Method::GET, &format!("/v1/batches/{id}"));
        Self::answer(req.send().await.context("GET batch")?).await
    }

    /// `GET /v1/batches/{id}/results`: each run as it ends, one per item (keep-alive blank
    /// lines skipped); the stream ends after the batch's last run.
    pub async fn batch_results(
        &self,
        id: &str,
    ) -> Result<impl futures::Stream<Item = Result<Value>> + use<>> {
        let resp = self
            .api(reqwest::Method::GET, &format!("/v1/batches/{id}/results"))
            .send()
            .await
            .context("GET batch results")?;
        if !resp.status().is_success() {
            return Err(Self::answer(resp).await.unwrap_err());
        }
        let lines = tokio_util::codec::FramedRead::new(
            tokio_util::io::StreamReader::new(resp.bytes_stream().map_err(std::io::Error::other)),
            tokio_util::codec::LinesCodec::new_with_max_length(16 << 20),
        );
        Ok(lines.filter_map(|line| async move {
            match line {
                Ok(l) if l.trim().is_empty() => None,
                Ok(l) => Some(serde_json::from_str(&l).context("a result line that is not JSON")),
                Err(e) => Some(Err(anyhow::Error::new(e).context("reading the results"))),
            }
        }))
    }

    /// Sends one file to an upload target of a run (`uploads[i]`).
    pub async fn upload(&self, target: &Value, path: &Path) -> Result<Value> {
        let url = target["url"]
            .as_str()
            .context("upload target without url")?;
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        let len = file.metadata().await?.len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let mut req = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body);
        if let Some(h) = target["headers"].as_object() {
            for (k, v) in h {
                req = req.header(k.as_str(), v.as_str().unwrap_or(""));
            }
        }
        Self::answer(
            req.send()
                .await
                .with_context(|| format!("uploading {}", path.display()))?,
        )
        .await
    }

    /// Sends files to their upload targets, up to `UPLOADS_AT_ONCE` at a time (as a browser
    /// does): `(target, path)` pairs; the first failure ends it.
    pub async fn upload_all(&self, files: &[(Value, PathBuf)]) -> Result<()> {
        futures::stream::iter(files)
            .map(|(target, path)| self.upload(target, path))
            .buffer_unordered(UPLOADS_AT_ONCE)
            .try_for_each(|_| async { Ok(()) })
            .await
    }

    /// `GET /v1/runs/{id}` (with `?wait=` seconds).
    pub async fn get_run(&self, id: &str, wait: Option<f64>) -> Result<Value> {
        let mut path = format!("/v1/runs/{id}");
        if let Some(w) = wait {
            path.push_str(&format!("?wait={w}"));
        }
        Self::answer(
            self.api(reqwest::Method::GET, &path)
                .send()
                .await
                .context("GET run")?,
        )
        .await
    }

    /// `GET /v1/runs/{id}/events` as a stream, resuming after event `after` (`Last-Event-ID`):
    /// the run's events as they are recorded; the server ends it after the terminal event. A
    /// refused request (an unknown run) is an `ApiFailure`; a broken stream yields an error.
    pub async fn events(
        &self,
        id: &str,
        after: u64,
    ) -> Result<impl futures::Stream<Item = Result<StreamedEvent>> + use<>> {
        let resp = self
            .api(reqwest::Method::GET, &format!("/v1/runs/{id}/events"))
            .header("Accept", "text/event-stream")
            .header("Last-Event-ID", after.to_string())
            .send()
            .await
            .context("GET run events")?;
        if !resp.status().is_success() {
            return Err(Self::answer(resp).await.unwrap_err());
        }
        Ok(resp.bytes_stream().eventsource().map(|e| {
            let e = e.context("reading the event stream")?;
            let data: Value = serde_json::from_str(&e.data)
                .with_context(|| format!("an event that is not JSON: {:.200}", e.data))?;
            Ok(StreamedEvent {
                seq: e.id.parse().context("an event id that is not a number")?,
                kind: e.event,
                data,
            })
        }))
    }

    /// `GET /v1/runs`.
    pub async fn list_runs(&self, query: &[(&str, String)]) -> Result<Value> {
        Self::answer(
            self.api(reqwest::Method::GET, "/v1/runs")
                .query(query)
                .send()
                .await
                .context("GET runs")?,
        )
        .await
    }

    /// `POST /v1/runs/{id}/{action}` (start, cancel, retry).
    pub async fn action(&self, id: &str, action: &str) -> Result<Value> {
        Self::answer(
            self.api(reqwest::Method::POST, &format!("/v1/runs/{id}/{action}"))
                .send()
                .await
                .context("POST action")?,
        )
        .await
    }

    /// `DELETE /v1/runs/{id}`.
    pub async fn delete_run(&self, id: &str) -> Result<Value> {
        Self::answer(
            self.api(reqwest::Method::DELETE, &format!("/v1/runs/{id}"))
                .send()
                .await
                .context("DELETE run")?,
        )
        .await
    }

    /// `GET /v1/pipelines`.
    pub async fn pipelines(&self) -> Result<Value> {
        Self::answer(
            self.api(reqwest::Method::GET, "/v1/pipelines")
                .send()
                .await
                .context("GET pipelines")?,
        )
        .await
    }

    /// Downloads artifact `name` of run `id` into `dir`, streaming; returns the file's path.
    pub async fn download_artifact(
        &self,
        id: &str,
        name: &str,
        filename: &str,
        dir: &Path,
    ) -> Result<PathBuf> {
        let resp = self
            .api(
                reqwest::Method::GET,
                &format!("/v1/runs/{id}/artifacts/{name}"),
            )
            .send()
            .await
            .context("GET artifact")?;
        if !resp.status().is_success() {
            return Self::answer(resp).await.map(|_| PathBuf::new());
        }
        tokio::fs::create_dir_all(dir)
            .await
            .with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(filename);
        let tmp = dir.join(format!(".{filename}.part"));
        let mut out = tokio::fs::File::create(&tmp).await?;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            out.write_all(&chunk.context("downloading the artifact")?)
                .await?;
        }
        out.flush().await?;
        out.sync_all().await?;
        tokio::fs::rename(&tmp, &path).await?;
        Ok(path)
    }
}
