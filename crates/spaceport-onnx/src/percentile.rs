//! numpy's `percentile` (linear interpolation), exact, without copying or sorting the values.
//!
//! Two passes over the values, which are read again from their source rather than held: the
//! first counts them into 65,536 buckets by the top 16 bits of their float32 key (rounding to
//! float32 keeps the order, so the buckets are ordered ranges); that tells which bucket holds
//! each order statistic wanted and its rank there; the second gathers just those buckets' values,
//! at full precision, and selects in them. Post-processing asks for percentiles of millions of
//! values computed on the fly (points unprojected from depth): a copy would cost 8 bytes a value
//! and `select_nth_unstable` a partitioning per statistic, where this costs two streaming passes,
//! 256 KiB of counters per axis and the few thousand values of the buckets gathered. Several
//! axes and percentiles share the passes. Values that all fall in one bucket are all gathered:
//! slower and larger, never wrong.
//!
//! Precision follows numpy 1.26 (the facebook/vggt Space's pin): float32 data is widened to
//! float64 and interpolated in float64. Any NaN makes that axis's answers NaN, as in numpy.

/// Values that can be read several times, `D` numbers per item (`D` axes), in parts that are
/// read concurrently (one thread each).
pub trait Values<const D: usize>: Sync {
    /// How many parts the items are split into.
    fn parts(&self) -> usize {
        1
    }

    /// Calls `f` with every item of `part`, in the same order each time.
    fn for_each(&self, part: usize, f: impl FnMut([f64; D]));
}

/// A slice of float32 values, one axis.
pub struct Slice<'a>(pub &'a [f32]);

impl Slice<'_> {
    fn part(&self, part: usize) -> &[f32] {
        &self.0[crate::parallel::split(self.0.len(), self.parts(), part)]
    }
}

impl Values<1> for Slice<'_> {
    fn parts(&self) -> usize {
        crate::parallel::parts_for(self.0.len())
    }

    fn for_each(&self, part: usize, mut f: impl FnMut([f64; 1])) {
        for &v in self.part(part) {
            f([v as f64]);
        }
    }
}

const BUCKETS: usize = 1 << 16;

/// The bucket of `x`: the top 16 bits of its float32 bits, flipped so that unsigned order is the
/// floats' order (negatives reversed, below the positives).
#[inline(always)]
fn bucket(x: f64) -> usize {
    let b = (x as f32).to_bits();
    let k = if b >> 31 == 1 { !b } else { b | 1 << 31 };
    (k >> 16) as usize
}

/// The `qs` percentiles (0–100) of each axis of `values` (`n` items): `out[axis][i]` for `qs[i]`.
pub fn percentiles<const D: usize>(values: &impl Values<D>, n: usize, qs: &[f64]) -> [Vec<f64>; D] {
    if n == 0 {
        return std::array::from_fn(|_| vec![f64::NAN; qs.len()]);
    }
    // numpy: virtual index q/100·(n-1), the two order statistics around it, and the weight.
    let spots: Vec<(usize, usize, f64)> = qs
        .iter()
        .map(|q| {
            let pos = (q / 100.0) * (n - 1) as f64;
            let lo = pos.floor() as usize;
            (lo, (lo + 1).min(n - 1), pos - lo as f64)
        })
        .collect();
    let mut ranks: Vec<usize> = spots.iter().flat_map(|&(lo, hi, _)| [lo, hi]).collect();
    ranks.sort_unstable();
    ranks.dedup();

    let counted = crate::parallel::each_part(values.parts(), |part| {
        let mut counts = vec![0u32; D * BUCKETS];
        let mut nan = [false; D];
        values.for_each(part, |item| {
            for (a, &x) in item.iter().enumerate() {
                nan[a] |= x.is_nan();
                counts[a * BUCKETS + bucket(x)] += 1;
            }
        });
        (counts, nan)
    });
    let mut nan = [false; D];
    let mut counts = vec![0u32; D * BUCKETS];
    for (part_counts, part_nan) in counted {
        for (c, p) in counts.iter_mut().zip(part_counts) {
            *c += p;
        }
        for a in 0..D {
            nan[a] |= part_nan[a];
        }
    }

    // Per axis, the buckets to gather: (bucket, values below it), one per distinct bucket.
    let wanted: [Vec<(usize, usize)>; D] = std::array::from_fn(|a| {
        let counts = &counts[a * BUCKETS..][..BUCKETS];
        let mut out: Vec<(usize, usize)> = Vec::new();
        let (mut b, mut below) = (0, 0usize);
        for &r in &ranks {
            while below + counts[b] as usize <= r {
                below += counts[b] as usize;
                b += 1;
            }
            if out.last().is_none_or(|&(last, _)| last != b) {
                out.push((b, below));
            }
        }
        out
    });
    drop(counts);
    let parts = crate::parallel::each_part(values.parts(), |part| {
        let mut gathered: [Vec<Vec<f64>>; D] =
            std::array::from_fn(|a| vec![Vec::new(); wanted[a].len()]);
        values.for_each(part, |item| {
            for (a, &x) in item.iter().enumerate() {
                let b = bucket(x);
                if let Some(w) = wanted[a].iter().position(|&(wb, _)| wb == b) {
                    gathered[a][w].push(x);
                }
            }
        });
        gathered
    });
    let mut gathered: [Vec<Vec<f64>>; D] =
        std::array::from_fn(|a| vec![Vec::new(); wanted[a].len()]);
    for part in parts {
        for (all, mine) in gathered.iter_mut().zip(part) {
            for (g, m) in all.iter_mut().zip(mine) {
                g.extend(m);
            }
        }
    }

    std::array::from_fn(|a| {
        if nan[a] {
            return vec![f64::NAN; qs.len()];
        }
        for g in &mut gathered[a] {
            g.sort_unstable_by(f64::total_cmp);
        }
        let stat = |r: usize| {
            let w = wanted[a]
                .iter()
                .rposition(|&(_, below)| below <= r)
                .expect("rank in range");
            gathered[a][w][r - wanted[a][w].1]
        };
        spots
            .iter()
            .map(|&(lo, hi, frac)| lerp(stat(lo), stat(hi), frac))
            .collect()
    })
}

