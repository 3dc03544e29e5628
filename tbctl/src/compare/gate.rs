//! `--gate ttft_p99=+5%`: a bound on how far a figure may move from the base run, so
//! `tbctl compare` can guard CI (exit status 1 when a gate fails).

use serde::Serialize;

use crate::{
    catalogue::{self, Scope},
    summary::Summary,
};

/// Which statistic of a distribution a gate reads.
const STATS: &[&str] = &[
    "p50", "p90", "p95", "p99", "p99.9", "mean", "min", "max", "stddev",
];

/// Short names of the rates.
const RATE_ALIASES: &[(&str, &str)] = &[
    ("output_throughput", "output_token_throughput"),
    ("throughput", "output_token_throughput"),
    ("request_rate", "request_throughput"),
];

/// A parsed gate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gate {
    /// As given, e.g. "ttft_p99=+5%".
    pub spec: String,
    /// Catalogue name, e.g. "ttft_ms" or "output_token_throughput".
    pub metric: String,
    /// "p99", "mean", ... or "value" for a rate.
    pub stat: String,
    /// Allowed relative change in percent: positive bounds growth, negative bounds shrinkage.
    pub limit_pct: f64,
}

/// A gate checked against one current run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GateResult {
    pub gate: Gate,
    pub base: f64,
    pub current: f64,
    pub change_pct: f64,
    pub passed: bool,
}

impl std::str::FromStr for Gate {
    type Err = String;
    fn from_str(spec: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("bad --gate '{spec}': {why}; use e.g. ttft_p99=+5% or output_throughput=-3%")
        };
        let (name, limit) = spec.split_once('=').ok_or_else(|| bad("no '='"))?;
        let pct = limit
            .trim()
            .strip_suffix('%')
            .ok_or_else(|| bad("the limit is a percentage"))?;
        if !pct.starts_with(['+', '-']) {
            return Err(bad(
                "the limit needs a sign: + bounds growth, - bounds shrinkage",
            ));
        }
        let limit_pct: f64 = pct.parse().map_err(|_| bad("the limit is not a number"))?;
        let name = name.trim();
        let rate = RATE_ALIASES
            .iter()
            .find(|(a, _)| *a == name)
            .map(|(_, r)| *r)
            .or_else(|| catalogue::get(Scope::Rate, name).map(|d| d.name))
            // Whole-run energy figures gate as values too (`j_per_output_token=+5%`).
            .or_else(|| {
                catalogue::get(Scope::Energy, name)
                    .filter(|d| d.per == "run")
                    .map(|d| d.name)
            });
        let (metric, stat) = match rate {
            Some(r) => (r.to_string(), "value".to_string()),
            None => {
                let (prefix, stat) = name
                    .rsplit_once('_')
                    .filter(|(_, s)| STATS.contains(s))
                    .ok_or_else(|| {
                        bad(&format!(
                            "name a rate ({}) or METRIC_STAT with STAT one of {}",
                            catalogue::of(Scope::Rate)
                                .map(|d| d.name)
                                .collect::<Vec<_>>()
                                .join(", "),
                            STATS.join(", ")
                        ))
                    })?;
                let metric = [format!("{prefix}_ms"), prefix.to_string()]
                    .into_iter()
                    .find(|m| catalogue::get(Scope::Client, m).is_some())
                    .ok_or_else(|| bad(&format!("no metric '{prefix}'")))?;
                (metric, stat.to_string())
            }
        };
        Ok(Gate {
            spec: spec.to_string(),
            metric,
            stat,
            limit_pct,
        })
    }
}

/// The gate's figure in a summary.
pub fn figure(s: &Summary, metric: &str, stat: &str) -> Option<f64> {
    if stat == "value" {
        return match metric {
            "request_throughput" => Some(s.request_throughput.value),
            "output_token_throughput" => Some(s.output_token_throughput.value),
            "goodput" => s.goodput.as_ref().map(|g| g.value),
            other => s.energy.as_ref().and_then(|e| e.figure(other)),
        };
    }
    let d = &s.metrics.get(metric)?.dist;
    Some(match stat {
        "p50" => d.p50,
        "p90" => d.p90,
        "p95" => d.p95,
        "p99" => d.p99,
        "p99.9" => d.p999,
        "mean" => d.mean,
        "min" => d.min,
        "max" => d.max,
        "stddev" => d.stddev,
        _ => return None,
    })
}

impl Gate {
    /// Checks the gate; Err when either run lacks the figure.
    pub fn check(&self, base: &Summary, current: &Summary) -> Result<GateResult, String> {
        let get = |s: &Summary| {
            figure(s, &self.metric, &self.stat).ok_or_else(|| {
                format!(
                    "gate {}: run {} has no {} {}",
                    self.spec, s.run_id, self.metric, self.stat
                )
            })
        };
        let (b, c) = (get(base)?, get(current)?);
        let change_pct = if b != 0.0 {
            (c - b) / b.abs() * 100.0
        } else if c == b {
            0.0
        } else {
            f64::INFINITY.copysign(c - b)
        };
        let passed = if self.limit_pct >= 0.0 {
            change_pct <= self.limit_pct
        } else {
            change_pct >= self.limit_pct
        };
        Ok(GateResult {
            gate: self.clone(),
            base: b,
            current: c,
            change_pct,
            passed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_parse_to_catalogue_figures_and_bad_ones_say_how() {
        let g: Gate = "ttft_p99=+5%".parse().unwrap();
        assert_eq!(
            (g.metric.as_str(), g.stat.as_str(), g.limit_pct),
            ("ttft_ms", "p99", 5.0)
        );
        let g: Gate = "output_throughput=-3%".parse().unwrap();
        assert_eq!(
            (g.metric.as_str(), g.stat.as_str()),
            ("output_token_throughput", "value")
        );
        let g: Gate = "output_tokens_mean=-1%".parse().unwrap();
        assert_eq!(g.metric, "output_tokens");
        for bad in [
            "ttft_p99",
            "ttft_p99=5%",
            "ttft_p99=+5",
            "speed_p99=+1%",
            "ttft_p42=+1%",
        ] {
            let e = bad.parse::<Gate>().unwrap_err();
            assert!(e.starts_with(&format!("bad --gate '{bad}'")), "{e}");
        }
    }
}
