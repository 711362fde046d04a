//! Camera maths of VGGT's post-processing: `pose_encoding_to_extri_intri` (absT_quaR_FoV),
//! and the depth unprojection (`unproject_depth_map_to_point_map`). Precision follows the
//! reference: cameras in f32 (torch), unprojected points in f64 (numpy promotes them).

use ndarray::{Array3, ArrayView2};

/// A rigid transform as a row-major 4×4 matrix.
pub type Mat4 = [[f64; 4]; 4];

/// Decodes `pose_enc` [S, 9] = (T xyz, quaternion XYZW, fov_h, fov_w) into extrinsics [S, 3, 4]
/// (camera-from-world, OpenCV axes) and intrinsics [S, 3, 3] for an image of `height`×`width`.
pub fn pose_encoding_to_extri_intri(
    pose_enc: ArrayView2<'_, f32>,
    height: usize,
    width: usize,
) -> (Array3<f32>, Array3<f32>) {
    let s = pose_enc.nrows();
    let mut extrinsic = Array3::<f32>::zeros((s, 3, 4));
    let mut intrinsic = Array3::<f32>::zeros((s, 3, 3));
    for (i, p) in pose_enc.outer_iter().enumerate() {
        let r = quat_to_mat([p[3], p[4], p[5], p[6]]);
        for a in 0..3 {
            for b in 0..3 {
                extrinsic[[i, a, b]] = r[a][b];
            }
            extrinsic[[i, a, 3]] = p[a];
        }
        let (fov_h, fov_w) = (p[7], p[8]);
        intrinsic[[i, 0, 0]] = (width as f32 / 2.0) / (fov_w / 2.0).tan();
        intrinsic[[i, 1, 1]] = (height as f32 / 2.0) / (fov_h / 2.0).tan();
        intrinsic[[i, 0, 2]] = width as f32 / 2.0;
        intrinsic[[i, 1, 2]] = height as f32 / 2.0;
        intrinsic[[i, 2, 2]] = 1.0;
    }
    (extrinsic, intrinsic)
}

/// A quaternion (XYZW, scalar last, not necessarily unit) to a rotation matrix, as VGGT's
/// `quat_to_mat` (which divides by the squared norm).
pub fn quat_to_mat(q: [f32; 4]) -> [[f32; 3]; 3] {
    let [i, j, k, r] = q;
    let two_s = 2.0 / (i * i + j * j + k * k + r * r);
    [
        [
            1.0 - two_s * (j * j + k * k),
            two_s * (i * j - k * r),
            two_s * (i * k + j * r),
        ],
        [
            two_s * (i * j + k * r),
            1.0 - two_s * (i * i + k * k),
            two_s * (j * k - i * r),
        ],
        [
            two_s * (i * k - j * r),
            two_s * (j * k + i * r),
            1.0 - two_s * (i * i + j * j),
        ],
    ]
}

/// The 4×4 camera-from-world matrix of extrinsic `e` [3, 4].
pub fn extrinsic_4x4(e: ArrayView2<'_, f32>) -> Mat4 {
    let mut m = [[0.0; 4]; 4];
    for (a, row) in m.iter_mut().enumerate().take(3) {
        for (b, v) in row.iter_mut().enumerate() {
            *v = e[[a, b]] as f64;
        }
    }
    m[3][3] = 1.0;
    m
}

/// The inverse of a rigid transform (`closed_form_inverse_se3`): [Rᵀ | -Rᵀt].
pub fn inverse_rigid(m: &Mat4) -> Mat4 {
    let mut out = [[0.0; 4]; 4];
    for a in 0..3 {
        for b in 0..3 {
            out[a][b] = m[b][a];
        }
        out[a][3] = -(0..3).map(|b| m[b][a] * m[b][3]).sum::<f64>();
    }
    out[3][3] = 1.0;
    out
}

/// The matrix product `a · b`.
pub fn mat_mul(a: &Mat4, b: &Mat4) -> Mat4 {
    let mut out = [[0.0; 4]; 4];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..4).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    out
}

/// Applies `m` to point `p`.
#[inline(always)]
pub fn transform_point(m: &Mat4, p: [f64; 3]) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (a, o) in out.iter_mut().enumerate() {
        *o = m[a][0] * p[0] + m[a][1] * p[1] + m[a][2] * p[2] + m[a][3];
    }
    out
}

/// One frame's camera as the depth unprojection uses it (`depth_to_world_coords_points`).
/// World points from depth are computed from it where they are needed (the GLB's depth branch,
/// the npz's `world_points_from_depth`) instead of being held: at S frames they are S·H·W·3
/// float64s, the largest array of the predictions.
#[derive(Debug, Clone)]
pub struct Unprojection {
    fu: f64,
    fv: f64,
    cu: f64,
    cv: f64,
    cam_to_world: Mat4,
}

impl Unprojection {
    /// From one frame's extrinsic [3, 4] and intrinsic [3, 3].
    pub fn new(extrinsic: ArrayView2<'_, f32>, intrinsic: ArrayView2<'_, f32>) -> Self {
        Unprojection {
            fu: intrinsic[[0, 0]] as f64,
            fv: intrinsic[[1, 1]] as f64,
            cu: intrinsic[[0, 2]] as f64,
            cv: intrinsic[[1, 2]] as f64,
            cam_to_world: inverse_rigid(&extrinsic_4x4(extrinsic)),
        }
    }

