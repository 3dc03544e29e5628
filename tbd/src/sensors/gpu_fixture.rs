//! GPUs from a JSON fixture file (`tbd --gpu-fixture FILE`), for tests on hosts without a GPU:
//! the file is read again at every sample, so a test advances the devices' counters by
//! rewriting it, and tbd's real GPU sensor, sampler, store and API read them.
//!
//! `{"devices": [{"name": "...", "energy_mj": 123, "power_mw": 250000, "util_pct": 80,
//! "sm_clock_mhz": 1980, "mem_used_bytes": 1073741824, "temp_c": 60, "averaged_1s": true}]}`;
//! a device without `energy_mj` has no energy counter.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::gpu::{GpuDevice, GpuError};

#[derive(Deserialize, Default, Clone)]
struct FixtureDevice {
    name: String,
    energy_mj: Option<u64>,
    power_mw: Option<u32>,
    util_pct: Option<u32>,
    sm_clock_mhz: Option<u32>,
    mem_used_bytes: Option<u64>,
    temp_c: Option<u32>,
    averaged_1s: Option<bool>,
}

#[derive(Deserialize)]
struct Fixture {
    devices: Vec<FixtureDevice>,
}

fn load(path: &Path) -> Result<Fixture, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("GPU fixture {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("GPU fixture {}: {e}", path.display()))
}

/// The fixture's devices.
pub fn devices(path: &Path) -> Result<Vec<Box<dyn GpuDevice>>, String> {
    let n = load(path)?.devices.len();
    Ok((0..n)
        .map(|index| {
            Box::new(FixtureGpu {
                path: path.to_path_buf(),
                index,
            }) as Box<dyn GpuDevice>
        })
        .collect())
}

struct FixtureGpu {
    path: PathBuf,
    index: usize,
}

impl FixtureGpu {
    fn now(&self) -> Result<FixtureDevice, GpuError> {
        load(&self.path)
            .map_err(GpuError::Other)?
            .devices
            .get(self.index)
            .cloned()
            .ok_or_else(|| GpuError::Other(format!("device {} left the fixture", self.index)))
    }
}

impl GpuDevice for FixtureGpu {
    fn name(&self) -> String {
        self.now().map(|d| d.name).unwrap_or_default()
    }
    fn energy_mj(&self) -> Result<u64, GpuError> {
        self.now()?.energy_mj.ok_or(GpuError::NotSupported)
    }
    fn power_mw(&self) -> Result<u32, GpuError> {
        self.now()?.power_mw.ok_or(GpuError::NotSupported)
    }
    fn utilization_pct(&self) -> Option<u32> {
        self.now().ok()?.util_pct
    }
    fn sm_clock_mhz(&self) -> Option<u32> {
        self.now().ok()?.sm_clock_mhz
    }
    fn memory_used_bytes(&self) -> Option<u64> {
        self.now().ok()?.mem_used_bytes
    }
    fn temperature_c(&self) -> Option<u32> {
        self.now().ok()?.temp_c
    }
    fn power_averaged_1s(&self) -> Option<bool> {
        self.now().ok()?.averaged_1s
    }
}
