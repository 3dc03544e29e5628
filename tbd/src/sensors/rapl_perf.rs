//! CPU energy from RAPL through the perf `power` PMU (perf_event_open with perf-event2): one
//! counter per package (the PMU's cpumask) for each of energy-pkg, energy-cores, energy-ram
//! and energy-psys that the PMU lists, scaled by its `.scale` file.

use std::path::{Path, PathBuf};

use perf_event::{events::Dynamic, Builder, Counter};
use tb_proto::v1::{EnergyDomain, EnergyReading};

use super::{meter::Meter, read_text, Sensor, SensorConfig};

pub const NAME: &str = "rapl-perf";

/// The PMU's energy events and the domain each one is, by package.
const EVENTS: &[(&str, &str, &str)] = &[
    ("energy-pkg", "", "cpu"),
    ("energy-cores", "/core", "cpu"),
    ("energy-ram", "/dram", "dram"),
    ("energy-psys", "psys", "cpu"),
];

/// RAPL's counters update about every millisecond.
const UPDATE_PERIOD_NS: u64 = 1_000_000;

struct Domain {
    name: String,
    event: &'static str,
    device: &'static str,
    counter: Counter,
    meter: Meter,
}

/// The perf power PMU's energy counters.
pub struct RaplPerf {
    pmu: PathBuf,
    domains: Vec<Domain>,
}

/// Parses a cpumask list such as `0`, `0,36` or `0-3,8`.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let bad = || format!("bad cpu list '{s}'");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
    }
    Ok(cpus)
}

/// Opens the PMU's energy counters, or says why it cannot.
pub fn probe(cfg: &SensorConfig) -> Result<Box<dyn Sensor>, String> {
    let pmu = cfg.sys("/sys/bus/event_source/devices/power");
    if !pmu.join("type").exists() {
        return Err(format!(
            "no perf power PMU at {} (kernel without the RAPL PMU, or a CPU or VM without RAPL)",
            pmu.display()
        ));
    }
    let present: Vec<&(&str, &str, &str)> = EVENTS
        .iter()
        .filter(|(e, _, _)| pmu.join("events").join(e).exists())
        .collect();
    if present.is_empty() {
        return Err(format!(
            "the perf power PMU at {} lists no energy events (RAPL hidden, as hypervisors do)",
            pmu.display()
        ));
    }
    let cpus = parse_cpu_list(&read_text(&pmu.join("cpumask"))?)?;
    let mut domains = Vec::new();
    for (event, suffix, device) in present {
        let scale = event_scale(&pmu, event)?;
        // psys covers the platform: one counter, on the first package's CPU.
        let on: &[usize] = if *event == "energy-psys" {
            &cpus[..1.min(cpus.len())]
        } else {
            &cpus
        };
        for (pkg, cpu) in on.iter().enumerate() {
            let counter = open(&pmu, event, *cpu)?;
            let name = if suffix.starts_with('/') || suffix.is_empty() {
                format!("cpu/package-{pkg}{suffix}")
            } else {
                format!("cpu/{suffix}")
            };
            domains.push(Domain {
                name,
                event,
                device,
                counter,
                meter: Meter::new(u64::MAX, scale),
            });
        }
    }
    let mut s = RaplPerf { pmu, domains };
    // The first reading is the meters' zero.
    s.read(0, &mut Vec::new());
    Ok(Box::new(s))
}

/// The event's joules per count, from `events/<event>.scale` (and its unit, which must be
/// Joules).
fn event_scale(pmu: &Path, event: &str) -> Result<f64, String> {
    let dir = pmu.join("events");
    if let Ok(unit) = read_text(&dir.join(format!("{event}.unit"))) {
        if unit != "Joules" {
            return Err(format!("{event} counts {unit}, not Joules"));
        }
    }
    let scale = read_text(&dir.join(format!("{event}.scale")))?;
    scale
        .parse()
        .map_err(|_| format!("{event}.scale holds '{scale}', not a number"))
}

/// Opens and enables one system-wide counter on `cpu`.
fn open(pmu: &Path, event: &str, cpu: usize) -> Result<Counter, String> {
    let ev: Dynamic = Dynamic::builder(pmu)
        .and_then(|mut b| {
            b.event(event)?;
            b.build().map_err(std::io::Error::other)
        })
        .map_err(|e| format!("{event} in {}: {e}", pmu.display()))?;
    let mut c = Builder::new(ev)
        .one_cpu(cpu)
        .any_pid()
        // The power PMU counts the whole package; it rejects mode filters.
        .include_kernel()
        .include_hv()
        .build()
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => format!(
                "perf_event_open({event}, cpu {cpu}) not permitted: {e} (run tbd as root, or \
                 lower kernel.perf_event_paranoid)"
            ),
            _ => format!("perf_event_open({event}, cpu {cpu}): {e}"),
        })?;
    c.enable()
        .map_err(|e| format!("enabling {event} on cpu {cpu}: {e}"))?;
    Ok(c)
}

impl Sensor for RaplPerf {
    fn domains(&self) -> Vec<EnergyDomain> {
        let psys = self.domains.iter().any(|d| d.event == "energy-psys");
        self.domains
            .iter()
            .map(|d| EnergyDomain {
                name: d.name.clone(),
                sensor: NAME.into(),
                device: d.device.into(),
                // As powercap: psys alone, else packages and DRAM; cores are in the package.
                in_total: if psys {
                    d.event == "energy-psys"
                } else {
                    matches!(d.event, "energy-pkg" | "energy-ram")
                },
                method: format!(
                    "RAPL energy counter through perf ({}/events/{}), scaled by its .scale",
                    self.pmu.display(),
                    d.event
                ),
                update_period_ns: UPDATE_PERIOD_NS,
            })
            .collect()
    }

    fn read(&mut self, _now_ns: u64, out: &mut Vec<EnergyReading>) {
        for d in &mut self.domains {
            match d.counter.read() {
                Ok(raw) => out.push(EnergyReading {
                    domain: d.name.clone(),
                    energy_j: Some(d.meter.update(raw)),
                    ..Default::default()
                }),
                Err(e) => tracing::debug!("rapl-perf {}: {e}", d.name),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list("0").unwrap(), vec![0]);
        assert_eq!(parse_cpu_list("0,36\n").unwrap(), vec![0, 36]);
        assert_eq!(parse_cpu_list("0-2,8").unwrap(), vec![0, 1, 2, 8]);
        assert!(parse_cpu_list("x").is_err());
    }
}
