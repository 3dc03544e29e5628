//! tbd, the TrafficBench daemon: eBPF probes time inference traffic at the socket, connection
//! tracking turns syscalls into HTTP exchanges, sled stores them and tonic serves them.

pub mod authority;
pub mod capture;
pub mod cgroup_root;
pub mod cli;
pub mod conntrack;
pub mod descendants;
pub mod error;
pub mod events;
pub mod heap;
pub mod http;
pub mod http_prefix;
pub mod listeners;
pub mod memlock;
pub mod probes;
pub mod recover;
pub mod replay;
pub mod sensors;
pub mod server;
pub mod socket;
pub mod store;
pub mod tracefs;

pub use error::TbdError;

/// tbd's version string, with the size of the embedded eBPF object.
pub fn version_line() -> String {
    format!(
        "tbd {} (eBPF object {} bytes)",
        env!("CARGO_PKG_VERSION"),
        probes::object_size()
    )
}
