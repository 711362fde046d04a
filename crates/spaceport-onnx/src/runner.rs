//! The `ModelRunner` port on ONNX Runtime: what the `reconstruct` step calls. One worker holds one
//! `Reconstructor` (one ONNX Runtime session), loaded on first use and kept for the next runs of
//! the same model; inference runs on a blocking thread so the worker's async loop keeps beating.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use spaceport_core::pipeline::LocalFunction;
use spaceport_core::ports::{LocalJob, ModelArtifact, ModelJob, ModelRunner, ProgressSink};
use spaceport_core::{Error as CoreError, ErrorCode, Progress};

use crate::config::{IoNames, ModelConfig, PreprocessMode, ReconSettings};
use crate::preprocess::InputImage;
use crate::reconstruct::{Reconstructor, Stage};

/// Runs pipeline models with ONNX Runtime.
#[derive(Clone)]
pub struct OnnxRunner {
    inner: Arc<Inner>,
}

struct Inner {
    /// Provider, frame limit, threads and the runtime library; `path` and `io` come from each job.
    base: ModelConfig,
    /// Relative model paths resolve against this directory (the data dir).
    root: PathBuf,
    loaded: Mutex<Option<(ModelConfig, Reconstructor)>>,
}

impl std::fmt::Debug for OnnxRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxRunner")
            .field("provider", &self.inner.base.provider)
            .field("root", &self.inner.root)
            .finish()
    }
}

impl OnnxRunner {
    /// A runner whose sessions use `base`'s provider, frame limit and runtime library; relative
    /// model paths resolve against `root`.
    pub fn new(base: ModelConfig, root: impl Into<PathBuf>) -> Self {
        OnnxRunner {
            inner: Arc::new(Inner {
                base,
                root: root.into(),
                loaded: Mutex::new(None),
            }),
        }
    }

    /// The model file a job's path names.
    pub fn resolve(&self, model: &str) -> PathBuf {
        let p = Path::new(model);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.inner.root.join(p)
        }
    }
}

fn to_core(e: crate::Error) -> CoreError {
    CoreError::upstream(e.code(), e.retryable(), e.to_string())
}

/// Maps a stage's own fraction onto the whole run (pre-processing, inference and writing take
/// roughly these shares on a CPU).
fn overall(stage: Stage, done: f64) -> f64 {
    let (start, share) = match stage {
        Stage::Preprocessing => (0.0, 0.2),
        Stage::Inference => (0.2, 0.6),
        Stage::Writing => (0.8, 0.2),
    };
    start + share * done.clamp(0.0, 1.0)
}

#[async_trait]
impl ModelRunner for OnnxRunner {
    fn available(&self, model: &str) -> bool {
        self.resolve(model).is_file()
    }

