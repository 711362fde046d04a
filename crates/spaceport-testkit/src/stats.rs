//! Figures for the benchmarks: nearest-rank percentiles of a sample of durations, printed as
//! aligned rows so two things measured in one run sit side by side.

/// Summary of a sample of durations in milliseconds (nearest-rank percentiles).
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    /// The summary of `samples` (NaN everywhere for none).
    pub fn of(samples: &[f64]) -> Summary {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        if n == 0 {
            return Summary {
                n,
                p50: f64::NAN,
                p95: f64::NAN,
                p99: f64::NAN,
                mean: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        let rank = |p: f64| s[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        Summary {
            n,
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            mean: s.iter().sum::<f64>() / n as f64,
            min: s[0],
            max: s[n - 1],
        }
    }

    /// One aligned row under `header`: p50, p95, mean, min, max.
    pub fn row(&self, label: &str) -> String {
        format!(
            "  {label:<34} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}  (n={})",
            self.p50, self.p95, self.mean, self.min, self.max, self.n
        )
    }

    /// One aligned row under `header_fine`, in hundredths: p50, p95, p99, mean, max.
    pub fn row_fine(&self, label: &str) -> String {
        format!(
            "  {label:<34} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}  (n={})",
            self.p50, self.p95, self.p99, self.mean, self.max, self.n
        )
    }
}

/// The header of `Summary::row`.
pub fn header(unit: &str) -> String {
    format!(
        "  {:<34} {:>9} {:>9} {:>9} {:>9} {:>9}",
        unit, "p50", "p95", "mean", "min", "max"
    )
}

/// The header of `Summary::row_fine`.
pub fn header_fine(unit: &str) -> String {
    format!(
        "  {:<34} {:>9} {:>9} {:>9} {:>9} {:>9}",
        unit, "p50", "p95", "p99", "mean", "max"
    )
}

/// A bench binary's numeric option: `--name N` on the command line, else `PREFIX_NAME` in the
/// environment (dashes as underscores), else `default`.
pub fn bench_opt(prefix: &str, name: &str, default: u64) -> anyhow::Result<u64> {
    use anyhow::Context;
    let env = format!("{prefix}_{}", name.to_ascii_uppercase().replace('-', "_"));
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == format!("--{name}") {
            let v = args
                .next()
                .with_context(|| format!("--{name} needs a value"))?;
            return v.parse().with_context(|| format!("--{name} {v:?}"));
        }
    }
    match std::env::var(&env) {
        Ok(v) => v.parse().with_context(|| format!("{env}={v:?}")),
        Err(_) => Ok(default),
    }
}

/// Milliseconds, for the figures.
pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A bench's first line: its name, the machine's cores and load (figures from a loaded machine
/// read differently).
pub fn machine_line(bench: &str) -> String {
    format!(
        "spaceport {bench} bench: {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| format!("loadavg {}", l.trim()))
            .unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = Summary::of(&(1..=100).map(f64::from).collect::<Vec<_>>());
        assert_eq!(
            (s.p50, s.p95, s.p99, s.min, s.max),
            (50.0, 95.0, 99.0, 1.0, 100.0)
        );
        assert!(Summary::of(&[]).p50.is_nan());
    }
}
