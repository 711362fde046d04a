//! Post-processing on hand-built predictions: a known camera looking at a fronto-parallel plane,
//! a confidence ramp, and black and white pixels, checked numerically.

use ndarray::{Array2, Array3, Array4};
use spaceport_onnx::glb;
use spaceport_onnx::selection::select_points;
use spaceport_onnx::{PredictionMode, Predictions, RawOutputs, ReconSettings};

use crate::support;

const H: usize = 6;
const W: usize = 8;
const PLANE_DEPTH: f32 = 2.0;
const ANGLE: f64 = 30.0; // degrees about y, frame 0
const T0: [f32; 3] = [0.1, -0.2, 2.0];
const FOV_H: f32 = 0.8;
const FOV_W: f32 = 1.0;

/// Frame 0: rotated 30° about y, translated by T0; frame 1: identity at the origin.
/// Depth is the plane z_cam = 2 in both; confidence is the flat index (0..96).
fn hand_built() -> Predictions {
    let half = (ANGLE.to_radians() / 2.0) as f32;
    let pose_enc = Array2::from_shape_vec(
        (2, 9),
        vec![
            T0[0],
            T0[1],
            T0[2],
            0.0,
            half.sin(),
            0.0,
            half.cos(),
            FOV_H,
            FOV_W, //
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            1.0,
            FOV_H,
            FOV_W,
        ],
    )
    .unwrap();
    let n = 2 * H * W;
    let conf = Array3::from_shape_vec((2, H, W), (0..n).map(|i| i as f32).collect()).unwrap();
    let mut images = Array4::<f32>::from_elem((2, 3, H, W), 0.5);
    let mut paint = |i: usize, v: f32| {
        let (f, y, x) = (i / (H * W), (i / W) % H, i % W);
        for c in 0..3 {
            images[[f, c, y, x]] = v;
        }
    };
    paint(50, 0.0); // black
    paint(60, 1.0); // white
    paint(70, 0.95); // 242: white for the Space's "> 240"
    paint(80, 5.0 / 255.0); // 3 × 5 = 15 < 16: black
    paint(90, 6.0 / 255.0); // truncates to 5 or 6: sum 15..18, kept unless < 16
    let raw = RawOutputs {
        pose_enc,
        depth: Array4::from_elem((2, H, W, 1), PLANE_DEPTH),
        depth_conf: conf.clone(),
        world_points: Array4::zeros((2, H, W, 3)),
        world_points_conf: conf,
        // 0.5 and 0.95 are no k / 255: held as floats (the byte form is the end-to-end tests').
        images: images.into(),
    };
    Predictions::from_outputs(raw).unwrap()
}

fn ry(deg: f64) -> [[f64; 3]; 3] {
    let (s, c) = deg.to_radians().sin_cos();
    [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]
}

#[test]
fn extrinsic_is_camera_from_world_rotation_and_translation() {
    let p = hand_built();
    let r = ry(ANGLE);
    for (a, row) in r.iter().enumerate() {
        for (b, &want) in row.iter().enumerate() {
            assert!((p.extrinsic[[0, a, b]] as f64 - want).abs() < 1e-6);
            let id = if a == b { 1.0 } else { 0.0 };
            assert!((p.extrinsic[[1, a, b]] - id).abs() < 1e-6);
        }
        assert!((p.extrinsic[[0, a, 3]] - T0[a]).abs() < 1e-7);
    }
}

#[test]
fn intrinsic_focal_lengths_come_from_the_fields_of_view_and_the_centre_is_the_image_centre() {
    let p = hand_built();
    let k = p.intrinsic.index_axis(ndarray::Axis(0), 0);
    assert!((k[[0, 0]] as f64 - (W as f64 / 2.0) / (FOV_W as f64 / 2.0).tan()).abs() < 1e-4);
    assert!((k[[1, 1]] as f64 - (H as f64 / 2.0) / (FOV_H as f64 / 2.0).tan()).abs() < 1e-4);
    assert_eq!(
        (k[[0, 2]], k[[1, 2]], k[[2, 2]]),
        (W as f32 / 2.0, H as f32 / 2.0, 1.0)
    );
    assert_eq!(
        (k[[0, 1]], k[[1, 0]], k[[2, 0]], k[[2, 1]]),
        (0.0, 0.0, 0.0, 0.0)
    );
}

