//! Statistics over a run's samples beyond percentiles: densities, fits, binned rates.

pub mod kde;
pub mod regression;
pub mod significance;
pub mod timeline;
