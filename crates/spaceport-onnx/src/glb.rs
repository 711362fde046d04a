//! The GLB the facebook/vggt Space builds (`predictions_to_glb`): a coloured point cloud from the
//! chosen branch after the confidence and background filters, camera frusta, and the whole scene
//! aligned to the first camera with the OpenGL flip (baked into the vertices).
//!
//! The container is written by hand: a GLB is a 12-byte header, a JSON chunk and a BIN chunk
//! (glTF 2.0 §4.4). The JSON is small and built with serde_json; the points are streamed to disk
//! in a second pass, so no copy of the cloud is held in memory: the filters' verdict is one bit
//! per pixel, and a point is computed (unprojected, aligned) where it is written. The Khronos glTF
//! validator checks the output in the tests, and tests/reference/vggt_reference.py (the Space's
//! own code path) checks the numbers.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::Path;
use std::sync::mpsc::sync_channel;

use ndarray::Axis;
use serde_json::json;

use crate::config::ReconSettings;
use crate::error::{Error, Result};
use crate::geometry::{self, Mat4};
use crate::predictions::Predictions;
use crate::selection::{Branch, Colours, PointSelection, select_points};

/// What went into a GLB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlbStats {
    /// Points in the cloud after filtering.
    pub points: usize,
    /// Camera frusta drawn.
    pub cameras: usize,
}

/// `get_opengl_conversion_matrix`: flip y and z.
const OPENGL: Mat4 = [
    [1.0, 0.0, 0.0, 0.0],
    [0.0, -1.0, 0.0, 0.0],
    [0.0, 0.0, -1.0, 0.0],
    [0.0, 0.0, 0.0, 1.0],
];

