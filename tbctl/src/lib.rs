//! tbctl: drives realistic load against inference endpoints and measures every request, from
//! the client and (through tbd) from the kernel.

pub mod analysis;
pub mod analyze;
pub mod api;
pub mod catalogue;
pub mod cli;
pub mod client;
pub mod clock;
pub mod compare;
pub mod daemon;
pub mod doc;
pub mod energy;
pub mod kernel;
pub mod overhead;
pub mod plot;
pub mod profile;
pub mod record;
pub mod registry;
pub mod report;
pub mod rundir;
pub mod sim;
pub mod slo;
pub mod stats;
pub mod summary;
pub mod sweep;
pub mod tokens;
pub mod workload;
