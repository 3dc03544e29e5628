//! Gaussian kernel density estimate with Silverman's rule-of-thumb bandwidth, for the latency
//! density plots.

use crate::stats::quantile;

/// Silverman's bandwidth, 0.9 · min(σ, IQR / 1.34) · n^(-1/5); None for fewer than two
/// samples or no spread.
pub fn silverman_bandwidth(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    if n < 2 {
        return None;
    }
    let mean = sorted.iter().sum::<f64>() / n as f64;
    let sd = (sorted.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    let iqr = quantile(sorted, 0.75) - quantile(sorted, 0.25);
    let spread = if iqr > 0.0 { sd.min(iqr / 1.34) } else { sd };
    let h = 0.9 * spread * (n as f64).powf(-0.2);
    (h > 0.0 && h.is_finite()).then_some(h)
}

/// The density at each of `points` x-values, from `sorted` samples and bandwidth `h`.
pub fn density(sorted: &[f64], h: f64, points: &[f64]) -> Vec<f64> {
    let norm = 1.0 / (sorted.len() as f64 * h * (2.0 * std::f64::consts::PI).sqrt());
    points
        .iter()
        .map(|&x| {
            // Samples past 8 bandwidths add under 1e-14 each: skip them.
            let lo = sorted.partition_point(|&s| s < x - 8.0 * h);
            let hi = sorted.partition_point(|&s| s <= x + 8.0 * h);
            norm * sorted[lo..hi]
                .iter()
                .map(|s| (-0.5 * ((x - s) / h).powi(2)).exp())
                .sum::<f64>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_point_density_is_the_normal_pdf() {
        let d = density(&[0.0], 1.0, &[0.0, 1.0]);
        assert!((d[0] - 0.398_942_280_4).abs() < 1e-9);
        assert!((d[1] - 0.241_970_724_5).abs() < 1e-9);
    }

    #[test]
    fn silverman_matches_a_hand_computation_and_the_density_integrates_to_one() {
        // 1..=5: sd = 1.5811, IQR = 2 (2..4), 2 / 1.34 = 1.4925 < sd, 5^-0.2 = 0.72478.
        let s = [1.0, 2.0, 3.0, 4.0, 5.0];
        let h = silverman_bandwidth(&s).unwrap();
        assert!((h - 0.9 * (2.0 / 1.34) * 5f64.powf(-0.2)).abs() < 1e-12);
        assert!((h - 0.973_57).abs() < 1e-4);
        let xs: Vec<f64> = (0..=2000).map(|i| -5.0 + i as f64 * 0.01).collect();
        let area: f64 = density(&s, h, &xs).iter().sum::<f64>() * 0.01;
        assert!((area - 1.0).abs() < 1e-3, "{area}");
        assert!(silverman_bandwidth(&[3.0, 3.0]).is_none());
    }
}