    /// Every frame's camera.
    pub fn frames(extrinsic: &Array3<f32>, intrinsic: &Array3<f32>) -> Vec<Self> {
        extrinsic
            .outer_iter()
            .zip(intrinsic.outer_iter())
            .map(|(e, k)| Unprojection::new(e, k))
            .collect()
    }

    /// Pixel (u, v) at depth `d` in world coordinates: ((u - cx)·d/fx, (v - cy)·d/fy, d) in the
    /// camera, then camera-to-world. No half-pixel shift: the facebook/vggt Space's copy of
    /// `depth_to_cam_coords_points` has none (one was proposed later, facebookresearch/vggt#354,
    /// #433), and its GLBs are what ours must equal.
    #[inline(always)]
    pub fn point(&self, u: usize, v: usize, d: f32) -> [f64; 3] {
        let d = d as f64;
        // The reference stacks camera coordinates as float32 before the rotation.
        let cam = [
            ((u as f64 - self.cu) * d / self.fu) as f32 as f64,
            ((v as f64 - self.cv) * d / self.fv) as f32 as f64,
            d,
        ];
        transform_point(&self.cam_to_world, cam)
    }
}

/// matplotlib's `gist_rainbow` colormap (256-entry LUT) at `x` in [0, 1], as 8-bit RGB the way
/// VGGT converts it (`int(255 * c)`).
pub fn gist_rainbow(x: f64) -> [u8; 3] {
    const STOPS: [(f64, [f64; 3]); 8] = [
        (0.000, [1.00, 0.00, 0.16]),
        (0.030, [1.00, 0.00, 0.00]),
        (0.215, [1.00, 1.00, 0.00]),
        (0.400, [0.00, 1.00, 0.00]),
        (0.586, [0.00, 1.00, 1.00]),
        (0.770, [0.00, 0.00, 1.00]),
        (0.954, [1.00, 0.00, 1.00]),
        (1.000, [1.00, 0.00, 0.75]),
    ];
    let idx = ((x * 256.0).floor() as i64).clamp(0, 255);
    let t = idx as f64 / 255.0;
    let seg = STOPS
        .windows(2)
        .find(|w| t <= w[1].0)
        .unwrap_or(&STOPS[6..8]);
    let ((x0, c0), (x1, c1)) = (seg[0], seg[1]);
    let f = if x1 > x0 { (t - x0) / (x1 - x0) } else { 0.0 };
    let mut out = [0u8; 3];
    for c in 0..3 {
        out[c] = (255.0 * (c0[c] + (c1[c] - c0[c]) * f)) as u8;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Axis;
    use ndarray::array;

    #[test]
    fn identity_pose_gives_identity_extrinsic_and_centred_intrinsic() {
        let fov = 2.0 * (0.5f32).atan(); // tan(fov/2) = 0.5 → f = 259 / 0.5 = 518
        let pose = array![[1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 1.0, fov, fov]];
        let (e, k) = pose_encoding_to_extri_intri(pose.view(), 518, 518);
        let want_e = array![
            [1.0, 0.0, 0.0, 1.0],
            [0.0, 1.0, 0.0, 2.0],
            [0.0, 0.0, 1.0, 3.0]
        ];
        assert!(
            (&e.index_axis(Axis(0), 0) - &want_e)
                .iter()
                .all(|d| d.abs() < 1e-6)
        );
        assert!((k[[0, 0, 0]] - 518.0).abs() < 1e-3);
        assert!((k[[0, 1, 1]] - 518.0).abs() < 1e-3);
        assert_eq!(
            (k[[0, 0, 2]], k[[0, 1, 2]], k[[0, 2, 2]]),
            (259.0, 259.0, 1.0)
        );
    }

    #[test]
    fn quaternion_about_y_rotates_x_towards_minus_z() {
        let h = std::f32::consts::FRAC_PI_4; // 90° about y
        let r = quat_to_mat([0.0, h.sin(), 0.0, h.cos()]);
        // Ry(90°) = [[0,0,1],[0,1,0],[-1,0,0]].
        let want = [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]];
        for a in 0..3 {
            for b in 0..3 {
                assert!((r[a][b] - want[a][b]).abs() < 1e-6);
            }
        }
        // Non-unit quaternions are normalised.
        let r2 = quat_to_mat([0.0, 2.0 * h.sin(), 0.0, 2.0 * h.cos()]);
        assert!((r2[0][2] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn inverse_rigid_undoes_the_transform() {
        let r = quat_to_mat([0.1, 0.2, 0.3, 0.9]);
        let mut m = [[0.0; 4]; 4];
        for a in 0..3 {
            for b in 0..3 {
                m[a][b] = r[a][b] as f64;
            }
        }
        m[0][3] = 1.0;
        m[1][3] = -2.0;
        m[2][3] = 0.5;
        m[3][3] = 1.0;
        let id = mat_mul(&m, &inverse_rigid(&m));
        for a in 0..4 {
            for b in 0..4 {
                let want = if a == b { 1.0 } else { 0.0 };
                assert!((id[a][b] - want).abs() < 1e-6, "{id:?}");
            }
        }
    }

    #[test]
    fn gist_rainbow_matches_matplotlib_at_known_points() {
        // matplotlib: gist_rainbow(0.0) = (1, 0, 0.16); gist_rainbow(0.5) ≈ (0, 1, 0.54).
        assert_eq!(gist_rainbow(0.0), [255, 0, 40]);
        let mid = gist_rainbow(0.5);
        assert_eq!(&mid[..2], &[0, 255]);
        assert!((mid[2] as i32 - 137).abs() <= 2, "{mid:?}");
    }
}
