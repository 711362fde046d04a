//! The model's outputs without their batch dimension, the cameras decoded from them, and the
//! `predictions.npz` VGGT's demo saves (same keys, shapes and dtypes; `pose_enc_list`, which the
//! demo sets to None and numpy can only load with pickle, is left out).

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use ndarray::{Array, Array2, Array3, Array4, Axis, Dimension};
use ndarray_npy::{NpzReader, NpzWriter, ReadableElement};

use crate::error::{Error, Result};
use crate::geometry;

/// VGGT's predictions for S frames of H×W (the demo's `predictions` dict after `squeeze(0)`).
#[derive(Debug, Clone)]
pub struct Predictions {
    /// [S, 9]: translation, quaternion (XYZW), fov_h, fov_w.
    pub pose_enc: Array2<f32>,
    /// [S, H, W, 1]
    pub depth: Array4<f32>,
    /// [S, H, W]
    pub depth_conf: Array3<f32>,
    /// [S, H, W, 3]
    pub world_points: Array4<f32>,
    /// [S, H, W]
    pub world_points_conf: Array3<f32>,
    /// [S, 3, H, W] in [0, 1]
    pub images: Array4<f32>,
    /// [S, 3, 4] camera-from-world, OpenCV axes.
    pub extrinsic: Array3<f32>,
    /// [S, 3, 3]
    pub intrinsic: Array3<f32>,
    /// [S, H, W, 3], float64 as numpy computes it in the reference.
    pub world_points_from_depth: Array4<f64>,
}

/// The six raw model outputs (batch dimension removed).
#[derive(Debug, Clone)]
pub struct RawOutputs {
    pub pose_enc: Array2<f32>,
    pub depth: Array4<f32>,
    pub depth_conf: Array3<f32>,
    pub world_points: Array4<f32>,
    pub world_points_conf: Array3<f32>,
    pub images: Array4<f32>,
}

impl Predictions {
    /// Decodes the cameras and unprojects depth, as the demo does after inference.
    pub fn from_outputs(raw: RawOutputs) -> Result<Self> {
        let (s, _, h, w) = raw.images.dim();
        let check = |name: &str, got: &[usize], want: &[usize]| {
            if got == want {
                Ok(())
            } else {
                Err(Error::Inference {
                    message: format!("output {name} has shape {got:?}, expected {want:?}"),
                    source: None,
                })
            }
        };
        check("pose_enc", raw.pose_enc.shape(), &[s, 9])?;
        check("depth", raw.depth.shape(), &[s, h, w, 1])?;
        check("depth_conf", raw.depth_conf.shape(), &[s, h, w])?;
        check("world_points", raw.world_points.shape(), &[s, h, w, 3])?;
        check(
            "world_points_conf",
            raw.world_points_conf.shape(),
            &[s, h, w],
        )?;
        let (extrinsic, intrinsic) =
            geometry::pose_encoding_to_extri_intri(raw.pose_enc.view(), h, w);
        let world_points_from_depth =
            geometry::unproject_depth_map_to_point_map(raw.depth.view(), &extrinsic, &intrinsic);
        Ok(Predictions {
            pose_enc: raw.pose_enc,
            depth: raw.depth,
            depth_conf: raw.depth_conf,
            world_points: raw.world_points,
            world_points_conf: raw.world_points_conf,
            images: raw.images,
            extrinsic,
            intrinsic,
            world_points_from_depth,
        })
    }

    /// The number of frames.
    pub fn frames(&self) -> usize {
        self.pose_enc.nrows()
    }

