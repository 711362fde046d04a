//! Pre-processing against VGGT's reference re-computed with PIL (tests/reference/vggt_preprocess.py).

use std::path::PathBuf;

use ndarray::{Array4, Axis};
use spaceport_onnx::PreprocessMode;
use spaceport_onnx::preprocess::{self, InputImage, Rgb8};

use crate::support;

fn reference(mode: &str, images: &[PathBuf]) -> Array4<f32> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ref.npy");
    let script = support::root().join("tests/reference/vggt_preprocess.py");
    let mut args = vec![
        script.as_os_str(),
        std::ffi::OsStr::new(mode),
        out.as_os_str(),
    ];
    args.extend(images.iter().map(|p| p.as_os_str()));
    support::run_python(&args);
    ndarray_npy::read_npy(&out).unwrap()
}

fn ours(mode: PreprocessMode, images: &[PathBuf]) -> Array4<f32> {
    let inputs: Vec<InputImage> = images.iter().map(InputImage::from_path).collect();
    preprocess::preprocess(&inputs, mode, |_| {}).unwrap()
}

fn max_abs_diff(a: &Array4<f32>, b: &Array4<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn lossless() -> Vec<PathBuf> {
    support::test_images()
        .iter()
        .filter(|p| p.extension().unwrap() == "png")
        .cloned()
        .collect()
}

#[test]
fn pad_mode_matches_pil_exactly_on_lossless_images() {
    for img in lossless() {
        let diff = max_abs_diff(
            &ours(PreprocessMode::Pad, std::slice::from_ref(&img)),
            &reference("pad", std::slice::from_ref(&img)),
        );
        println!(
            "pad {:?}: max abs diff vs PIL = {diff}",
            img.file_name().unwrap()
        );
        assert_eq!(diff, 0.0, "{img:?}");
    }
}

#[test]
fn crop_mode_matches_pil_exactly_including_mixed_shapes() {
    let images = lossless();
    let diff = max_abs_diff(
        &ours(PreprocessMode::Crop, &images),
        &reference("crop", &images),
    );
    println!(
        "crop, {} mixed images stacked: max abs diff vs PIL = {diff}",
        images.len()
    );
    assert_eq!(diff, 0.0);
}

#[test]
fn jpeg_differs_from_pil_only_by_the_decoder() {
    // PIL decodes JPEG with libjpeg-turbo, the image crate with zune-jpeg: chroma upsampling and
    // IDCT rounding differ by a few levels; the resize itself is exact (tests above).
    let img = support::image("f_photo.jpg");
    let a = ours(PreprocessMode::Pad, std::slice::from_ref(&img));
    let b = reference("pad", &[img]);
    let diff = max_abs_diff(&a, &b);
    let mean = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() as f64)
        .sum::<f64>()
        / a.len() as f64;
    println!(
        "pad f_photo.jpg: max abs diff vs PIL = {diff} ({:.1}/255), mean {mean:.2e}",
        diff * 255.0
    );
    assert!(diff <= 12.0 / 255.0, "JPEG decode differs by {diff}");
}

#[test]
fn image_crate_catmull_rom_is_measurably_not_pil_bicubic() {
    // Why preprocess.rs implements PIL's resampler instead of calling `image::imageops::resize`.
    let img = support::image("a_landscape.png");
    let reference = reference("pad", std::slice::from_ref(&img));
    let rgb = image::open(&img).unwrap().to_rgb8();
    let (nw, nh) = preprocess::target_size(
        rgb.width() as usize,
        rgb.height() as usize,
        PreprocessMode::Pad,
    );
    let resized = image::imageops::resize(
        &rgb,
        nw as u32,
        nh as u32,
        image::imageops::FilterType::CatmullRom,
    );
    let frame = preprocess::to_frame(
        &Rgb8 {
            width: nw,
            height: nh,
            data: resized.into_raw(),
        },
        PreprocessMode::Pad,
    );
    let diff = max_abs_diff(&frame.insert_axis(Axis(0)), &reference);
    println!(
        "image crate CatmullRom vs PIL bicubic: max abs diff = {diff} ({:.0}/255)",
        diff * 255.0
    );
    assert!(diff > 0.0);
}

#[test]
fn images_are_ordered_by_file_name() {
    let mut images = vec![
        InputImage::from_bytes("b.png", vec![]),
        InputImage::from_bytes("a.png", vec![]),
        InputImage::from_bytes("B.png", vec![]),
    ];
    preprocess::sort_by_name(&mut images);
    let names: Vec<_> = images.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["B.png", "a.png", "b.png"]);
}
