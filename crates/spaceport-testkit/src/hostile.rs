//! A Gradio Space that misbehaves on purpose, for the bounds a Space's answers are held to. It
//! speaks `sse_v3` with Gradio 5's `/gradio_api` prefix and one endpoint, `/predict(image) ->
//! file`, and breaks one step in one way ([`Misbehaviour`]); every other step is served as a
//! real Space serves it. No Gradio release sends these, which is why it is not a Gradio app:
//! the mirrors are real Gradio, this is the hostile peer. [`Elsewhere`] is the other host a
//! misbehaving Space points at, recording whatever reaches it, so a test can prove nothing did.
//! Every request is counted, with whether it carried an `Authorization` header.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;

/// The way a [`HostileSpace`] misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// None: a well-behaved Space, for the tests that need a plain one.
    None,
    /// The event stream's second record is one line that never ends.
    EndlessLine,
    /// `/config` is an endless JSON document (4 GiB and more, no length given).
    HugeConfig,
    /// The event stream sends heartbeats and nothing else, forever.
    HeartbeatOnly,
    /// `/config` redirects to the other host.
    RedirectElsewhere,
    /// `/config` names the other host as its `api_prefix` (`@127.0.0.1:PORT`).
    ForeignPrefix,
    /// The result file is endless (the pipeline caps it).
    HugeArtifact,
    /// The result file trickles: `SLOW_ARTIFACT_BYTES` over about `slow_for`.
    SlowArtifact,
    /// Not hostile, large: the result file has this many bytes, sent as fast as it is read
    /// (for the memory benchmark).
    SizedArtifact(u64),
}

/// What the slow result file holds.
pub const SLOW_ARTIFACT_BYTES: usize = 64 << 10;

/// What the hostile Space has seen.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub requests: u64,
    pub with_token: u64,
    pub downloads: u64,
    /// Result downloads that ran to their end (the client read every byte).
    pub downloads_finished: u64,
    /// Result downloads whose client went away before the end.
    pub downloads_dropped: u64,
}

struct Shared {
    how: Misbehaviour,
    elsewhere: String,
    slow_for: Duration,
    counts: Mutex<Counts>,
}

