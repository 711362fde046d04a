//! A `local` backend: a function of ours over earlier runs' artifacts, run by the worker that
//! has the code for it (the `reconstruct` worker, which holds VGGT's post-processing), with no
//! model and no Space. Adding one is a variant here and its arm in the runner.

use serde::{Deserialize, Serialize};

/// The local functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LocalFunction {
    /// VGGT's `update_visualization`: the GLB built again from a run's `predictions.npz` with new
    /// settings (confidence threshold, masks, cameras, branch, one frame), without the model.
    VggtRender,
    /// A GLB's meshes as OBJ or PLY, its point cloud as PLY (`spaceport_mesh`), per the
    /// `format` setting; the same conversion `?format=` makes on request.
    MeshConvert,
}

impl LocalFunction {
    /// The spelling in pipeline files (`vggt-render`).
    pub fn as_str(self) -> &'static str {
        match self {
            LocalFunction::VggtRender => "vggt-render",
            LocalFunction::MeshConvert => "mesh-convert",
        }
    }
}
