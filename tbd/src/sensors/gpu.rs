//! GPUs behind one trait ([`GpuDevice`]), so the sensor that turns them into energy readings
//! is the same code for NVML ([`super::nvml`]) and the test fixture ([`super::gpu_fixture`]).

use tb_proto::v1::{EnergyDomain, EnergyReading};

use super::{
    meter::{Integrator, Meter},
    Sensor,
};

/// Why a GPU query gave nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuError {
    /// The device does not have it (e.g. no energy counter before Volta).
    NotSupported,
    /// Anything else, with the driver's words.
    Other(String),
}

/// One GPU, as a driver library sees it.
pub trait GpuDevice: Send {
    fn name(&self) -> String;
    /// Energy since the driver loaded, in mJ.
    fn energy_mj(&self) -> Result<u64, GpuError>;
    /// Power draw in mW.
    fn power_mw(&self) -> Result<u32, GpuError>;
    fn utilization_pct(&self) -> Option<u32>;
    fn sm_clock_mhz(&self) -> Option<u32>;
    fn memory_used_bytes(&self) -> Option<u64>;
    fn temperature_c(&self) -> Option<u32>;
    /// Whether the reported power is a 1 s average (Ampere and newer) rather than
    /// instantaneous; None when the architecture is unknown.
    fn power_averaged_1s(&self) -> Option<bool>;
}

enum Energy {
    Counter(Meter),
    FromPower(Integrator),
}

struct Gpu {
    domain: String,
    device: Box<dyn GpuDevice>,
    energy: Energy,
    method: String,
}

/// GPUs' energy, power, utilisation, SM clock, memory and temperature.
pub struct GpuSensor {
    name: &'static str,
    gpus: Vec<Gpu>,
}

impl GpuSensor {
    /// A sensor over `devices`, reported under `name`. Each device's energy comes from its
    /// counter, or from power × time where it has none (and its method says so).
    pub fn new(name: &'static str, devices: Vec<Box<dyn GpuDevice>>) -> Self {
        let gpus = devices
            .into_iter()
            .enumerate()
            .map(|(i, device)| {
                let power_note = match device.power_averaged_1s() {
                    Some(true) => "; power is the driver's 1 s average",
                    Some(false) => "; power is instantaneous",
                    None => "; power averaging unknown for this architecture",
                };
                let (energy, how) = match device.energy_mj() {
                    Ok(first) => {
                        let mut m = Meter::new(u64::MAX, 1e-3);
                        m.update(first);
                        (Energy::Counter(m), "total energy counter (mJ)".to_string())
                    }
                    Err(e) => (
                        Energy::FromPower(Integrator::default()),
                        format!(
                            "power x time (trapezoidal over samples): no energy counter ({})",
                            match e {
                                GpuError::NotSupported => "not supported".to_string(),
                                GpuError::Other(m) => m,
                            }
                        ),
                    ),
                };
                Gpu {
                    domain: format!("gpu/{i}"),
                    method: format!("{} {how}{power_note}", device.name()),
                    device,
                    energy,
                }
            })
            .collect();
        Self { name, gpus }
    }
}

impl Sensor for GpuSensor {
    fn domains(&self) -> Vec<EnergyDomain> {
        self.gpus
            .iter()
            .map(|g| EnergyDomain {
                name: g.domain.clone(),
                sensor: self.name.into(),
                device: "gpu".into(),
                in_total: true,
                method: g.method.clone(),
                // NVML does not say how often its counter moves.
                update_period_ns: 0,
            })
            .collect()
    }

    fn read(&mut self, now_ns: u64, out: &mut Vec<EnergyReading>) {
        for g in &mut self.gpus {
            let power_w = g.device.power_mw().ok().map(|mw| f64::from(mw) / 1e3);
            let energy_j = match &mut g.energy {
                Energy::Counter(m) => match g.device.energy_mj() {
                    Ok(mj) => Some(m.update(mj)),
                    Err(e) => {
                        tracing::debug!("{}: energy counter: {e:?}", g.domain);
                        None
                    }
                },
                Energy::FromPower(i) => power_w.map(|p| i.update(now_ns, p)),
            };
            out.push(EnergyReading {
                domain: g.domain.clone(),
                energy_j,
                power_w,
                util_pct: g.device.utilization_pct().map(f64::from),
                sm_clock_mhz: g.device.sm_clock_mhz().map(f64::from),
                mem_used_mib: g
                    .device
                    .memory_used_bytes()
                    .map(|b| b as f64 / (1 << 20) as f64),
                temp_c: g.device.temperature_c().map(f64::from),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A GPU whose counters the test sets.
    #[derive(Clone, Default)]
    struct Fake(Arc<Mutex<(Option<u64>, u32)>>);

    impl GpuDevice for Fake {
        fn name(&self) -> String {
            "Fake GPU".into()
        }
        fn energy_mj(&self) -> Result<u64, GpuError> {
            self.0.lock().unwrap().0.ok_or(GpuError::NotSupported)
        }
        fn power_mw(&self) -> Result<u32, GpuError> {
            Ok(self.0.lock().unwrap().1)
        }
        fn utilization_pct(&self) -> Option<u32> {
            Some(50)
        }
        fn sm_clock_mhz(&self) -> Option<u32> {
            None
        }
        fn memory_used_bytes(&self) -> Option<u64> {
            Some(1 << 30)
        }
        fn temperature_c(&self) -> Option<u32> {
            None
        }
        fn power_averaged_1s(&self) -> Option<bool> {
            Some(true)
        }
    }

    #[test]
    fn a_gpu_with_a_counter_reports_its_energy_since_the_first_read() {
        let f = Fake::default();
        *f.0.lock().unwrap() = (Some(1_000_000), 300_000);
        let mut s = GpuSensor::new("nvml", vec![Box::new(f.clone())]);
        assert!(s.domains()[0].method.contains("energy counter"));
        f.0.lock().unwrap().0 = Some(1_250_000);
        let mut out = Vec::new();
        s.read(1, &mut out);
        assert_eq!(out[0].energy_j, Some(250.0));
        assert_eq!(out[0].power_w, Some(300.0));
        assert_eq!(out[0].mem_used_mib, Some(1024.0));
        assert_eq!(out[0].sm_clock_mhz, None, "absent, not zero");
    }

    #[test]
    fn a_gpu_without_a_counter_integrates_power_and_says_so() {
        let f = Fake::default();
        f.0.lock().unwrap().1 = 200_000;
        let mut s = GpuSensor::new("nvml", vec![Box::new(f.clone())]);
        assert!(
            s.domains()[0].method.contains("power x time"),
            "{:?}",
            s.domains()
        );
        let mut out = Vec::new();
        s.read(0, &mut out);
        s.read(2_000_000_000, &mut out);
        // 200 W for 2 s.
        assert_eq!(out[1].energy_j, Some(400.0));
    }
}