impl Shared {
    fn count(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.counts.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// A hostile Space on 127.0.0.1; stopped when dropped.
pub struct HostileSpace {
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HostileSpace {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HostileSpace {
    /// Starts one misbehaving `how`, pointing at `elsewhere` (a base URL) when it points away.
    pub async fn start(how: Misbehaviour, elsewhere: &str) -> Result<HostileSpace> {
        Self::start_slow(how, elsewhere, Duration::from_secs(8)).await
    }

    /// As `start`, a slow result file taking about `slow_for`.
    pub async fn start_slow(
        how: Misbehaviour,
        elsewhere: &str,
        slow_for: Duration,
    ) -> Result<HostileSpace> {
        let shared = Arc::new(Shared {
            how,
            elsewhere: elsewhere.trim_end_matches('/').to_string(),
            slow_for,
            counts: Mutex::default(),
        });
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(shared.clone());
        let (url, task) = crate::serve_app(app).await?;
        Ok(HostileSpace { url, shared, task })
    }

    /// What it has seen so far.
    pub fn counts(&self) -> Counts {
        self.shared
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The pipeline file `name` calling this Space: one PNG in (`images`), the file out as
    /// `result`, capped at `max_bytes`, with a `deadline_s`.
    pub fn pipeline(&self, name: &str, deadline_s: u64, max_bytes: u64) -> String {
        let url = &self.url;
        format!(
            r#"name = "{name}"
title = "A hostile Space"
deadline_s = {deadline_s}
max_attempts = 1

[backend]
kind = "space"
space = "test/{name}"
url = "{url}"
calls = [ {{ api_name = "/predict", inputs = [ {{ input = "images", as = "image" }} ] }} ]

[inputs.images]
min = 1
max = 1
content_types = ["image/png"]
max_bytes = 1_000_000

[outputs.result]
content_type = "application/octet-stream"
filename = "result.bin"
from = {{ call = 0, index = 0 }}
max_bytes = {max_bytes}
"#
        )
    }
}

const PREFIX: &str = "/gradio_api";

fn config(api_prefix: &str) -> serde_json::Value {
    json!({
        "version": "5.9.1",
        "protocol": "sse_v3",
        "api_prefix": api_prefix,
        "components": [
            {"id": 1, "type": "image", "props": {"label": "image"}},
            {"id": 2, "type": "file", "props": {"label": "result"}},
            {"id": 3, "type": "button", "props": {}},
        ],
        "dependencies": [
            {"id": 0, "targets": [[3, "click"]], "inputs": [1], "outputs": [2],
             "api_name": "predict", "show_api": true, "cancels": []},
        ],
    })
}

fn json_response(v: serde_json::Value) -> Response {
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(v.to_string()))
        .unwrap()
}

fn sse(body: Body) -> Response {
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(body)
        .unwrap()
}

fn record(msg: serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {msg}\n\n"))
}

/// An endless body of `chunk`, sent as fast as the client reads.
fn endless(first: Bytes, chunk: Bytes) -> Body {
    let rest = futures::stream::repeat(chunk);
    Body::from_stream(
        futures::stream::once(async move { first })
            .chain(rest)
            .map(Ok::<_, std::io::Error>),
    )
}

async fn answer(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let has_token = req.headers().contains_key("authorization");
    s.count(|c| {
        c.requests += 1;
        c.with_token += u64::from(has_token);
    });
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/config" => match s.how {
            Misbehaviour::HugeConfig => endless_config(),
            Misbehaviour::RedirectElsewhere => Response::builder()
                .status(StatusCode::FOUND)
                .header("location", format!("{}/config", s.elsewhere))
                .body(Body::empty())
                .unwrap(),
            Misbehaviour::ForeignPrefix => {
                let host = s.elsewhere.trim_start_matches("http://");
                json_response(config(&format!("@{host}")))
            }
            _ => json_response(config(PREFIX)),
        },
        p if p == format!("{PREFIX}/upload") => {
            // Read the upload to its end before answering, as Gradio does (counting the files,
            // never holding them).
            let mut body = req.into_body().into_data_stream();
            let mut tail: Vec<u8> = vec![];
            let mut files = 0usize;
            let marker = b"filename=";
            while let Some(Ok(chunk)) = body.next().await {
                tail.extend_from_slice(&chunk);
                files += tail.windows(marker.len()).filter(|w| *w == marker).count();
                let keep = tail.len().min(marker.len() - 1);
                tail.drain(..tail.len() - keep);
            }
            let paths: Vec<String> = (0..files.max(1))
                .map(|i| format!("/tmp/gradio/in/{i}.png"))
                .collect();
            json_response(json!(paths))
        }
        p if p == format!("{PREFIX}/queue/join") => json_response(json!({"event_id": "e1"})),
        p if p == format!("{PREFIX}/queue/data") => events(&s),
        p if p.starts_with(&format!("{PREFIX}/file=")) => result_file(s.clone()),
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::from("{\"detail\":\"Not Found\"}"))
            .unwrap(),
    }
}

fn endless_config() -> Response {
    let pad = Bytes::from(vec![b'x'; 64 << 10]);
    Response::builder()
        .header("content-type", "application/json")
        .body(endless(Bytes::from_static(b"{\"pad\": \""), pad))
        .unwrap()
}

fn events(s: &Shared) -> Response {
    let starts = record(json!({"msg": "process_starts", "event_id": "e1", "eta": null}));
    match s.how {
        Misbehaviour::EndlessLine => {
            let first =
                Bytes::from([&starts[..], b"data: {\"msg\": \"log\", \"log\": \""].concat());
            sse(endless(first, Bytes::from(vec![b'y'; 64 << 10])))
        }
        Misbehaviour::HeartbeatOnly => {
            let beats = futures::stream::unfold(true, |first| async move {
                if !first {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Some((record(json!({"msg": "heartbeat"})), false))
            });
            sse(Body::from_stream(beats.map(Ok::<_, std::io::Error>)))
        }
        _ => {
            let file = json!({
                "path": "/tmp/gradio/out/result.bin",
                "url": null,
                "size": null,
                "orig_name": "result.bin",
                "mime_type": null,
                "is_stream": false,
                "meta": {"_type": "gradio.FileData"},
            });
            let done = record(json!({
                "msg": "process_completed", "event_id": "e1", "success": true,
                "output": {"data": [file], "is_generating": false, "duration": 0.01},
            }));
            let close = record(json!({"msg": "close_stream", "event_id": null}));
            sse(Body::from([starts, done, close].concat()))
        }
    }
}

/// Counts a result download's end when its body is dropped: finished or cut short.
struct Download {
    shared: Arc<Shared>,
    sent: Arc<AtomicU64>,
    total: Option<u64>,
}

impl Drop for Download {
    fn drop(&mut self) {
        let finished = self
            .total
            .is_some_and(|t| self.sent.load(Ordering::SeqCst) >= t);
        self.shared.count(|c| {
            if finished {
                c.downloads_finished += 1;
            } else {
                c.downloads_dropped += 1;
            }
        });
    }
}

fn result_file(s: Arc<Shared>) -> Response {
    s.count(|c| c.downloads += 1);
    let sent = Arc::new(AtomicU64::new(0));
    let (body, total): (futures::stream::BoxStream<'static, Bytes>, Option<u64>) = match s.how {
        Misbehaviour::HugeArtifact => (
            futures::stream::repeat(Bytes::from(vec![b'z'; 64 << 10])).boxed(),
            None,
        ),
        Misbehaviour::SlowArtifact => {
            const PIECES: usize = 32;
            let pause = s.slow_for / PIECES as u32;
            let piece = Bytes::from(vec![b's'; SLOW_ARTIFACT_BYTES / PIECES]);
            (
                futures::stream::iter(0..PIECES)
                    .then(move |_| {
                        let piece = piece.clone();
                        async move {
                            tokio::time::sleep(pause).await;
                            piece
                        }
                    })
                    .boxed(),
                Some(SLOW_ARTIFACT_BYTES as u64),
            )
        }
        Misbehaviour::SizedArtifact(size) => {
            const CHUNK: u64 = 64 << 10;
            let piece = Bytes::from(vec![b'g'; CHUNK as usize]);
            (
                futures::stream::iter((0..size).step_by(CHUNK as usize))
                    .map(move |at| piece.slice(..(size - at).min(CHUNK) as usize))
                    .boxed(),
                Some(size),
            )
        }
        _ => (
            futures::stream::once(async { Bytes::from_static(b"a result file") }).boxed(),
            Some(13),
        ),
    };
    let guard = Download {
        shared: s.clone(),
        sent: sent.clone(),
        total,
    };
    let body = body.map(move |b| {
        let _ = &guard;
        sent.fetch_add(b.len() as u64, Ordering::SeqCst);
        Ok::<_, std::io::Error>(b)
    });
    Response::builder()
        .header("content-type", "application/octet-stream")
        .body(Body::from_stream(body))
        .unwrap()
}

/// The other host: answers every request as a Space would (a `/config` included), and records
/// each, so that a test proves none came.
pub struct Elsewhere {
    pub url: String,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Elsewhere {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Elsewhere {
    pub async fn start() -> Result<Elsewhere> {
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let app = axum::Router::new()
            .fallback(
                |State(seen): State<Arc<Mutex<Vec<String>>>>, req: Request| async move {
                    seen.lock().unwrap_or_else(|e| e.into_inner()).push(format!(
                        "{} {}",
                        req.method(),
                        req.uri()
                    ));
                    json_response(config(PREFIX))
                },
            )
            .with_state(seen.clone());
        let (url, task) = crate::serve_app(app).await?;
        Ok(Elsewhere { url, seen, task })
    }

    /// Every request that reached it (`METHOD /path`).
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
