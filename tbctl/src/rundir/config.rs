//! run.json: what a run was (configuration, target, host, clocks, capture counts), typed so
//! every command reads it back the same way. Format 1 (before this type) is read too: its
//! missing fields default, and [`super::RunData`] fills them from its summary.json.

use serde::{Deserialize, Serialize};

use crate::{kernel::join::CaptureFacts, slo::Slo};

/// The current run.json format. 1: untyped, SLO and capture counts only in summary.json.
pub const FORMAT: u32 = 2;

/// The host the run was driven from.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct HostInfo {
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub kernel: String,
    #[serde(default)]
    pub cpus: usize,
}

impl HostInfo {
    /// This host.
    pub fn here() -> Self {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        Self {
            hostname: read("/proc/sys/kernel/hostname"),
            kernel: read("/proc/sys/kernel/osrelease"),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
        }
    }
}

/// One (CLOCK_MONOTONIC ns, Unix ns) pair, to print monotonic times as wall time.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ClockPair {
    pub mono_ns: u64,
    pub unix_ns: u64,
}

/// Whether and how tbd timed the run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DaemonUse {
    pub used: bool,
    #[serde(default)]
    pub socket: String,
    #[serde(default)]
    pub server_port: Option<u16>,
}

/// run.json.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RunConfig {
    /// [`FORMAT`] when written; 1 for files without it.
    #[serde(default = "format_one")]
    pub format: u32,
    pub run_id: String,
    #[serde(default)]
    pub tool: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub git_commit: Option<String>,
    /// The command line as given.
    #[serde(default)]
    pub command: Vec<String>,
    pub target: String,
    pub api: String,
    pub model: String,
    /// The workload in words (dataset or trace, arrivals).
    #[serde(default)]
    pub workload: String,
    /// Every `tbctl profile` argument (the API key left out).
    #[serde(default)]
    pub config: serde_json::Value,
    #[serde(default)]
    pub label: String,
    /// The SLOs goodput is counted against.
    #[serde(default)]
    pub slo: Option<Slo>,
    #[serde(default)]
    pub timeout_s: f64,
    #[serde(default)]
    pub duration_s: Option<f64>,
    #[serde(default)]
    pub host: HostInfo,
    #[serde(default)]
    pub clock: ClockPair,
    #[serde(default)]
    pub daemon: DaemonUse,
    /// The capture's counts beyond kernel.jsonl, when tbd captured the run.
    #[serde(default)]
    pub capture: Option<CaptureFacts>,
    /// tbd's energy domains and the run's energy window, when tbd had a sensor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy: Option<crate::energy::EnergyMeta>,
    /// Why a section is missing (e.g. no daemon), so readers never mistake absence for zero.
    #[serde(default)]
    pub notes: Vec<String>,
    #[serde(default)]
    pub start_unix_ns: u64,
    /// Absent while the run goes on, or when it was cut short.
    #[serde(default)]
    pub end_unix_ns: Option<u64>,
}

fn format_one() -> u32 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_format_one_run_json_reads_with_defaults() {
        let v1 = r#"{"run_id":"r1","tool":"tbctl","version":"0.1.0","git_commit":null,
            "command":["tbctl","profile"],"target":"http://x","api":"openai-chat","model":"m",
            "workload":"dataset","config":{"seed":42},"timeout_s":600.0,"duration_s":null,
            "host":{"hostname":"h","kernel":"6.18","cpus":2},
            "clock":{"mono_ns":5,"unix_ns":7},
            "daemon":{"used":true,"socket":"/run/tbd/tbd.sock","server_port":8080},
            "start_unix_ns":7,"end_unix_ns":9}"#;
        let c: RunConfig = serde_json::from_str(v1).unwrap();
        assert_eq!(
            (c.format, c.slo.clone(), c.capture.clone()),
            (1, None, None)
        );
        assert_eq!(c.daemon.server_port, Some(8080));
        assert_eq!(c.end_unix_ns, Some(9));
        let again: RunConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
    }
}
