//! Which points go into the GLB (`predictions_to_glb`'s filters): the chosen branch's points whose
//! confidence reaches the percentile threshold (and exceeds 1e-5), less black or white background
//! pixels; the scene scale from the kept points' 5th–95th percentile box; and the kept points'
//! box once aligned to the first camera. The verdict is one bit per pixel, and every pass over
//! the pixels or the kept points is split over the cores (`parallel`).

use std::ops::Range;
use std::sync::Mutex;

use strength_reduce::StrengthReducedUsize;

use crate::config::{PredictionMode, ReconSettings};
use crate::geometry::{self, Mat4};
use crate::images::Planes;
use crate::parallel;
use crate::percentile;
use crate::predictions::Predictions;

/// The points that survive the filters, the scene scale and the aligned box.
#[derive(Debug, Clone)]
pub struct PointSelection {
    /// One bit per flat index (frame, row, column) of the chosen branch: kept or not.
    keep: Vec<u64>,
    /// How many bits are set.
    count: usize,
    /// The confidence threshold applied (`conf >= threshold && conf > 1e-5`).
    pub threshold: f64,
    /// Diagonal of the 5th–95th percentile box of the kept points (1 when none are kept).
    pub scene_scale: f64,
    /// The box (min, max) of the kept points aligned to the first camera, as float32.
    pub bounds: ([f32; 3], [f32; 3]),
}

impl PointSelection {
    /// The kept flat indices, in order.
    pub fn indices(&self) -> impl Iterator<Item = usize> + '_ {
        let mut out = Vec::with_capacity(self.count);
        self.for_each_in(0..self.keep.len(), |i| out.push(i));
        out.into_iter()
    }

    /// The words of part `part` of `parts` (a part is whole words, so whole runs of 64 pixels).
    pub fn words(&self, parts: usize, part: usize) -> Range<usize> {
        parallel::split(self.keep.len(), parts, part)
    }

    /// How many parts a pass over the kept points is split into.
    pub fn parts(&self) -> usize {
        parallel::parts_for(self.count)
    }

    /// Calls `f` with every kept flat index in `words`, in order.
    #[inline(always)]
    pub fn for_each_in(&self, words: Range<usize>, mut f: impl FnMut(usize)) {
        for w in words {
            let mut bits = self.keep[w];
            while bits != 0 {
                f(w * 64 + bits.trailing_zeros() as usize);
                bits &= bits - 1;
            }
        }
    }

    /// How many points are kept.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no point is kept.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The chosen branch's points: the model's point map, or depth unprojected through the cameras.
#[derive(Clone, Copy)]
pub enum Branch<'a> {
    Pointmap(&'a [f32]),
    Depth(&'a Predictions),
}

impl<'a> Branch<'a> {
    pub fn of(pred: &'a Predictions, mode: PredictionMode) -> Self {
        match mode {
            PredictionMode::Pointmap => {
                Branch::Pointmap(pred.world_points.as_slice().expect("standard layout"))
            }
            PredictionMode::Depth => Branch::Depth(pred),
        }
    }

    /// The point at flat index `i`, in world coordinates.
    #[inline(always)]
    pub fn point(self, i: usize) -> [f64; 3] {
        match self {
            Branch::Pointmap(p) => [p[3 * i] as f64, p[3 * i + 1] as f64, p[3 * i + 2] as f64],
            Branch::Depth(pred) => pred.point_from_depth(i),
        }
    }
}

/// The images' 8-bit colours (`(images * 255).astype(uint8)`: truncation), planar [S, 3, H·W].
#[derive(Clone, Copy)]
pub struct Colours<'a> {
    planes: Planes<'a>,
    hw: usize,
    frame_len: StrengthReducedUsize,
}

impl<'a> Colours<'a> {
    pub fn of(pred: &'a Predictions) -> Self {
        let (_, _, h, w) = pred.images.dim();
        Colours {
            planes: pred.images.planes(),
            hw: h * w,
            frame_len: StrengthReducedUsize::new((h * w).max(1)),
        }
    }

    /// The colour of flat pixel `i`.
    #[inline(always)]
    pub fn at(self, i: usize) -> [u8; 3] {
        let (f, px) = StrengthReducedUsize::div_rem(i, self.frame_len);
        let base = f * 3 * self.hw + px;
        match self.planes {
            Planes::Bytes(p) => [0, 1, 2].map(|c| p[base + c * self.hw].byte() as u8),
            Planes::Floats(p) => [0, 1, 2].map(|c| p[base + c * self.hw].byte() as u8),
        }
    }
}

/// A colour value as the Space reads it: `(x * 255).astype(uint8)`.
trait Channel: Copy {
    fn byte(self) -> u32;
}

impl Channel for f32 {
    #[inline(always)]
    fn byte(self) -> u32 {
        (self * 255.0) as u8 as u32
    }
}

/// A byte held for `k / 255` (`images::Images::Bytes`): that float times 255, truncated, is `k`
/// for every `k` (tested in `images`).
impl Channel for u8 {
    #[inline(always)]
    fn byte(self) -> u32 {
        self as u32
    }
}

type Bounds = ([f32; 3], [f32; 3]);

/// The kept points of a branch, as the percentiles' values. The first pass over each part also
/// takes the box of its aligned points (the GLB's accessor needs it), which saves a pass.
struct Kept<'a> {
    branch: Branch<'a>,
    selection: &'a PointSelection,
    parts: usize,
    align: Mat4,
    bounds: Vec<Mutex<Option<Bounds>>>,
}