    /// Reads a `predictions.npz` this crate wrote (`name` names it in errors), every key with
    /// its shape checked against the others: the input of a re-render, which needs no model.
    pub fn read_npz(name: &str, bytes: &[u8]) -> Result<Self> {
        let bad = |message: String| Error::BadPredictions {
            name: name.to_string(),
            message,
        };
        let mut npz = NpzReader::new(std::io::Cursor::new(bytes))
            .map_err(|e| bad(format!("not an npz file: {e}")))?;
        fn read<A: ReadableElement, D: Dimension>(
            npz: &mut NpzReader<std::io::Cursor<&[u8]>>,
            key: &str,
            bad: &dyn Fn(String) -> Error,
        ) -> Result<Array<A, D>> {
            npz.by_name(&format!("{key}.npy"))
                .or_else(|_| npz.by_name(key))
                .map_err(|e| bad(format!("{key}: {e}")))
        }
        let pred = Predictions {
            pose_enc: read(&mut npz, "pose_enc", &bad)?,
            depth: read(&mut npz, "depth", &bad)?,
            depth_conf: read(&mut npz, "depth_conf", &bad)?,
            world_points: read(&mut npz, "world_points", &bad)?,
            world_points_conf: read(&mut npz, "world_points_conf", &bad)?,
            images: read(&mut npz, "images", &bad)?,
            extrinsic: read(&mut npz, "extrinsic", &bad)?,
            intrinsic: read(&mut npz, "intrinsic", &bad)?,
            world_points_from_depth: read(&mut npz, "world_points_from_depth", &bad)?,
        };
        let (s, c, h, w) = pred.images.dim();
        let shapes: [(&str, &[usize], Vec<usize>); 9] = [
            ("images", pred.images.shape(), vec![s, 3, h, w]),
            ("pose_enc", pred.pose_enc.shape(), vec![s, 9]),
            ("depth", pred.depth.shape(), vec![s, h, w, 1]),
            ("depth_conf", pred.depth_conf.shape(), vec![s, h, w]),
            ("world_points", pred.world_points.shape(), vec![s, h, w, 3]),
            (
                "world_points_conf",
                pred.world_points_conf.shape(),
                vec![s, h, w],
            ),
            ("extrinsic", pred.extrinsic.shape(), vec![s, 3, 4]),
            ("intrinsic", pred.intrinsic.shape(), vec![s, 3, 3]),
            (
                "world_points_from_depth",
                pred.world_points_from_depth.shape(),
                vec![s, h, w, 3],
            ),
        ];
        for (key, got, want) in shapes {
            if got != want.as_slice() || s == 0 || c != 3 {
                return Err(bad(format!("{key} has shape {got:?}, expected {want:?}")));
            }
        }
        Ok(pred)
    }

    /// Only frame `f` (the Space's `frame_filter`): every array cut to that frame, so the scene
    /// is built and aligned from it alone.
    pub fn frame(&self, f: usize) -> Predictions {
        let one = |a: usize| ndarray::Slice::from(a..a + 1);
        Predictions {
            pose_enc: self.pose_enc.slice_axis(Axis(0), one(f)).to_owned(),
            depth: self.depth.slice_axis(Axis(0), one(f)).to_owned(),
            depth_conf: self.depth_conf.slice_axis(Axis(0), one(f)).to_owned(),
            world_points: self.world_points.slice_axis(Axis(0), one(f)).to_owned(),
            world_points_conf: self
                .world_points_conf
                .slice_axis(Axis(0), one(f))
                .to_owned(),
            images: self.images.slice_axis(Axis(0), one(f)).to_owned(),
            extrinsic: self.extrinsic.slice_axis(Axis(0), one(f)).to_owned(),
            intrinsic: self.intrinsic.slice_axis(Axis(0), one(f)).to_owned(),
            world_points_from_depth: self
                .world_points_from_depth
                .slice_axis(Axis(0), one(f))
                .to_owned(),
        }
    }

    /// Writes `predictions.npz` (uncompressed, like `np.savez`) straight to `path`.
    pub fn write_npz(&self, path: &Path) -> Result<()> {
        let err = |source| Error::Npz {
            path: path.to_owned(),
            source,
        };
        let file = File::create(path).map_err(|e| Error::io(format!("creating {path:?}"), e))?;
        let mut npz = NpzWriter::new(BufWriter::with_capacity(1 << 20, file));
        npz.add_array("pose_enc", &self.pose_enc).map_err(err)?;
        npz.add_array("depth", &self.depth).map_err(err)?;
        npz.add_array("depth_conf", &self.depth_conf).map_err(err)?;
        npz.add_array("world_points", &self.world_points)
            .map_err(err)?;
        npz.add_array("world_points_conf", &self.world_points_conf)
            .map_err(err)?;
        npz.add_array("images", &self.images).map_err(err)?;
        npz.add_array("extrinsic", &self.extrinsic).map_err(err)?;
        npz.add_array("intrinsic", &self.intrinsic).map_err(err)?;
        npz.add_array("world_points_from_depth", &self.world_points_from_depth)
            .map_err(err)?;
        let mut inner = npz.finish().map_err(err)?;
        std::io::Write::flush(&mut inner).map_err(|e| Error::io(format!("writing {path:?}"), e))?;
        Ok(())
    }
}
