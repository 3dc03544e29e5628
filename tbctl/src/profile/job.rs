//! A unit of work for a connection worker.

use crate::workload::item::WorkItem;

/// One request to send.
#[derive(Debug)]
pub struct Job {
    pub request_id: u64,
    /// Absolute CLOCK_MONOTONIC ns it should leave at; None in closed loop (as soon as a
    /// worker is free, which then is its intended time).
    pub intended_ns: Option<u64>,
    pub item: WorkItem,
    /// Warm-up requests are sent and recorded but excluded from results.
    pub warmup: bool,
}
