//! Open-loop arrival schedules: when each request should be sent, as ns offsets from the start
//! of the run, for uniform, Poisson and gamma (bursty) arrivals, optionally under a rate ramp.
//!
//! Gaps are drawn with mean 1 in "operational time" and mapped to real time through the
//! integrated rate, so one mechanism serves a constant rate and a linear ramp alike: under a
//! ramp each pattern keeps its shape (uniform stays evenly spaced, gamma stays bursty) while its
//! instantaneous rate follows the ramp.

use std::{fmt, str::FromStr, time::Duration};

use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Distribution, Exp, Gamma};

/// How gaps between arrivals are distributed around the mean gap 1/rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pattern {
    /// Constant gaps: the same rate every instant.
    Uniform,
    /// Exponential gaps: independent arrivals, as from many users.
    Poisson,
    /// Gamma gaps with shape `burstiness`: 1 is Poisson, below 1 clusters arrivals in bursts
    /// (coefficient of variation 1/sqrt(burstiness)), above 1 evens them out.
    Gamma {
        /// The gamma shape; must be > 0.
        burstiness: f64,
    },
}

impl Pattern {
    /// Every arrival pattern with what it does, for `tbctl list` (`--pattern`, and the load
    /// shapes other flags give).
    pub const KINDS: [(&'static str, &'static str); 6] = [
        (
            "uniform",
            "--rate R --pattern uniform: constant gaps of 1/R",
        ),
        (
            "poisson",
            "--rate R: exponential gaps, independent arrivals (default)",
        ),
        (
            "gamma",
            "--rate R --pattern gamma --burstiness B: gamma gaps, B < 1 bursty",
        ),
        (
            "concurrency",
            "--concurrency N without --rate: closed loop, N in flight",
        ),
        (
            "ramp",
            "--ramp FROM..TO over --duration: a linearly rising rate",
        ),
        ("trace", "--trace T: the trace's own arrival times"),
    ];
}

impl FromStr for Pattern {
    type Err = String;

    /// Reads `uniform`, `poisson`, `gamma` (burstiness 1) or `gamma:B`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.split_once(':') {
            None if lower == "uniform" => Ok(Pattern::Uniform),
            None if lower == "poisson" => Ok(Pattern::Poisson),
            None if lower == "gamma" => Ok(Pattern::Gamma { burstiness: 1.0 }),
            Some(("gamma", b)) => match b.trim().parse::<f64>() {
                Ok(burstiness) if burstiness.is_finite() && burstiness > 0.0 => {
                    Ok(Pattern::Gamma { burstiness })
                }
                _ => Err(format!(
                    "bad gamma burstiness '{b}': use a number > 0, e.g. gamma:0.5"
                )),
            },
            _ => Err(format!(
                "unknown arrival pattern '{s}': use uniform, poisson or gamma[:BURSTINESS]"
            )),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Uniform => f.write_str("uniform"),
            Pattern::Poisson => f.write_str("poisson"),
            Pattern::Gamma { burstiness } => write!(f, "gamma:{burstiness}"),
        }
    }
}

/// The gap distribution in operational time (mean 1).
#[derive(Debug, Clone)]
enum Gaps {
    Constant,
    Exp(Exp<f64>),
    Gamma(Gamma<f64>),
}

/// The request rate over time, in requests per second.
#[derive(Debug, Clone, Copy)]
enum Rate {
    Constant(f64),
    /// Linear from `from` to `to` over `over_s` seconds, then `to` for ever.
    Ramp {
        from: f64,
        to: f64,
        over_s: f64,
    },
}

impl Rate {
    /// The time at which the integrated rate reaches `tau` arrivals: the inverse of
    /// Λ(t) = ∫₀ᵗ rate, in closed form for a linear ramp.
    fn time_at(self, tau: f64) -> f64 {
        match self {
            Rate::Constant(rate) => tau / rate,
            Rate::Ramp { from, to, over_s } => {
                let during = (from + to) / 2.0 * over_s;
                if tau <= 0.0 {
                    0.0
                } else if tau > during {
                    over_s + (tau - during) / to
                } else {
                    // Root of slope/2·t² + from·t − tau = 0, written without the cancellation
                    // the textbook form suffers when the slope is small (or zero).
                    let slope = (to - from) / over_s;
                    2.0 * tau / (from + (from * from + 2.0 * slope * tau).max(0.0).sqrt())
                }
            }
        }
    }
}

/// An endless, seeded sequence of arrival offsets in ns from the start of the run, first at 0
/// and never decreasing. Take as many as needed, or take while below the run's duration.
#[derive(Debug, Clone)]
pub struct Schedule {
    gaps: Gaps,
    rate: Rate,
    rng: StdRng,
    /// Arrivals so far in operational time.
    tau: f64,
}

