//! What a reconstruction is configured with: the model (path, I/O names, execution provider, frame
//! limit) once per worker, and the user's settings per run (the `vggt` pipeline's settings).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where inference runs. A GPU provider is registered with `error_on_failure()`: asking for one
/// that cannot start is an error, never a silent fall back to the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// ONNX Runtime's CPU provider.
    #[default]
    Cpu,
    /// NVIDIA CUDA (cargo feature `cuda`).
    Cuda,
    /// NVIDIA TensorRT, with CUDA for the nodes TensorRT does not take (cargo feature `tensorrt`).
    #[serde(rename = "tensorrt")]
    TensorRt,
}

impl Provider {
    /// The provider's name in logs and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
            Provider::TensorRt => "tensorrt",
        }
    }
}

/// The model's input and output names (the akretz/vggt-onnx export by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IoNames {
    pub input_images: String,
    pub pose_enc: String,
    pub depth: String,
    pub depth_conf: String,
    pub world_points: String,
    pub world_points_conf: String,
    pub images: String,
}

impl Default for IoNames {
    fn default() -> Self {
        IoNames {
            input_images: "input_images".into(),
            pose_enc: "pose_enc".into(),
            depth: "depth".into(),
            depth_conf: "depth_conf".into(),
            world_points: "world_points".into(),
            world_points_conf: "world_points_conf".into(),
            images: "images".into(),
        }
    }
}

impl IoNames {
    /// The defaults with the pipeline file's `backend.io` overrides (keys are the contract's names:
    /// `input_images`, `pose_enc`, `depth`, `depth_conf`, `world_points`, `world_points_conf`, `images`).
    pub fn with_overrides<'a>(
        overrides: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<Self> {
        let mut io = IoNames::default();
        for (key, name) in overrides {
            let slot = match key.as_str() {
                "input_images" => &mut io.input_images,
                "pose_enc" => &mut io.pose_enc,
                "depth" => &mut io.depth,
                "depth_conf" => &mut io.depth_conf,
                "world_points" => &mut io.world_points,
                "world_points_conf" => &mut io.world_points_conf,
                "images" => &mut io.images,
                other => {
                    return Err(Error::Config(format!(
                        "unknown model I/O key {other:?} (known: input_images, pose_enc, depth, \
                         depth_conf, world_points, world_points_conf, images)"
                    )));
                }
            };
            *slot = name.clone();
        }
        Ok(io)
    }
}

/// How images are brought to the model's size (VGGT's `load_and_preprocess_images` modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PreprocessMode {
    /// Long side 518, white padding to 518×518 (the ONNX export's contract).
    #[default]
    Pad,
    /// Width 518, height centre-cropped to at most 518 (models with a dynamic height).
    Crop,
}

impl PreprocessMode {
    /// Parses the pipeline file's `backend.preprocess` (`pad` when absent).
    pub fn parse(s: Option<&str>) -> Result<Self> {
        match s {
            None | Some("pad") => Ok(PreprocessMode::Pad),
            Some("crop") => Ok(PreprocessMode::Crop),
            Some(other) => Err(Error::Config(format!(
                "preprocess {other:?} is not \"pad\" or \"crop\""
            ))),
        }
    }
}

/// Everything a worker needs to load its one model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelConfig {
    /// The `.onnx` file; external weights (`x.onnx_data`) sit beside it.
    pub path: PathBuf,
    #[serde(default)]
    pub io: IoNames,
    #[serde(default)]
    pub provider: Provider,
    /// The most frames one run may have (size it from memory: [`bytes_per_frame`]).
    #[serde(default = "default_max_frames")]
    pub max_frames: usize,
    #[serde(default)]
    pub preprocess: PreprocessMode,
    /// Intra-op threads for the CPU provider (0: ONNX Runtime's default).
    #[serde(default)]
    pub intra_threads: usize,
    /// ONNX Runtime's CPU memory arena. Off by default: it keeps its high-water mark between runs
    /// and raised the peak RSS at S = 50 from ~1.2 GB to ~2 GB in the bench, at no measurable speed
    /// gain for these large tensors.
    #[serde(default)]
    pub cpu_arena: bool,
    /// The ONNX Runtime shared library; `ORT_DYLIB_PATH` when unset.
    #[serde(default)]
    pub ort_dylib_path: Option<PathBuf>,
}

fn default_max_frames() -> usize {
    spaceport_core::pipeline::DEFAULT_MAX_FRAMES
}

impl ModelConfig {
    /// A CPU configuration with the default names and limit.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ModelConfig {
            path: path.into(),
            io: IoNames::default(),
            provider: Provider::Cpu,
            max_frames: default_max_frames(),
            preprocess: PreprocessMode::Pad,
            intra_threads: 0,
            cpu_arena: false,
            ort_dylib_path: None,
        }
    }
}