fn rot_z(deg: f64) -> Mat4 {
    let (s, c) = deg.to_radians().sin_cos();
    [
        [c, -s, 0.0, 0.0],
        [s, c, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

/// `apply_scene_alignment`: inv(first extrinsic) · OpenGL flip · 180° about y.
pub fn scene_alignment(pred: &Predictions) -> Mat4 {
    let e0 = geometry::extrinsic_4x4(pred.extrinsic.index_axis(Axis(0), 0));
    let rot_y180: Mat4 = [
        [-1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, -1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    geometry::mat_mul(
        &geometry::mat_mul(&geometry::inverse_rigid(&e0), &OPENGL),
        &rot_y180,
    )
}

/// `trimesh.creation.cone(1, 1, sections=4)`: base centre, four rim points, apex.
const CONE: [[f64; 3]; 6] = [
    [0.0, 0.0, 0.0],
    [1.0, 0.0, 0.0],
    [0.0, 0.0, 1.0],
    [0.0, 1.0, 0.0],
    [-1.0, 0.0, 0.0],
    [0.0, -1.0, 0.0],
];
/// The cone's faces that do not touch the base centre (`compute_camera_faces` skips those).
const CONE_SIDES: [[u32; 3]; 4] = [[1, 3, 2], [3, 4, 2], [4, 5, 2], [5, 1, 2]];
const CAMERA_VERTICES: usize = 18;
/// Words of the selection (64 pixels each) whose points are made and written at a time: a run's
/// buffer (≤ 48 KiB) stays under the allocator's mmap threshold, so it costs no page faults.
const RUN_WORDS: usize = 1024;
const CAMERA_TRIANGLES: usize = 48;

/// One camera's frustum (`integrate_camera_into_scene`), aligned: 18 vertices, 48 triangles.
fn camera_mesh(cam_to_world: &Mat4, align: &Mat4, scene_scale: f64) -> [[f32; 3]; CAMERA_VERTICES] {
    let (cam_width, cam_height) = (scene_scale * 0.05, scene_scale * 0.1);
    let mut rot45 = rot_z(45.0);
    rot45[2][3] = -cam_height;
    let complete = geometry::mat_mul(
        align,
        &geometry::mat_mul(&geometry::mat_mul(cam_to_world, &OPENGL), &rot45),
    );
    let slight = rot_z(2.0);
    let mut out = [[0f32; 3]; CAMERA_VERTICES];
    for (k, v) in CONE.iter().enumerate() {
        let base = [v[0] * cam_width, v[1] * cam_width, v[2] * cam_height];
        let copies = [
            base,
            base.map(|x| 0.95 * x),
            geometry::transform_point(&slight, base),
        ];
        for (copy, p) in copies.iter().enumerate() {
            out[copy * 6 + k] = geometry::transform_point(&complete, *p).map(|x| x as f32);
        }
    }
    out
}

fn camera_faces() -> Vec<[u32; 3]> {
    let n = CONE.len() as u32;
    let mut faces = Vec::with_capacity(CAMERA_TRIANGLES);
    for &[v1, v2, v3] in &CONE_SIDES {
        faces.extend([
            [v1, v2, v2 + n],
            [v1, v1 + n, v3],
            [v3 + n, v2, v3],
            [v1, v2, v2 + 2 * n],
            [v1, v1 + 2 * n, v3],
            [v3 + 2 * n, v2, v3],
        ]);
    }
    let back: Vec<[u32; 3]> = faces.iter().map(|&[a, b, c]| [c, b, a]).collect();
    faces.extend(back);
    faces
}

fn bounds(points: impl Iterator<Item = [f32; 3]>) -> ([f32; 3], [f32; 3]) {
    let mut lo = [f32::INFINITY; 3];
    let mut hi = [f32::NEG_INFINITY; 3];
    for p in points {
        for c in 0..3 {
            lo[c] = lo[c].min(p[c]);
            hi[c] = hi[c].max(p[c]);
        }
    }
    (lo, hi)
}

/// Writes what `fill` makes of the kept points, in order. The selection's words are cut into
/// runs of `RUN_WORDS`, dealt round-robin to one thread per core, each filling its runs ahead
/// into a few buffers of its own; this thread writes run 0, 1, 2, … taking each from its filler
/// and handing the buffer back. So every core works, the cloud is never held (a few runs per
/// thread are in flight) and buffers are reused, not allocated per run. A failed write returns
/// at once; the fillers' channels then close and they stop.
fn write_kept(
    selection: &PointSelection,
    w: &mut impl FnMut(&[u8]) -> Result<()>,
    fill: impl Fn(Range<usize>, &mut Vec<u8>) + Sync,
) -> Result<()> {
    const IN_FLIGHT: usize = 2;
    let words = selection.words(1, 0);
    let runs = words.len().div_ceil(RUN_WORDS);
    let threads = selection.parts().min(runs).max(1);
    std::thread::scope(|s| {
        let fillers: Vec<_> = (0..threads)
            .map(|t| {
                let (full_tx, full_rx) = sync_channel::<Vec<u8>>(IN_FLIGHT);
                let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(IN_FLIGHT);
                for _ in 0..IN_FLIGHT {
                    empty_tx
                        .send(Vec::with_capacity(RUN_WORDS * 64 * 12))
                        .expect("room for the buffers");
                }
                let fill = &fill;
                s.spawn(move || {
                    for run in (t..runs).step_by(threads) {
                        let Ok(mut buffer) = empty_rx.recv() else {
                            return;
                        };
                        buffer.clear();
                        let start = run * RUN_WORDS;
                        fill(start..(start + RUN_WORDS).min(words.end), &mut buffer);
                        if full_tx.send(buffer).is_err() {
                            return;
                        }
                    }
                });
                (full_rx, empty_tx)
            })
            .collect();
        for run in 0..runs {
            let (full, empty) = &fillers[run % threads];
            let buffer = full.recv().expect("a filler ended early");
            w(&buffer)?;
            let _ = empty.send(buffer);
        }
        Ok(())
    })
}

/// Builds the scene from `pred` with `settings` and writes it to `path` as a GLB.
pub fn write_glb(pred: &Predictions, settings: &ReconSettings, path: &Path) -> Result<GlbStats> {
    let selection = select_points(pred, settings);
    let align = scene_alignment(pred);
    let branch = Branch::of(pred, settings.prediction_mode);
    let colours = Colours::of(pred);

    // The Space draws one white point at (1, 0, 0) when nothing survives the filters.
    let fallback = selection.is_empty();
    let n_points = if fallback { 1 } else { selection.len() };
    let fallback_point = geometry::transform_point(&align, [1.0, 0.0, 0.0]).map(|x| x as f32);
    let (p_min, p_max) = if fallback {
        (fallback_point, fallback_point)
    } else {
        selection.bounds
    };

    let n_cams = if settings.show_cam { pred.frames() } else { 0 };
    let cameras: Vec<([[f32; 3]; CAMERA_VERTICES], [u8; 3])> = (0..n_cams)
        .map(|i| {
            let e = geometry::extrinsic_4x4(pred.extrinsic.index_axis(Axis(0), i));
            let mesh = camera_mesh(&geometry::inverse_rigid(&e), &align, selection.scene_scale);
            (mesh, geometry::gist_rainbow(i as f64 / n_cams as f64))
        })
        .collect();
    let faces = camera_faces();

    // Buffer layout: point positions, point colours, camera positions, camera colours, indices.
    // The camera views are shared by one accessor per camera, so they carry a byteStride.
    let pos_len = n_points * 12;
    let col_len = n_points * 4;
    let cam_pos_len = n_cams * CAMERA_VERTICES * 12;
    let cam_col_len = n_cams * CAMERA_VERTICES * 4;
    let idx_len = n_cams * CAMERA_TRIANGLES * 3 * 4;
    let offsets = [
        0,
        pos_len,
        pos_len + col_len,
        pos_len + col_len + cam_pos_len,
        pos_len + col_len + cam_pos_len + cam_col_len,
    ];
    let bin_len = offsets[4] + idx_len;

    let mut buffer_views = vec![
        json!({"buffer": 0, "byteOffset": offsets[0], "byteLength": pos_len, "target": 34962}),
        json!({"buffer": 0, "byteOffset": offsets[1], "byteLength": col_len, "target": 34962}),
    ];
    let mut accessors = vec![
        json!({"bufferView": 0, "componentType": 5126, "count": n_points, "type": "VEC3",
               "min": p_min, "max": p_max}),
        json!({"bufferView": 1, "componentType": 5121, "normalized": true, "count": n_points, "type": "VEC4"}),
    ];
    let mut meshes = vec![json!({"name": "points", "primitives": [
        {"attributes": {"POSITION": 0, "COLOR_0": 1}, "mode": 0}]})];
    if n_cams > 0 {
        buffer_views.push(json!({"buffer": 0, "byteOffset": offsets[2], "byteLength": cam_pos_len, "byteStride": 12, "target": 34962}));
        buffer_views.push(json!({"buffer": 0, "byteOffset": offsets[3], "byteLength": cam_col_len, "byteStride": 4, "target": 34962}));
        buffer_views.push(
            json!({"buffer": 0, "byteOffset": offsets[4], "byteLength": idx_len, "target": 34963}),
        );
        for (i, (mesh, _)) in cameras.iter().enumerate() {
            let (lo, hi) = bounds(mesh.iter().copied());
            let a = accessors.len();
            accessors.push(json!({"bufferView": 2, "byteOffset": i * CAMERA_VERTICES * 12, "componentType": 5126,
                                  "count": CAMERA_VERTICES, "type": "VEC3", "min": lo, "max": hi}));
            accessors.push(json!({"bufferView": 3, "byteOffset": i * CAMERA_VERTICES * 4, "componentType": 5121,
                                  "normalized": true, "count": CAMERA_VERTICES, "type": "VEC4"}));
            accessors.push(json!({"bufferView": 4, "byteOffset": i * CAMERA_TRIANGLES * 12, "componentType": 5125,
                                  "count": CAMERA_TRIANGLES * 3, "type": "SCALAR"}));
            meshes.push(json!({"name": format!("camera_{i}"), "primitives": [
                {"attributes": {"POSITION": a, "COLOR_0": a + 1}, "indices": a + 2, "mode": 4}]}));
        }
    }
    let nodes: Vec<_> = (0..meshes.len())
        .map(|m| json!({"mesh": m, "name": meshes[m]["name"]}))
        .collect();
    let doc = json!({
        "asset": {"version": "2.0", "generator": "spaceport-onnx"},
        "scene": 0,
        "scenes": [{"nodes": (0..nodes.len()).collect::<Vec<_>>()}],
        "nodes": nodes,
        "meshes": meshes,
        "accessors": accessors,
        "bufferViews": buffer_views,
        "buffers": [{"byteLength": bin_len}],
    });
    let mut json_bytes = serde_json::to_vec(&doc).expect("a JSON value serialises");
    while !json_bytes.len().is_multiple_of(4) {
        json_bytes.push(b' ');
    }

    let io = |e| Error::io(format!("writing {path:?}"), e);
    let file = File::create(path).map_err(|e| Error::io(format!("creating {path:?}"), e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let total = 12 + 8 + json_bytes.len() + 8 + bin_len;
    let total = u32::try_from(total).map_err(|_| {
        Error::io(
            format!("writing {path:?}"),
            std::io::Error::other("the scene is over the 4 GiB a GLB can hold"),
        )
    })?;
    let mut w = |bytes: &[u8]| out.write_all(bytes).map_err(io);
    w(b"glTF")?;
    w(&2u32.to_le_bytes())?;
    w(&total.to_le_bytes())?;
    w(&(json_bytes.len() as u32).to_le_bytes())?;
    w(b"JSON")?;
    w(&json_bytes)?;
    w(&(bin_len as u32).to_le_bytes())?;
    w(b"BIN\0")?;
    if fallback {
        for c in fallback_point {
            w(&c.to_le_bytes())?;
        }
        w(&[255, 255, 255, 255])?;
    } else {
        write_kept(&selection, &mut w, |words, run| {
            selection.for_each_in(words, |i| {
                let p = geometry::transform_point(&align, branch.point(i));
                for c in p {
                    run.extend_from_slice(&(c as f32).to_le_bytes());
                }
            });
        })?;
        write_kept(&selection, &mut w, |words, run| {
            selection.for_each_in(words, |i| {
                let [r, g, b] = colours.at(i);
                run.extend_from_slice(&[r, g, b, 255]);
            });
        })?;
    }
    for (mesh, _) in &cameras {
        for p in mesh {
            for c in p {
                w(&c.to_le_bytes())?;
            }
        }
    }
    for (_, [r, g, b]) in &cameras {
        for _ in 0..CAMERA_VERTICES {
            w(&[*r, *g, *b, 255])?;
        }
    }
    for _ in &cameras {
        for face in &faces {
            for v in face {
                w(&v.to_le_bytes())?;
            }
        }
    }
    out.flush().map_err(io)?;
    Ok(GlbStats {
        points: if fallback { 0 } else { n_points },
        cameras: n_cams,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_faces_index_the_three_cone_copies() {
        let faces = camera_faces();
        assert_eq!(faces.len(), CAMERA_TRIANGLES);
        assert!(
            faces
                .iter()
                .flatten()
                .all(|&v| (v as usize) < CAMERA_VERTICES)
        );
        assert_eq!(faces[0], [1, 3, 9]);
        assert_eq!(faces[24], [9, 3, 1]);
    }
}