impl Schedule {
    /// A schedule at a constant `rate_per_s`, fixed by `seed`. Errors when the rate or the
    /// burstiness is not a positive finite number.
    pub fn new(pattern: Pattern, rate_per_s: f64, seed: u64) -> Result<Self, String> {
        if !(rate_per_s.is_finite() && rate_per_s > 0.0) {
            return Err(format!(
                "request rate must be a positive number per second, got {rate_per_s}"
            ));
        }
        let gaps = match pattern {
            Pattern::Uniform => Gaps::Constant,
            Pattern::Poisson => Gaps::Exp(Exp::new(1.0).map_err(|e| e.to_string())?),
            Pattern::Gamma { burstiness } => {
                if !(burstiness.is_finite() && burstiness > 0.0) {
                    return Err(format!(
                        "gamma burstiness must be a number > 0 (1 = Poisson, below 1 burstier), got {burstiness}"
                    ));
                }
                // Scale 1/shape gives mean 1; the rate mapping turns it into 1/(rate·shape).
                Gaps::Gamma(Gamma::new(burstiness, 1.0 / burstiness).map_err(|e| e.to_string())?)
            }
        };
        Ok(Schedule {
            gaps,
            rate: Rate::Constant(rate_per_s),
            rng: StdRng::seed_from_u64(seed),
            tau: 0.0,
        })
    }

    /// Replaces the constant rate with a linear ramp of the instantaneous rate from `from_rate`
    /// to `to_rate` over `over` (time, not request count), holding `to_rate` afterwards.
    /// `from_rate` may be 0; `to_rate` must be positive so arrivals never stop.
    pub fn with_ramp(
        mut self,
        from_rate: f64,
        to_rate: f64,
        over: Duration,
    ) -> Result<Self, String> {
        if !(from_rate.is_finite() && from_rate >= 0.0 && to_rate.is_finite() && to_rate > 0.0) {
            return Err(format!(
                "bad ramp {from_rate}..{to_rate}: rates are requests per second, the start >= 0 and the end > 0"
            ));
        }
        if over.is_zero() {
            return Err("ramp duration must be longer than zero".into());
        }
        self.rate = Rate::Ramp {
            from: from_rate,
            to: to_rate,
            over_s: over.as_secs_f64(),
        };
        Ok(self)
    }

    fn gap(&mut self) -> f64 {
        match &self.gaps {
            Gaps::Constant => 1.0,
            Gaps::Exp(d) => d.sample(&mut self.rng),
            Gaps::Gamma(d) => d.sample(&mut self.rng),
        }
    }
}

impl Iterator for Schedule {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let t = self.rate.time_at(self.tau);
        self.tau += self.gap();
        // `as` saturates, so a schedule run for centuries ends up pinned, not wrapped.
        Some((t * 1e9).round() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps_s(offsets: &[u64]) -> Vec<f64> {
        offsets
            .windows(2)
            .map(|w| (w[1] - w[0]) as f64 / 1e9)
            .collect()
    }

    fn mean_and_cv(x: &[f64]) -> (f64, f64) {
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var.sqrt() / mean)
    }

    #[test]
    fn mean_rate_within_three_percent_for_every_pattern() {
        for pattern in [
            Pattern::Uniform,
            Pattern::Poisson,
            // Burstiness 0.5 has gap CV 1.41: 1% standard error over 20,000 gaps, so 3% is a
            // real check rather than a coin flip (0.25 would be barely two standard errors).
            Pattern::Gamma { burstiness: 0.5 },
            Pattern::Gamma { burstiness: 4.0 },
        ] {
            for rate in [2.0, 50.0, 1000.0] {
                let offsets: Vec<u64> = Schedule::new(pattern, rate, 17)
                    .unwrap()
                    .take(20_000)
                    .collect();
                assert_eq!(offsets[0], 0);
                assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
                let measured = (offsets.len() - 1) as f64 / (*offsets.last().unwrap() as f64 / 1e9);
                assert!(
                    (measured / rate - 1.0).abs() < 0.03,
                    "{pattern} at {rate}/s measured {measured}/s"
                );
            }
        }
    }

    #[test]
    fn uniform_gaps_are_constant() {
        let offsets: Vec<u64> = Schedule::new(Pattern::Uniform, 4.0, 0)
            .unwrap()
            .take(5)
            .collect();
        assert_eq!(
            offsets,
            vec![0, 250_000_000, 500_000_000, 750_000_000, 1_000_000_000]
        );
    }

    #[test]
    fn burstiness_sets_the_coefficient_of_variation() {
        for (pattern, expected) in [
            (Pattern::Poisson, 1.0),
            (Pattern::Gamma { burstiness: 1.0 }, 1.0),
            (Pattern::Gamma { burstiness: 0.25 }, 2.0),
            (Pattern::Gamma { burstiness: 4.0 }, 0.5),
        ] {
            let offsets: Vec<u64> = Schedule::new(pattern, 10.0, 5)
                .unwrap()
                .take(20_001)
                .collect();
            let (_, cv) = mean_and_cv(&gaps_s(&offsets));
            assert!(
                (cv / expected - 1.0).abs() < 0.1,
                "{pattern}: cv {cv}, expected {expected}"
            );
        }
    }

