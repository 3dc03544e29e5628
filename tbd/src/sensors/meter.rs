//! Turning raw counters into cumulative energy: wraps undone, and energy from power × time
//! where a device has no counter.

/// A wrapping energy counter made cumulative. The counter must be read more often than it
/// can wrap (powercap's `max_energy_range_uj` is about 262 J on many Intel parts: 65 s at
/// 4 kW, so at most one wrap between reads at tbd's intervals).
#[derive(Debug, Clone)]
pub struct Meter {
    /// The raw value after which the counter wraps to 0 (`max_energy_range_uj`); `u64::MAX`
    /// for 64-bit counters.
    range: u64,
    /// Joules per raw unit.
    scale: f64,
    last: Option<u64>,
    total_raw: u128,
}

impl Meter {
    /// A counter of `scale` joules per unit that wraps after `range`.
    pub fn new(range: u64, scale: f64) -> Self {
        Self {
            range,
            scale,
            last: None,
            total_raw: 0,
        }
    }

    /// Takes a raw reading; returns the energy since the first reading, in joules.
    pub fn update(&mut self, raw: u64) -> f64 {
        if let Some(last) = self.last {
            let delta = if raw >= last {
                raw - last
            } else if self.range == u64::MAX {
                raw.wrapping_sub(last)
            } else {
                // Wrapped: the counter counts modulo its range (as the kernel's powercap
                // users, turbostat and the RAPL driver treat `max_energy_range_uj`).
                self.range.saturating_sub(last) + raw
            };
            self.total_raw += u128::from(delta);
        }
        self.last = Some(raw);
        self.total_raw as f64 * self.scale
    }
}

/// Energy from power readings, trapezoidal over the sample times: only for devices with no
/// energy counter, and said so in their domain's method.
#[derive(Debug, Clone, Default)]
pub struct Integrator {
    last: Option<(u64, f64)>,
    total_j: f64,
}

impl Integrator {
    /// Takes a power reading at `t_ns`; returns the energy since the first reading, in joules.
    pub fn update(&mut self, t_ns: u64, power_w: f64) -> f64 {
        if let Some((t0, p0)) = self.last {
            let dt = t_ns.saturating_sub(t0) as f64 / 1e9;
            self.total_j += (p0 + power_w) / 2.0 * dt;
        }
        self.last = Some((t_ns, power_w));
        self.total_j
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrap_between_reads_adds_what_ran_past_the_range() {
        // A powercap counter with range 1000 µJ: 900 → wraps → 100 is 200 µJ.
        let mut m = Meter::new(1000, 1e-6);
        assert_eq!(m.update(900), 0.0);
        let e = m.update(100);
        assert!((e - 200e-6).abs() < 1e-12, "{e}");
        let e = m.update(150);
        assert!((e - 250e-6).abs() < 1e-12, "{e}");
    }

    #[test]
    fn a_64_bit_counter_only_grows() {
        let mut m = Meter::new(u64::MAX, 1e-3);
        m.update(5_000);
        assert!((m.update(7_500) - 2.5).abs() < 1e-12);
    }

    #[test]
    fn power_integrates_trapezoidally() {
        let mut i = Integrator::default();
        assert_eq!(i.update(0, 100.0), 0.0);
        // 100 W to 300 W over 0.5 s: 100 J.
        assert!((i.update(500_000_000, 300.0) - 100.0).abs() < 1e-9);
    }
}
