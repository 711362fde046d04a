//! The whole path on ONNX Runtime with the demo model (external weights, as the real export ships):
//! images in, a GLB the Khronos validator accepts and an npz numpy loads with the reference layout.

use std::sync::{Mutex, OnceLock};

use spaceport_onnx::{InputImage, PredictionMode, ReconSettings, Reconstructor, Stage};

use crate::support;

/// One demo model and one `Reconstructor` for the suite (one Session per worker, as in production).
pub fn shared() -> std::sync::MutexGuard<'static, Reconstructor> {
    // A test that fails while holding the lock must not fail the others.
    model()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn model() -> &'static Mutex<Reconstructor> {
    static R: OnceLock<(tempfile::TempDir, Mutex<Reconstructor>)> = OnceLock::new();
    &R.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let model = support::demo_model(dir.path(), "vggt_demo.onnx", &["--external-data"]);
        assert!(dir.path().join("vggt_demo.onnx_data").is_file());
        let r = Reconstructor::new(support::config(&model)).expect("demo model loads");
        (dir, Mutex::new(r))
    })
    .1
}

fn inputs(names: &[&str]) -> Vec<InputImage> {
    names
        .iter()
        .map(|n| InputImage::from_path(support::image(n)))
        .collect()
}

fn check_npz(path: &std::path::Path, frames: usize) -> serde_json::Value {
    let script = support::root().join("tests/reference/check_predictions_npz.py");
    let out = support::run_python(&[
        script.as_os_str(),
        path.as_os_str(),
        std::ffi::OsStr::new(&frames.to_string()),
    ]);
    serde_json::from_str(out.trim()).unwrap()
}

/// The GLB against the scene VGGT's `predictions_to_glb` builds (at the Space's numpy pin), both
/// read back with trimesh.
fn check_glb(out: &spaceport_onnx::ReconOutput, s: &ReconSettings) -> serde_json::Value {
    let script = support::root().join("tests/reference/check_glb.py");
    let mode = match s.prediction_mode {
        PredictionMode::Pointmap => "pointmap",
        PredictionMode::Depth => "depth",
    };
    let args = [
        s.conf_thres.to_string(),
        mode.to_string(),
        u8::from(s.mask_black_bg).to_string(),
        u8::from(s.mask_white_bg).to_string(),
        u8::from(s.show_cam).to_string(),
    ];
    let mut argv = vec![
        script.as_os_str(),
        out.glb_path.as_os_str(),
        out.npz_path.as_os_str(),
    ];
    argv.extend(args.iter().map(std::ffi::OsStr::new));
    let report: serde_json::Value =
        serde_json::from_str(support::run_reference(&argv).trim()).unwrap();
    println!("glb check: {report}");
    assert_eq!(report["points"], out.points.max(1));
    assert_eq!(report["cameras"], out.cameras);
    report
}

#[test]
fn demo_model_reconstruction_gives_a_valid_glb_and_the_reference_npz() {
    let dir = tempfile::tempdir().unwrap();
    let mut stages = Vec::new();
    // Given out of order: the reconstruction sorts them by name.
    let images = inputs(&["c_rgba.png", "a_landscape.png", "f_photo.jpg"]);
    let out = shared()
        .reconstruct(images, &ReconSettings::default(), dir.path(), |s, f| {
            stages.push((s, f))
        })
        .unwrap();
    println!("{out:?}");
    assert_eq!((out.frames, out.cameras), (3, 3));
    assert!(out.points > 0);
    assert_eq!(stages.first(), Some(&(Stage::Preprocessing, 0.0)));
    assert_eq!(stages.last(), Some(&(Stage::Writing, 1.0)));
    for s in [Stage::Preprocessing, Stage::Inference, Stage::Writing] {
        assert!(
            stages.contains(&(s, 1.0)),
            "{s:?} never finished: {stages:?}"
        );
    }

    let report = support::validate_glb(&out.glb_path);
    println!("validator: {}", report["issues"]);
    assert_eq!(report["issues"]["numErrors"], 0);

    check_glb(&out, &ReconSettings::default());

    let check = check_npz(&out.npz_path, 3);
    println!("npz check: {check}");
    assert!(check["extrinsic_max_diff"].as_f64().unwrap() < 1e-6);
    assert!(check["intrinsic_max_diff"].as_f64().unwrap() < 1e-3);
    assert!(check["world_points_from_depth_max_diff"].as_f64().unwrap() < 1e-5);
    // The demo model's point map is its depth unprojected through its cameras: the branches agree.
    assert!(check["pointmap_vs_depth_branch_max_diff"].as_f64().unwrap() < 1e-3);
}

#[test]
fn pointmap_branch_without_cameras_and_with_masks_validates() {
    let dir = tempfile::tempdir().unwrap();
    let settings = ReconSettings {
        conf_thres: 20.0,
        prediction_mode: PredictionMode::Pointmap,
        mask_black_bg: true,
        mask_white_bg: true,
        mask_sky: true,
        show_cam: false,
    };
    let out = shared()
        .reconstruct(
            inputs(&["b_portrait.png"]),
            &settings,
            dir.path(),
            |_, _| {},
        )
        .unwrap();
    assert_eq!((out.frames, out.cameras), (1, 0));
    support::validate_glb(&out.glb_path);
    check_npz(&out.npz_path, 1);
    check_glb(&out, &settings);
}
