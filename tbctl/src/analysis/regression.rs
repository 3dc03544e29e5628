//! Ordinary least squares of y on x: slope, intercept, R² and 95% confidence intervals
//! (Student t, n − 2 degrees of freedom), for "TTFT grows with input length" and the fits
//! drawn over scatter plots.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};

/// y = intercept + slope · x, fitted to n points.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Fit {
    pub slope: f64,
    pub intercept: f64,
    /// Share of y's variance the line explains.
    pub r2: f64,
    pub n: usize,
    /// 95% confidence interval of the slope; None below three points of freedom.
    pub slope_ci95: Option<(f64, f64)>,
    /// 95% confidence interval of the intercept.
    pub intercept_ci95: Option<(f64, f64)>,
}

/// The least-squares line through `points`; None for fewer than three points or no spread in x.
pub fn fit(points: &[(f64, f64)]) -> Option<Fit> {
    let n = points.len();
    if n < 3 {
        return None;
    }
    let nf = n as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / nf;
    let my = points.iter().map(|p| p.1).sum::<f64>() / nf;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let syy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let r2 = if syy > 0.0 {
        (sxy * sxy) / (sxx * syy)
    } else {
        1.0
    };
    let intercept = my - slope * mx;
    // Residual variance with n − 2 degrees of freedom.
    let sse: f64 = points
        .iter()
        .map(|p| (p.1 - intercept - slope * p.0).powi(2))
        .sum();
    let s2 = sse / (nf - 2.0);
    let t = StudentsT::new(0.0, 1.0, nf - 2.0)
        .ok()
        .map(|d| d.inverse_cdf(0.975));
    let ci = |est: f64, se: f64| t.map(|t| (est - t * se, est + t * se));
    Some(Fit {
        slope,
        intercept,
        r2,
        n,
        slope_ci95: ci(slope, (s2 / sxx).sqrt()),
        intercept_ci95: ci(intercept, (s2 * (1.0 / nf + mx * mx / sxx)).sqrt()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_a_textbook_line() {
        // x = 1..5, y = 2, 4, 5, 4, 5: slope 0.6, intercept 2.2, R² = 0.6 (3.6 / 6).
        let pts = [(1.0, 2.0), (2.0, 4.0), (3.0, 5.0), (4.0, 4.0), (5.0, 5.0)];
        let f = fit(&pts).unwrap();
        assert!((f.slope - 0.6).abs() < 1e-12);
        assert!((f.intercept - 2.2).abs() < 1e-12);
        assert!((f.r2 - 0.6).abs() < 1e-12);
        // SSE 2.4, s² = 0.8, se(slope) = √(0.8 / 10), t(0.975, 3) = 3.182446:
        // 0.6 ± 0.900132; se(intercept) = √(0.8 · (1/5 + 9/10)) = 0.938083: 2.2 ± 2.985399.
        let (lo, hi) = f.slope_ci95.unwrap();
        assert!(
            (lo + 0.300_132).abs() < 1e-5 && (hi - 1.500_132).abs() < 1e-5,
            "{lo} {hi}"
        );
        let (lo, hi) = f.intercept_ci95.unwrap();
        assert!(
            (lo + 0.785_399).abs() < 1e-5 && (hi - 5.185_399).abs() < 1e-5,
            "{lo} {hi}"
        );
        assert!(fit(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]).is_none());
    }
}
