//! Files tests make and check: small PNGs, the demo ONNX model, ONNX Runtime's library from the
//! test venv, and the Khronos glTF validator's verdict on a GLB.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{repo_root, venv_python};

/// Validates a GLB/glTF file with the Khronos glTF validator; returns its JSON report (check
/// `report["issues"]["numErrors"]`). Fails only when the validator cannot run or report.
pub fn gltf_validate(path: &Path) -> Result<serde_json::Value> {
    let root = repo_root();
    if !root.join("tests/node/node_modules/gltf-validator").is_dir() {
        bail!("the glTF validator is missing: run `bash scripts/test-env.sh`");
    }
    let out = Command::new("node")
        .arg(root.join("tests/node/validate-gltf.mjs"))
        .arg(path)
        .current_dir(&root)
        .output()
        .context("running node tests/node/validate-gltf.mjs")?;
    let code = out.status.code();
    if !matches!(code, Some(0) | Some(1)) {
        bail!(
            "the glTF validator failed ({:?}): {}",
            code,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("parsing the glTF validator's report")
}

/// The ONNX Runtime library of the test venv.
pub fn ort_dylib() -> PathBuf {
    let root = repo_root();
    let capi = std::fs::read_dir(root.join(".venv/lib"))
        .expect(".venv is missing: run `bash scripts/test-env.sh`")
        .flatten()
        .map(|e| e.path().join("site-packages/onnxruntime/capi"))
        .find(|p| p.is_dir())
        .expect("onnxruntime is not installed in .venv");
    std::fs::read_dir(capi)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("libonnxruntime.so.")
        })
        .expect("libonnxruntime.so.* in the onnxruntime wheel")
}

/// Writes the demo model (scripts/make_demo_model.py) with extra flags.
pub fn demo_model(dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let status = Command::new(venv_python().expect("the test venv"))
        .arg(repo_root().join("scripts/make_demo_model.py"))
        .arg(&out)
        .args(flags)
        .status()
        .unwrap();
    assert!(status.success(), "make_demo_model.py {flags:?} failed");
    out
}

/// A small PNG whose pixels depend on `seed`.
pub fn png(w: u32, h: u32, seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x as u8).wrapping_mul(7).wrapping_add(seed),
            (y as u8).wrapping_mul(5),
            seed.wrapping_mul(31),
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}
