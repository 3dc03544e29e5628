//! A run's energy figures (summary.json `energy`): per domain and device, per token, per
//! request (prefill and decode apart), above the idle baseline, each with its source, method
//! and caveats.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    attribute::{attribute, Attribution, RequestEnergy},
    series::Series,
    EnergyMeta, Sample,
};
use crate::{
    catalogue::{self, Scope},
    record::RequestRecord,
    stats::Distribution,
};

/// One domain's figures over the run's window.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DomainFigures {
    pub name: String,
    pub sensor: String,
    pub device: String,
    pub in_total: bool,
    pub energy_j: f64,
    pub avg_power_w: f64,
    /// Highest average power between two counter updates in the window.
    pub peak_power_w: f64,
    pub method: String,
}

/// Figures above the idle baseline.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AboveIdle {
    pub idle_power_w: f64,
    pub baseline_s: f64,
    pub energy_j: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub j_per_output_token: Option<f64>,
}

/// A distribution over requests with its formula.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PerRequest {
    pub formula: String,
    #[serde(flatten)]
    pub dist: Distribution,
}

/// summary.json's `energy`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EnergySummary {
    pub window_s: f64,
    pub domains: Vec<DomainFigures>,
    /// Energy of the domains in the host total, by device ("cpu", "dram", "gpu").
    pub by_device_j: BTreeMap<String, f64>,
    /// The catalogue's `energy_j`.
    #[serde(rename = "energy_j")]
    pub total_j: f64,
    pub avg_power_w: f64,
    pub peak_power_w: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub j_per_output_token: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub j_per_token: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens_per_j: Option<f64>,
    /// Per successful measured request: total, prefill and decode.
    pub per_request: BTreeMap<String, PerRequest>,
    /// Energy of intervals with no request active (the catalogue's `unattributed_energy_j`).
    #[serde(rename = "unattributed_energy_j")]
    pub unattributed_j: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub above_idle: Option<AboveIdle>,
    pub method: Vec<String>,
    pub caveats: Vec<String>,
}

/// The run's energy figures; None when no domain covers the window.
pub fn summarize(
    meta: &EnergyMeta,
    samples: &[Sample],
    records: &[RequestRecord],
) -> Option<EnergySummary> {
    let (from, to) = (meta.window_from_ns, meta.window_to_ns);
    if to <= from {
        return None;
    }
    let window_s = (to - from) as f64 / 1e9;
    let mut caveats = Vec::new();
    let mut domains = Vec::new();
    let mut total_series = Vec::new();
    for d in &meta.domains {
        let s = Series::of(samples, &d.name);
        let Some(energy_j) = s.between(from, to) else {
            caveats.push(format!(
                "{}: its updates do not cover the run's window; left out",
                d.name
            ));
            continue;
        };
        let peak = s.powers(from, to).iter().map(|p| p.2).fold(0.0, f64::max);
        domains.push(DomainFigures {
            name: d.name.clone(),
            sensor: d.sensor.clone(),
            device: d.device.clone(),
            in_total: d.in_total,
            energy_j,
            avg_power_w: energy_j / window_s,
            peak_power_w: peak,
            method: d.method.clone(),
        });
        if d.in_total {
            total_series.push(s);
        }
    }
    if total_series.is_empty() {
        return None;
    }
    let mut by_device_j: BTreeMap<String, f64> = BTreeMap::new();
    for d in domains.iter().filter(|d| d.in_total) {
        *by_device_j.entry(d.device.clone()).or_default() += d.energy_j;
    }
    let total_j: f64 = by_device_j.values().sum();
    let intervals = total_intervals(&total_series, from, to);
    let peak_power_w = intervals
        .iter()
        .map(|iv| iv.2 / ((iv.1 - iv.0) as f64 / 1e9))
        .fold(0.0, f64::max);

    let measured: Vec<&RequestRecord> = records.iter().filter(|r| !r.warmup).collect();
    let ok: Vec<&&RequestRecord> = measured.iter().filter(|r| r.success).collect();
    let out_tokens: u64 = ok.iter().filter_map(|r| r.output_tokens).sum();
    let all_tokens: u64 = out_tokens + ok.iter().filter_map(|r| r.input_tokens).sum::<u64>();
    let per = |n: u64| (n > 0).then(|| total_j / n as f64);

    let Attribution {
        requests,
        unattributed_j,
    } = attribute_all(records, &intervals);
    let per_request = request_samples(records, &requests)
        .into_iter()
        .filter_map(|(k, mut v)| {
            Some((
                k.to_string(),
                PerRequest {
                    formula: catalogue::def(Scope::Energy, k).formula.into(),
                    dist: Distribution::of(&mut v)?,
                },
            ))
        })
        .collect();

    let missing: Vec<&str> = meta
        .idle_baseline
        .iter()
        .flat_map(|b| {
            domains
                .iter()
                .filter(|d| d.in_total && !b.power_w.contains_key(&d.name))
                .map(|d| d.name.as_str())
        })
        .collect();
    if !missing.is_empty() {
        caveats.push(format!(
            "the idle baseline has no reading of {}: no figures above idle",
            missing.join(", ")
        ));
    }
    let above_idle = meta
        .idle_baseline
        .as_ref()
        .filter(|_| missing.is_empty())
        .map(|b| {
            let idle_power_w: f64 = domains
                .iter()
                .filter(|d| d.in_total)
                .filter_map(|d| b.power_w.get(&d.name))
                .sum();
            let energy_j = total_j - idle_power_w * window_s;
            AboveIdle {
                idle_power_w,
                baseline_s: b.duration_s,
                energy_j,
                j_per_output_token: (out_tokens > 0).then(|| energy_j / out_tokens as f64),
            }
        });

    let mut method = vec![
        "energy per domain: cumulative counter at the window's ends, interpolated between the \
         counter's own updates (constant power between updates)"
            .to_string(),
        "host total: the domains marked in_total (psys alone when present, else packages and \
         DRAM, plus GPUs); cores and uncore are inside their package and never added"
            .to_string(),
        "per request: each interval between updates is split across the requests active in \
         it by tokens emitted in it; the first token is spread over the prefill (send to first \
         token)"
            .to_string(),
    ];
    method.extend(domains.iter().map(|d| format!("{}: {}", d.name, d.method)));
    caveats.push(
        "energy is tbd's host's: it covers the inference server only when the server runs \
         there, and includes everything else the host ran"
            .into(),
    );
    if meta.idle_baseline.is_none() {
        caveats.push(
            "no idle baseline (tbctl profile --idle-baseline 10s): figures include the host's \
             idle power"
                .into(),
        );
    }
    if domains.iter().any(|d| d.method.contains("power x time")) {
        caveats.push(
            "some energy is integrated from power readings (no counter): it misses what \
             happens between samples"
                .into(),
        );
    }
    Some(EnergySummary {
        window_s,
        domains,
        by_device_j,
        total_j,
        avg_power_w: total_j / window_s,
        peak_power_w,
        j_per_output_token: per(out_tokens),
        j_per_token: per(all_tokens),
        output_tokens_per_j: (total_j > 0.0).then(|| out_tokens as f64 / total_j),
        per_request,
        unattributed_j,
        above_idle,
        method,
        caveats,
    })
}

