//! VGGT's `load_and_preprocess_images` (pad and crop modes), reproduced to the byte: decode, RGBA
//! over white, PIL's bicubic resize, white padding, [0, 1] floats. The model was trained on exactly
//! this, so every step follows PIL rather than what the `image` crate would do by default.

use std::path::PathBuf;

use ndarray::{Array4, s};

use crate::config::PreprocessMode;
use crate::error::{Error, Result};

/// The side of the model's square input.
pub const TARGET_SIZE: usize = 518;
/// The model's patch size: the resized short side is a multiple of it.
pub const PATCH: usize = 14;

/// One input image: its bytes, or a path to read them from.
#[derive(Debug, Clone)]
pub enum ImageSource {
    Bytes(Vec<u8>),
    Path(PathBuf),
}

/// A named input image (the name is the uploaded filename; images are ordered by it).
#[derive(Debug, Clone)]
pub struct InputImage {
    pub name: String,
    pub source: ImageSource,
}

impl InputImage {
    /// An image held in memory.
    pub fn from_bytes(name: impl Into<String>, bytes: Vec<u8>) -> Self {
        InputImage {
            name: name.into(),
            source: ImageSource::Bytes(bytes),
        }
    }

    /// An image on disk, named by its file name.
    pub fn from_path(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        InputImage {
            name,
            source: ImageSource::Path(path),
        }
    }
}

/// An 8-bit RGB image, rows top to bottom, pixels interleaved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb8 {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// Sorts images by name, as VGGT's demo does (`sorted(os.listdir(...))`: byte order).
pub fn sort_by_name(images: &mut [InputImage]) {
    images.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
}

/// Decodes one image to RGB the way PIL's `open` + RGBA-over-white + `convert("RGB")` does.
pub fn decode(image: &InputImage) -> Result<Rgb8> {
    let bytes;
    let buf: &[u8] = match &image.source {
        ImageSource::Bytes(b) => b,
        ImageSource::Path(p) => {
            bytes = std::fs::read(p).map_err(|source| Error::ImageIo {
                name: image.name.clone(),
                source,
            })?;
            &bytes
        }
    };
    let img = image::load_from_memory(buf).map_err(|source| Error::BadImage {
        name: image.name.clone(),
        source,
    })?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    let data = if img.color().has_alpha() && img.color().has_color() {
        composite_over_white(img.to_rgba8().as_raw())
    } else {
        // PIL's convert("RGB") drops the alpha of "LA" images; only "RGBA" is composited.
        img.to_rgb8().into_raw()
    };
    Ok(Rgb8 {
        width,
        height,
        data,
    })
}

/// `Image.alpha_composite(white, img)` in PIL's integer arithmetic (AlphaComposite.c with an opaque
/// white destination), so that half-transparent pixels round exactly as in the reference.
fn composite_over_white(rgba: &[u8]) -> Vec<u8> {
    const PRECISION_BITS: u32 = 7;
    let mut out = Vec::with_capacity(rgba.len() / 4 * 3);
    for px in rgba.chunks_exact(4) {
        let a = px[3] as u32;
        if a == 0 {
            out.extend_from_slice(&[255, 255, 255]);
            continue;
        }
        // With dst alpha 255: outa255 = 255*255, coef1 = a << 7, coef2 = (255 - a) << 7.
        let coef1 = a << PRECISION_BITS;
        let coef2 = (255 << PRECISION_BITS) - coef1;
        for &c in &px[..3] {
            let tmp = c as u32 * coef1 + 255 * coef2 + (0x80 << PRECISION_BITS);
            let div255 = ((tmp >> 8) + tmp) >> 8;
            out.push((div255 >> PRECISION_BITS) as u8);
        }
    }
    out
}

/// The resized size for `mode` (VGGT: long side / width 518, the other side rounded to a multiple
/// of 14 with Python's round-half-to-even, computed in the same order as the reference).
pub fn target_size(width: usize, height: usize, mode: PreprocessMode) -> (usize, usize) {
    let t = TARGET_SIZE as f64;
    // `.max(PATCH)`: an extreme aspect ratio would round to 0 rows, which PIL refuses; one patch
    // row keeps such an image usable.
    let scaled = |short: usize, long: usize| {
        ((short as f64 * (t / long as f64) / PATCH as f64).round_ties_even() as usize * PATCH)
            .max(PATCH)
    };
    match mode {
        PreprocessMode::Pad if width < height => (scaled(width, height), TARGET_SIZE),
        _ => (TARGET_SIZE, scaled(height, width)),
    }
}

