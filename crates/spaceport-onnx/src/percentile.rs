//! numpy's `percentile` (linear interpolation), exact, without copying or sorting the values:
//! a radix selection over the values' order-preserving 64-bit keys, 16 bits per pass, each pass
//! reading the values again from their source. Post-processing asks for percentiles of millions
//! of values that are computed on the fly (points unprojected from depth): a copy would cost
//! 8 bytes a value and `select_nth_unstable` several partitionings each, where this costs a few
//! streaming passes and 512 KiB of counters per order statistic. Several axes and several
//! percentiles share the passes.
//!
//! Precision follows numpy 1.26 (the facebook/vggt Space's pin): float32 data is widened to
//! float64 and interpolated in float64. Any NaN makes that axis's answers NaN, as in numpy.

/// Values that can be read several times, `D` numbers per item (`D` axes).
pub trait Values<const D: usize> {
    /// Calls `f` with every item, in any fixed order.
    fn for_each(&self, f: impl FnMut([f64; D]));
}

/// A slice of float32 values, one axis.
pub struct Slice<'a>(pub &'a [f32]);

impl Values<1> for Slice<'_> {
    fn for_each(&self, mut f: impl FnMut([f64; 1])) {
        for &v in self.0 {
            f([v as f64]);
        }
    }
}

const DIGIT: u32 = 16;
const BUCKETS: usize = 1 << DIGIT;
/// A bucket this small is gathered and selected directly.
const GATHER: usize = 4096;

/// The key of `x`: unsigned, in the order of the floats (negatives reversed below positives).
fn key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 { !b } else { b | 1 << 63 }
}