/// Every sample of each per-request energy figure of the catalogue: the successful measured
/// records' shares (`requests` in the records' order). The summary and compare both read them.
pub fn request_samples(
    records: &[RequestRecord],
    requests: &[RequestEnergy],
) -> BTreeMap<&'static str, Vec<f64>> {
    let mut samples: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for (r, e) in records.iter().zip(requests) {
        if r.warmup || !r.success {
            continue;
        }
        for (k, v) in [
            ("request_energy_j", e.total_j()),
            ("prefill_energy_j", e.prefill_j),
            ("decode_energy_j", e.decode_j),
        ] {
            samples.entry(k).or_default().push(v);
        }
    }
    samples
}

impl EnergySummary {
    /// A whole-run figure of the catalogue by name (`energy_j`, `j_per_output_token`, ...):
    /// for compare and its gates.
    pub fn figure(&self, name: &str) -> Option<f64> {
        match name {
            "energy_j" => Some(self.total_j),
            "avg_power_w" => Some(self.avg_power_w),
            "peak_power_w" => Some(self.peak_power_w),
            "j_per_output_token" => self.j_per_output_token,
            "j_per_token" => self.j_per_token,
            "output_tokens_per_j" => self.output_tokens_per_j,
            "unattributed_energy_j" => Some(self.unattributed_j),
            "idle_power_w" => self.above_idle.as_ref().map(|a| a.idle_power_w),
            "energy_above_idle_j" => self.above_idle.as_ref().map(|a| a.energy_j),
            _ => None,
        }
    }
}

/// Splits the intervals across every record: warm-up requests that overlap the window take
/// their share too, though they are not reported.
fn attribute_all(records: &[RequestRecord], intervals: &[(u64, u64, f64)]) -> Attribution {
    let all: Vec<&RequestRecord> = records.iter().collect();
    attribute(&all, intervals)
}

/// Each record's energy (same order as `records`), or None when no in-total domain covers
/// the window: for analyses that relate a request's energy to its tokens.
pub fn request_energies(
    meta: &EnergyMeta,
    samples: &[Sample],
    records: &[RequestRecord],
) -> Option<Attribution> {
    let (from, to) = (meta.window_from_ns, meta.window_to_ns);
    let series: Vec<Series> = meta
        .domains
        .iter()
        .filter(|d| d.in_total)
        .map(|d| Series::of(samples, &d.name))
        .filter(|s| s.between(from, to).is_some())
        .collect();
    if series.is_empty() || to <= from {
        return None;
    }
    Some(attribute_all(records, &total_intervals(&series, from, to)))
}

