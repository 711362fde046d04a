//! A stand-in for what sits in front of a Space on Hugging Face: the `*.hf.space` front (a
//! proxy to the mirror Space that can sleep, refuse, set a replica cookie or cut an event
//! stream on demand) and, on the same port, the Hub's runtime endpoint
//! (`GET /api/spaces/{owner}/{name}/runtime`, answering the Hub's documented JSON with the
//! stage the front is in). The real Hub cannot be reached from tests; this is that boundary.
//! Every request is recorded (time, method, path, Cookie header) so tests can prove what the
//! Space saw.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures::StreamExt;

/// One request the front or the Hub answered.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub method: String,
    /// Path and query.
    pub path: String,
    pub cookie: Option<String>,
    /// The status the front answered itself (a refusal), `None` when it forwarded.
    pub refused: Option<u16>,
}

/// An answer the front gives instead of forwarding.
#[derive(Debug, Clone)]
struct Refusal {
    /// Requests whose path contains this are refused.
    path: String,
    status: u16,
    body: String,
    retry_after: Option<u64>,
    /// How many more times (`u32::MAX`: always).
    times: u32,
}

#[derive(Debug)]
enum Stage {
    Running,
    /// Asleep: the first request starts it, and it answers after `wake_after`.
    Sleeping {
        wake_after: Duration,
    },
    Starting {
        until: Instant,
    },
    /// Broken, as the Hub says (`RUNTIME_ERROR`, `PAUSED`): every request gets a 503.
    Down(String),
}

#[derive(Debug)]
struct Inner {
    stage: Stage,
    refusals: VecDeque<Refusal>,
    /// Event streams to pass untouched before cutting.
    pass_streams: u32,
    /// Event streams still to cut after their first event of a running job.
    cut_streams: u32,
    set_cookie: Option<String>,
    seen: Vec<Seen>,
    hub_asks: u32,
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    inner: Mutex<Inner>,
    /// When each forwarded request began and its answer's body was done with (read to the end,
    /// or dropped by the client): the time the Space had a call of ours open.
    open: Mutex<Vec<(Instant, Instant)>>,
}

/// An answer's body that records, when it is dropped, how long its request was open.
struct Timed<S> {
    inner: S,
    began: Instant,
    shared: Arc<Shared>,
}

impl<S: futures::Stream + Unpin> futures::Stream for Timed<S> {
    type Item = S::Item;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        std::pin::Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl<S> Drop for Timed<S> {
    fn drop(&mut self) {
        let span = (self.began, Instant::now());
        self.shared
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(span);
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The front and Hub stand-in before one mirror Space. Stops when dropped.
pub struct SpaceFront {
    /// The Space's URL (through the front), e.g. `http://127.0.0.1:41234`.
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SpaceFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The commit the stand-in Hub says every Space runs.
pub const FRONT_SHA: &str = "5f0c1d2e3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9";

impl SpaceFront {
    /// Starts a front before the Space at `upstream`, running.
    pub async fn start(upstream: &str) -> Result<SpaceFront> {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            inner: Mutex::new(Inner {
                stage: Stage::Running,
                refusals: VecDeque::new(),
                pass_streams: 0,
                cut_streams: 0,
                set_cookie: None,
                seen: vec![],
                hub_asks: 0,
            }),
            open: Mutex::default(),
        });
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(shared.clone());
        let (url, task) = crate::serve_app(app).await?;
        Ok(SpaceFront { url, shared, task })
    }

    /// The Hub's base URL (the same server).
    pub fn hub_url(&self) -> String {
        self.url.clone()
    }

    /// Puts the Space to sleep: the next request wakes it, and it answers `wake_after` later.
    pub fn sleep(&self, wake_after: Duration) {
        self.shared.lock().stage = Stage::Sleeping { wake_after };
    }

    /// Breaks the Space: the Hub says `stage`, the front answers 503.
    pub fn break_with(&self, stage: &str) {
        self.shared.lock().stage = Stage::Down(stage.to_string());
    }

    /// Answers the next `times` requests whose path contains `path` with `status` and `body`
    /// (and a `Retry-After` of that many seconds) instead of forwarding them.
    pub fn refuse(
        &self,
        path: &str,
        times: u32,
        status: u16,
        body: &str,
        retry_after: Option<u64>,
    ) {
        self.shared.lock().refusals.push_back(Refusal {
            path: path.to_string(),
            status,
            body: body.to_string(),
            retry_after,
            times,
        });
    }

    /// Passes the next `skip` event streams, then cuts `n` once they carried the start of a job
    /// (a vggt job's first stream is its upload call's, held to completion by submit).
    pub fn cut_streams(&self, skip: u32, n: u32) {
        let mut inner = self.shared.lock();
        inner.pass_streams = skip;
        inner.cut_streams = n;
    }

    /// Sets this cookie (`name=value`) on every answer, as HF's front pins a replica.
    pub fn set_cookie(&self, cookie: &str) {
        self.shared.lock().set_cookie = Some(cookie.to_string());
    }

    /// Each forwarded request so far whose answer is done with: (began, body done with).
    pub fn open_spans(&self) -> Vec<(Instant, Instant)> {
        self.shared
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every request so far, in order (Hub questions included).
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.lock().seen.clone()
    }

    /// How many times the Hub was asked about the Space.
    pub fn hub_asks(&self) -> u32 {
        self.shared.lock().hub_asks
    }
}

fn plain(status: u16, body: &str, retry_after: Option<u64>) -> Response {
    let mut b = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE))
        .header("content-type", "application/json");
    if let Some(s) = retry_after {
        b = b.header("retry-after", s.to_string());
    }
    b.body(Body::from(body.to_string())).expect("a response")
}

