//! Kernel timing from tbd: capture around a run, fetch, join, and the `tbctl trace` analysis.

pub mod capture;
pub mod join;
pub mod lease;
pub mod pair;
pub mod trace;