/// Host memory one 518×518 frame needs through a reconstruction (input, the six outputs, the
/// extracted copies, unprojected points in f64 and the GLB index), model activations excluded.
pub fn bytes_per_frame() -> u64 {
    let px = 518u64 * 518;
    let f32s = 3 + 3 + 1 + 1 + 3 + 1; // input, images, depth, depth_conf, world_points, world_points_conf
    px * (4 * f32s * 2 + 8 * 3 + 4)
}

/// The frame limit that fits `memory_bytes` of host memory after `reserve_bytes` (model, runtime).
pub fn max_frames_for_memory(memory_bytes: u64, reserve_bytes: u64) -> usize {
    (memory_bytes.saturating_sub(reserve_bytes) / bytes_per_frame()).max(1) as usize
}

/// Which branch gives the points (the Space's `prediction_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PredictionMode {
    /// `world_points` with `world_points_conf` ("Pointmap Branch").
    #[serde(alias = "Pointmap Branch")]
    Pointmap,
    /// `world_points_from_depth` with `depth_conf` ("Depthmap and Camera Branch").
    #[default]
    #[serde(alias = "Depthmap and Camera Branch")]
    Depth,
}

impl PredictionMode {
    /// Parses the pipeline's value (`pointmap`, `depth`) or the Space's spelling.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "pointmap" | "Pointmap Branch" | "Predicted Pointmap" => Ok(PredictionMode::Pointmap),
            "depth" | "Depthmap and Camera Branch" => Ok(PredictionMode::Depth),
            other => Err(Error::BadSetting {
                name: "prediction_mode",
                message: format!("{other:?} is not one of \"pointmap\", \"depth\""),
            }),
        }
    }
}

/// The user's settings for one run (the `vggt` pipeline's settings, same names and defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReconSettings {
    /// Percentage (0–100) of the least-confident points to drop.
    pub conf_thres: f64,
    pub prediction_mode: PredictionMode,
    pub mask_black_bg: bool,
    pub mask_white_bg: bool,
    /// Sky segmentation needs the skyseg model, which is not bundled: accepted and logged, not applied.
    pub mask_sky: bool,
    pub show_cam: bool,
}

impl Default for ReconSettings {
    fn default() -> Self {
        ReconSettings {
            conf_thres: 50.0,
            prediction_mode: PredictionMode::Depth,
            mask_black_bg: false,
            mask_white_bg: false,
            mask_sky: false,
            show_cam: true,
        }
    }
}

impl ReconSettings {
    /// Reads the run's settings object (the `vggt`/`vggt-onnx` pipeline's names and values;
    /// missing keys take the defaults, unknown keys such as `frame_filter` are ignored).
    pub fn from_json(settings: &serde_json::Value) -> Result<Self> {
        let s: ReconSettings =
            serde_json::from_value(settings.clone()).map_err(|e| Error::BadSetting {
                name: "settings",
                message: e.to_string(),
            })?;
        s.validate()?;
        Ok(s)
    }

    /// Checks ranges the pipeline file also states, so a direct caller gets the same error.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=100.0).contains(&self.conf_thres) {
            return Err(Error::BadSetting {
                name: "conf_thres",
                message: format!("{} is outside 0..=100", self.conf_thres),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_from_the_pipeline_json_with_defaults() {
        let s = ReconSettings::from_json(&serde_json::json!({
            "conf_thres": 20, "prediction_mode": "pointmap", "show_cam": false, "frame_filter": "All"
        }))
        .unwrap();
        assert_eq!(s.conf_thres, 20.0);
        assert_eq!(s.prediction_mode, PredictionMode::Pointmap);
        assert!(!s.show_cam && !s.mask_black_bg);
        let err = ReconSettings::from_json(&serde_json::json!({"prediction_mode": "sideways"}))
            .unwrap_err();
        assert!(err.is_input_error(), "{err}");
        let err = ReconSettings::from_json(&serde_json::json!({"conf_thres": 150})).unwrap_err();
        assert!(err.to_string().contains("conf_thres"), "{err}");
    }

    #[test]
    fn io_overrides_and_preprocess_mode_come_from_the_pipeline_backend() {
        let map: std::collections::BTreeMap<String, String> =
            [("input_images".to_string(), "pixels".to_string())].into();
        let io = IoNames::with_overrides(&map).unwrap();
        assert_eq!(io.input_images, "pixels");
        assert_eq!(io.depth, "depth");
        let bad: std::collections::BTreeMap<String, String> =
            [("dept".to_string(), "x".to_string())].into();
        assert!(IoNames::with_overrides(&bad).is_err());
        assert_eq!(PreprocessMode::parse(None).unwrap(), PreprocessMode::Pad);
        assert_eq!(
            PreprocessMode::parse(Some("crop")).unwrap(),
            PreprocessMode::Crop
        );
        assert!(PreprocessMode::parse(Some("squash")).is_err());
    }

    #[test]
    fn frame_limit_from_memory_is_at_least_one() {
        assert_eq!(max_frames_for_memory(0, 0), 1);
        let per = bytes_per_frame();
        assert_eq!(max_frames_for_memory(10 * per + 5, 5), 10);
    }
}
