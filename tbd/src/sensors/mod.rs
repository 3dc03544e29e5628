//! Energy sensors: one file per source behind [`Sensor`], found by [`discover`] and read by
//! the [`sampler`] into the store.
//!
//! A source that is not there (no RAPL in a VM, no GPU, no permission) is reported absent with
//! its reason, never as zero. Adding a source is one file and one line in [`GROUPS`].

pub mod amdgpu;
pub mod gpu;
pub mod gpu_fixture;
pub mod meter;
pub mod nvml;
pub mod powercap;
pub mod rapl_perf;
pub mod sampler;

use std::path::{Path, PathBuf};

use tb_proto::v1::{EnergyDomain, EnergyReading, SensorInfo};

/// One source of energy readings.
pub trait Sensor: Send {
    /// The series it reads, one per domain.
    fn domains(&self) -> Vec<EnergyDomain>;
    /// Appends one reading per domain it could read now. A domain it could not read this
    /// time is left out (and logged), not reported as zero.
    fn read(&mut self, now_ns: u64, out: &mut Vec<EnergyReading>);
}

/// Where sensors are looked for: the real host, or fixtures for tests.
#[derive(Clone, Debug, Default)]
pub struct SensorConfig {
    /// Root that `/sys` paths are taken under ("/" on a real host).
    pub sysfs_root: PathBuf,
    /// A JSON file standing in for NVML's devices (tests); None uses the NVIDIA driver.
    pub gpu_fixture: Option<PathBuf>,
}

impl SensorConfig {
    /// `/sys/...` under the configured root.
    pub fn sys(&self, path: &str) -> PathBuf {
        self.sysfs_root.join(path.trim_start_matches('/'))
    }
}

/// A source's probe: its sensor, or why it is absent.
type Probe = fn(&SensorConfig) -> Result<Box<dyn Sensor>, String>;

/// Sources by what they measure; within a group the first present one is used, and the rest
/// are reported as not needed (the perf PMU and powercap read the same RAPL counters).
const GROUPS: &[&[(&str, Probe)]] = &[
    &[
        (rapl_perf::NAME, rapl_perf::probe),
        (powercap::NAME, powercap::probe),
    ],
    &[(nvml::NAME, nvml::probe)],
    &[(amdgpu::NAME, amdgpu::probe)],
];

/// What [`discover`] found: the sensors to read, and every source with its state.
pub struct Found {
    pub sensors: Vec<Box<dyn Sensor>>,
    pub info: Vec<SensorInfo>,
}

/// Probes every source.
pub fn discover(cfg: &SensorConfig) -> Found {
    let mut found = Found {
        sensors: Vec::new(),
        info: Vec::new(),
    };
    for group in GROUPS {
        let mut used: Option<&str> = None;
        for (name, probe) in *group {
            if let Some(u) = used {
                found.info.push(SensorInfo {
                    name: (*name).into(),
                    present: false,
                    reason: format!("not used: {u} reads the same counters"),
                    domains: vec![],
                });
                continue;
            }
            match probe(cfg) {
                Ok(s) => {
                    let domains = s.domains();
                    found.info.push(SensorInfo {
                        name: (*name).into(),
                        present: true,
                        reason: format!(
                            "{} domain(s): {}",
                            domains.len(),
                            domains
                                .iter()
                                .map(|d| d.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        domains,
                    });
                    found.sensors.push(s);
                    used = Some(name);
                }
                Err(reason) => found.info.push(SensorInfo {
                    name: (*name).into(),
                    present: false,
                    reason,
                    domains: vec![],
                }),
            }
        }
    }
    found
}

/// Reads a sysfs file, trimmed; the error names the file and, for a permission error, what
/// to do.
pub fn read_text(path: &Path) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(format!(
            "permission denied reading {} (energy counters are root-only: run tbd as root)",
            path.display()
        )),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// Reads a sysfs file holding one unsigned integer.
pub fn read_u64(path: &Path) -> Result<u64, String> {
    let s = read_text(path)?;
    s.parse()
        .map_err(|_| format!("{} holds '{s}', not a number", path.display()))
}
