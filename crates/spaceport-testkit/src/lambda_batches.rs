//! Real runs through a function's bootstrap as Lambda runs it: `vggt` runs created as
//! accept-upload creates them, and a step's messages handed to the bootstrap in batches of up to
//! ten by Lambda's SQS poller (`AwsEnv::feed`) while the other steps run in process. What the
//! template's memory sizes are measured with.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use spaceport_core::ports::QueueName;
use spaceport_core::{CreateRunRequest, RunId};
use spaceport_steps::Steps;

use crate::aws::AwsEnv;

/// What accept-upload does for a run of `pipeline` with `images` in its `images` slot: create
/// it, upload `images` through the presigned URLs, record each landed input (S3's notification). Returns the run's id.
pub async fn create_landed(
    steps: &Steps,
    pipeline: &str,
    images: &[(&str, Vec<u8>)],
    settings: Value,
) -> RunId {
    let new: CreateRunRequest = serde_json::from_value(json!({
        "pipeline": pipeline,
        "settings": settings,
        "inputs": {"images": images.iter().map(|(n, b)| json!({"filename": n, "content_type": "image/png", "size": b.len()})).collect::<Vec<_>>()},
    }))
    .unwrap();
    let created = steps.accept().create(&new, None).await.unwrap();
    let http = reqwest::Client::new();
    for (upload, (_, bytes)) in created.uploads.iter().zip(images) {
        let mut put = http.put(&upload.url).body(bytes.clone());
        for (k, v) in &upload.headers {
            put = put.header(k, v);
        }
        assert!(put.send().await.unwrap().status().is_success());
    }
    for f in created.run.inputs["images"].iter() {
        let meta = steps.ports.blobs.head(&f.key).await.unwrap().unwrap();
        steps.accept().input_landed(&f.key, &meta).await.unwrap();
    }
    created.run.id
}

/// What a function's bootstrap showed handling real runs' messages (`AwsEnv::ten_vggt_runs`).
#[derive(Debug)]
pub struct BatchReport {
    pub invocations: usize,
    /// The most messages one invocation was handed.
    pub largest_batch: usize,
    pub peak_rss_kib: u64,
    /// The ten runs' artifacts, in bytes.
    pub artifact_bytes: u64,
}

impl AwsEnv {
    /// Ten `vggt` runs of four 320×240 images against the Space at `space_url`, all landed
    /// before the first batch, through the three Space steps: `name`'s step through `binary`
    /// started as Lambda starts it (fed its queue's messages in batches of up to ten, as
    /// Lambda's SQS poller hands them over), the other two through their handlers in process.
    /// Asserts every run succeeded within four minutes.
    pub async fn ten_vggt_runs(
        &self,
        binary: &Path,
        name: &str,
        queue: QueueName,
        space_url: &str,
    ) -> anyhow::Result<BatchReport> {
        let pipelines = crate::repo_root().join("pipelines").display().to_string();
        let extra = [
            ("SPACEPORT_PIPELINES_DIR", pipelines.as_str()),
            ("SPACEPORT_SPACE_URL_VGGT", space_url),
        ];
        let steps = self.stack(&self.config(&extra)).await.steps;
        let mut f = self.start_function(binary, name, queue, &extra).await?;
        let mut ids = vec![];
        for i in 0..10u8 {
            let images: Vec<(String, Vec<u8>)> = (0..4u8)
                .map(|j| (format!("v{j}.png"), crate::png(320, 240, i * 4 + j)))
                .collect();
            let images: Vec<(&str, Vec<u8>)> = images
                .iter()
                .map(|(n, b)| (n.as_str(), b.clone()))
                .collect();
            ids.push(create_landed(&steps, "vggt", &images, json!({"conf_thres": 10})).await);
        }
        let until = Instant::now() + Duration::from_secs(240);
        let runs = loop {
            let mut runs = vec![];
            for id in &ids {
                runs.push(steps.ports.store.get(id).await?.context("a run vanished")?);
            }
            if runs.iter().all(|r| r.status.is_terminal()) {
                break runs;
            }
            anyhow::ensure!(
                Instant::now() < until,
                "the ten runs did not finish: {runs:?}"
            );
            let mut seen = 0;
            for q in [
                QueueName::SubmitSpace,
                QueueName::PollStatus,
                QueueName::FetchArtifact,
            ] {
                seen += if q == queue {
                    self.feed(&mut f, Duration::from_secs(120)).await?
                } else {
                    let step = steps.step(q).context("a Space step")?;
                    self.lambda_handles(&steps, step.as_ref()).await
                };
            }
            if seen == 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        for r in &runs {
            anyhow::ensure!(
                r.status == spaceport_core::Status::Succeeded,
                "{} ended {}: {:?}",
                r.id,
                r.status,
                r.error
            );
        }
        Ok(BatchReport {
            invocations: f.invocations,
            largest_batch: f.largest_batch,
            peak_rss_kib: f.peak_rss_kib().context("the function's peak RSS")?,
            artifact_bytes: runs.iter().flat_map(|r| &r.artifacts).map(|a| a.size).sum(),
        })
    }
}

/// `AwsEnv::ten_vggt_runs` on a fresh moto and vggt mirror (instant, ten jobs at once), printed.
pub async fn ten_vggt_runs_through(binary: &Path, name: &str, queue: QueueName) -> BatchReport {
    let space = crate::MirrorSpace::start_with_env(&[
        ("MIRROR_INSTANT", "1"),
        ("MIRROR_CONCURRENCY", "10"),
    ])
    .expect("the vggt mirror");
    let env = AwsEnv::start("ten", 5).await.expect("moto");
    let report = env
        .ten_vggt_runs(binary, name, queue, space.url())
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:#}\n{}", space.output()));
    println!("{name}, ten vggt runs of four 320x240 images: {report:?}");
    report
}
