//! Post-processing's passes over millions of pixels or points, split over the machine's cores:
//! contiguous parts, one scoped thread each, results in part order (so output stays ordered).

use std::ops::Range;

/// Items below which a pass is not worth a thread.
const MIN_PER_PART: usize = 1 << 18;
/// At most this many threads for one pass.
const MAX_PARTS: usize = 8;

/// How many parts `n` items are read in: one per core, each at least `MIN_PER_PART` items.
pub fn parts_for(n: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    cores.min(MAX_PARTS).min(n / MIN_PER_PART).max(1)
}

/// Part `part` of `parts` of `0..n`, as even as can be.
pub fn split(n: usize, parts: usize, part: usize) -> Range<usize> {
    n * part / parts..n * (part + 1) / parts
}

/// Runs `f` for every part, the first on this thread and the others on scoped threads, and
/// returns the results in part order.
pub fn each_part<T: Send>(parts: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    if parts <= 1 {
        return vec![f(0)];
    }
    std::thread::scope(|s| {
        let others: Vec<_> = (1..parts)
            .map(|p| {
                s.spawn({
                    let f = &f;
                    move || f(p)
                })
            })
            .collect();
        let mut out = vec![f(0)];
        out.extend(
            others
                .into_iter()
                .map(|h| h.join().expect("a post-processing thread panicked")),
        );
        out
    })
}

/// `each_part` over `data` cut into `parts` contiguous runs (as `split` cuts it): `f` gets the
/// part's number, where its run starts in `data`, and the run to fill.
pub fn each_run_mut<T: Send, R: Send>(
    data: &mut [T],
    parts: usize,
    f: impl Fn(usize, usize, &mut [T]) -> R + Sync,
) -> Vec<R> {
    let n = data.len();
    let mut runs = Vec::with_capacity(parts);
    let mut rest = data;
    for part in 0..parts {
        let (mine, others) = rest.split_at_mut(split(n, parts, part).len());
        runs.push((part, split(n, parts, part).start, mine));
        rest = others;
    }
    if parts <= 1 {
        return runs.into_iter().map(|(p, s, run)| f(p, s, run)).collect();
    }
    std::thread::scope(|s| {
        let f = &f;
        let mut iter = runs.into_iter();
        let (p0, s0, first) = iter.next().expect("one part at least");
        let others: Vec<_> = iter
            .map(|(p, start, run)| s.spawn(move || f(p, start, run)))
            .collect();
        let mut out = vec![f(p0, s0, first)];
        out.extend(
            others
                .into_iter()
                .map(|h| h.join().expect("a post-processing thread panicked")),
        );
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_range_in_order() {
        for (n, parts) in [(10, 3), (7, 7), (1_000_003, 4), (0, 2)] {
            let ranges: Vec<_> = (0..parts).map(|p| split(n, parts, p)).collect();
            assert_eq!(ranges.first().unwrap().start, 0);
            assert_eq!(ranges.last().unwrap().end, n);
            assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
        }
        assert_eq!(each_part(3, |p| p * 10), vec![0, 10, 20]);
        let mut data = vec![0usize; 10];
        let starts = each_run_mut(&mut data, 3, |p, start, run| {
            run.iter_mut().for_each(|x| *x = p);
            start
        });
        assert_eq!(starts, vec![0, 3, 6]);
        assert_eq!(data, vec![0, 0, 0, 1, 1, 1, 2, 2, 2, 2]);
        assert_eq!(parts_for(10), 1);
    }
}
