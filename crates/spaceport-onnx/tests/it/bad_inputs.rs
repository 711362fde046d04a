//! Broken models and inputs: each a clear error with the right run code, and the worker's
//! `Reconstructor` keeps serving after an input error.

use spaceport_core::ErrorCode;
use spaceport_onnx::{Error, InputImage, ReconSettings, Reconstructor};

use crate::end_to_end::shared;
use crate::support;

fn load_err(extra: &[&str]) -> (Error, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let model = support::demo_model(dir.path(), "bad.onnx", extra);
    let err = Reconstructor::new(support::config(&model)).expect_err("the model must be refused");
    (err, dir)
}

#[test]
fn wrong_input_name_is_a_model_error_naming_both_names() {
    let (err, _dir) = load_err(&["--input-name", "pixels"]);
    let msg = err.to_string();
    println!("{msg}");
    assert!(matches!(err, Error::Contract { .. }), "{err:?}");
    assert!(
        msg.contains("no input named \"input_images\"") && msg.contains("pixels"),
        "{msg}"
    );
    assert_eq!(err.code(), ErrorCode::ModelError);
}

#[test]
fn configured_input_name_accepts_that_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = support::demo_model(dir.path(), "renamed.onnx", &["--input-name", "pixels"]);
    let mut cfg = support::config(&model);
    cfg.io.input_images = "pixels".into();
    Reconstructor::new(cfg).expect("a configured name loads");
}

#[test]
fn wrong_input_rank_is_a_model_error() {
    let (err, _dir) = load_err(&["--input-rank", "3"]);
    let msg = err.to_string();
    println!("{msg}");
    assert!(
        msg.contains("rank 3") && msg.contains("expected rank 4"),
        "{msg}"
    );
    assert_eq!(err.code(), ErrorCode::ModelError);
}

#[test]
fn wrong_output_name_is_a_model_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = support::demo_model(dir.path(), "demo.onnx", &[]);
    let mut cfg = support::config(&model);
    cfg.io.depth = "depth_map".into();
    let err = Reconstructor::new(cfg).unwrap_err();
    assert!(
        err.to_string().contains("no output named \"depth_map\""),
        "{err}"
    );
}

#[test]
fn missing_external_data_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = support::demo_model(dir.path(), "ext.onnx", &["--external-data"]);
    std::fs::remove_file(dir.path().join("ext.onnx_data")).unwrap();
    let err = Reconstructor::new(support::config(&model)).unwrap_err();
    let msg = err.to_string();
    println!("{msg}");
    assert!(matches!(err, Error::MissingExternalData { .. }), "{err:?}");
    assert!(msg.contains("ext.onnx_data"), "{msg}");
    assert_eq!(err.code(), ErrorCode::ModelError);
}

#[test]
fn missing_model_file_is_a_model_error() {
    let err = Reconstructor::new(support::config(std::path::Path::new(
        "/nonexistent/vggt.onnx",
    )))
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/vggt.onnx"), "{err}");
    assert_eq!(err.code(), ErrorCode::ModelError);
}

#[test]
fn corrupt_image_is_an_input_error_naming_the_file_and_the_worker_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let images = vec![
        InputImage::from_path(support::image("a_landscape.png")),
        InputImage::from_bytes("broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg".to_vec()),
    ];
    let mut r = shared();
    let err = r
        .reconstruct(images, &ReconSettings::default(), dir.path(), |_, _| {})
        .unwrap_err();
    let msg = err.to_string();
    println!("{msg}");
    assert!(msg.contains("broken.jpg"), "{msg}");
    assert_eq!(err.code(), ErrorCode::InputInvalid);
    assert!(!err.retryable());
    let core: spaceport_core::Error = err.into();
    assert!(matches!(
        core,
        spaceport_core::Error::Upstream {
            code: ErrorCode::InputInvalid,
            retryable: false,
            ..
        }
    ));

    let out = r
        .reconstruct(
            vec![InputImage::from_path(support::image("e_tiny.png"))],
            &ReconSettings::default(),
            dir.path(),
            |_, _| {},
        )
        .expect("the same Reconstructor still serves");
    assert_eq!(out.frames, 1);
}

#[test]
fn too_many_frames_is_an_input_error_before_any_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = shared();
    let max = r.max_frames();
    // Not images at all: the limit is checked before anything is decoded.
    let images = (0..=max)
        .map(|i| InputImage::from_bytes(format!("{i}.png"), vec![]))
        .collect();
    let err = r
        .reconstruct(images, &ReconSettings::default(), dir.path(), |_, _| {})
        .unwrap_err();
    println!("{err}");
    assert!(matches!(err, Error::TooManyFrames { given, max: m } if given == max + 1 && m == max));
    assert_eq!(err.code(), ErrorCode::InputInvalid);
}

#[test]
fn no_images_and_bad_settings_are_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = shared();
    let err = r
        .reconstruct(vec![], &ReconSettings::default(), dir.path(), |_, _| {})
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InputInvalid);
    let bad = ReconSettings {
        conf_thres: 101.0,
        ..ReconSettings::default()
    };
    let img = vec![InputImage::from_path(support::image("e_tiny.png"))];
    let err = r.reconstruct(img, &bad, dir.path(), |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("conf_thres"), "{err}");
    assert_eq!(err.code(), ErrorCode::InputInvalid);
}

#[test]
fn of_several_corrupt_images_the_first_in_order_is_named() {
    let mut images: Vec<InputImage> = (0..6)
        .map(|i| {
            InputImage::from_path(support::image(if i % 2 == 0 {
                "e_tiny.png"
            } else {
                "d_grey.png"
            }))
        })
        .collect();
    images.insert(
        3,
        InputImage::from_bytes("c_bad.png", b"\x89PNG\r\n\x1a\n truncated".to_vec()),
    );
    images.push(InputImage::from_bytes("z_bad.webp", b"RIFF nope".to_vec()));
    for _ in 0..5 {
        let err = spaceport_onnx::preprocess::preprocess(&images, Default::default(), |_| {})
            .unwrap_err();
        assert!(err.to_string().contains("\"c_bad.png\""), "{err}");
    }
    let missing = vec![InputImage::from_path("/nonexistent/x.png")];
    let err =
        spaceport_onnx::preprocess::preprocess(&missing, Default::default(), |_| {}).unwrap_err();
    assert!(
        err.to_string().contains("x.png") && err.is_input_error(),
        "{err}"
    );
}

/// Asking for a GPU never silently runs on the CPU: without the cargo feature the build says so;
/// with it, on a machine without CUDA (this one), `error_on_failure()` refuses the session.
#[test]
fn cuda_asked_for_where_it_cannot_run_is_an_error_not_a_cpu_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let model = support::demo_model(dir.path(), "demo.onnx", &[]);
    let mut cfg = support::config(&model);
    cfg.provider = spaceport_onnx::Provider::Cuda;
    match Reconstructor::new(cfg) {
        Err(err) => {
            println!("{err}");
            assert!(
                matches!(
                    err,
                    Error::Provider {
                        provider: "cuda",
                        ..
                    }
                ),
                "{err:?}"
            );
            assert_eq!(err.code(), ErrorCode::ModelError);
            #[cfg(not(feature = "cuda"))]
            assert!(err.to_string().contains("--features cuda"), "{err}");
        }
        // A machine with a working CUDA provider (the GPU image) loads it.
        Ok(r) => println!("CUDA provider registered: {r:?}"),
    }
}
