//! Prints (does not assert) VGGT's post-processing side by side: ours (`write_glb`, `write_npz`)
//! and the reference the facebook/vggt Space runs (`predictions_to_glb` + `scene.export`,
//! `np.savez`; restated in tests/reference/vggt_reference.py, run in `.venv-vggt` with the
//! Space's numpy pin), on identical synthetic predictions at 518² for S = 10 and 50.
//!
//!     cargo bench -p spaceport-onnx --bench postprocess             # S = 10, 50; 5 runs each
//!     cargo bench -p spaceport-onnx --bench postprocess -- 4 20     # chosen sizes
//!
//! Each side runs in a fresh process that loads the same predictions.npz and then writes the GLB
//! and the npz, so the peaks compare like for like: the process's peak RSS while writing (VmHWM,
//! reset before each), and that peak less the RSS with the predictions loaded (what writing
//! costs). Times and peaks are medians of the runs; the point counts of both GLBs are printed.
//! Beside the npz times, the raw limit: the same number of bytes written by one `write` from
//! memory to a new file (what the page cache allows; neither side can go below it by much).
//! Needs the venvs (`bash scripts/test-env.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ndarray::{Array2, Array3, Array4};
use serde_json::{Value, json};
use spaceport_onnx::{PredictionMode, Predictions, RawOutputs, ReconSettings};

