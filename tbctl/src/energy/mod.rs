//! Energy: what tbd's sensors measured during a run (energy.jsonl), the run's energy figures
//! per source, per token and per request, and how they were measured.
//!
//! Data runs one way: tbd's samples → [`collect`] (window closed past the last update) →
//! energy.jsonl and run.json's `energy` → [`series`] → [`attribute`] and [`figures`] →
//! summary.json's `energy`.

pub mod attribute;
pub mod collect;
pub mod figures;
pub mod series;
pub mod timeseries;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// energy.jsonl.
pub const ENERGY: &str = "energy.jsonl";

/// One energy domain of tbd's host (a RAPL domain, a GPU), as run.json keeps it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DomainMeta {
    pub name: String,
    pub sensor: String,
    /// "cpu", "dram" or "gpu".
    pub device: String,
    /// Counts toward the host total (overlapping domains do not).
    pub in_total: bool,
    /// How its energy is measured, with caveats.
    pub method: String,
    #[serde(default)]
    pub update_period_ns: u64,
}

/// A sensor tbd did not read, and why.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AbsentSensor {
    pub name: String,
    pub reason: String,
}

/// Average power with no load, measured before the run (`--idle-baseline`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct IdleBaseline {
    pub duration_s: f64,
    /// Average power per domain, W.
    pub power_w: BTreeMap<String, f64>,
}

/// run.json's `energy`: the domains the run's samples hold, the sensors absent, the window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EnergyMeta {
    pub domains: Vec<DomainMeta>,
    pub absent: Vec<AbsentSensor>,
    /// The run's energy window (CLOCK_MONOTONIC ns): first send to last response.
    pub window_from_ns: u64,
    pub window_to_ns: u64,
    #[serde(default)]
    pub idle_baseline: Option<IdleBaseline>,
    /// tbd's sampling interval during the capture, ns.
    #[serde(default)]
    pub interval_ns: u64,
}

/// One domain's reading in an energy.jsonl line.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Reading {
    pub domain: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_j: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_w: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub util_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_clock_mhz: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_used_mib: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp_c: Option<f64>,
}

/// One energy.jsonl line: every domain's reading at one CLOCK_MONOTONIC time.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    pub t_ns: u64,
    pub readings: Vec<Reading>,
}

impl From<tb_proto::v1::EnergySample> for Sample {
    fn from(s: tb_proto::v1::EnergySample) -> Self {
        Self {
            t_ns: s.t_ns,
            readings: s
                .readings
                .into_iter()
                .map(|r| Reading {
                    domain: r.domain,
                    energy_j: r.energy_j,
                    power_w: r.power_w,
                    util_pct: r.util_pct,
                    sm_clock_mhz: r.sm_clock_mhz,
                    mem_used_mib: r.mem_used_mib,
                    temp_c: r.temp_c,
                })
                .collect(),
        }
    }
}

impl From<tb_proto::v1::EnergyDomain> for DomainMeta {
    fn from(d: tb_proto::v1::EnergyDomain) -> Self {
        Self {
            name: d.name,
            sensor: d.sensor,
            device: d.device,
            in_total: d.in_total,
            method: d.method,
            update_period_ns: d.update_period_ns,
        }
    }
}
