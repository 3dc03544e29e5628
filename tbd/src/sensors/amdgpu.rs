//! AMD GPUs through amdgpu's hwmon sysfs: `energy1_input` (µJ) where the driver has it,
//! otherwise `power1_average` / `power1_input` (µW) × time; `gpu_busy_percent`,
//! `mem_info_vram_used` and `temp1_input` beside.

use std::path::{Path, PathBuf};

use tb_proto::v1::{EnergyDomain, EnergyReading};

use super::{
    meter::{Integrator, Meter},
    read_text, read_u64, Sensor, SensorConfig,
};

pub const NAME: &str = "amdgpu";

enum Energy {
    Counter(PathBuf, Meter),
    FromPower(Integrator),
}

struct Card {
    domain: String,
    hwmon: PathBuf,
    device: PathBuf,
    power: Option<PathBuf>,
    energy: Energy,
}

/// amdgpu cards with a hwmon.
pub struct AmdGpu {
    cards: Vec<Card>,
}

fn hwmon_of(device: &Path) -> Option<PathBuf> {
    std::fs::read_dir(device.join("hwmon"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| read_text(&p.join("name")).is_ok_and(|n| n == "amdgpu"))
}

/// Finds amdgpu cards, or says why there are none.
pub fn probe(cfg: &SensorConfig) -> Result<Box<dyn Sensor>, String> {
    let drm = cfg.sys("/sys/class/drm");
    let mut cards: Vec<PathBuf> = std::fs::read_dir(&drm)
        .map_err(|_| format!("no {} (no GPU driver loaded)", drm.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("card") && n[4..].chars().all(|c| c.is_ascii_digit())
        })
        .map(|e| e.path().join("device"))
        .collect();
    cards.sort();
    let mut found = Vec::new();
    for device in cards {
        let Some(hwmon) = hwmon_of(&device) else {
            continue;
        };
        let power = ["power1_average", "power1_input"]
            .iter()
            .map(|f| hwmon.join(f))
            .find(|p| read_u64(p).is_ok());
        let energy_file = hwmon.join("energy1_input");
        let energy = match read_u64(&energy_file) {
            Ok(first) => {
                let mut m = Meter::new(u64::MAX, 1e-6);
                m.update(first);
                Energy::Counter(energy_file, m)
            }
            Err(_) if power.is_some() => Energy::FromPower(Integrator::default()),
            Err(e) => {
                tracing::warn!(
                    "amdgpu card at {} has no energy or power: {e}",
                    device.display()
                );
                continue;
            }
        };
        found.push(Card {
            domain: format!("gpu/amd{}", found.len()),
            hwmon,
            device,
            power,
            energy,
        });
    }
    if found.is_empty() {
        return Err(format!(
            "no amdgpu card with a hwmon under {}",
            drm.display()
        ));
    }
    Ok(Box::new(AmdGpu { cards: found }))
}

impl Sensor for AmdGpu {
    fn domains(&self) -> Vec<EnergyDomain> {
        self.cards
            .iter()
            .map(|c| EnergyDomain {
                name: c.domain.clone(),
                sensor: NAME.into(),
                device: "gpu".into(),
                in_total: true,
                method: match &c.energy {
                    Energy::Counter(f, _) => format!("hwmon energy counter {} (µJ)", f.display()),
                    Energy::FromPower(_) => format!(
                        "power x time (trapezoidal over samples) from {}: no energy1_input",
                        c.power
                            .as_deref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default()
                    ),
                },
                update_period_ns: 0,
            })
            .collect()
    }

    fn read(&mut self, now_ns: u64, out: &mut Vec<EnergyReading>) {
        for c in &mut self.cards {
            let power_w = c
                .power
                .as_ref()
                .and_then(|p| read_u64(p).ok())
                .map(|uw| uw as f64 / 1e6);
            let energy_j = match &mut c.energy {
                Energy::Counter(f, m) => read_u64(f).ok().map(|raw| m.update(raw)),
                Energy::FromPower(i) => power_w.map(|p| i.update(now_ns, p)),
            };
            out.push(EnergyReading {
                domain: c.domain.clone(),
                energy_j,
                power_w,
                util_pct: read_u64(&c.device.join("gpu_busy_percent"))
                    .ok()
                    .map(|v| v as f64),
                mem_used_mib: read_u64(&c.device.join("mem_info_vram_used"))
                    .ok()
                    .map(|b| b as f64 / (1 << 20) as f64),
                temp_c: read_u64(&c.hwmon.join("temp1_input"))
                    .ok()
                    .map(|m| m as f64 / 1e3),
                sm_clock_mhz: None,
            });
        }
    }
}