/// Pre-processes `images` (already in order) into the model input [S, 3, H, W] in [0, 1], decoding
/// on all cores. `progress` gets the fraction done as images finish. When several images are bad,
/// the error names the first of them in order.
pub fn preprocess(
    images: &[InputImage],
    mode: PreprocessMode,
    mut progress: impl FnMut(f64),
) -> Result<Array4<f32>> {
    use std::sync::atomic::{AtomicUsize, Ordering};

    let n = images.len();
    if n == 0 {
        return Err(Error::NoImages);
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(n);
    let mut frames: Vec<Option<ndarray::Array3<f32>>> = vec![None; n];
    let mut first_error: Option<(usize, Error)> = None;
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel();
        let next = &next;
        for _ in 0..threads {
            let tx = tx.clone();
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let frame = decode(&images[i]).map(|rgb| to_frame(&rgb, mode));
                    if tx.send((i, frame)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut done = 0;
        for (i, frame) in rx {
            match frame {
                Ok(f) => {
                    frames[i] = Some(f);
                    done += 1;
                    progress(done as f64 / n as f64);
                }
                Err(e) => {
                    // Stop handing out work; keep the error of the earliest image.
                    next.store(n, Ordering::Relaxed);
                    if first_error.as_ref().is_none_or(|(j, _)| i < *j) {
                        first_error = Some((i, e));
                    }
                }
            }
        }
    });
    if let Some((_, e)) = first_error {
        return Err(e);
    }
    Ok(stack_frames(frames.into_iter().flatten().collect()))
}

/// One decoded image to a [3, H, W] frame (resize, crop or pad, /255).
pub fn to_frame(rgb: &Rgb8, mode: PreprocessMode) -> ndarray::Array3<f32> {
    let (nw, nh) = target_size(rgb.width, rgb.height, mode);
    let resized = resize_bicubic(rgb, nw, nh);
    let (h, w, y0) = match mode {
        PreprocessMode::Pad => (TARGET_SIZE, TARGET_SIZE, 0),
        PreprocessMode::Crop if nh > TARGET_SIZE => (TARGET_SIZE, nw, (nh - TARGET_SIZE) / 2),
        PreprocessMode::Crop => (nh, nw, 0),
    };
    // Pad mode centres the image; the extra row/column of an odd padding goes bottom/right.
    let (top, left) = match mode {
        PreprocessMode::Pad => ((h - nh) / 2, (w - nw) / 2),
        PreprocessMode::Crop => (0, 0),
    };
    let mut frame = ndarray::Array3::<f32>::ones((3, h, w));
    let rows = nh.min(h);
    for y in 0..rows {
        let src = &resized.data[(y + y0) * nw * 3..(y + y0 + 1) * nw * 3];
        for (x, px) in src.chunks_exact(3).enumerate() {
            for c in 0..3 {
                frame[[c, top + y, left + x]] = px[c] as f32 / 255.0;
            }
        }
    }
    frame
}

/// Stacks frames, padding smaller ones with white to the largest (crop mode with mixed aspect
/// ratios, as the reference does).
fn stack_frames(frames: Vec<ndarray::Array3<f32>>) -> Array4<f32> {
    let h = frames.iter().map(|f| f.dim().1).max().unwrap_or(0);
    let w = frames.iter().map(|f| f.dim().2).max().unwrap_or(0);
    let mut out = Array4::<f32>::ones((frames.len(), 3, h, w));
    for (i, f) in frames.into_iter().enumerate() {
        let (_, fh, fw) = f.dim();
        let (top, left) = ((h - fh) / 2, (w - fw) / 2);
        out.slice_mut(s![i, .., top..top + fh, left..left + fw])
            .assign(&f);
    }
    out
}

// PIL's `Image.resize(size, BICUBIC)` for 8-bit images (libImaging/Resample.c): separable, the
// horizontal pass first into an 8-bit intermediate, coefficients in fixed point with 22 fractional
// bits, the filter support widened by the scale when reducing. The `image` crate's CatmullRom is the
// same kernel but rounds differently and keeps no 8-bit intermediate, which shifts values by a few
// levels (measured in the tests); the model was trained on PIL's output, so we follow PIL exactly.

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output pixel: the first input index, the tap count, and fixed-point weights.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

fn precompute_coeffs(in_size: usize, out_size: usize) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) truncates toward zero; negative values are clamped to 0 either way.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            let w = bicubic((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        for (x, &kx) in k.iter().enumerate().take(xmax) {
            let w = if ww != 0.0 { kx / ww } else { kx };
            let fixed = w * (1u32 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if w < 0.0 {
                (fixed - 0.5) as i32
            } else {
                (fixed + 0.5) as i32
            };
        }
        bounds.push((xmin, xmax));
    }
    Coeffs {
        ksize,
        bounds,
        weights,
    }
}

fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// PIL's bicubic resize of an RGB image to `nw`×`nh`.
pub fn resize_bicubic(img: &Rgb8, nw: usize, nh: usize) -> Rgb8 {
    let (w, h) = (img.width, img.height);
    if (nw, nh) == (w, h) {
        return img.clone();
    }
    let horiz = precompute_coeffs(w, nw);
    let mut vert = precompute_coeffs(h, nh);
    let half = 1i32 << (PRECISION_BITS - 1);

    let (tmp, tmp_w) = if nw != w {
        // Only the rows the vertical pass reads.
        let y_first = vert.bounds[0].0;
        let last = vert.bounds[nh - 1];
        let y_last = last.0 + last.1;
        for b in &mut vert.bounds {
            b.0 -= y_first;
        }
        let mut out = vec![0u8; (y_last - y_first) * nw * 3];
        for (yy, row) in out.chunks_exact_mut(nw * 3).enumerate() {
            let src = &img.data[(yy + y_first) * w * 3..(yy + y_first + 1) * w * 3];
            for xx in 0..nw {
                let (xmin, xmax) = horiz.bounds[xx];
                let k = &horiz.weights[xx * horiz.ksize..xx * horiz.ksize + xmax];
                let mut ss = [half; 3];
                for (x, &kx) in k.iter().enumerate() {
                    let p = &src[(x + xmin) * 3..(x + xmin) * 3 + 3];
                    for c in 0..3 {
                        ss[c] += p[c] as i32 * kx;
                    }
                }
                for c in 0..3 {
                    row[xx * 3 + c] = clip8(ss[c]);
                }
            }
        }
        (out, nw)
    } else {
        (img.data.clone(), w)
    };

    if nh == h && nw != w {
        return Rgb8 {
            width: nw,
            height: nh,
            data: tmp,
        };
    }
    let mut out = vec![0u8; nh * tmp_w * 3];
    for yy in 0..nh {
        let (ymin, ymax) = vert.bounds[yy];
        let k = &vert.weights[yy * vert.ksize..yy * vert.ksize + ymax];
        let row = &mut out[yy * tmp_w * 3..(yy + 1) * tmp_w * 3];
        for (i, o) in row.iter_mut().enumerate() {
            let mut ss = half;
            for (y, &ky) in k.iter().enumerate() {
                ss += tmp[(y + ymin) * tmp_w * 3 + i] as i32 * ky;
            }
            *o = clip8(ss);
        }
    }
    Rgb8 {
        width: nw,
        height: nh,
        data: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_size_follows_vggt_rounding() {
        // 1920x1080 → 518 x round(291.375/14)=21 → 294.
        assert_eq!(target_size(1920, 1080, PreprocessMode::Pad), (518, 294));
        assert_eq!(target_size(1080, 1920, PreprocessMode::Pad), (294, 518));
        assert_eq!(target_size(1080, 1920, PreprocessMode::Crop), (518, 924));
        assert_eq!(target_size(518, 518, PreprocessMode::Pad), (518, 518));
    }

    #[test]
    fn transparent_pixels_become_white_and_opaque_ones_stay() {
        let out = composite_over_white(&[10, 20, 30, 0, 10, 20, 30, 255, 0, 0, 0, 128]);
        assert_eq!(&out[..6], &[255, 255, 255, 10, 20, 30]);
        // PIL: round(255 * 127/255) = 127.
        assert_eq!(&out[6..], &[127, 127, 127]);
    }

    #[test]
    fn pad_mode_centres_with_white() {
        let rgb = Rgb8 {
            width: 100,
            height: 50,
            data: vec![0; 100 * 50 * 3],
        };
        let f = to_frame(&rgb, PreprocessMode::Pad);
        assert_eq!(f.dim(), (3, 518, 518));
        // 518x266 content (round(259/14)=18.5→18 → 252? computed by target_size), white above.
        let (_, nh) = target_size(100, 50, PreprocessMode::Pad);
        let top = (518 - nh) / 2;
        assert_eq!(f[[0, top - 1, 10]], 1.0);
        assert_eq!(f[[0, top, 10]], 0.0);
        assert_eq!(f[[2, top + nh - 1, 517]], 0.0);
        assert_eq!(f[[2, top + nh, 517]], 1.0);
    }
}