/// The host total's energy between consecutive update points of any of its domains, within
/// `[from, to]`: (start, end, J).
pub fn total_intervals(series: &[Series], from: u64, to: u64) -> Vec<(u64, u64, f64)> {
    let mut cuts: Vec<u64> = vec![from, to];
    for s in series {
        for (a, b, _) in s.powers(from, to) {
            cuts.extend([a, b].into_iter().filter(|t| *t > from && *t < to));
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2)
        .map(|w| {
            let j = series.iter().filter_map(|s| s.between(w[0], w[1])).sum();
            (w[0], w[1], j)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::energy::{DomainMeta, IdleBaseline, Reading};

    const MS: u64 = 1_000_000;

    fn domain(name: &str, device: &str, in_total: bool) -> DomainMeta {
        DomainMeta {
            name: name.into(),
            sensor: "fixture".into(),
            device: device.into(),
            in_total,
            method: "counter".into(),
            update_period_ns: 0,
        }
    }

    /// Samples every 10 ms over 0-100 ms: package at 50 W, its cores at 30 W (inside it),
    /// a GPU at 200 W.
    fn samples() -> Vec<Sample> {
        (0..=10u64)
            .map(|i| {
                let t = i * 10 * MS;
                let s = t as f64 / 1e9;
                Sample {
                    t_ns: t,
                    readings: vec![
                        Reading {
                            domain: "cpu/package-0".into(),
                            energy_j: Some(50.0 * s),
                            ..Default::default()
                        },
                        Reading {
                            domain: "cpu/package-0/core".into(),
                            energy_j: Some(30.0 * s),
                            ..Default::default()
                        },
                        Reading {
                            domain: "gpu/0".into(),
                            energy_j: Some(200.0 * s),
                            power_w: Some(200.0),
                            ..Default::default()
                        },
                    ],
                }
            })
            .collect()
    }

    #[test]
    fn overlapping_domains_are_not_added_and_tokens_divide_the_total() {
        let meta = EnergyMeta {
            domains: vec![
                domain("cpu/package-0", "cpu", true),
                domain("cpu/package-0/core", "cpu", false),
                domain("gpu/0", "gpu", true),
            ],
            window_from_ns: 20 * MS,
            window_to_ns: 80 * MS,
            idle_baseline: Some(IdleBaseline {
                duration_s: 1.0,
                power_w: [
                    ("cpu/package-0".to_string(), 10.0),
                    ("gpu/0".to_string(), 40.0),
                ]
                .into(),
            }),
            ..Default::default()
        };
        let mut r = RequestRecord {
            request_id: 1,
            t_sent_ns: Some(20 * MS),
            t_first_token_ns: Some(30 * MS),
            t_last_token_ns: Some(70 * MS),
            t_end_ns: Some(70 * MS),
            chunks: (3..=7).map(|k| [k * 10 * MS, 2]).collect(),
            output_tokens: Some(10),
            input_tokens: Some(20),
            success: true,
            ..Default::default()
        };
        r.derive(|m| m);
        let s = summarize(&meta, &samples(), std::slice::from_ref(&r)).unwrap();
        // 60 ms at 250 W: 15 J, cores not added.
        assert!((s.total_j - 15.0).abs() < 1e-9, "{}", s.total_j);
        assert!((s.by_device_j["gpu"] - 12.0).abs() < 1e-9);
        assert!((s.avg_power_w - 250.0).abs() < 1e-6);
        assert!((s.peak_power_w - 250.0).abs() < 1e-6);
        assert!((s.j_per_output_token.unwrap() - 1.5).abs() < 1e-9);
        assert!((s.j_per_token.unwrap() - 0.5).abs() < 1e-9);
        // The request is active 20-70 ms: 12.5 J; 70-80 ms is idle.
        let req = &s.per_request["request_energy_j"].dist;
        assert!((req.mean - 12.5).abs() < 1e-9, "{req:?}");
        assert!((s.unattributed_j - 2.5).abs() < 1e-9);
        // Idle 50 W over 60 ms: 3 J; 12 J above idle.
        let idle = s.above_idle.unwrap();
        assert!((idle.energy_j - 12.0).abs() < 1e-9);
        assert!((idle.j_per_output_token.unwrap() - 1.2).abs() < 1e-9);
    }

    #[test]
    fn a_window_the_updates_do_not_cover_gives_no_figures() {
        let meta = EnergyMeta {
            domains: vec![domain("gpu/0", "gpu", true)],
            window_from_ns: 50 * MS,
            window_to_ns: 150 * MS,
            ..Default::default()
        };
        assert!(summarize(&meta, &samples(), &[]).is_none());
    }
}
