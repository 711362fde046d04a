//! The worker's entry point: images in, `scene.glb` and `predictions.npz` out, with progress by
//! stage. It owns the one `Model` of a worker and checks the frame limit before decoding anything.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::{ModelConfig, PreprocessMode, ReconSettings};
use crate::error::{Error, Result};
use crate::glb;
use crate::model::Model;
use crate::predictions::Predictions;
use crate::preprocess::{self, InputImage};

/// The file name of the GLB artifact (the pipeline's `scene` output).
pub const GLB_FILE: &str = "scene.glb";
/// The file name of the predictions artifact (the pipeline's `predictions` output).
pub const NPZ_FILE: &str = "predictions.npz";

/// A stage of a reconstruction, as reported on the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Preprocessing,
    Inference,
    Writing,
}

impl Stage {
    /// The stage's name on the run (`preprocessing`, `inference`, `writing`).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Preprocessing => "preprocessing",
            Stage::Inference => "inference",
            Stage::Writing => "writing",
        }
    }
}

/// How long each stage took.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    pub preprocess: Duration,
    pub inference: Duration,
    /// Camera decoding and depth unprojection.
    pub postprocess: Duration,
    pub glb: Duration,
    pub npz: Duration,
}

/// What a reconstruction wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconOutput {
    pub glb_path: PathBuf,
    pub npz_path: PathBuf,
    /// Frames reconstructed.
    pub frames: usize,
    /// Points in the GLB after filtering.
    pub points: usize,
    /// Camera frusta in the GLB.
    pub cameras: usize,
    pub timings: Timings,
}

/// One model, loaded once, reconstructing run after run.
#[derive(Debug)]
pub struct Reconstructor {
    model: Model,
    max_frames: usize,
    mode: PreprocessMode,
}

impl Reconstructor {
    /// Loads and checks the model; fails fast on a broken model or a missing GPU.
    pub fn new(cfg: ModelConfig) -> Result<Self> {
        let model = Model::load(&cfg)?;
        Ok(Reconstructor {
            model,
            max_frames: cfg.max_frames.max(1),
            mode: cfg.preprocess,
        })
    }

    /// The most frames one call takes.
    pub fn max_frames(&self) -> usize {
        self.max_frames
    }

    /// Reconstructs `images` (ordered by name here) into `out_dir/scene.glb` and
    /// `out_dir/predictions.npz`. `progress` gets each stage with the fraction of it done.
    pub fn reconstruct(
        &mut self,
        mut images: Vec<InputImage>,
        settings: &ReconSettings,
        out_dir: &Path,
        mut progress: impl FnMut(Stage, f64),
    ) -> Result<ReconOutput> {
        settings.validate()?;
        if images.is_empty() {
            return Err(Error::NoImages);
        }
        if images.len() > self.max_frames {
            return Err(Error::TooManyFrames {
                given: images.len(),
                max: self.max_frames,
            });
        }
        if settings.mask_sky {
            tracing::warn!(
                "mask_sky asked for, but the sky segmentation model is not bundled: not applied"
            );
        }
        preprocess::sort_by_name(&mut images);
        let mut timings = Timings::default();

        progress(Stage::Preprocessing, 0.0);
        let t = Instant::now();
        let input =
            preprocess::preprocess(&images, self.mode, |f| progress(Stage::Preprocessing, f))?;
        drop(images);
        timings.preprocess = t.elapsed();

        progress(Stage::Inference, 0.0);
        let t = Instant::now();
        let raw = self.model.run(&input)?;
        drop(input);
        timings.inference = t.elapsed();
        progress(Stage::Inference, 1.0);

        progress(Stage::Writing, 0.0);
        let t = Instant::now();
        let pred = Predictions::from_outputs(raw)?;
        timings.postprocess = t.elapsed();
        std::fs::create_dir_all(out_dir)
            .map_err(|e| Error::io(format!("creating {out_dir:?}"), e))?;
        let glb_path = out_dir.join(GLB_FILE);
        let npz_path = out_dir.join(NPZ_FILE);
        let t = Instant::now();
        let stats = glb::write_glb(&pred, settings, &glb_path)?;
        timings.glb = t.elapsed();
        progress(Stage::Writing, 0.5);
        let t = Instant::now();
        pred.write_npz(&npz_path)?;
        timings.npz = t.elapsed();
        progress(Stage::Writing, 1.0);
        tracing::info!(
            frames = pred.frames(),
            points = stats.points,
            ?timings,
            "reconstruction written"
        );
        Ok(ReconOutput {
            glb_path,
            npz_path,
            frames: pred.frames(),
            points: stats.points,
            cameras: stats.cameras,
            timings,
        })
    }
}
