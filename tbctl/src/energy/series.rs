//! One domain's cumulative energy as a function of time, from its counter's updates.
//!
//! A counter updates on its own period, not at every sample: a sample that repeats the last
//! value is not a new reading. So the series keeps only the points where the value changed
//! (and the first), and energy between two of them is spread evenly over that span (constant
//! power between updates). Energy in any time range is then an interpolation, and a run's
//! window is exact up to the counter's update period at both ends.

use super::Sample;

/// Cumulative energy of one domain at its counter's update points.
#[derive(Clone, Debug, Default)]
pub struct Series {
    /// (t_ns, cumulative J), times increasing, values changed at every point after the first.
    points: Vec<(u64, f64)>,
}

impl Series {
    /// The domain's series from samples (in time order).
    pub fn of(samples: &[Sample], domain: &str) -> Self {
        let mut points: Vec<(u64, f64)> = Vec::new();
        for s in samples {
            let Some(e) = s
                .readings
                .iter()
                .find(|r| r.domain == domain)
                .and_then(|r| r.energy_j)
            else {
                continue;
            };
            match points.last() {
                Some(&(_, last)) if e == last => {}
                Some(&(t, _)) if s.t_ns <= t => {}
                _ => points.push((s.t_ns, e)),
            }
        }
        Self { points }
    }

    /// Cumulative energy at `t`, interpolated between updates; None outside the updates seen.
    pub fn at(&self, t: u64) -> Option<f64> {
        let p = &self.points;
        let i = p.partition_point(|&(pt, _)| pt <= t);
        if i == 0 {
            return None;
        }
        let (t0, e0) = p[i - 1];
        if t0 == t {
            return Some(e0);
        }
        let &(t1, e1) = p.get(i)?;
        Some(e0 + (e1 - e0) * (t - t0) as f64 / (t1 - t0) as f64)
    }

    /// Energy in `[from, to]`, J; None when the updates do not cover both ends.
    pub fn between(&self, from: u64, to: u64) -> Option<f64> {
        Some(self.at(to)? - self.at(from)?)
    }

    /// Whether an update came after `t` (the window may close at `t`).
    pub fn updated_after(&self, t: u64) -> bool {
        self.points.last().is_some_and(|&(pt, _)| pt > t)
    }

    /// Average power between consecutive updates within `[from, to]`: (start, end, W).
    pub fn powers(&self, from: u64, to: u64) -> Vec<(u64, u64, f64)> {
        self.points
            .windows(2)
            .filter(|w| w[1].0 > from && w[0].0 < to)
            .map(|w| {
                let dt = (w[1].0 - w[0].0) as f64 / 1e9;
                (w[0].0, w[1].0, (w[1].1 - w[0].1) / dt)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::energy::Reading;

    fn sample(t_ns: u64, e: f64) -> Sample {
        Sample {
            t_ns,
            readings: vec![Reading {
                domain: "d".into(),
                energy_j: Some(e),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn repeated_values_are_not_updates_and_energy_interpolates_between_updates() {
        // Sampled every 10 ms, the counter moves every 30 ms by 3 J (100 W).
        let s: Vec<Sample> = (0..10)
            .map(|i| sample(i * 10_000_000, (i / 3 * 3) as f64))
            .collect();
        let series = Series::of(&s, "d");
        assert_eq!(series.points.len(), 4, "{:?}", series.points);
        // 15 ms into the 0-30 ms update span: half of 3 J.
        assert_eq!(series.at(15_000_000), Some(1.5));
        assert_eq!(series.between(0, 60_000_000), Some(6.0));
        assert!(series.at(95_000_000).is_none(), "past the last update");
        assert!(series.updated_after(60_000_000) && !series.updated_after(90_000_000));
        assert!(series
            .powers(0, 90_000_000)
            .iter()
            .all(|p| (p.2 - 100.0).abs() < 1e-9));
    }
}
