//! tbctl: drives realistic load against inference endpoints and measures every request, from
//! the client and (through tbd) from the kernel.

pub mod api;
pub mod clock;
pub mod record;
pub mod sim;
pub mod tokens;
pub mod workload;
