//! The daemon library's error type.

/// Everything tbd's library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum TbdError {
    #[error("tracefs: {0} (is /sys/kernel/tracing mountable? tbd must run as root)")]
    Tracefs(std::io::Error),
    #[error("tracepoint layout differs from what the eBPF programs read: {0}")]
    Layout(String),
    #[error("loading eBPF programs: {0} (tbd must run as root on a kernel with BPF ring buffers)")]
    Load(#[from] aya::EbpfError),
    #[error("attaching {program}: {source}")]
    Attach {
        program: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {0}: {1}")]
    Map(&'static str, aya::maps::MapError),
    #[error("store: {0}")]
    Store(#[from] sled::Error),
    #[error("store: corrupt batch: {0}")]
    Corrupt(String),
    #[error("store: undecodable record: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no such run: {0}")]
    NoSuchRun(String),
    #[error("a capture is already running ({0}); stop it first")]
    Busy(String),
    #[error("{0}")]
    Config(String),
}