/// numpy's `_lerp`: a + (b - a)·t, switched to b - (b - a)·(1 - t) for t ≥ 0.5.
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    if t == 0.0 {
        return a;
    }
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// One percentile of float32 values.
pub fn percentile(values: &[f32], q: f64) -> f64 {
    let [out] = percentiles(&Slice(values), values.len(), &[q]);
    out[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_linear() {
        // np.percentile([1,2,3,4], 50) = 2.5; [1..=10] at 33 = 3.97; at 0 → min; at 100 → max.
        assert_eq!(percentile(&[4.0, 1.0, 3.0, 2.0], 50.0), 2.5);
        let v: Vec<f32> = (1..=10).map(|x| x as f32).collect();
        assert!((percentile(&v, 33.0) - 3.97).abs() < 1e-9);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 100.0), 10.0);
        assert!(percentile(&[1.0, f32::NAN], 50.0).is_nan());
        assert!(percentile(&[], 50.0).is_nan());
    }

    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// Against sorting, on data that takes every path: negatives and zeros, ties, everything in
    /// one bucket, two statistics of one percentile in neighbouring buckets.
    #[test]
    fn equals_the_sorted_order_statistics() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        // Large enough to be read in parts on a machine with several cores.
        let sets: Vec<Vec<f32>> = vec![
            (0..600_000)
                .map(|_| (next() % 5_000) as f32 * 0.25)
                .collect(),
            (0..100_000)
                .map(|_| (next() % 2_000_000) as f32 / 1000.0 - 1000.0)
                .collect(),
            (0..50_000)
                .map(|_| 1.0 + (next() % 8) as f32 * 1e-7)
                .collect(),
            vec![3.5; 20_000],
            (0..30_001)
                .map(|i| if i % 3 == 0 { -0.25 } else { (i % 977) as f32 })
                .collect(),
            vec![0.0, 1.0],
        ];
        for values in sets {
            let mut sorted: Vec<f64> = values.iter().map(|&v| v as f64).collect();
            sorted.sort_by(f64::total_cmp);
            let n = sorted.len();
            let qs = [0.0, 5.0, 33.3, 50.0, 95.0, 99.9, 100.0];
            let [got] = percentiles(&Slice(&values), n, &qs);
            for (q, got) in qs.iter().zip(got) {
                let pos = q / 100.0 * (n - 1) as f64;
                let lo = pos.floor() as usize;
                let want = lerp(sorted[lo], sorted[(lo + 1).min(n - 1)], pos - lo as f64);
                assert_eq!(got, want, "q = {q}");
            }
        }
    }

    /// float64 values that round to the same float32 are told apart in the second pass.
    #[test]
    fn float64_values_keep_their_precision() {
        struct Wide(Vec<f64>);
        impl Values<1> for Wide {
            fn for_each(&self, _: usize, mut f: impl FnMut([f64; 1])) {
                self.0.iter().for_each(|&v| f([v]));
            }
        }
        let values: Vec<f64> = (0..1001).map(|i| 1.0 + i as f64 * 1e-12).collect();
        let [got] = percentiles(&Wide(values.clone()), 1001, &[5.0, 50.0]);
        assert_eq!(got, vec![values[50], values[500]]);
    }

    #[test]
    fn axes_are_independent() {
        struct Pairs(Vec<[f64; 2]>);
        impl Values<2> for Pairs {
            fn for_each(&self, _: usize, mut f: impl FnMut([f64; 2])) {
                self.0.iter().for_each(|&p| f(p));
            }
        }
        let pairs = Pairs((0..1001).map(|i| [i as f64, -(i as f64) * 2.0]).collect());
        let [x, y] = percentiles(&pairs, 1001, &[5.0, 95.0]);
        assert_eq!(x, vec![50.0, 950.0]);
        assert_eq!(y, vec![-1900.0, -100.0]);
    }
}
