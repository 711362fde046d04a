//! Local VGGT reconstruction on ONNX Runtime (`ort`, `load-dynamic`): VGGT's pre-processing,
//! inference on the CPU or a GPU provider, and the artifacts the `vggt` Space makes (a GLB) plus
//! the one it cannot serve (`predictions.npz`). The `reconstruct` worker holds one [`Reconstructor`].
//!
//! ```no_run
//! use spaceport_onnx::{InputImage, ModelConfig, Provider, ReconSettings, Reconstructor};
//!
//! # fn main() -> spaceport_onnx::Result<()> {
//! let mut cfg = ModelConfig::new("models/vggt.onnx"); // vggt.onnx_data beside it
//! cfg.provider = Provider::Cuda; // needs the `cuda` feature; fails rather than falling back
//! let mut r = Reconstructor::new(cfg)?; // once per worker: loads and checks the model
//! let images = vec![InputImage::from_path("scene/0001.jpg"), InputImage::from_path("scene/0002.jpg")];
//! let settings = ReconSettings::from_json(&serde_json::json!({"conf_thres": 50, "prediction_mode": "depth"}))?;
//! let out = r.reconstruct(images, &settings, "out/run-1".as_ref(), |stage, done| {
//!     println!("{} {:.0}%", stage.as_str(), done * 100.0)
//! })?;
//! println!("{:?} {:?} ({} points)", out.glb_path, out.npz_path, out.points);
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod error;
pub mod geometry;
pub mod glb;
pub mod images;
pub mod model;
mod npz;
pub mod parallel;
pub mod percentile;
pub mod predictions;
pub mod preprocess;
mod reconstruct;
pub mod render;
pub mod runner;
pub mod selection;

pub use config::{
    IoNames, ModelConfig, PredictionMode, PreprocessMode, Provider, ReconSettings, bytes_per_frame,
    max_frames_for_memory,
};
pub use error::{Error, Result};
pub use glb::GlbStats;
pub use images::Images;
pub use model::Model;
pub use predictions::{Predictions, RawOutputs};
pub use preprocess::{ImageSource, InputImage};
pub use reconstruct::{GLB_FILE, NPZ_FILE, ReconOutput, Reconstructor, Stage, Timings};
pub use runner::OnnxRunner;
