//! NVIDIA GPUs through NVML (nvml-wrapper, which loads libnvidia-ml at run time, so tbd runs
//! on hosts without the driver and says so). With `--gpu-fixture` the devices come from a
//! fixture file instead ([`super::gpu_fixture`]): the same sensor code reads them.

use nvml_wrapper::{
    enum_wrappers::device::{Clock, TemperatureSensor},
    enums::device::DeviceArchitecture,
    error::NvmlError,
    Device, Nvml,
};

use super::{
    gpu::{GpuDevice, GpuError, GpuSensor},
    gpu_fixture, Sensor, SensorConfig,
};

pub const NAME: &str = "nvml";

/// Finds the GPUs, or says why there are none.
pub fn probe(cfg: &SensorConfig) -> Result<Box<dyn Sensor>, String> {
    let devices = match &cfg.gpu_fixture {
        Some(f) => gpu_fixture::devices(f)?,
        None => driver_devices()?,
    };
    if devices.is_empty() {
        return Err("NVML found no NVIDIA GPU".into());
    }
    Ok(Box::new(GpuSensor::new(NAME, devices)))
}

fn driver_devices() -> Result<Vec<Box<dyn GpuDevice>>, String> {
    let nvml = Nvml::init().map_err(|e| match e {
        NvmlError::LibloadingError(_) | NvmlError::FailedToLoadSymbol(_) => {
            "no NVML library (libnvidia-ml.so.1): no NVIDIA driver on this host".to_string()
        }
        e => format!("NVML did not start: {e}"),
    })?;
    // Devices borrow the library for as long as tbd samples them: the whole process.
    let nvml: &'static Nvml = Box::leak(Box::new(nvml));
    let n = nvml
        .device_count()
        .map_err(|e| format!("NVML device count: {e}"))?;
    (0..n)
        .map(|i| {
            nvml.device_by_index(i)
                .map(|d| Box::new(NvmlGpu(d)) as Box<dyn GpuDevice>)
                .map_err(|e| format!("NVML device {i}: {e}"))
        })
        .collect()
}

struct NvmlGpu(Device<'static>);

fn gpu_err(e: NvmlError) -> GpuError {
    match e {
        NvmlError::NotSupported => GpuError::NotSupported,
        e => GpuError::Other(e.to_string()),
    }
}

impl GpuDevice for NvmlGpu {
    fn name(&self) -> String {
        self.0.name().unwrap_or_else(|_| "NVIDIA GPU".into())
    }
    fn energy_mj(&self) -> Result<u64, GpuError> {
        self.0.total_energy_consumption().map_err(gpu_err)
    }
    fn power_mw(&self) -> Result<u32, GpuError> {
        self.0.power_usage().map_err(gpu_err)
    }
    fn utilization_pct(&self) -> Option<u32> {
        self.0.utilization_rates().ok().map(|u| u.gpu)
    }
    fn sm_clock_mhz(&self) -> Option<u32> {
        self.0.clock_info(Clock::SM).ok()
    }
    fn memory_used_bytes(&self) -> Option<u64> {
        self.0.memory_info().ok().map(|m| m.used)
    }
    fn temperature_c(&self) -> Option<u32> {
        self.0.temperature(TemperatureSensor::Gpu).ok()
    }
    fn power_averaged_1s(&self) -> Option<bool> {
        // NVML's documentation: on Ampere (except GA100) and newer, nvmlDeviceGetPowerUsage
        // is averaged over 1 s; before, it is instantaneous.
        match self.0.architecture().ok()? {
            DeviceArchitecture::Kepler
            | DeviceArchitecture::Maxwell
            | DeviceArchitecture::Pascal
            | DeviceArchitecture::Volta
            | DeviceArchitecture::Turing => Some(false),
            DeviceArchitecture::Ampere
            | DeviceArchitecture::Ada
            | DeviceArchitecture::Hopper
            | DeviceArchitecture::Blackwell => Some(true),
            DeviceArchitecture::Unknown => None,
        }
    }
}
