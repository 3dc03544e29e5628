//! Exact-sample distributions: every percentile is computed from all samples (no sketches),
//! with linear interpolation between closest ranks (numpy's default).

use serde::{Deserialize, Serialize};

/// Summary statistics of one metric.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Distribution {
    pub count: u64,
    pub mean: f64,
    pub stddev: f64,
    pub min: f64,
    pub max: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    #[serde(rename = "p99.9")]
    pub p999: f64,
}

/// The q-quantile (0..=1) of sorted samples, interpolating linearly between ranks.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

impl Distribution {
    /// Statistics of `samples` (sorted in place); None when there are none.
    pub fn of(samples: &mut [f64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable_by(|a, b| a.total_cmp(b));
        let n = samples.len() as f64;
        let mean = samples.iter().sum::<f64>() / n;
        let var = if samples.len() > 1 {
            samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Some(Self {
            count: samples.len() as u64,
            mean,
            stddev: var.sqrt(),
            min: samples[0],
            max: samples[samples.len() - 1],
            p50: quantile(samples, 0.50),
            p90: quantile(samples, 0.90),
            p95: quantile(samples, 0.95),
            p99: quantile(samples, 0.99),
            p999: quantile(samples, 0.999),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let mut v: Vec<f64> = (1..=101).map(f64::from).collect();
        let d = Distribution::of(&mut v).unwrap();
        assert_eq!(
            (d.min, d.max, d.p50, d.p90, d.p99),
            (1.0, 101.0, 51.0, 91.0, 100.0)
        );
        assert!((d.p999 - 100.9).abs() < 1e-9);
        assert_eq!(d.mean, 51.0);
        let mut two = vec![10.0, 0.0];
        let d = Distribution::of(&mut two).unwrap();
        assert_eq!(d.p50, 5.0);
        assert!((d.stddev - 50f64.sqrt()).abs() < 1e-9);
        assert!(Distribution::of(&mut []).is_none());
    }
}
