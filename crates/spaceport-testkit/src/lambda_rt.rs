//! A Lambda Runtime API emulator: what the Lambda service offers a custom runtime's `bootstrap`
//! (the `/2018-06-01/runtime/...` endpoints), so a function's real binary runs through the real
//! `lambda_runtime` loop — init, `next`, `response` or `error` — on events the test hands it,
//! instead of its handler being called directly. It also starts the binary the way Lambda does
//! (the `AWS_LAMBDA_*` variables) and notes when it first asks for work, for cold starts.
//!
//! Written here rather than taken from cargo-lambda's `watch` (which compiles the function
//! itself and needs its own toolchain download): the API is four routes.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{Notify, oneshot};

/// Names a directory laid out as `make lambda-zips` leaves `target/lambda` (`<function>/bootstrap`):
/// the runtime tests then start those binaries — the arm64 release builds that ship — instead of
/// their own debug build.
pub const BOOTSTRAP_DIR_VAR: &str = "SPACEPORT_LAMBDA_BOOTSTRAP_DIR";
/// A command line that runs a bootstrap this machine cannot run itself
/// (`qemu-aarch64 -L /usr/aarch64-linux-gnu` for the arm64 zips on x86_64).
pub const RUNNER_VAR: &str = "SPACEPORT_LAMBDA_RUNNER";

/// The bootstrap a runtime test starts for function `name`: `built` (the test's own build,
/// `env!("CARGO_BIN_EXE_<name>")`), or `<SPACEPORT_LAMBDA_BOOTSTRAP_DIR>/<name>/bootstrap` when
/// that variable is set.
pub fn bootstrap(name: &str, built: &str) -> PathBuf {
    match std::env::var_os(BOOTSTRAP_DIR_VAR) {
        Some(dir) => Path::new(&dir).join(name).join("bootstrap"),
        None => PathBuf::from(built),
    }
}

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The function's response body (JSON).
    Response(Value),
    /// The function reported an error (its `errorType` and `errorMessage` body).
    Error(Value),
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<(String, Value)>,
    waiting: Vec<(String, oneshot::Sender<Outcome>)>,
    init_error: Option<Value>,
    first_next: Option<Instant>,
}

#[derive(Clone, Default)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    queued: Arc<Notify>,
}

/// The emulator, on 127.0.0.1 (a free port), until dropped.
pub struct RuntimeApi {
    addr: std::net::SocketAddr,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
    next_id: u64,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next(State(s): State<Shared>) -> Response {
    loop {
        // Registered before the queue is looked at, so an event queued in between still wakes us.
        let queued = s.queued.notified();
        {
            let mut inner = s.inner.lock().unwrap();
            inner.first_next.get_or_insert_with(Instant::now);
            if let Some((id, event)) = inner.queue.pop_front() {
                let mut headers = HeaderMap::new();
                let deadline = chrono::Utc::now().timestamp_millis() + 900_000;
                for (name, value) in [
                    ("lambda-runtime-aws-request-id", id.clone()),
                    ("lambda-runtime-deadline-ms", deadline.to_string()),
                    (
                        "lambda-runtime-invoked-function-arn",
                        "arn:aws:lambda:us-east-1:123456789012:function:under-test".to_owned(),
                    ),
                    ("lambda-runtime-trace-id", format!("Root=1-{id}")),
                ] {
                    headers.insert(name, HeaderValue::from_str(&value).unwrap());
                }
                return (StatusCode::OK, headers, event.to_string()).into_response();
            }
        }
        queued.await;
    }
}

fn finish(s: &Shared, id: &str, outcome: Outcome) -> StatusCode {
    let mut inner = s.inner.lock().unwrap();
    match inner.waiting.iter().position(|(w, _)| w == id) {
        Some(i) => {
            let (_, tx) = inner.waiting.remove(i);
            let _ = tx.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

fn json_body(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()))
}

async fn response(
    State(s): State<Shared>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> StatusCode {
    finish(&s, &id, Outcome::Response(json_body(&body)))
}

async fn error(State(s): State<Shared>, UrlPath(id): UrlPath<String>, body: String) -> StatusCode {
    finish(&s, &id, Outcome::Error(json_body(&body)))
}

async fn init_error(State(s): State<Shared>, body: String) -> StatusCode {
    s.inner.lock().unwrap().init_error = Some(json_body(&body));
    StatusCode::ACCEPTED
}

impl RuntimeApi {
    /// Starts the emulator.
    pub async fn start() -> Result<RuntimeApi> {
        let shared = Shared::default();
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(RuntimeApi {
            addr,
            shared,
            server,
            next_id: 0,
        })
    }

    /// `AWS_LAMBDA_RUNTIME_API`'s value: host and port.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Starts `binary` as Lambda starts a `provided.al2023` function named `name`, with `env`
    /// on top (the function's configuration); its output goes to this process's.
    pub fn spawn(&self, binary: &Path, name: &str, env: &[(String, String)]) -> Result<Child> {
        let runner = std::env::var(RUNNER_VAR).unwrap_or_default();
        let mut runner = runner.split_whitespace();
        let mut cmd = match runner.next() {
            Some(program) => {
                let mut cmd = Command::new(program);
                cmd.args(runner).arg(binary);
                cmd
            }
            None => Command::new(binary),
        };
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", self.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/30/[$LATEST]emulator")
            .env("_HANDLER", "bootstrap")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        cmd.spawn()
            .with_context(|| format!("starting {}", binary.display()))
    }

    /// When the function first asked for an event (its init done), if it has.
    pub fn first_next(&self) -> Option<Instant> {
        self.shared.inner.lock().unwrap().first_next
    }

    /// What the function reported through `/runtime/init/error`, if anything.
    pub fn init_error(&self) -> Option<Value> {
        self.shared.inner.lock().unwrap().init_error.clone()
    }

    /// Hands `event` to the function and waits up to `timeout` for how it ended.
    pub async fn invoke(&mut self, event: Value, timeout: Duration) -> Result<Outcome> {
        self.next_id += 1;
        let id = format!("00000000-0000-4000-8000-{:012}", self.next_id);
        let (tx, rx) = oneshot::channel();
        {
            let mut inner = self.shared.inner.lock().unwrap();
            inner.waiting.push((id.clone(), tx));
            inner.queue.push_back((id.clone(), event));
        }
        self.shared.queued.notify_waiters();
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => bail!("invocation {id} was dropped"),
            Err(_) => match self.init_error() {
                Some(e) => bail!("the function failed to start: {e}"),
                None => bail!("no answer to invocation {id} within {timeout:?}"),
            },
        }
    }
}

/// A process's peak resident memory (`VmHWM`) in KiB, from /proc.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