/// What the front does with a request before forwarding: `Some` answers it.
fn intercept(inner: &mut Inner, path: &str) -> Option<Response> {
    if let Some(rest) = path.strip_prefix("/api/spaces/")
        && rest.split('?').next().unwrap_or("").ends_with("/runtime")
    {
        inner.hub_asks += 1;
        let stage = match &inner.stage {
            Stage::Running => "RUNNING".to_string(),
            Stage::Sleeping { .. } => "SLEEPING".to_string(),
            Stage::Starting { until } if Instant::now() < *until => "APP_STARTING".to_string(),
            Stage::Starting { .. } => "RUNNING".to_string(),
            Stage::Down(s) => s.clone(),
        };
        // The Hub's documented runtime JSON (huggingface_hub's SpaceRuntime reads these keys).
        let body = serde_json::json!({
            "stage": stage,
            "hardware": {"current": "zero-a10g", "requested": "zero-a10g"},
            "storage": null,
            "gcTimeout": 172800,
            "replicas": {"current": 1, "requested": 1},
            "devMode": false,
            "domains": [{"domain": "mirror.hf.space", "stage": "READY"}],
            "sha": FRONT_SHA,
        });
        return Some(plain(200, &body.to_string(), None));
    }
    let starting = "<html><body>Space is starting…</body></html>";
    match &inner.stage {
        Stage::Sleeping { wake_after } => {
            inner.stage = Stage::Starting {
                until: Instant::now() + *wake_after,
            };
            return Some(plain(503, starting, None));
        }
        Stage::Starting { until } if Instant::now() < *until => {
            return Some(plain(503, starting, None));
        }
        Stage::Starting { .. } => inner.stage = Stage::Running,
        Stage::Down(stage) => {
            return Some(plain(
                503,
                &format!("{{\"error\": \"Space is {stage}\"}}"),
                None,
            ));
        }
        Stage::Running => {}
    }
    let i = inner.refusals.iter().position(|r| path.contains(&r.path))?;
    let r = inner.refusals[i].clone();
    if r.times <= 1 {
        inner.refusals.remove(i);
    } else if r.times != u32::MAX {
        inner.refusals[i].times -= 1;
    }
    Some(plain(r.status, &r.body, r.retry_after))
}

async fn answer(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let began = Instant::now();
    let path = req
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    let cookie = req
        .headers()
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (refused, set_cookie, cut) = {
        let mut inner = shared.lock();
        let refused = intercept(&mut inner, &path);
        inner.seen.push(Seen {
            at: Instant::now(),
            method: req.method().to_string(),
            path: path.clone(),
            cookie,
            refused: refused.as_ref().map(|r| r.status().as_u16()),
        });
        let is_stream = path.contains("/queue/data") && req.method() == axum::http::Method::GET;
        let mut cut = false;
        if refused.is_none() && is_stream {
            if inner.pass_streams > 0 {
                inner.pass_streams -= 1;
            } else if inner.cut_streams > 0 {
                inner.cut_streams -= 1;
                cut = true;
            }
        }
        (refused, inner.set_cookie.clone(), cut)
    };
    if let Some(r) = refused {
        return r;
    }
    let mut out = shared
        .http
        .request(req.method().clone(), format!("{}{path}", shared.upstream));
    for (k, v) in req.headers() {
        if k != "host" {
            out = out.header(k, v);
        }
    }
    let body = axum::body::to_bytes(req.into_body(), 256 << 20)
        .await
        .unwrap_or_default();
    let resp = match out.body(body).send().await {
        Ok(r) => r,
        Err(e) => return plain(502, &format!("{{\"error\": \"{e}\"}}"), None),
    };
    let mut builder = Response::builder().status(resp.status().as_u16());
    for (k, v) in resp.headers() {
        builder = builder.header(k.as_str(), v.as_bytes());
    }
    if let Some(c) = set_cookie {
        builder = builder.header("set-cookie", format!("{c}; Path=/; HttpOnly"));
    }
    let stream = Timed {
        inner: resp.bytes_stream(),
        began,
        shared: shared.clone(),
    };
    let body = if cut {
        // Pass the stream on until the job has started, then end it early, as a dropped
        // connection between the front and the Space does.
        let mut started = false;
        Body::from_stream(stream.take_while(move |chunk| {
            let go = !started;
            if let Ok(c) = chunk
                && String::from_utf8_lossy(c).contains("process_starts")
            {
                started = true;
            }
            futures::future::ready(go)
        }))
    } else {
        Body::from_stream(stream)
    };
    builder.body(body).expect("a response")
}