    async fn local(&self, job: LocalJob) -> Result<Vec<ModelArtifact>, CoreError> {
        let task = tokio::task::spawn_blocking(move || -> Result<Vec<ModelArtifact>, CoreError> {
            match job.function {
                LocalFunction::VggtRender => {
                    let settings = Value::Object(job.settings);
                    let recon = ReconSettings::from_json(&settings).map_err(to_core)?;
                    let frame = crate::render::frame_filter(&settings).map_err(to_core)?;
                    let input = job.inputs.first().ok_or_else(|| {
                        CoreError::upstream(ErrorCode::InputInvalid, false, "no predictions given")
                    })?;
                    std::fs::create_dir_all(&job.out_dir)
                        .map_err(|e| CoreError::storage("creating the output folder", e))?;
                    let path = job.out_dir.join("scene.glb");
                    let stats =
                        crate::render::render(&input.filename, &input.bytes, &recon, frame, &path)
                            .map_err(to_core)?;
                    let mut meta = Map::new();
                    meta.insert("points".into(), json!(stats.points));
                    meta.insert("cameras".into(), json!(stats.cameras));
                    Ok(vec![ModelArtifact {
                        name: "scene".into(),
                        path,
                        meta,
                    }])
                }
                LocalFunction::MeshConvert => {
                    let format = job
                        .settings
                        .get("format")
                        .and_then(Value::as_str)
                        .unwrap_or("ply");
                    let to = spaceport_mesh::MeshFormat::parse(format).ok_or_else(|| {
                        CoreError::upstream(
                            ErrorCode::InputInvalid,
                            false,
                            format!("format {format:?} is not obj or ply"),
                        )
                    })?;
                    let input = job.inputs.first().ok_or_else(|| {
                        CoreError::upstream(ErrorCode::InputInvalid, false, "no mesh given")
                    })?;
                    let bytes = spaceport_mesh::convert(&input.bytes, to).map_err(|e| {
                        CoreError::upstream(
                            ErrorCode::InputInvalid,
                            false,
                            format!("{}: {e}", input.filename),
                        )
                    })?;
                    std::fs::create_dir_all(&job.out_dir)
                        .map_err(|e| CoreError::storage("creating the output folder", e))?;
                    let path = job.out_dir.join(format!("mesh.{}", to.extension()));
                    std::fs::write(&path, bytes)
                        .map_err(|e| CoreError::storage("writing the converted mesh", e))?;
                    Ok(vec![ModelArtifact {
                        name: to.extension().into(),
                        path,
                        meta: Map::new(),
                    }])
                }
            }
        });
        task.await.map_err(|e| {
            CoreError::upstream(
                ErrorCode::ModelError,
                false,
                format!("the render thread failed: {e}"),
            )
        })?
    }

    async fn run(
        &self,
        job: ModelJob,
        progress: ProgressSink,
    ) -> Result<Vec<ModelArtifact>, CoreError> {
        let inner = self.inner.clone();
        let path = self.resolve(&job.model);
        let task = tokio::task::spawn_blocking(move || -> Result<Vec<ModelArtifact>, CoreError> {
            let mut cfg = inner.base.clone();
            cfg.path = path;
            cfg.io = IoNames::with_overrides(job.io.iter()).map_err(to_core)?;
            cfg.preprocess = PreprocessMode::parse(job.preprocess.as_deref()).map_err(to_core)?;
            let settings =
                ReconSettings::from_json(&Value::Object(job.settings.clone())).map_err(to_core)?;
            let mut loaded = inner
                .loaded
                .lock()
                .map_err(|_| CoreError::Internal("the model lock is poisoned".into()))?;
            let reusable = loaded.as_ref().is_some_and(|(c, _)| {
                c.path == cfg.path && c.io == cfg.io && c.preprocess == cfg.preprocess
            });
            if !reusable {
                *loaded = None;
                let r = Reconstructor::new(cfg.clone()).map_err(to_core)?;
                *loaded = Some((cfg, r));
            }
            let (_, reconstructor) = loaded.as_mut().expect("loaded above");
            let images = job
                .inputs
                .into_iter()
                .map(|i| InputImage::from_bytes(i.filename, i.bytes.to_vec()))
                .collect();
            let out = reconstructor
                .reconstruct(images, &settings, &job.out_dir, |stage, done| {
                    progress(Progress {
                        stage: Some(stage.as_str().to_string()),
                        fraction: Some(overall(stage, done)),
                        ..Progress::default()
                    })
                })
                .map_err(to_core)?;
            let mut scene = Map::new();
            scene.insert("points".into(), json!(out.points));
            scene.insert("cameras".into(), json!(out.cameras));
            let mut preds = Map::new();
            preds.insert("frames".into(), json!(out.frames));
            Ok(vec![
                ModelArtifact {
                    name: "scene".into(),
                    path: out.glb_path,
                    meta: scene,
                },
                ModelArtifact {
                    name: "predictions".into(),
                    path: out.npz_path,
                    meta: preds,
                },
            ])
        });
        task.await.map_err(|e| {
            CoreError::upstream(
                ErrorCode::ModelError,
                false,
                format!("the model thread failed: {e}"),
            )
        })?
    }
}
