//! The model's outputs without their batch dimension, the cameras decoded from them, and the
//! `predictions.npz` VGGT's demo saves (same keys, shapes and dtypes; `pose_enc_list`, which the
//! demo sets to None and numpy can only load with pickle, is left out).
//!
//! `world_points_from_depth` is not held: it is S·H·W·3 float64s (43% of the predictions' bytes)
//! and follows from `depth` and the cameras, so it is computed pixel by pixel where it is read
//! (`point_from_depth`) and streamed into the npz.

use std::ops::Range;
use std::path::Path;

use ndarray::{Array, Array2, Array3, Array4, Axis, Dimension};
use ndarray_npy::npy::header::{FormatHeaderError, Header, Layout};
use ndarray_npy::{NpzReader, ReadableElement, WritableElement};
use strength_reduce::StrengthReducedUsize;

use crate::error::{Error, Result};
use crate::geometry::{self, Unprojection};
use crate::images::{Images, Planes};
use crate::npz::{self, Body, NpyEntry};

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
    /// [S, 3, H, W] in [0, 1], as bytes where that is exact (`Images`).
    pub images: Images,
    /// [S, 3, 4] camera-from-world, OpenCV axes.
    pub extrinsic: Array3<f32>,
    /// [S, 3, 3]
    pub intrinsic: Array3<f32>,
    /// Each frame's camera for `point_from_depth`.
    unprojection: Vec<Unprojection>,
    /// H·W and W, to split a flat index into frame, row and column.
    frame_len: StrengthReducedUsize,
    row_len: StrengthReducedUsize,
}

