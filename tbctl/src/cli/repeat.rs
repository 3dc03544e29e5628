//! `tbctl profile --repeat N`: each metric's median and p99 across the runs, with a 95%
//! confidence interval of their mean (Student t, N − 1 degrees of freedom).

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};

use super::profile::Finished;
use crate::catalogue::{self, Scope};

/// One statistic across the runs.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Across {
    pub values: Vec<f64>,
    pub mean: f64,
    pub stddev: f64,
    /// mean ± t(0.975, N − 1) · stddev / √N.
    pub ci95: Option<(f64, f64)>,
}

/// One metric across the runs.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MetricAcross {
    pub metric: String,
    pub unit: String,
    pub p50: Across,
    pub p99: Across,
}

/// repeat-<first run>.json.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Repeat {
    pub runs: Vec<String>,
    pub metrics: Vec<MetricAcross>,
    pub output_token_throughput: Across,
    pub request_throughput: Across,
    pub method: String,
}

/// Mean, standard deviation and the t interval of `values`.
pub fn across(values: Vec<f64>) -> Across {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let stddev = if values.len() > 1 {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    let ci95 = StudentsT::new(0.0, 1.0, n - 1.0).ok().map(|t| {
        let half = t.inverse_cdf(0.975) * stddev / n.sqrt();
        (mean - half, mean + half)
    });
    Across {
        values,
        mean,
        stddev,
        ci95,
    }
}

/// The across-run figures of `runs`.
pub fn aggregate(runs: &[Finished]) -> Repeat {
    let metrics = catalogue::of(Scope::Client)
        .filter_map(|d| {
            let dists: Vec<_> = runs
                .iter()
                .map(|r| r.summary.metrics.get(d.name).map(|m| &m.dist))
                .collect::<Option<_>>()?;
            Some(MetricAcross {
                metric: d.name.into(),
                unit: d.unit.into(),
                p50: across(dists.iter().map(|d| d.p50).collect()),
                p99: across(dists.iter().map(|d| d.p99).collect()),
            })
        })
        .collect();
    Repeat {
        runs: runs.iter().map(|r| r.summary.run_id.clone()).collect(),
        metrics,
        output_token_throughput: across(
            runs.iter()
                .map(|r| r.summary.output_token_throughput.value)
                .collect(),
        ),
        request_throughput: across(
            runs.iter()
                .map(|r| r.summary.request_throughput.value)
                .collect(),
        ),
        method: "per run p50 and p99, then their mean across the runs with a 95% Student-t \
                 interval (N - 1 degrees of freedom)"
            .into(),
    }
}

fn show(a: &Across) -> String {
    match a.ci95 {
        Some((lo, hi)) => format!("{:.3} [{lo:.3}, {hi:.3}]", a.mean),
        None => format!("{:.3}", a.mean),
    }
}

/// The across-run table on stdout.
pub fn print(r: &Repeat) {
    println!(
        "across {} runs: mean [95% CI] of each run's figure",
        r.runs.len()
    );
    for m in &r.metrics {
        println!(
            "  {:<22} p50 {}  p99 {}",
            m.metric,
            show(&m.p50),
            show(&m.p99)
        );
    }
    println!(
        "  output tokens/s {}; requests/s {}",
        show(&r.output_token_throughput),
        show(&r.request_throughput)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_the_t_interval_of_the_runs() {
        // 10, 12, 14: mean 12, s = 2, t(0.975, 2) = 4.302653: 12 ± 4.968275.
        let a = across(vec![10.0, 12.0, 14.0]);
        assert_eq!((a.mean, a.stddev), (12.0, 2.0));
        let (lo, hi) = a.ci95.unwrap();
        assert!(
            (lo - 7.031_725).abs() < 1e-5 && (hi - 16.968_275).abs() < 1e-5,
            "{lo} {hi}"
        );
    }
}
