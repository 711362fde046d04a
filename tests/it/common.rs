//! Shared harness: an embedded stack on a temp data dir pointed at a mirror Space, an API
//! client, image fixtures and bounded waits.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use spaceport_cli::client::ApiClient;
use spaceport_cli::config::{ApiKeyConfig, Config, PipelineOverride};
use spaceport_cli::stack::{EmbeddedStack, StackOptions};
use spaceport_core::RunId;
pub use spaceport_testkit::MirrorSpace;

/// An embedded stack on its own data dir.
pub struct TestStack {
    pub stack: EmbeddedStack,
    pub client: ApiClient,
    pub dir: tempfile::TempDir,
}

/// Step and worker settings that make retries and recovery quick in tests.
pub fn fast_options() -> StackOptions {
    let mut o = StackOptions {
        bind: "127.0.0.1:0".into(),
        ..StackOptions::default()
    };
    o.steps.backoff = Duration::from_millis(200);
    o.steps.wake_poll = Duration::from_millis(300);
    o.steps.wake_timeout = Duration::from_secs(20);
    o.steps.queue_full_max_delay = Duration::from_secs(1);
    o.steps.lease = Duration::from_secs(3);
    o.steps.heartbeat = Duration::from_millis(500);
    o.runner.visibility = Duration::from_secs(3);
    o.runner.sweep_every = Duration::from_millis(500);
    o.runner.stall_after = Duration::from_secs(2);
    o
}

/// The config of a stack whose `vggt` pipeline calls `space_url`.
pub fn config(data: &std::path::Path, space_url: &str) -> Config {
    let mut cfg = Config {
        data_dir: Some(data.to_path_buf()),
        // The Hub cannot be reached from tests; those about it point this at the testkit's front.
        hub_url: Some(String::new()),
        ..Config::default()
    };
    cfg.pipelines.insert(
        "vggt".into(),
        PipelineOverride {
            space_url: Some(space_url.into()),
            model: None,
            ..PipelineOverride::default()
        },
    );
    cfg
}

impl TestStack {
    /// Starts a stack calling the Space at `space_url`.
    pub async fn start(space_url: &str) -> Result<TestStack> {
        Self::start_with(space_url, fast_options()).await
    }

    /// Starts a stack from a full config.
    pub async fn start_config(cfg: Config) -> Result<TestStack> {
        let dir = tempfile::tempdir()?;
        let stack = EmbeddedStack::start(&cfg, fast_options()).await?;
        let client = ApiClient::new(&stack.url);
        Ok(TestStack { stack, client, dir })
    }

    /// Starts a stack from a full config with explicit options.
    pub async fn start_config_with(cfg: Config, opts: StackOptions) -> Result<TestStack> {
        let dir = tempfile::tempdir()?;
        let stack = EmbeddedStack::start(&cfg, opts).await?;
        let client = ApiClient::new(&stack.url);
        Ok(TestStack { stack, client, dir })
    }

    /// Starts a stack with explicit options.
    pub async fn start_with(space_url: &str, opts: StackOptions) -> Result<TestStack> {
        let dir = tempfile::tempdir()?;
        let cfg = config(dir.path(), space_url);
        let stack = EmbeddedStack::start(&cfg, opts).await?;
        let client = ApiClient::new(&stack.url);
        Ok(TestStack { stack, client, dir })
    }

    /// The stored run (internal fields included).
    pub async fn stored(&self, id: &str) -> spaceport_core::Run {
        let id = RunId::parse(id).unwrap();
        self.stack
            .steps
            .ports
            .store
            .get(&id)
            .await
            .unwrap()
            .expect("the run is stored")
    }

    /// The last call's outputs the Space returned for a run.
    pub async fn space_outputs(&self, id: &str) -> Vec<Value> {
        self.stored(id).await.job().outputs.unwrap_or_default()
    }
}

pub use spaceport_testkit::png;

/// Writes `files` into a temp dir and returns their paths.
pub fn write_files(dir: &std::path::Path, files: &[(&str, Vec<u8>)]) -> Vec<PathBuf> {
    files
        .iter()
        .map(|(name, bytes)| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        })
        .collect()
}