    #[test]
    fn seeded_determinism() {
        let run = |seed| -> Vec<u64> {
            Schedule::new(Pattern::Gamma { burstiness: 0.5 }, 20.0, seed)
                .unwrap()
                .take(1000)
                .collect()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        let ramp = |seed| -> Vec<u64> {
            Schedule::new(Pattern::Poisson, 1.0, seed)
                .unwrap()
                .with_ramp(1.0, 10.0, Duration::from_secs(10))
                .unwrap()
                .take(500)
                .collect()
        };
        assert_eq!(ramp(3), ramp(3));
    }

    #[test]
    fn ramp_gets_denser() {
        for pattern in [
            Pattern::Uniform,
            Pattern::Poisson,
            Pattern::Gamma { burstiness: 0.5 },
        ] {
            let offsets: Vec<u64> = Schedule::new(pattern, 1.0, 9)
                .unwrap()
                .with_ramp(10.0, 100.0, Duration::from_secs(20))
                .unwrap()
                .take(1000)
                .collect();
            let gaps = gaps_s(&offsets);
            let tenth = gaps.len() / 10;
            let (early, _) = mean_and_cv(&gaps[..tenth]);
            let (late, _) = mean_and_cv(&gaps[gaps.len() - tenth..]);
            assert!(
                early > 3.0 * late,
                "{pattern}: early gap {early}, late gap {late}"
            );
        }
    }

    #[test]
    fn ramp_follows_the_integrated_rate() {
        // Uniform under a 10→100/s ramp over 20 s: Λ(t) = 10t + 2.25t², so 1100 arrivals in
        // the ramp, then 100/s.
        let offsets: Vec<u64> = Schedule::new(Pattern::Uniform, 1.0, 0)
            .unwrap()
            .with_ramp(10.0, 100.0, Duration::from_secs(20))
            .unwrap()
            .take(1201)
            .collect();
        let count_before = |s: f64| offsets.iter().filter(|&&o| (o as f64) < s * 1e9).count();
        assert_eq!(count_before(10.0), 325); // Λ(10) = 325, arrivals at τ = 0..=324.
        assert_eq!(count_before(20.0), 1100);
        assert_eq!(offsets[1100], 20_000_000_000);
        assert_eq!(offsets[1200], 21_000_000_000);
        // Ramping down and from zero work too.
        let down: Vec<u64> = Schedule::new(Pattern::Uniform, 1.0, 0)
            .unwrap()
            .with_ramp(100.0, 10.0, Duration::from_secs(20))
            .unwrap()
            .take(1101)
            .collect();
        assert_eq!(down[1100], 20_000_000_000);
        assert!(down[1] < down[1100] - down[1099]);
        let from_zero: Vec<u64> = Schedule::new(Pattern::Uniform, 1.0, 0)
            .unwrap()
            .with_ramp(0.0, 10.0, Duration::from_secs(10))
            .unwrap()
            .take(51)
            .collect();
        assert_eq!(from_zero[0], 0);
        assert_eq!(from_zero[50], 10_000_000_000);
    }

    #[test]
    fn invalid_parameters_are_one_line_errors() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = Schedule::new(Pattern::Poisson, rate, 0).unwrap_err();
            assert!(
                err.starts_with("request rate must be a positive number"),
                "{err}"
            );
        }
        for burstiness in [0.0, -0.5, f64::NAN] {
            let err = Schedule::new(Pattern::Gamma { burstiness }, 1.0, 0).unwrap_err();
            assert!(
                err.starts_with("gamma burstiness must be a number > 0"),
                "{err}"
            );
        }
        let s = || Schedule::new(Pattern::Uniform, 1.0, 0).unwrap();
        assert!(s().with_ramp(-1.0, 10.0, Duration::from_secs(1)).is_err());
        assert!(s().with_ramp(10.0, 0.0, Duration::from_secs(1)).is_err());
        assert!(s().with_ramp(1.0, 10.0, Duration::ZERO).is_err());
    }

    #[test]
    fn patterns_parse() {
        assert_eq!("uniform".parse(), Ok(Pattern::Uniform));
        assert_eq!("Poisson".parse(), Ok(Pattern::Poisson));
        assert_eq!("gamma".parse(), Ok(Pattern::Gamma { burstiness: 1.0 }));
        assert_eq!(
            "gamma:0.25".parse(),
            Ok(Pattern::Gamma { burstiness: 0.25 })
        );
        assert_eq!(
            "gamma:0.25".parse::<Pattern>().unwrap().to_string(),
            "gamma:0.25"
        );
        assert!("gamma:0"
            .parse::<Pattern>()
            .unwrap_err()
            .starts_with("bad gamma burstiness '0'"));
        assert_eq!(
            "bursty".parse::<Pattern>().unwrap_err(),
            "unknown arrival pattern 'bursty': use uniform, poisson or gamma[:BURSTINESS]"
        );
    }
}