fn value(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// One order statistic being narrowed: the `rank`-th smallest (0-based) among the keys whose top
/// `bits` bits equal `prefix`.
struct Target {
    axis: usize,
    /// The rank asked for.
    want: usize,
    /// The rank still to find within the prefix.
    rank: usize,
    prefix: u64,
    bits: u32,
    /// Gather the bucket on the next pass.
    gather: bool,
    found: Option<f64>,
}

impl Target {
    fn matches(&self, k: u64) -> bool {
        self.bits == 0 || k >> (64 - self.bits) == self.prefix
    }
}

/// The `qs` percentiles (0–100) of each axis of `values` (`n` items): `out[axis][i]` for `qs[i]`.
pub fn percentiles<const D: usize>(values: &impl Values<D>, n: usize, qs: &[f64]) -> [Vec<f64>; D] {
    if n == 0 {
        return [(); D].map(|_| vec![f64::NAN; qs.len()]);
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
    let mut targets: Vec<Target> = (0..D)
        .flat_map(|axis| {
            ranks.iter().map(move |&rank| Target {
                axis,
                want: rank,
                rank,
                prefix: 0,
                bits: 0,
                gather: false,
                found: None,
            })
        })
        .collect();
    let mut nan = [false; D];
    let mut hist = vec![0u32; BUCKETS];
    let mut first = true;
    loop {
        let open: Vec<usize> = (0..targets.len())
            .filter(|&t| targets[t].found.is_none())
            .collect();
        if open.is_empty() {
            break;
        }
        // Targets that share an axis and a prefix share a histogram; the first pass has one per
        // axis. Gathering targets collect their bucket's keys.
        let mut groups: Vec<(usize, u64, u32)> = Vec::new();
        let mut group_of = vec![usize::MAX; targets.len()];
        for &t in &open {
            let g = &targets[t];
            if g.gather {
                continue;
            }
            let id = (g.axis, g.prefix, g.bits);
            group_of[t] = groups.iter().position(|&x| x == id).unwrap_or_else(|| {
                groups.push(id);
                groups.len() - 1
            });
        }
        hist.clear();
        hist.resize(groups.len() * BUCKETS, 0);
        let mut gathered: Vec<Vec<u64>> = open
            .iter()
            .map(|&t| {
                if targets[t].gather {
                    Vec::with_capacity(GATHER)
                } else {
                    Vec::new()
                }
            })
            .collect();
        let gathering: Vec<(usize, usize)> = open
            .iter()
            .enumerate()
            .filter(|&(_, &t)| targets[t].gather)
            .map(|(o, &t)| (o, t))
            .collect();
        let scan_nan = first;
        values.for_each(|item| {
            let keys = item.map(key);
            if scan_nan {
                for (axis, x) in item.iter().enumerate() {
                    nan[axis] |= x.is_nan();
                }
            }
            for (&(axis, prefix, bits), h) in groups.iter().zip(hist.chunks_exact_mut(BUCKETS)) {
                let k = keys[axis];
                if bits == 0 || k >> (64 - bits) == prefix {
                    h[(k >> (64 - bits - DIGIT)) as usize & (BUCKETS - 1)] += 1;
                }
            }
            for &(o, t) in &gathering {
                let k = keys[targets[t].axis];
                if targets[t].matches(k) {
                    gathered[o].push(k);
                }
            }
        });
        first = false;
        for (o, &t) in open.iter().enumerate() {
            let target = &mut targets[t];
            if nan[target.axis] {
                target.found = Some(f64::NAN);
            } else if target.gather {
                let keys = &mut gathered[o];
                let (_, &mut k, _) = keys.select_nth_unstable(target.rank);
                target.found = Some(value(k));
            } else {
                let h = &hist[group_of[t] * BUCKETS..][..BUCKETS];
                let mut below = 0usize;
                for (digit, &count) in h.iter().enumerate() {
                    let count = count as usize;
                    if below + count > target.rank {
                        target.rank -= below;
                        target.prefix = target.prefix << DIGIT | digit as u64;
                        target.bits += DIGIT;
                        if target.bits == 64 {
                            // Every key in the bucket is this one.
                            target.found = Some(value(target.prefix));
                        } else {
                            target.gather = count <= GATHER;
                        }
                        break;
                    }
                    below += count;
                }
            }
        }
    }
    let stat = |axis: usize, rank: usize| {
        targets
            .iter()
            .find(|t| t.axis == axis && t.want == rank)
            .and_then(|t| t.found)
            .expect("every rank was selected")
    };
    std::array::from_fn(|axis| {
        spots
            .iter()
            .map(|&(lo, hi, frac)| lerp(stat(axis, lo), stat(axis, hi), frac))
            .collect()
    })
}

/// numpy's `_lerp`: a + (b - a)·t, switched to b - (b - a)·(1 - t) for t ≥ 0.5.
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        return f64::NAN;
    }
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

/// The `qs` percentiles of `values`, which are reordered: a copy's partitioning, for values that
/// cost more to compute again than to hold (points unprojected from depth, where each radix pass
/// would unproject them all again).
pub fn percentiles_in_place(values: &mut [f64], qs: &[f64]) -> Vec<f64> {
    let n = values.len();
    if n == 0 || values.iter().any(|v| v.is_nan()) {
        return vec![f64::NAN; qs.len()];
    }
    qs.iter()
        .map(|q| {
            let pos = (q / 100.0) * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let (_, &mut a, rest) = values.select_nth_unstable_by(lo, f64::total_cmp);
            // The next order statistic is the smallest of the part above.
            let b = if lo + 1 < n {
                rest.iter().copied().fold(f64::INFINITY, f64::min)
            } else {
                a
            };
            lerp(a, b, pos - lo as f64)
        })
        .collect()
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

    /// Against sorting, on data that takes every path: negatives, ties, a bucket too big to
    /// gather at first, identical keys to the last bit.
    #[test]
    fn equals_the_sorted_order_statistics() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let sets: Vec<Vec<f32>> = vec![
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

    #[test]
    fn in_place_agrees_with_the_radix_selection() {
        let values: Vec<f32> = (0..10_000)
            .map(|i| ((i * 7919) % 10_007) as f32 * 0.37)
            .collect();
        let qs = [5.0, 50.0, 95.0];
        let [radix] = percentiles(&Slice(&values), values.len(), &qs);
        let mut wide: Vec<f64> = values.iter().map(|&v| v as f64).collect();
        assert_eq!(percentiles_in_place(&mut wide, &qs), radix);
    }

    #[test]
    fn axes_are_independent() {
        struct Pairs(Vec<[f64; 2]>);
        impl Values<2> for Pairs {
            fn for_each(&self, mut f: impl FnMut([f64; 2])) {
                self.0.iter().for_each(|&p| f(p));
            }
        }
        let pairs = Pairs((0..1001).map(|i| [i as f64, -(i as f64) * 2.0]).collect());
        let [x, y] = percentiles(&pairs, 1001, &[5.0, 95.0]);
        assert_eq!(x, vec![50.0, 950.0]);
        assert_eq!(y, vec![-1900.0, -100.0]);
    }
}