#[test]
fn unprojected_points_lie_on_the_plane_and_reproject_to_their_pixels() {
    let p = hand_built();
    let r = ry(ANGLE);
    let fx = (W as f64 / 2.0) / (FOV_W as f64 / 2.0).tan();
    let fy = (H as f64 / 2.0) / (FOV_H as f64 / 2.0).tan();
    let mut worst: f64 = 0.0;
    for v in 0..H {
        for u in 0..W {
            let x: Vec<f64> = (0..3).map(|c| p.point_from_depth(v * W + u)[c]).collect();
            // Back into the camera: R X + t.
            let cam: Vec<f64> = (0..3)
                .map(|a| (0..3).map(|b| r[a][b] * x[b]).sum::<f64>() + T0[a] as f64)
                .collect();
            let want = [
                (u as f64 - W as f64 / 2.0) * PLANE_DEPTH as f64 / fx,
                (v as f64 - H as f64 / 2.0) * PLANE_DEPTH as f64 / fy,
                PLANE_DEPTH as f64,
            ];
            for c in 0..3 {
                worst = worst.max((cam[c] - want[c]).abs());
            }
        }
    }
    assert!(worst < 1e-5, "unprojection off by {worst}");
    // Frame 1 (identity): the centre-right pixel is straight ahead on the plane.
    let z = p.point_from_depth(H * W + 3 * W + 4)[2];
    assert!((z - 2.0).abs() < 1e-9);
}

#[test]
fn percentile_filter_keeps_the_most_confident_share() {
    let p = hand_built();
    let s = ReconSettings {
        conf_thres: 50.0,
        ..ReconSettings::default()
    };
    let sel = select_points(&p, &s);
    // np.percentile(arange(96), 50) = 47.5: indices 48..96 survive.
    assert_eq!(sel.threshold, 47.5);
    assert_eq!(
        sel.indices().collect::<Vec<_>>(),
        (48..96).collect::<Vec<_>>()
    );

    let s = ReconSettings {
        conf_thres: 25.0,
        prediction_mode: PredictionMode::Pointmap,
        ..ReconSettings::default()
    };
    let sel = select_points(&p, &s);
    assert!((sel.threshold - 23.75).abs() < 1e-9);
    assert_eq!(sel.indices().next(), Some(24));
    assert_eq!(sel.len(), 72);

    // conf_thres 0 keeps everything above 1e-5: only the zero-confidence point goes.
    let s = ReconSettings {
        conf_thres: 0.0,
        ..ReconSettings::default()
    };
    assert_eq!(
        select_points(&p, &s).indices().collect::<Vec<_>>(),
        (1..96).collect::<Vec<_>>()
    );
}

#[test]
fn black_and_white_background_masks_drop_exactly_those_pixels() {
    let p = hand_built();
    let base = ReconSettings {
        conf_thres: 0.0,
        ..ReconSettings::default()
    };
    let kept = |s: &ReconSettings| select_points(&p, s).indices().collect::<Vec<_>>();
    let black = kept(&ReconSettings {
        mask_black_bg: true,
        ..base.clone()
    });
    assert!(!black.contains(&50) && !black.contains(&80));
    assert!(black.contains(&60) && black.contains(&70));
    let white = kept(&ReconSettings {
        mask_white_bg: true,
        ..base.clone()
    });
    assert!(!white.contains(&60) && !white.contains(&70));
    assert!(white.contains(&50) && white.contains(&80));
    let both = kept(&ReconSettings {
        mask_black_bg: true,
        mask_white_bg: true,
        ..base.clone()
    });
    let dropped: Vec<usize> = (1..96).filter(|i| !both.contains(i)).collect();
    // 90 is (6/255 * 255) truncated: 5 or 6 per channel depending on f32 rounding, like numpy.
    let ninety = ((6.0f32 / 255.0) * 255.0) as u8 as usize * 3;
    let want: Vec<usize> = [50, 60, 70, 80]
        .into_iter()
        .chain((ninety < 16).then_some(90))
        .collect();
    assert_eq!(dropped, want);
}

