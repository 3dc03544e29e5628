//! Statistics over a run's samples beyond percentiles: densities, fits, binned rates.

pub mod kde;
pub mod regression;
pub mod significance;
pub mod timeline;

/// Every n-th element so at most `max` remain: long runs are thinned evenly for plots and
/// resampling.
pub fn thin<T: Copy>(v: &[T], max: usize) -> Vec<T> {
    let step = v.len().div_ceil(max.max(1)).max(1);
    v.iter().step_by(step).copied().collect()
}