/// The six raw model outputs (batch dimension removed).
#[derive(Debug, Clone)]
pub struct RawOutputs {
    pub pose_enc: Array2<f32>,
    pub depth: Array4<f32>,
    pub depth_conf: Array3<f32>,
    pub world_points: Array4<f32>,
    pub world_points_conf: Array3<f32>,
    pub images: Images,
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
        Ok(Predictions {
            unprojection: Vec::new(),
            frame_len: StrengthReducedUsize::new(1),
            row_len: StrengthReducedUsize::new(1),
            pose_enc: raw.pose_enc,
            depth: raw.depth,
            depth_conf: raw.depth_conf,
            world_points: raw.world_points,
            world_points_conf: raw.world_points_conf,
            images: raw.images,
            extrinsic,
            intrinsic,
        }
        .with_cameras())
    }

    /// The number of frames.
    pub fn frames(&self) -> usize {
        self.pose_enc.nrows()
    }

    /// `world_points_from_depth` at flat pixel `i` (frame, row, column), float64 as numpy
    /// computes it in the reference.
    #[inline(always)]
    pub fn point_from_depth(&self, i: usize) -> [f64; 3] {
        let (f, px) = StrengthReducedUsize::div_rem(i, self.frame_len);
        let (v, u) = StrengthReducedUsize::div_rem(px, self.row_len);
        let depth = self.depth.as_slice().expect("standard layout");
        self.unprojection[f].point(u, v, depth[i])
    }

    /// `point_from_depth` of each pixel of `pixels`, into `out` (24 bytes a pixel: x, y, z as
    /// float64 in the machine's byte order), a row at a time: the camera and row are looked up
    /// once a row and the loop over its pixels has nothing else in it.
    pub fn points_from_depth(&self, pixels: Range<usize>, out: &mut [u8]) {
        let depth = self.depth.as_slice().expect("standard layout");
        let w = self.row_len.get();
        let mut out = out.chunks_exact_mut(24);
        let mut i = pixels.start;
        while i < pixels.end {
            let (f, px) = StrengthReducedUsize::div_rem(i, self.frame_len);
            let (v, u0) = StrengthReducedUsize::div_rem(px, self.row_len);
            let row_end = (i - u0 + w).min(pixels.end);
            let camera = &self.unprojection[f];
            for ((u, d), o) in (u0..).zip(&depth[i..row_end]).zip(&mut out) {
                let [x, y, z] = camera.point(u, v, *d);
                o[..8].copy_from_slice(&x.to_ne_bytes());
                o[8..16].copy_from_slice(&y.to_ne_bytes());
                o[16..].copy_from_slice(&z.to_ne_bytes());
            }
            i = row_end;
        }
    }

    /// Sets what `point_from_depth` needs from the arrays.
    fn with_cameras(mut self) -> Self {
        let (_, h, w, _) = self.depth.dim();
        self.unprojection = Unprojection::frames(&self.extrinsic, &self.intrinsic);
        self.frame_len = StrengthReducedUsize::new((h * w).max(1));
        self.row_len = StrengthReducedUsize::new(w.max(1));
        self
    }

    /// Reads a `predictions.npz` this crate wrote (`name` names it in errors), every key with
    /// its shape checked against the others: the input of a re-render, which needs no model.
    /// `world_points_from_depth` is not read: it is computed again from `depth` and the cameras.
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
            unprojection: Vec::new(),
            frame_len: StrengthReducedUsize::new(1),
            row_len: StrengthReducedUsize::new(1),
            pose_enc: read(&mut npz, "pose_enc", &bad)?,
            depth: read(&mut npz, "depth", &bad)?,
            depth_conf: read(&mut npz, "depth_conf", &bad)?,
            world_points: read(&mut npz, "world_points", &bad)?,
            world_points_conf: read(&mut npz, "world_points_conf", &bad)?,
            images: Images::from(read::<f32, ndarray::Ix4>(&mut npz, "images", &bad)?),
            extrinsic: read(&mut npz, "extrinsic", &bad)?,
            intrinsic: read(&mut npz, "intrinsic", &bad)?,
        };
        let (s, c, h, w) = pred.images.dim();
        let shapes: [(&str, &[usize], Vec<usize>); 8] = [
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
        ];
        for (key, got, want) in shapes {
            if got != want.as_slice() || s == 0 || c != 3 {
                return Err(bad(format!("{key} has shape {got:?}, expected {want:?}")));
            }
        }
        Ok(pred.with_cameras())
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
            images: self.images.frame(f),
            extrinsic: self.extrinsic.slice_axis(Axis(0), one(f)).to_owned(),
            intrinsic: self.intrinsic.slice_axis(Axis(0), one(f)).to_owned(),
            unprojection: Vec::new(),
            frame_len: self.frame_len,
            row_len: self.row_len,
        }
        .with_cameras()
    }

    /// Writes `predictions.npz` (uncompressed, like `np.savez`) straight to `path`: each array's
    /// bytes as they lie in memory and `world_points_from_depth` computed piece by piece, all
    /// written at their places in the file by one thread per core (`npz`).
    pub fn write_npz(&self, path: &Path) -> Result<()> {
        let npz_error = |e: Box<dyn std::error::Error + Send + Sync>| Error::Npz {
            path: path.to_owned(),
            source: e,
        };
        fn header<A: WritableElement>(
            shape: &[usize],
        ) -> std::result::Result<Vec<u8>, FormatHeaderError> {
            Header {
                type_descriptor: A::type_descriptor(),
                layout: Layout::Standard,
                shape: shape.to_vec(),
            }
            .to_bytes()
        }
        // Borrowed when already in standard layout, as every array this crate makes is.
        let pose_enc = self.pose_enc.as_standard_layout();
        let depth = self.depth.as_standard_layout();
        let depth_conf = self.depth_conf.as_standard_layout();
        let world_points = self.world_points.as_standard_layout();
        let world_points_conf = self.world_points_conf.as_standard_layout();
        let extrinsic = self.extrinsic.as_standard_layout();
        let intrinsic = self.intrinsic.as_standard_layout();
        macro_rules! array {
            ($name:literal, $a:expr) => {
                NpyEntry {
                    name: $name,
                    header: header::<f32>($a.shape()).map_err(|e| npz_error(e.into()))?,
                    body: Body::Bytes(bytemuck::cast_slice(
                        $a.as_slice().expect("standard layout"),
                    )),
                }
            };
        }
        // world_points_from_depth, in the machine's byte order as the header says.
        let from_depth = |pixels: Range<usize>, out: &mut [u8]| self.points_from_depth(pixels, out);
        // Images held as bytes go back to the float32s they stand for.
        let images_as_floats =
            |values: Range<usize>, out: &mut [u8]| self.images.floats_into(values, out);
        let (s, h, w, _) = self.depth.dim();
        let entries = [
            array!("pose_enc", pose_enc),
            array!("depth", depth),
            array!("depth_conf", depth_conf),
            array!("world_points", world_points),
            array!("world_points_conf", world_points_conf),
            NpyEntry {
                name: "images",
                header: header::<f32>(self.images.shape()).map_err(|e| npz_error(e.into()))?,
                body: match self.images.planes() {
                    Planes::Floats(v) => Body::Bytes(bytemuck::cast_slice(v)),
                    Planes::Bytes(_) => Body::Made {
                        items: self.images.shape().iter().product(),
                        item_len: 4,
                        fill: &images_as_floats,
                    },
                },
            },
            array!("extrinsic", extrinsic),
            array!("intrinsic", intrinsic),
            NpyEntry {
                name: "world_points_from_depth",
                header: header::<f64>(&[s, h, w, 3]).map_err(|e| npz_error(e.into()))?,
                body: Body::Made {
                    items: s * h * w,
                    item_len: 24,
                    fill: &from_depth,
                },
            },
        ];
        npz::write(path, &entries).map_err(|e| Error::io(format!("writing {path:?}"), e))
    }
}