/// Reads a GLB: its JSON and BIN chunks.
fn read_glb(path: &std::path::Path) -> (serde_json::Value, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..4], b"glTF");
    assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 2);
    assert_eq!(
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
        bytes.len()
    );
    let jlen = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    assert_eq!(&bytes[16..20], b"JSON");
    let doc = serde_json::from_slice(&bytes[20..20 + jlen]).unwrap();
    let b = 20 + jlen;
    assert_eq!(&bytes[b + 4..b + 8], b"BIN\0");
    (doc, bytes[b + 8..].to_vec())
}

fn vec3(bin: &[u8], offset: usize) -> [f64; 3] {
    [0, 1, 2].map(|c| {
        let o = offset + 4 * c;
        f32::from_le_bytes(bin[o..o + 4].try_into().unwrap()) as f64
    })
}

#[test]
fn glb_holds_the_filtered_cloud_aligned_to_the_first_camera_and_one_frustum_per_camera() {
    let p = hand_built();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scene.glb");
    let s = ReconSettings {
        conf_thres: 50.0,
        ..ReconSettings::default()
    };
    let stats = glb::write_glb(&p, &s, &path).unwrap();
    assert_eq!((stats.points, stats.cameras), (48, 2));
    let report = support::validate_glb(&path);
    assert_eq!(report["issues"]["numErrors"], 0);

    let (doc, bin) = read_glb(&path);
    assert_eq!(doc["accessors"][0]["count"], 48);
    assert_eq!(doc["meshes"].as_array().unwrap().len(), 3);

    // Alignment: inv(E0) · flip(y, z) · rot_y(180°) = inv(E0) · diag(-1, -1, 1).
    let r = ry(ANGLE);
    let align = |x: [f64; 3]| -> [f64; 3] {
        let q = [
            -x[0] - T0[0] as f64,
            -x[1] - T0[1] as f64,
            x[2] - T0[2] as f64,
        ];
        [0, 1, 2].map(|a| (0..3).map(|b| r[b][a] * q[b]).sum())
    };
    let first = 48; // the first kept point
    let world = [0, 1, 2].map(|c| p.point_from_depth(first)[c]);
    let got = vec3(&bin, 0);
    let want = align(world);
    for c in 0..3 {
        assert!((got[c] - want[c]).abs() < 1e-5, "point {got:?} != {want:?}");
    }
    // Camera 0's apex sits at its centre C0 = -R^T t, aligned.
    let view = doc["accessors"][2]["bufferView"].as_u64().unwrap() as usize;
    let base = doc["bufferViews"][view]["byteOffset"].as_u64().unwrap() as usize;
    let c0 = [0, 1, 2].map(|a| -(0..3).map(|b| r[b][a] * T0[b] as f64).sum::<f64>());
    let apex = vec3(&bin, base + 2 * 12);
    let want = align(c0);
    for c in 0..3 {
        assert!(
            (apex[c] - want[c]).abs() < 1e-5,
            "apex {apex:?} != {want:?}"
        );
    }
}

#[test]
fn glb_without_cameras_and_with_everything_filtered_still_validates() {
    let p = hand_built();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.glb");
    let s = ReconSettings {
        conf_thres: 100.0,
        mask_black_bg: true,
        mask_white_bg: true,
        show_cam: false,
        ..ReconSettings::default()
    };
    // Only the most confident point (95, grey) survives 100%.
    let stats = glb::write_glb(&p, &s, &path).unwrap();
    assert_eq!((stats.points, stats.cameras), (1, 0));
    support::validate_glb(&path);

    // A frame of zero confidence leaves nothing: the Space's single white placeholder point.
    let mut p = p;
    p.depth_conf.fill(0.0);
    let stats = glb::write_glb(&p, &s, &path).unwrap();
    assert_eq!(stats.points, 0);
    let (doc, _) = read_glb(&path);
    assert_eq!(doc["accessors"][0]["count"], 1);
    support::validate_glb(&path);
}
