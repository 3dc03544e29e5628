//! CLOCK_MONOTONIC nanoseconds: the one time base of client, kernel (bpf_ktime_get_ns) and
//! sensor records, shared with tbd through tbd-common.

pub use tbd_common::clock::{mono_ns, unix_ns};