impl percentile::Values<3> for Kept<'_> {
    fn parts(&self) -> usize {
        self.parts
    }

    fn for_each(&self, part: usize, mut f: impl FnMut([f64; 3])) {
        let words = self.selection.words(self.parts, part);
        let mut slot = self.bounds[part].lock().expect("bounds lock");
        if slot.is_some() {
            drop(slot);
            self.selection
                .for_each_in(words, |i| f(self.branch.point(i)));
            return;
        }
        let (mut lo, mut hi) = ([f32::INFINITY; 3], [f32::NEG_INFINITY; 3]);
        self.selection.for_each_in(words, |i| {
            let p = self.branch.point(i);
            let a = geometry::transform_point(&self.align, p);
            for c in 0..3 {
                lo[c] = lo[c].min(a[c] as f32);
                hi[c] = hi[c].max(a[c] as f32);
            }
            f(p);
        });
        *slot = Some((lo, hi));
    }
}

/// Which background masks apply.
#[derive(Clone, Copy)]
struct Masks {
    black: bool,
    white: bool,
}

/// The keep bits of up to 64 pixels of one frame: confidence at least `min_conf`, and not a
/// masked background (`(x * 255).astype(uint8)`, black: r + g + b < 16, white: all > 240).
/// Written as a plain loop over slices so that it vectorises.
#[inline(always)]
fn run_bits<C: Channel>(conf: &[f32], rgb: [&[C]; 3], min_conf: f32, masks: Masks) -> u64 {
    let [r, g, b] = rgb;
    let mut bits = 0u64;
    for k in 0..conf.len() {
        let (r, g, b) = (r[k].byte(), g[k].byte(), b[k].byte());
        let black = masks.black && r + g + b < 16;
        let white = masks.white && r > 240 && g > 240 && b > 240;
        let kept = conf[k] >= min_conf && !black && !white;
        bits |= (kept as u64) << k;
    }
    bits
}

/// The least float32 `t` with `t as f64 >= x` (NaN for NaN: nothing compares at least NaN).
fn least_f32_at_least(x: f64) -> f32 {
    let t = x as f32;
    if (t as f64) < x { t.next_up() } else { t }
}

/// The least float32 `t` with `t as f64 > x`.
fn least_f32_above(x: f64) -> f32 {
    let t = x as f32;
    if (t as f64) <= x { t.next_up() } else { t }
}

/// Applies the Space's filters: confidence percentile (and > 1e-5), black and white backgrounds.
pub fn select_points(pred: &Predictions, settings: &ReconSettings) -> PointSelection {
    let conf = match settings.prediction_mode {
        PredictionMode::Pointmap => &pred.world_points_conf,
        PredictionMode::Depth => &pred.depth_conf,
    };
    let conf = conf.as_slice().expect("standard layout");
    let threshold = if settings.conf_thres == 0.0 {
        0.0
    } else {
        percentile::percentile(conf, settings.conf_thres)
    };
    let colours = Colours::of(pred);
    let mut keep = vec![0u64; conf.len().div_ceil(64)];
    // `c as f64 >= threshold && c as f64 > 1e-5` is `c >= min_conf` for one float32 bound.
    let min_conf = least_f32_at_least(threshold).max(least_f32_above(1e-5));
    let hw = colours.hw;
    // Each part fills its own run of whole words.
    let parts = parallel::parts_for(conf.len());
    let count: usize = parallel::each_run_mut(&mut keep, parts, |_, first_word, words| {
        let first = first_word * 64;
        let mut count = 0;
        for (w, word) in words.iter_mut().enumerate() {
            let start = first + w * 64;
            let end = (start + 64).min(conf.len());
            let mut bits = 0u64;
            // A word's pixels, cut where a frame ends (the colour planes are per frame).
            let mut i = start;
            while i < end {
                let (f, px) = (i / hw, i % hw);
                let run = (end - i).min(hw - px);
                let at = |c: usize| (f * 3 + c) * hw + px..(f * 3 + c) * hw + px + run;
                let mask = Masks {
                    black: settings.mask_black_bg,
                    white: settings.mask_white_bg,
                };
                let conf = &conf[i..i + run];
                bits |= match colours.planes {
                    Planes::Bytes(p) => {
                        run_bits(conf, [&p[at(0)], &p[at(1)], &p[at(2)]], min_conf, mask)
                    }
                    Planes::Floats(p) => {
                        run_bits(conf, [&p[at(0)], &p[at(1)], &p[at(2)]], min_conf, mask)
                    }
                } << (i - start);
                i += run;
            }
            *word = bits;
            count += bits.count_ones() as usize;
        }
        count
    })
    .into_iter()
    .sum();
    let mut selection = PointSelection {
        keep,
        count,
        threshold,
        scene_scale: 1.0,
        bounds: ([0.0; 3], [0.0; 3]),
    };
    if count > 0 {
        // numpy's percentiles over the kept points in their own dtype (float64 for depth).
        let parts = selection.parts();
        let kept = Kept {
            branch: Branch::of(pred, settings.prediction_mode),
            selection: &selection,
            parts,
            align: crate::glb::scene_alignment(pred),
            bounds: (0..parts).map(|_| Mutex::new(None)).collect(),
        };
        let axes = percentile::percentiles(&kept, count, &[5.0, 95.0]);
        let mut bounds = ([f32::INFINITY; 3], [f32::NEG_INFINITY; 3]);
        for part in kept.bounds {
            let (lo, hi) = part
                .into_inner()
                .expect("bounds lock")
                .expect("a pass was made");
            for c in 0..3 {
                bounds.0[c] = bounds.0[c].min(lo[c]);
                bounds.1[c] = bounds.1[c].max(hi[c]);
            }
        }
        selection.bounds = bounds;
        selection.scene_scale = axes
            .iter()
            .map(|q| (q[1] - q[0]) * (q[1] - q[0]))
            .sum::<f64>()
            .sqrt();
    }
    selection
}
