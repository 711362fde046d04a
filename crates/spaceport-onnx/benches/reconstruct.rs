//! Prints (does not assert) what a reconstruction costs on this machine's CPU with the demo model:
//! for S = 1, 10, 50 frames at 518², pre-processing per image, inference, post-processing (cameras
//! and unprojection, GLB, npz), a re-render from the written npz (`vggt-render`: parse + GLB,
//! no model) and the process's peak RSS (VmHWM, reset before each size).
//!
//!     cargo bench -p spaceport-onnx --bench reconstruct            # S = 1, 10, 50
//!     cargo bench -p spaceport-onnx --bench reconstruct -- 1 4     # chosen sizes
//!     SPACEPORT_ONNX_CPU_ARENA=1 cargo bench -p spaceport-onnx --bench reconstruct   # ORT's arena on
//!     SPACEPORT_ONNX_PROVIDER=cuda cargo bench -p spaceport-onnx --features cuda --bench reconstruct
//!                                                                   # on a GPU (error_on_failure)
//!
//! Needs the venv (`bash scripts/test-env.sh`); ORT_DYLIB_PATH defaults to the wheel's library.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use spaceport_onnx::{InputImage, ModelConfig, Provider, ReconSettings, Reconstructor, Stage};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ort_dylib() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return p.into();
    }
    // The library in the venv's onnxruntime wheel, whatever its Python and ORT versions.
    let lib = root().join(".venv/lib");
    std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|d| std::fs::read_dir(d.path().join("site-packages/onnxruntime/capi")).ok())
        .flatten()
        .flatten()
        .map(|f| f.path())
        .find(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so."))
        })
        .unwrap_or_else(|| {
            panic!("no libonnxruntime.so under {lib:?}: run `bash scripts/test-env.sh`")
        })
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn reset_peak_rss() {
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux ≥ 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A 518×518 PNG with a gradient and noise (a stand-in photo).
fn png(seed: u32, w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let n = (x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503) ^ seed.wrapping_mul(97)) % 32;
        image::Rgb([
            ((x * 255 / w) as u8).wrapping_add(n as u8),
            ((y * 255 / h) as u8).wrapping_add(n as u8),
            (((x + y + seed * 31) % 256) as u8).wrapping_add(n as u8),
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1, 10, 50]
    } else {
        sizes
    };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("vggt_demo.onnx");
    let status = Command::new(root().join(".venv/bin/python"))
        .arg(root().join("scripts/make_demo_model.py"))
        .arg(&model)
        .arg("--external-data")
        .status()
        .expect("the venv's python (bash scripts/test-env.sh)");
    assert!(status.success());

    let mut cfg = ModelConfig::new(&model);
    cfg.ort_dylib_path = Some(ort_dylib());
    cfg.max_frames = *sizes.iter().max().unwrap();
    cfg.provider = match std::env::var("SPACEPORT_ONNX_PROVIDER").as_deref() {
        Ok("cuda") => Provider::Cuda,
        Ok("tensorrt") => Provider::TensorRt,
        _ => Provider::Cpu,
    };
    cfg.cpu_arena = std::env::var("SPACEPORT_ONNX_CPU_ARENA").as_deref() == Ok("1");
    println!(
        "provider: {}, cpu arena: {}",
        cfg.provider.as_str(),
        cfg.cpu_arena
    );
    let t = Instant::now();
    let mut r = Reconstructor::new(cfg).expect("demo model loads");
    println!(
        "model load: {:.0} ms; peak RSS after load {:.0} MiB",
        t.elapsed().as_secs_f64() * 1e3,
        peak_rss_mib()
    );

    // Decode + PIL-bicubic resize of a larger photo, per image (what real uploads cost).
    let big = png(7, 1920, 1080);
    let t = Instant::now();
    let n = 5;
    for _ in 0..n {
        let img = InputImage::from_bytes("big.png", big.clone());
        spaceport_onnx::preprocess::preprocess(&[img], Default::default(), |_| {}).unwrap();
    }
    println!(
        "pre-processing a 1920x1080 PNG (decode + resize + pad): {:.1} ms per image\n",
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    );

    println!(
        "|   S | pre ms/img | inference ms | post ms (cams+unproject) | GLB ms | npz ms | re-render ms | GLB MiB | npz MiB | peak RSS MiB: pre+inference / post+writing |"
    );
    println!(
        "|----:|-----------:|-------------:|-------------------------:|-------:|-------:|-------------:|--------:|--------:|--------------------------------------------:|"
    );
    for &s in &sizes {
        let images: Vec<InputImage> = (0..s)
            .map(|i| InputImage::from_bytes(format!("{i:04}.png"), png(i as u32, 518, 518)))
            .collect();
        let out_dir = dir.path().join(format!("s{s}"));
        reset_peak_rss();
        // Split the peak at the end of inference: pre-processing + inference, then writing.
        let mut peak_infer = f64::NAN;
        let out = r
            .reconstruct(
                images,
                &ReconSettings::default(),
                &out_dir,
                |stage, done| {
                    if stage == Stage::Inference && done == 1.0 {
                        peak_infer = peak_rss_mib();
                        reset_peak_rss();
                    }
                },
            )
            .expect("reconstruction");
        let peak_write = peak_rss_mib();
        // vggt-render: the scene drawn again from the npz just written (read from memory).
        let npz = std::fs::read(&out.npz_path).unwrap();
        let again = Instant::now();
        spaceport_onnx::render::render(
            "predictions.npz",
            &npz,
            &ReconSettings::default(),
            None,
            &out_dir.join("again.glb"),
        )
        .expect("re-render");
        let rerender = again.elapsed();
        drop(npz);
        let t = out.timings;
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let mib =
            |p: &Path| std::fs::metadata(p).map_or(0.0, |m| m.len() as f64 / (1 << 20) as f64);
        println!(
            "| {s:>3} | {:>10.1} | {:>12.0} | {:>24.0} | {:>6.0} | {:>6.0} | {:>12.0} | {:>7.1} | {:>7.1} | {:>20.0} / {:<21.0} |",
            ms(t.preprocess) / s as f64,
            ms(t.inference),
            ms(t.postprocess),
            ms(t.glb),
            ms(t.npz),
            ms(rerender),
            mib(&out.glb_path),
            mib(&out.npz_path),
            peak_infer,
            peak_write
        );
        std::fs::remove_dir_all(&out_dir).ok();
    }
}
