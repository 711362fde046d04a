//! The images the model gives back beside its predictions ([S, 3, H, W] in [0, 1]), held as
//! 8-bit values where that loses nothing.
//!
//! VGGT returns its input, which `to_tensor` made from 8-bit pixels (`k / 255` in float32, as
//! our pre-processing does), so every value is one of 256 floats. Held as `k` they take a quarter
//! of the memory (at S = 50 and 518², 121 MiB less: a quarter of everything a run holds after
//! inference) and are given back bit for bit, in the npz as in the GLB's colours. Images with any
//! other value (another model's output, a hand-built test) are held as they came.

use std::ops::Range;

use ndarray::{Array4, ArrayView4, Axis, Slice};

use crate::parallel;

/// [S, 3, H, W] in [0, 1].
#[derive(Debug, Clone)]
pub enum Images {
    /// Each value `k` stands for `k as f32 / 255.0`, bit for bit.
    Bytes(Array4<u8>),
    /// Values not all of that form, as they came.
    Floats(Array4<f32>),
}

/// The colour planes as the filters and the GLB read them.
#[derive(Debug, Clone, Copy)]
pub enum Planes<'a> {
    Bytes(&'a [u8]),
    Floats(&'a [f32]),
}

/// The float32 that byte `k` stands for: `to_tensor`'s division.
#[inline(always)]
pub fn float_of(k: u8) -> f32 {
    k as f32 / 255.0
}

/// The byte standing for `v`, and whether `v` is exactly `float_of` of it. The nearest byte by
/// adding a half and truncating (`as` saturates, NaN gives 0), not `round`, which is a libm call
/// that keeps the loop from vectorising; whatever it picks, the exact comparison decides.
#[inline(always)]
fn byte_of(v: f32) -> (u8, bool) {
    let byte = (v * 255.0 + 0.5) as u8;
    (byte, float_of(byte).to_bits() == v.to_bits())
}

impl Images {
    /// `a` as bytes when every value is some `k / 255` exactly, else copied as it is.
    pub fn from_view(a: ArrayView4<'_, f32>) -> Images {
        let a = a.as_standard_layout();
        let src = a.as_slice().expect("standard layout");
        let mut bytes = vec![0u8; src.len()];
        let parts = parallel::parts_for(src.len());
        // No early exit: the loop stays a straight pass that vectorises.
        let exact = parallel::each_run_mut(&mut bytes, parts, |_, start, run| {
            run.iter_mut()
                .zip(&src[start..])
                .fold(true, |all, (o, &v)| {
                    let (k, ok) = byte_of(v);
                    *o = k;
                    all & ok
                })
        })
        .into_iter()
        .all(|ok| ok);
        if exact {
            Images::Bytes(Array4::from_shape_vec(a.raw_dim(), bytes).expect("same shape"))
        } else {
            Images::Floats(a.into_owned())
        }
    }

    /// (S, 3, H, W)
    pub fn dim(&self) -> (usize, usize, usize, usize) {
        match self {
            Images::Bytes(a) => a.dim(),
            Images::Floats(a) => a.dim(),
        }
    }

    pub fn shape(&self) -> &[usize] {
        match self {
            Images::Bytes(a) => a.shape(),
            Images::Floats(a) => a.shape(),
        }
    }

    /// The values, flat in [S, 3, H, W] order.
    pub fn planes(&self) -> Planes<'_> {
        match self {
            Images::Bytes(a) => Planes::Bytes(a.as_slice().expect("standard layout")),
            Images::Floats(a) => Planes::Floats(a.as_slice().expect("standard layout")),
        }
    }

    /// As float32, whichever way they are held.
    pub fn to_floats(&self) -> Array4<f32> {
        match self {
            Images::Bytes(a) => a.mapv(float_of),
            Images::Floats(a) => a.clone(),
        }
    }

    /// Values `values` (flat, [S, 3, H, W] order) as float32 bytes in the machine's order, into
    /// `out` (4 bytes a value): what an npz holds, whichever way they are held here.
    pub fn floats_into(&self, values: Range<usize>, out: &mut [u8]) {
        let out = out.chunks_exact_mut(4);
        match self.planes() {
            Planes::Bytes(b) => {
                for (o, &k) in out.zip(&b[values]) {
                    o.copy_from_slice(&float_of(k).to_ne_bytes());
                }
            }
            Planes::Floats(v) => {
                for (o, x) in out.zip(&v[values]) {
                    o.copy_from_slice(&x.to_ne_bytes());
                }
            }
        }
    }

    /// Only frame `f`.
    pub fn frame(&self, f: usize) -> Images {
        let one = Slice::from(f..f + 1);
        match self {
            Images::Bytes(a) => Images::Bytes(a.slice_axis(Axis(0), one).to_owned()),
            Images::Floats(a) => Images::Floats(a.slice_axis(Axis(0), one).to_owned()),
        }
    }
}

impl From<Array4<f32>> for Images {
    fn from(a: Array4<f32>) -> Self {
        Images::from_view(a.view())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What makes the bytes exact: every `k / 255` comes back as `k`, and the Space's colour
    /// (`(x * 255).astype(uint8)`, truncating) of `k / 255` is `k` itself.
    #[test]
    fn every_byte_goes_there_and_back_and_is_its_own_colour() {
        for k in 0..=255u8 {
            assert_eq!(byte_of(float_of(k)), (k, true));
            assert_eq!((float_of(k) * 255.0) as u8, k);
        }
    }

    #[test]
    fn only_images_of_whole_bytes_are_held_as_bytes() {
        let exact = Array4::from_shape_fn((2, 3, 4, 5), |(f, c, y, x)| {
            float_of(((f * 60 + c * 20 + y * 5 + x) * 3 % 256) as u8)
        });
        let held = Images::from(exact.clone());
        assert!(matches!(held, Images::Bytes(_)));
        assert_eq!(held.to_floats(), exact);
        assert_eq!(held.dim(), (2, 3, 4, 5));
        assert_eq!(
            held.frame(1).to_floats(),
            exact.slice_axis(Axis(0), Slice::from(1..2))
        );
        for odd in [0.5f32, -0.0, 1.0001, f32::NAN, float_of(7).next_up()] {
            let mut a = exact.clone();
            a[[1, 2, 3, 4]] = odd;
            match Images::from(a.clone()) {
                Images::Floats(kept) => {
                    assert!(kept.iter().zip(&a).all(|(x, y)| x.to_bits() == y.to_bits()))
                }
                Images::Bytes(_) => panic!("{odd} was taken for a byte"),
            }
        }
    }
}
