//! Finds the test peers (venv, ONNX Runtime, node validator) and fails with the setup command when
//! one is missing: nothing here is skipped silently.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use spaceport_onnx::ModelConfig;

const SETUP: &str = "run `bash scripts/test-env.sh` from the repository root";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn python() -> PathBuf {
    venv_python(".venv")
}

/// The venv with VGGT's post-processing at the facebook/vggt Space's pins (tests/reference/).
pub fn reference_python() -> PathBuf {
    venv_python(".venv-vggt")
}

fn venv_python(venv: &str) -> PathBuf {
    let py = root().join(venv).join("bin/python");
    assert!(
        py.is_file(),
        "the project venv is missing ({py:?}): {SETUP}"
    );
    py
}

/// The ONNX Runtime library: `ORT_DYLIB_PATH`, else the one in the venv's `onnxruntime` wheel.
pub fn ort_dylib() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "ORT_DYLIB_PATH={p:?} does not exist: {SETUP}");
        return p;
    }
    let lib = root().join(".venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|dirs| {
        dirs.flatten().find_map(|d| {
            let capi = d.path().join("site-packages/onnxruntime/capi");
            std::fs::read_dir(capi)
                .ok()?
                .flatten()
                .map(|f| f.path())
                .find(|f| {
                    f.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("libonnxruntime.so."))
                })
        })
    });
    found.unwrap_or_else(|| {
        panic!("no libonnxruntime.so in the venv's onnxruntime wheel under {lib:?}: {SETUP}")
    })
}

/// Runs a Python script from the venv and returns its stdout; panics with its stderr on failure.
pub fn run_python(args: &[&std::ffi::OsStr]) -> String {
    run_in(python(), args)
}

/// Runs a script with the reference venv's python (`reference_python`).
pub fn run_reference(args: &[&std::ffi::OsStr]) -> String {
    run_in(reference_python(), args)
}

fn run_in(python: PathBuf, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(python)
        .args(args)
        .output()
        .expect("starting python");
    assert!(
        out.status.success(),
        "python {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Writes the demo model (scripts/make_demo_model.py) with `extra` options into `dir`.
pub fn demo_model(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let script = root().join("scripts/make_demo_model.py");
    let mut args: Vec<&std::ffi::OsStr> = vec![script.as_os_str(), path.as_os_str()];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    run_python(&args);
    path
}

/// The shared test images (tests/reference/make_test_images.py), written once per test process.
pub fn test_images() -> &'static [PathBuf] {
    static IMAGES: OnceLock<(tempfile::TempDir, Vec<PathBuf>)> = OnceLock::new();
    &IMAGES
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let script = root().join("tests/reference/make_test_images.py");
            run_python(&[script.as_os_str(), dir.path().as_os_str()]);
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            (dir, files)
        })
        .1
}

pub fn image(name: &str) -> PathBuf {
    test_images()
        .iter()
        .find(|p| p.file_name().unwrap() == name)
        .unwrap_or_else(|| panic!("no test image {name}"))
        .clone()
}

/// A CPU configuration for `model` with the venv's ONNX Runtime.
pub fn config(model: &Path) -> ModelConfig {
    let mut cfg = ModelConfig::new(model);
    cfg.ort_dylib_path = Some(ort_dylib());
    cfg.max_frames = 8;
    cfg
}

/// Validates a GLB with the Khronos glTF validator; returns its report after asserting zero errors.
pub fn validate_glb(path: &Path) -> serde_json::Value {
    let script = root().join("tests/node/validate-gltf.mjs");
    let validator = root().join("tests/node/node_modules/gltf-validator");
    assert!(
        validator.is_dir(),
        "the gltf-validator npm package is missing: {SETUP}"
    );
    let out = Command::new("node")
        .arg(&script)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("node is needed for the glTF validator ({e}): {SETUP}"));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "validator output is not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success(),
        "glTF validator found errors: {report:#}"
    );
    report
}
