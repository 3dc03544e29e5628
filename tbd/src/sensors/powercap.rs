//! CPU energy from powercap sysfs (`/sys/class/powercap/intel-rapl:*`, which AMD hosts expose
//! too): each zone's `energy_uj`, wraps undone from `max_energy_range_uj`. Used where the perf
//! `power` PMU is absent or not permitted.

use std::path::PathBuf;

use tb_proto::v1::{EnergyDomain, EnergyReading};

use super::{meter::Meter, read_text, read_u64, Sensor, SensorConfig};

pub const NAME: &str = "powercap";

/// RAPL's counters update about every millisecond.
const UPDATE_PERIOD_NS: u64 = 1_000_000;

struct Zone {
    domain: String,
    file: PathBuf,
    meter: Meter,
    device: &'static str,
    top: bool,
    psys: bool,
}

/// The RAPL zones of powercap.
pub struct Powercap {
    zones: Vec<Zone>,
}

/// Finds the RAPL zones, or says why there are none.
pub fn probe(cfg: &SensorConfig) -> Result<Box<dyn Sensor>, String> {
    let root = cfg.sys("/sys/class/powercap");
    let entries = std::fs::read_dir(&root).map_err(|_| {
        format!(
            "no {} (no RAPL powercap driver on this host)",
            root.display()
        )
    })?;
    let mut dirs: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        // intel-rapl-mmio duplicates the package zones through MMIO: counting it would count
        // packages twice.
        .filter(|(n, _)| n.starts_with("intel-rapl:"))
        .collect();
    dirs.sort();
    let mut zones = Vec::new();
    let mut skipped = Vec::new();
    for (dir_name, dir) in &dirs {
        let ids: Vec<&str> = dir_name["intel-rapl:".len()..].split(':').collect();
        let zone = (|| {
            let name = read_text(&dir.join("name"))?;
            let file = dir.join("energy_uj");
            let first = read_u64(&file)?;
            let range = read_u64(&dir.join("max_energy_range_uj"))?;
            let mut meter = Meter::new(range, 1e-6);
            meter.update(first);
            let top = ids.len() == 1;
            let domain = if top {
                format!("cpu/{name}")
            } else {
                let parent = dirs
                    .iter()
                    .find(|(n, _)| *n == format!("intel-rapl:{}", ids[0]))
                    .and_then(|(_, d)| read_text(&d.join("name")).ok())
                    .unwrap_or_else(|| format!("package-{}", ids[0]));
                format!("cpu/{parent}/{name}")
            };
            Ok::<_, String>(Zone {
                domain,
                file,
                meter,
                device: if name == "dram" { "dram" } else { "cpu" },
                top,
                psys: name == "psys",
            })
        })();
        match zone {
            Ok(z) => zones.push(z),
            Err(e) if e.starts_with("permission denied") => return Err(e),
            Err(e) => {
                tracing::warn!("powercap zone {dir_name} left out: {e}");
                skipped.push(e);
            }
        }
    }
    if zones.is_empty() {
        return Err(match skipped.first() {
            Some(e) => format!("no readable RAPL zone under {}: {e}", root.display()),
            None => format!("no RAPL zone under {}", root.display()),
        });
    }
    Ok(Box::new(Powercap { zones }))
}

impl Powercap {
    /// Whether a zone counts toward the host total. psys covers the whole SoC, so with it
    /// nothing else counts; otherwise the packages and, apart from them, DRAM. Cores and
    /// uncore are inside their package.
    fn in_total(&self, z: &Zone) -> bool {
        if self.zones.iter().any(|z| z.psys) {
            z.psys
        } else {
            (z.top && !z.psys) || z.device == "dram"
        }
    }
}

impl Sensor for Powercap {
    fn domains(&self) -> Vec<EnergyDomain> {
        self.zones
            .iter()
            .map(|z| EnergyDomain {
                name: z.domain.clone(),
                sensor: NAME.into(),
                device: z.device.into(),
                in_total: self.in_total(z),
                method: format!(
                    "RAPL energy counter {} (µJ), wraps undone",
                    z.file.display()
                ),
                update_period_ns: UPDATE_PERIOD_NS,
            })
            .collect()
    }

    fn read(&mut self, _now_ns: u64, out: &mut Vec<EnergyReading>) {
        for z in &mut self.zones {
            match read_u64(&z.file) {
                Ok(raw) => out.push(EnergyReading {
                    domain: z.domain.clone(),
                    energy_j: Some(z.meter.update(raw)),
                    ..Default::default()
                }),
                Err(e) => tracing::debug!("powercap {}: {e}", z.domain),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A powercap tree with `zones` of (dir, name, energy_uj or None for a missing counter).
    fn tree(zones: &[(&str, &str, Option<u64>)]) -> (tempfile::TempDir, SensorConfig) {
        let d = tempfile::tempdir().unwrap();
        for (dir, name, uj) in zones {
            let z = d.path().join("sys/class/powercap").join(dir);
            std::fs::create_dir_all(&z).unwrap();
            std::fs::write(z.join("name"), name).unwrap();
            std::fs::write(z.join("max_energy_range_uj"), "1000000").unwrap();
            if let Some(uj) = uj {
                std::fs::write(z.join("energy_uj"), uj.to_string()).unwrap();
            }
        }
        let cfg = SensorConfig {
            sysfs_root: d.path().into(),
            gpu_fixture: None,
        };
        (d, cfg)
    }

    fn totals(cfg: &SensorConfig) -> Vec<(String, bool)> {
        probe(cfg)
            .unwrap()
            .domains()
            .into_iter()
            .map(|d| (d.name, d.in_total))
            .collect()
    }

    #[test]
    fn packages_and_dram_count_cores_do_not_and_psys_alone_when_present() {
        let zones = [
            ("intel-rapl:0", "package-0", Some(1)),
            ("intel-rapl:0:0", "core", Some(1)),
            ("intel-rapl:0:1", "dram", Some(1)),
            ("intel-rapl:1", "package-1", Some(1)),
            // MMIO duplicates package-0: never read.
            ("intel-rapl-mmio:0", "package-0", Some(1)),
        ];
        let (_d, cfg) = tree(&zones);
        assert_eq!(
            totals(&cfg),
            vec![
                ("cpu/package-0".into(), true),
                ("cpu/package-0/core".into(), false),
                ("cpu/package-0/dram".into(), true),
                ("cpu/package-1".into(), true),
            ]
        );
        let mut with_psys = zones.to_vec();
        with_psys.push(("intel-rapl:2", "psys", Some(1)));
        let (_d, cfg) = tree(&with_psys);
        let t = totals(&cfg);
        assert_eq!(
            t.iter()
                .filter(|(_, in_total)| *in_total)
                .collect::<Vec<_>>(),
            vec![&("cpu/psys".to_string(), true)]
        );
    }

    #[test]
    fn a_zone_without_a_counter_is_left_out_and_none_at_all_is_absent() {
        let (_d, cfg) = tree(&[
            ("intel-rapl:0", "package-0", Some(5)),
            ("intel-rapl:0:0", "core", None),
        ]);
        assert_eq!(totals(&cfg), vec![("cpu/package-0".into(), true)]);
        let (_d, cfg) = tree(&[("intel-rapl:0", "package-0", None)]);
        let why = probe(&cfg).err().unwrap();
        assert!(why.starts_with("no readable RAPL zone"), "{why}");
    }
}
