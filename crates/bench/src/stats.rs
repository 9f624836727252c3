//! Percentiles and summaries of samples (pure).

/// p50, p95, min and max of a set of samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p95: f64,
    pub min: f64,
    pub max: f64,
}

/// The nearest-rank percentile `p` (0-100) of `sorted` (ascending, not empty): the smallest
/// sample with at least p % of the samples at or below it. Nearest-rank never invents a value
/// between two samples, so with 20 samples p95 is the 19th.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, sorted.len()) - 1;
    sorted.get(idx).copied()
}

/// Summarises `samples` (any order); `None` when there are none.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    Some(Summary {
        n: v.len(),
        p50: percentile(&v, 50.0)?,
        p95: percentile(&v, 95.0)?,
        min: *v.first()?,
        max: *v.last()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(10.0));
        assert_eq!(percentile(&v, 95.0), Some(19.0));
        assert_eq!(percentile(&v, 100.0), Some(20.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
    }

    #[test]
    fn summary_sorts_and_skips_nan() {
        let s = summarize(&[3.0, f64::NAN, 1.0, 2.0]).expect("samples");
        assert_eq!(s.n, 3);
        assert_eq!((s.p50, s.p95, s.min, s.max), (2.0, 3.0, 1.0, 3.0));
        assert_eq!(summarize(&[]), None);
    }
}
