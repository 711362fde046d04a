//! What the mirror tests share: the vggt pipeline and jobs built from the fixtures, the shared
//! mirror, and bounded ways to watch a job's events.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use spaceport_core::pipeline::{BackendSpec, Pipeline};
use spaceport_core::ports::{JobInput, SpaceBackend, SpaceEvent, SpaceJob};
use spaceport_core::{Error, ErrorCode, RunId};
use spaceport_gradio::{ClientOptions, GradioBackend};
use spaceport_testkit::{MirrorSpace, repo_root};

pub const EVENT_WAIT: Duration = Duration::from_secs(90);

pub fn shared() -> &'static MirrorSpace {
    static MIRROR: OnceLock<MirrorSpace> = OnceLock::new();
    MIRROR.get_or_init(|| MirrorSpace::start().expect("starting the vggt mirror"))
}

pub fn vggt() -> Pipeline {
    let path = repo_root().join("pipelines/vggt.toml");
    let text = std::fs::read_to_string(&path).expect("reading pipelines/vggt.toml");
    Pipeline::from_toml("vggt.toml", &text).expect("loading vggt.toml")
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = repo_root()
        .join("crates/spaceport-gradio/tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Input files named `names`, with the fixtures' pixels in turn.
pub fn images(names: &[&str]) -> Vec<JobInput> {
    let pixels = ["red.png", "green.png", "blue.png"];
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let bytes = Bytes::from(fixture(pixels[i % pixels.len()]));
            JobInput {
                filename: name.to_string(),
                content_type: "image/png".into(),
                size: bytes.len() as u64,
                body: futures::stream::once(async move { Ok(bytes) }).boxed(),
            }
        })
        .collect()
}

pub fn default_settings() -> serde_json::Map<String, Value> {
    let p = vggt();
    let resolved = p.resolve_settings(&Default::default()).unwrap();
    p.backend_settings(&resolved)
}

pub fn job(url: &str, names: &[&str], settings: serde_json::Map<String, Value>) -> SpaceJob {
    let pipeline = vggt();
    let BackendSpec::Space { space, .. } = &pipeline.backend else {
        panic!("vggt is a Space pipeline")
    };
    let space = space.clone();
    SpaceJob {
        run_id: RunId::new(1, rand_u128()),
        space,
        url: url.to_string(),
        layouts: pipeline.layouts(),
        settings,
        inputs: [("images".to_string(), images(names))].into(),
    }
}

pub fn rand_u128() -> u128 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now()) as u128
}

pub fn backend() -> GradioBackend {
    GradioBackend::new(ClientOptions::default())
}

/// Watches a job to its end (bounded), returning every event.
pub async fn events(backend: &GradioBackend, handle: &Value) -> Result<Vec<SpaceEvent>> {
    let mut stream = backend.watch(handle).await?;
    let mut out = vec![];
    tokio::time::timeout(EVENT_WAIT, async {
        while let Some(ev) = stream.next().await {
            out.push(ev?);
        }
        Ok::<_, Error>(())
    })
    .await
    .context("the job did not end in time")??;
    Ok(out)
}

pub fn last(events: &[SpaceEvent]) -> &SpaceEvent {
    events.last().expect("at least one event")
}

pub fn completed(events: &[SpaceEvent]) -> Vec<Value> {
    match last(events) {
        SpaceEvent::Completed { outputs } => outputs.clone(),
        other => panic!("expected Completed, got {other:?} after {events:?}"),
    }
}

/// The mirror's log output: `SETTINGS {json}` and `IMAGES a,b` lines.
pub fn echoed(outputs: &[Value]) -> (Value, Vec<String>) {
    let log = outputs[1].as_str().expect("output 1 is the Markdown log");
    let settings = log
        .lines()
        .find_map(|l| l.strip_prefix("SETTINGS "))
        .expect("a SETTINGS line");
    let images = log
        .lines()
        .find_map(|l| l.strip_prefix("IMAGES "))
        .expect("an IMAGES line");
    (
        serde_json::from_str(settings).unwrap(),
        images.split(',').map(str::to_string).collect(),
    )
}

pub fn upstream_code(e: &Error) -> (ErrorCode, bool) {
    match e {
        Error::Upstream {
            code, retryable, ..
        } => (*code, *retryable),
        other => panic!("expected an upstream error, got {other:?}"),
    }
}

/// A job whose events are collected in the background, with their arrival times.
pub struct Watched {
    events: Arc<Mutex<Vec<(Instant, SpaceEvent)>>>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Watched {
    pub async fn start(backend: &GradioBackend, handle: &Value) -> Result<Watched> {
        let mut stream = backend.watch(handle).await?;
        let events = Arc::new(Mutex::new(vec![]));
        let sink = events.clone();
        let task = tokio::spawn(async move {
            while let Some(ev) = stream.next().await {
                sink.lock().unwrap().push((Instant::now(), ev?));
            }
            Ok(())
        });
        Ok(Watched { events, task })
    }

    pub fn snapshot(&self) -> Vec<(Instant, SpaceEvent)> {
        self.events.lock().unwrap().clone()
    }

    /// Waits until an event satisfies `pred`; returns when it arrived.
    pub async fn wait_for(
        &self,
        what: &str,
        pred: impl Fn(&SpaceEvent) -> bool,
    ) -> Result<Instant> {
        let start = Instant::now();
        while start.elapsed() < EVENT_WAIT {
            if let Some((t, _)) = self.snapshot().into_iter().find(|(_, e)| pred(e)) {
                return Ok(t);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "no {what} event within {EVENT_WAIT:?}: {:?}",
            self.snapshot()
        )
    }

    pub async fn end(self) -> Result<Vec<(Instant, SpaceEvent)>> {
        tokio::time::timeout(EVENT_WAIT, self.task)
            .await
            .context("the job did not end in time")???;
        Ok(self.events.lock().unwrap().clone())
    }
}

pub fn is_stage(e: &SpaceEvent, stage: &str) -> bool {
    matches!(e, SpaceEvent::Progress(p) if p.stage.as_deref() == Some(stage))
}