/// Creates a `vggt` run declaring `files` and uploads them; returns the run as created.
pub async fn create_and_upload(
    client: &ApiClient,
    files: &[(&str, Vec<u8>)],
    settings: Value,
    extra: Value,
) -> Result<Value> {
    let tmp = tempfile::tempdir()?;
    let paths = write_files(tmp.path(), files);
    let inputs: Vec<Value> = files
        .iter()
        .map(|(name, bytes)| json!({"filename": name, "content_type": "image/png", "size": bytes.len()}))
        .collect();
    let mut body = json!({"pipeline": "vggt", "settings": settings, "inputs": {"images": inputs}});
    if let Some(o) = extra.as_object() {
        for (k, v) in o {
            body[k] = v.clone();
        }
    }
    let run = client.create_run(&body, None).await?;
    for up in run["uploads"].as_array().context("uploads")? {
        let i = up["index"].as_u64().unwrap() as usize;
        client.upload(up, &paths[i]).await?;
    }
    Ok(run)
}

/// Creates a run declaring `files` (with `settings`, and `extra` fields such as `pipeline`),
/// uploads them and waits up to two minutes for it to end; returns the run as it ended.
/// Creates a `pipeline` run with `files` as (slot, file name, PNG bytes) and uploads them; the
/// run's id.
pub async fn create_in_slots(
    t: &TestStack,
    pipeline: &str,
    files: &[(&str, &str, Vec<u8>)],
    settings: Value,
) -> Result<String> {
    let tmp = tempfile::tempdir()?;
    let mut inputs = serde_json::Map::new();
    for (slot, name, bytes) in files {
        inputs.insert(
            slot.to_string(),
            json!([{"filename": name, "content_type": "image/png", "size": bytes.len()}]),
        );
    }
    let body = json!({"pipeline": pipeline, "settings": settings, "inputs": inputs});
    let created = t.client.create_run(&body, None).await?;
    for up in created["uploads"].as_array().context("uploads")? {
        let slot = up["slot"].as_str().unwrap();
        let (_, name, bytes) = files.iter().find(|(s, _, _)| *s == slot).unwrap();
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes)?;
        t.client.upload(up, &path).await?;
    }
    Ok(created["id"].as_str().unwrap().to_string())
}

pub async fn run_to_end(
    client: &ApiClient,
    files: &[(&str, Vec<u8>)],
    settings: Value,
    extra: Value,
) -> Value {
    let run = create_and_upload(client, files, settings, extra)
        .await
        .unwrap();
    wait_terminal(
        client,
        run["id"].as_str().unwrap(),
        Duration::from_secs(120),
    )
    .await
    .unwrap()
}