const RUNS: usize = 5;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn reset_peak_rss() {
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux ≥ 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A small deterministic generator (xorshift), so both sides see the same numbers every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Plausible predictions for `s` frames of 518²: cameras on an arc looking at a bumpy wall,
/// depth with noise, a point map near the unprojected depth, confidences spread over 1–11
/// (VGGT's range), images with dark and bright patches for the background masks, made of 8-bit
/// values over 255 as every image VGGT's pre-processing (`to_tensor`) gives.
fn synthetic(s: usize) -> Predictions {
    let (h, w) = (518, 518);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut pose = Array2::<f32>::zeros((s, 9));
    for i in 0..s {
        let a = i as f32 * 0.05;
        // translation, quaternion (XYZW) for a turn of `a` about y, fov_h, fov_w.
        pose.row_mut(i).assign(&ndarray::arr1(&[
            a.sin(),
            0.02 * i as f32,
            1.0 - a.cos(),
            0.0,
            (a / 2.0).sin(),
            0.0,
            (a / 2.0).cos(),
            0.9,
            0.9,
        ]));
    }
    let depth = Array4::from_shape_fn((s, h, w, 1), |(f, y, x, _)| {
        2.0 + 0.3 * ((x as f32 / 40.0).sin() * (y as f32 / 55.0).cos())
            + 0.01 * f as f32
            + 0.02 * rng.next()
    });
    let conf = |rng: &mut Rng| Array3::from_shape_fn((s, h, w), |_| 1.0 + 10.0 * rng.next());
    let depth_conf = conf(&mut rng);
    let world_points_conf = conf(&mut rng);
    let images = Array4::from_shape_fn((s, 3, h, w), |(_, c, y, x)| {
        let patch = ((x / 64) + (y / 64)) % 5;
        let v: f32 = match patch {
            0 => 0.01 * rng.next(),
            1 => 0.96 + 0.04 * rng.next(),
            _ => (c as f32 * 0.2 + rng.next() * 0.6).min(1.0),
        };
        spaceport_onnx::images::float_of((v * 255.0) as u8)
    });
    // The point map: the depth's unprojection with noise, computed once through the cameras.
    let raw = RawOutputs {
        pose_enc: pose.clone(),
        depth: depth.clone(),
        depth_conf: depth_conf.clone(),
        world_points: Array4::zeros((s, h, w, 3)),
        world_points_conf: world_points_conf.clone(),
        images: images.clone().into(),
    };
    let cameras = Predictions::from_outputs(raw).expect("shapes agree");
    let world_points = Array4::from_shape_fn((s, h, w, 3), |(f, y, x, c)| {
        cameras.point_from_depth((f * h + y) * w + x)[c] as f32 + 0.01 * (rng.next() - 0.5)
    });
    Predictions::from_outputs(RawOutputs {
        pose_enc: pose,
        depth,
        depth_conf,
        world_points,
        world_points_conf,
        images: images.into(),
    })
    .expect("shapes agree")
}

fn settings_args(s: &ReconSettings) -> Vec<String> {
    let mode = match s.prediction_mode {
        PredictionMode::Pointmap => "pointmap",
        PredictionMode::Depth => "depth",
    };
    vec![
        s.conf_thres.to_string(),
        mode.to_string(),
        u8::from(s.mask_black_bg).to_string(),
        u8::from(s.mask_white_bg).to_string(),
        u8::from(s.show_cam).to_string(),
    ]
}

fn parse_settings(args: &[String]) -> ReconSettings {
    ReconSettings {
        conf_thres: args[0].parse().unwrap(),
        prediction_mode: if args[1] == "pointmap" {
            PredictionMode::Pointmap
        } else {
            PredictionMode::Depth
        },
        mask_black_bg: args[2] == "1",
        mask_white_bg: args[3] == "1",
        mask_sky: false,
        show_cam: args[4] == "1",
    }
}

/// Ours, in this (fresh) process: load, then write the GLB and the npz; one JSON line.
fn ours(npz: &Path, out: &Path, settings: &ReconSettings) -> Value {
    let pred = {
        let bytes = std::fs::read(npz).unwrap();
        Predictions::read_npz("predictions.npz", &bytes).unwrap()
    };
    let loaded = status_mib("VmRSS");
    reset_peak_rss();
    let t = Instant::now();
    let stats = spaceport_onnx::glb::write_glb(&pred, settings, &out.join("scene.glb")).unwrap();
    let glb_ms = t.elapsed().as_secs_f64() * 1e3;
    let glb_peak = status_mib("VmHWM");
    reset_peak_rss();
    let t = Instant::now();
    pred.write_npz(&out.join("predictions.npz")).unwrap();
    let npz_ms = t.elapsed().as_secs_f64() * 1e3;
    let npz_peak = status_mib("VmHWM");
    // The page cache's own limit on this machine, after the peaks are read: the npz's bytes
    // from one buffer in one write to a new file, no CRC, nothing computed.
    let bytes = vec![
        1u8;
        std::fs::metadata(out.join("predictions.npz"))
            .unwrap()
            .len() as usize
    ];
    let _ = Command::new("sync").status();
    let t = Instant::now();
    std::fs::write(out.join("raw.bin"), &bytes).unwrap();
    let raw_ms = t.elapsed().as_secs_f64() * 1e3;
    json!({"points": stats.points, "loaded_mib": loaded, "glb_ms": glb_ms, "glb_peak_mib": glb_peak,
           "npz_ms": npz_ms, "npz_peak_mib": npz_peak, "raw_ms": raw_ms})
}

fn run(program: &Path, args: &[&std::ffi::OsStr]) -> Value {
    // Each side starts with no dirty pages waiting: the kernel throttles a writer while earlier
    // writes drain, which would charge one side for the other's output.
    let _ = Command::new("sync").status();
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
}

fn sorted(runs: &[Value], key: &str) -> Vec<f64> {
    let mut v: Vec<f64> = runs.iter().map(|r| r[key].as_f64().unwrap()).collect();
    v.sort_by(f64::total_cmp);
    v
}

fn median(runs: &[Value], key: &str) -> f64 {
    let v = sorted(runs, key);
    v[v.len() / 2]
}

/// "min–max" of a key over the runs: the page cache makes writing times spread.
fn spread(runs: &[Value], key: &str) -> String {
    let v = sorted(runs, key);
    format!("{:.0}–{:.0}", v[0], v[v.len() - 1])
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // For profiling one side: `-- --synthetic S FILE.npz`, then `-- --ours FILE.npz DIR 50 depth 0 0 1`.
    if args.first().map(String::as_str) == Some("--synthetic") {
        synthetic(args[1].parse().unwrap())
            .write_npz(Path::new(&args[2]))
            .unwrap();
        return;
    }
    if args.first().map(String::as_str) == Some("--ours") {
        let report = ours(
            Path::new(&args[1]),
            Path::new(&args[2]),
            &parse_settings(&args[3..]),
        );
        println!("{report}");
        return;
    }
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        vec![10, 50]
    } else {
        sizes
    };
    let python = root().join(".venv-vggt/bin/python");
    assert!(
        python.is_file(),
        "{python:?} is missing: run `bash scripts/test-env.sh`"
    );
    let script = root().join("tests/reference/vggt_reference.py");
    let me = std::env::current_exe().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("depth, cams", ReconSettings::default()),
        (
            "pointmap, masks",
            ReconSettings {
                prediction_mode: PredictionMode::Pointmap,
                mask_black_bg: true,
                mask_white_bg: true,
                ..ReconSettings::default()
            },
        ),
    ];
    println!(
        "median of {RUNS} runs, each in a fresh process; peak = VmHWM while writing, +x = over the RSS with the predictions loaded"
    );
    println!(
        "|   S | settings        | points ours / ref | GLB ms ours / ref | GLB × | npz ms ours / ref / raw | npz × | ours / raw | GLB peak MiB ours / ref | npz peak MiB ours / ref | peak ratio |"
    );
    println!(
        "|----:|-----------------|------------------:|------------------:|------:|------------------------:|------:|-----------:|------------------------:|------------------------:|-----------:|"
    );
    let mut spreads = Vec::new();
    for &s in &sizes {
        let npz = dir.path().join(format!("input-{s}.npz"));
        synthetic(s).write_npz(&npz).unwrap();
        for (label, settings) in &cases {
            let sargs = settings_args(settings);
            let (mut mine, mut theirs) = (Vec::new(), Vec::new());
            for _ in 0..RUNS {
                let out = tempfile::tempdir_in(dir.path()).unwrap();
                let mut a: Vec<&std::ffi::OsStr> =
                    vec!["--ours".as_ref(), npz.as_os_str(), out.path().as_os_str()];
                a.extend(sargs.iter().map(std::ffi::OsStr::new));
                mine.push(run(&me, &a));
                let out = tempfile::tempdir_in(dir.path()).unwrap();
                let mut a: Vec<&std::ffi::OsStr> = vec![
                    script.as_os_str(),
                    "bench".as_ref(),
                    npz.as_os_str(),
                    out.path().as_os_str(),
                ];
                a.extend(sargs.iter().map(std::ffi::OsStr::new));
                theirs.push(run(&python, &a));
            }
            let m = |k: &str| median(&mine, k);
            let t = |k: &str| median(&theirs, k);
            let peak = |r: &dyn Fn(&str) -> f64| r("glb_peak_mib").max(r("npz_peak_mib"));
            spreads.push(format!(
                "| {s:>3} | {label:<15} | {} | {} | {} | {} | {} |",
                spread(&mine, "glb_ms"),
                spread(&theirs, "glb_ms"),
                spread(&mine, "npz_ms"),
                spread(&theirs, "npz_ms"),
                spread(&mine, "raw_ms"),
            ));
            println!(
                "| {s:>3} | {label:<15} | {:>8} / {:<6} | {:>7.0} / {:<7.0} | {:>5.1} | {:>5.0} / {:<5.0} / {:<5.0} | {:>5.1} | {:>10.2} | {:>4.0} (+{:<3.0}) / {:>4.0} (+{:<3.0}) | {:>4.0} (+{:<3.0}) / {:>4.0} (+{:<3.0}) | {:>10.2} |",
                mine[0]["points"],
                theirs[0]["points"],
                m("glb_ms"),
                t("glb_ms"),
                t("glb_ms") / m("glb_ms"),
                m("npz_ms"),
                t("npz_ms"),
                m("raw_ms"),
                t("npz_ms") / m("npz_ms"),
                m("npz_ms") / m("raw_ms"),
                m("glb_peak_mib"),
                m("glb_peak_mib") - m("loaded_mib"),
                t("glb_peak_mib"),
                t("glb_peak_mib") - t("loaded_mib"),
                m("npz_peak_mib"),
                m("npz_peak_mib") - m("loaded_mib"),
                t("npz_peak_mib"),
                t("npz_peak_mib") - t("loaded_mib"),
                peak(&m) / peak(&t),
            );
        }
    }
    println!("\nmin–max over the runs (ms)\n");
    println!("|   S | settings        | GLB ours | GLB ref | npz ours | npz ref | npz raw |");
    println!("|----:|-----------------|---------:|--------:|---------:|--------:|--------:|");
    for line in spreads {
        println!("{line}");
    }
}
