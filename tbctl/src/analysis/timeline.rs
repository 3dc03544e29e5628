//! Events binned over a run's time, for throughput-over-time plots.

/// Per-second rates of weighted events in equal bins from `t0_ns`: (bin start in s, rate/s).
pub fn rates(events: impl Iterator<Item = (u64, f64)>, t0_ns: u64, bin_s: f64) -> Vec<(f64, f64)> {
    let mut bins: Vec<f64> = Vec::new();
    for (t, w) in events {
        let i = ((t.saturating_sub(t0_ns)) as f64 / 1e9 / bin_s) as usize;
        if bins.len() <= i {
            bins.resize(i + 1, 0.0);
        }
        bins[i] += w;
    }
    bins.iter()
        .enumerate()
        .map(|(i, w)| (i as f64 * bin_s, w / bin_s))
        .collect()
}

/// A bin width giving about 60 bins over `span_s`, rounded to 1, 2 or 5 times a power of ten.
pub fn bin_width(span_s: f64) -> f64 {
    let raw = (span_s / 60.0).max(1e-3);
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|w| *w >= raw)
        .unwrap_or(10.0 * p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_fall_in_their_bins_as_rates() {
        let ev = [
            (1_000_000_000, 1.0),
            (1_400_000_000, 3.0),
            (2_600_000_000, 2.0),
        ];
        let r = rates(ev.into_iter(), 1_000_000_000, 0.5);
        assert_eq!(r, vec![(0.0, 8.0), (0.5, 0.0), (1.0, 0.0), (1.5, 4.0)]);
        assert_eq!(bin_width(60.0), 1.0);
        assert_eq!(bin_width(100.0), 2.0);
        assert_eq!(bin_width(6.0), 0.1);
    }
}
