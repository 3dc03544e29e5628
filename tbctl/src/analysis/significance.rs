//! Is a difference between two runs real? Mann-Whitney U on the distributions, and bootstrap
//! confidence intervals of the difference in a statistic (median, p99).

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};

use crate::stats::quantile;

/// Mann-Whitney U of two samples, with the normal approximation's two-sided p-value
/// (continuity and tie corrected).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MannWhitney {
    /// Pairs (a, b) with a > b, ties counting one half.
    pub u_a: f64,
    /// n_a · n_b − u_a.
    pub u_b: f64,
    pub z: f64,
    pub p: f64,
}

/// Mann-Whitney U; None when either sample is empty.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<MannWhitney> {
    let (na, nb) = (a.len(), b.len());
    if na == 0 || nb == 0 {
        return None;
    }
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|v| (*v, true))
        .chain(b.iter().map(|v| (*v, false)))
        .collect();
    all.sort_unstable_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    // Midranks over runs of ties; the tie term corrects the variance.
    let (mut rank_a, mut ties, mut i) = (0.0, 0.0, 0);
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        rank_a += mid * all[i..=j].iter().filter(|x| x.1).count() as f64;
        i = j + 1;
    }
    let (naf, nbf, nf) = (na as f64, nb as f64, n as f64);
    let u_a = rank_a - naf * (naf + 1.0) / 2.0;
    let u_b = naf * nbf - u_a;
    let mean = naf * nbf / 2.0;
    let var = naf * nbf / 12.0 * ((nf + 1.0) - ties / (nf * (nf - 1.0)).max(1.0));
    let (z, p) = if var > 0.0 {
        let d = u_a - mean;
        let z = (d - 0.5 * d.signum()) / var.sqrt();
        let normal = Normal::standard();
        (z, (2.0 * normal.cdf(-z.abs())).min(1.0))
    } else {
        (0.0, 1.0)
    };
    Some(MannWhitney { u_a, u_b, z, p })
}

/// A statistic of a sample, given sorted.
pub type Statistic = fn(&[f64]) -> f64;

/// The median of sorted samples.
pub fn median(sorted: &[f64]) -> f64 {
    quantile(sorted, 0.5)
}

/// The 99th percentile of sorted samples.
pub fn p99(sorted: &[f64]) -> f64 {
    quantile(sorted, 0.99)
}

/// Resamplings per bootstrap interval, in compare and overhead alike.
pub const BOOTSTRAP_ROUNDS: usize = 1000;

/// Resamples drawn from each sample at most: longer samples are thinned evenly first, which
/// widens the interval (conservative) and bounds the time.
pub const BOOTSTRAP_MAX_SAMPLES: usize = 20_000;

/// The 95% percentile-bootstrap interval of stat(b) − stat(a), from `rounds` resamplings of
/// each sample with a fixed `seed` (the same inputs give the same interval).
pub fn bootstrap_diff(
    a: &[f64],
    b: &[f64],
    stat: Statistic,
    rounds: usize,
    seed: u64,
) -> Option<(f64, f64)> {
    if a.is_empty() || b.is_empty() || rounds == 0 {
        return None;
    }
    let (a, b) = (
        super::thin(a, BOOTSTRAP_MAX_SAMPLES),
        super::thin(b, BOOTSTRAP_MAX_SAMPLES),
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let mut draw = |v: &[f64], buf: &mut Vec<f64>| {
        buf.clear();
        buf.extend((0..v.len()).map(|_| v[rng.random_range(0..v.len())]));
        buf.sort_unstable_by(f64::total_cmp);
        stat(buf)
    };
    let (mut ba, mut bb) = (Vec::new(), Vec::new());
    let mut diffs: Vec<f64> = (0..rounds)
        .map(|_| {
            let sa = draw(&a, &mut ba);
            draw(&b, &mut bb) - sa
        })
        .collect();
    diffs.sort_unstable_by(f64::total_cmp);
    Some((quantile(&diffs, 0.025), quantile(&diffs, 0.975)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mann_whitney_matches_a_hand_worked_example() {
        // A textbook pair: U_A counts the pairs where A is larger: 3 + 4 + 2 + 4 + 4 = 17,
        // U_B = 5·4 − 17 = 3 (the critical value for n = 5, 4 at α = 0.05 is 1: not
        // significant). Normal approximation: μ = 10, σ = √(5·4·10/12) = 4.0825,
        // z = (17 − 10 − 0.5) / σ = 1.5922, p = 0.11135.
        let a = [19.0, 22.0, 16.0, 29.0, 24.0];
        let b = [20.0, 11.0, 17.0, 12.0];
        let m = mann_whitney(&a, &b).unwrap();
        assert_eq!((m.u_a, m.u_b), (17.0, 3.0));
        assert!((m.z - 1.592_168_3).abs() < 1e-6, "{}", m.z);
        assert!((m.p - 0.111_346_9).abs() < 1e-6, "{}", m.p);
    }

    #[test]
    fn ties_count_half_and_identical_samples_are_not_different() {
        let m = mann_whitney(&[1.0, 2.0, 2.0], &[2.0, 3.0]).unwrap();
        // Pairs: 1<2, 1<3, 2=2 (0.5), 2<3, 2=2 (0.5), 2<3: U_A = 1.
        assert_eq!(m.u_a, 1.0);
        let same = mann_whitney(&[5.0; 10], &[5.0; 10]).unwrap();
        assert_eq!(same.p, 1.0);
        let far = mann_whitney(&[1.0; 30], &[9.0; 30]).unwrap();
        assert!(far.p < 1e-9, "{}", far.p);
    }

    #[test]
    fn bootstrap_intervals_are_exact_for_constants_and_repeat_with_the_seed() {
        assert_eq!(
            bootstrap_diff(&[10.0; 50], &[15.0; 50], median, 200, 1),
            Some((5.0, 5.0))
        );
        let a: Vec<f64> = (0..200).map(|i| (i % 17) as f64).collect();
        let b: Vec<f64> = a.iter().map(|x| x + 3.0).collect();
        let one = bootstrap_diff(&a, &b, median, 500, 42).unwrap();
        assert_eq!(one, bootstrap_diff(&a, &b, median, 500, 42).unwrap());
        assert!(one.0 <= 3.0 && 3.0 <= one.1, "{one:?}");
        assert!(one.1 - one.0 <= 6.0, "{one:?}");
    }
}