/// The names of a run's artifacts, in its order.
pub fn artifact_names(run: &Value) -> Vec<String> {
    run["artifacts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| a["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Polls a run until `pred` holds, at most `timeout`.
pub async fn wait_for(
    client: &ApiClient,
    id: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let until = Instant::now() + timeout;
    loop {
        let run = client.get_run(id, None).await?;
        if pred(&run) {
            return Ok(run);
        }
        if Instant::now() > until {
            bail!("run {id} did not become {what} within {timeout:?}; it is {run}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the run is in `status`.
pub async fn wait_status(
    client: &ApiClient,
    id: &str,
    status: &str,
    timeout: Duration,
) -> Result<Value> {
    wait_for(client, id, timeout, status, |r| r["status"] == status).await
}

/// Waits until the run is terminal.
pub async fn wait_terminal(client: &ApiClient, id: &str, timeout: Duration) -> Result<Value> {
    wait_for(client, id, timeout, "terminal", |r| {
        matches!(
            r["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled" | "expired")
        )
    })
    .await
}

/// The mirror's log output line starting with `prefix` (e.g. `SETTINGS`).
pub fn log_line(log: &str, prefix: &str) -> Option<String> {
    log.lines()
        .find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_string()))
}

/// Sends a raw request; returns the HTTP status and the body as JSON (a JSON string of the
/// text when the body is not JSON).
pub async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.expect("the server answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("reading the answer");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// Asserts an answer is API.md's error shape, `{"error": {"code", "message", "field"?}}` and
/// nothing else, with `status` and `code`; returns the `error` object.
pub fn expect_error(got: &(u16, Value), status: u16, code: &str) -> Value {
    let (got_status, body) = got;
    assert_eq!(*got_status, status, "HTTP status; body: {body}");
    let top = body
        .as_object()
        .unwrap_or_else(|| panic!("not a JSON object: {body}"));
    assert_eq!(top.keys().collect::<Vec<_>>(), ["error"], "{body}");
    let e = top["error"]
        .as_object()
        .unwrap_or_else(|| panic!("error is not an object: {body}"));
    assert_eq!(e.get("code").and_then(Value::as_str), Some(code), "{body}");
    let message = e.get("message").and_then(Value::as_str).unwrap_or_default();
    assert!(!message.is_empty(), "empty message: {body}");
    for k in e.keys() {
        assert!(
            ["code", "message", "field"].contains(&k.as_str()),
            "unexpected key {k}: {body}"
        );
    }
    if let Some(f) = e.get("field") {
        assert!(f.is_string(), "field is not a string: {body}");
    }
    top["error"].clone()
}

/// The stored run as JSON text, internal fields included (for byte-for-byte comparisons).
pub async fn stored_json(t: &TestStack, id: &str) -> String {
    serde_json::to_string(&t.stored(id).await).unwrap()
}

/// Depth, in-flight and dead-letter counts of every step queue (ages left out: they grow).
pub async fn queue_counts(t: &TestStack) -> Vec<(&'static str, u64, u64, u64)> {
    let mut out = vec![];
    for q in spaceport_core::ports::QueueName::ALL {
        let s = t.stack.steps.ports.queue.stats(q).await.unwrap();
        out.push((q.as_str(), s.depth, s.in_flight, s.dead));
    }
    out
}

/// Waits until the receiver has recorded `n` requests to `path`.
pub async fn wait_records(
    r: &spaceport_testkit::WebhookReceiver,
    path: &str,
    n: usize,
    within: Duration,
) -> Vec<Value> {
    let until = Instant::now() + within;
    loop {
        let got = r.records_of(path).unwrap();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < until,
            "{path} got {} of {n} requests within {within:?}: {got:#?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fresh API key and its configuration entry (only its hash), for `tenant` with `scopes`.
pub fn api_key(name: &str, tenant: &str, scopes: &[&str]) -> (String, ApiKeyConfig) {
    let key = format!("sk_{name}_{:032x}", rand::random::<u128>());
    let entry = ApiKeyConfig {
        name: name.into(),
        tenant: tenant.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        hash: spaceport_core::auth::hash_text(&spaceport_core::auth::key_hash(&key)),
        revoked: false,
    };
    (key, entry)
}

/// A `spaceport serve` child process, killed with SIGKILL on drop.
pub struct Serve {
    child: Child,
    pub client: ApiClient,
}

impl Serve {
    pub async fn start(data: &Path, port: u16, space_url: &str, steps: &str) -> Serve {
        Self::start_with(data, port, space_url, steps, &[], Stdio::inherit()).await
    }

    /// Starts it with `env` set too and its log (stderr) going to `log`; an empty `space_url`
    /// leaves the `vggt` pipeline's as it is (for a `pipelines_dir` without one).
    pub async fn start_with(
        data: &Path,
        port: u16,
        space_url: &str,
        steps: &str,
        env: &[(&str, &str)],
        log: Stdio,
    ) -> Serve {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_spaceport"));
        if !space_url.is_empty() {
            cmd.env("SPACEPORT_SPACE_URL_VGGT", space_url);
        }
        let child = cmd
            .args([
                "--data",
                data.to_str().unwrap(),
                "serve",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--steps",
                steps,
            ])
            .env("SPACEPORT_LEASE_S", "3")
            .env("SPACEPORT_VISIBILITY_S", "3")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning spaceport serve");
        let client = ApiClient::new(&format!("http://127.0.0.1:{port}"));
        let until = Instant::now() + Duration::from_secs(30);
        let http = reqwest::Client::new();
        loop {
            if http
                .get(format!("http://127.0.0.1:{port}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            assert!(
                Instant::now() < until,
                "spaceport serve did not answer within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Serve { child, client }
    }

    /// The most memory the process has held so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("reading /proc/PID/status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("VmHWM in /proc/PID/status");
        kib * 1024
    }

    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaping");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every object a data directory's blob store holds, by key: its files under `blobs/objects` and
/// the small objects kept as rows of its database file (read without the server's help).
pub fn stored_keys(data: &Path) -> Vec<String> {
    let objects = data.join("blobs/objects");
    let mut keys: Vec<String> = files_under(&objects)
        .into_iter()
        .map(|p| {
            p.strip_prefix(&format!("{}/", objects.display()))
                .unwrap_or(&p)
                .to_owned()
        })
        .collect();
    let db = rusqlite::Connection::open_with_flags(
        data.join("spaceport.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut rows = db.prepare("SELECT key FROM blobs").unwrap();
    keys.extend(
        rows.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap),
    );
    keys
}

/// Every file under `dir`, as path strings (an absent `dir` has none).
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

/// What trimesh (another real consumer) reads from a 3D file, in the shape of an artifact's
/// `meta`: points of point clouds, vertices and faces of meshes, the scene's bounds, and how
/// many meshes there are (a VGGT scene's cameras).
pub fn trimesh_facts(path: &Path) -> Value {
    let script = r#"
import sys, json, trimesh
s = trimesh.load(sys.argv[1], process=False)
scene = s if isinstance(s, trimesh.Scene) else trimesh.Scene(s)
points = vertices = faces = meshes = 0
for node in scene.graph.nodes_geometry:
    _, name = scene.graph[node]
    g = scene.geometry[name]
    if isinstance(g, trimesh.PointCloud):
        points += len(g.vertices)
    else:
        vertices += len(g.vertices); faces += len(g.faces); meshes += 1
print(json.dumps({"points": points, "vertices": vertices, "faces": faces, "meshes": meshes,
                  "bounds": scene.bounds.tolist()}))
"#;
    let out = Command::new(spaceport_testkit::venv_python().expect("the test venv"))
        .arg("-c")
        .arg(script)
        .arg(path)
        .output()
        .expect("running trimesh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("trimesh's figures")
}

/// Asserts an artifact's `meta` says what trimesh reads from its file: the same point and face
/// counts, bounds within float precision, the camera count of a scene of points; vertices too
/// when `vertices` (trimesh splits an OBJ's vertices at texture seams, so not for OBJ).
pub fn assert_facts_match_trimesh(meta: &Value, path: &Path, vertices: bool) {
    let t = trimesh_facts(path);
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    assert_eq!(n(&meta["points"]), n(&t["points"]), "points: {meta} vs {t}");
    assert_eq!(n(&meta["faces"]), n(&t["faces"]), "faces: {meta} vs {t}");
    if vertices {
        assert_eq!(
            n(&meta["vertices"]),
            n(&t["vertices"]),
            "vertices: {meta} vs {t}"
        );
    }
    if n(&t["points"]) > 0 {
        assert_eq!(meta["cameras"], t["meshes"], "cameras: {meta} vs {t}");
    }
    for corner in 0..2 {
        for axis in 0..3 {
            let (ours, theirs) = (
                meta["bounds"][corner][axis].as_f64(),
                t["bounds"][corner][axis].as_f64().unwrap(),
            );
            let ours = ours.unwrap_or_else(|| panic!("no bounds in {meta}"));
            assert!(
                (ours - theirs).abs() <= 1e-4 * theirs.abs().max(1.0),
                "bounds[{corner}][{axis}]: {ours} vs {theirs} ({meta} vs {t})"
            );
        }
    }
}

/// `GET /v1/runs/{id}/artifacts/{name}?format=F`, following the redirect: the file saved under
/// `dir` as `{name}.{F}`, or the refusal's status and body.
pub async fn artifact_as(
    base: &str,
    id: &str,
    name: &str,
    format: &str,
    dir: &Path,
) -> Result<PathBuf, (u16, Value)> {
    let resp = reqwest::get(format!(
        "{base}/v1/runs/{id}/artifacts/{name}?format={format}"
    ))
    .await
    .expect("the server answers");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("reading the answer");
    if status != 200 {
        return Err((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ));
    }
    let path = dir.join(format!("{name}.{format}"));
    std::fs::write(&path, &bytes).unwrap();
    Ok(path)
}
