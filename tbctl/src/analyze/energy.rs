//! Energy: where the run's joules went (per device, prefill and decode, idle intervals) and
//! how power follows load: host power against output tokens per second over the run, fitted
//! by least squares, whose slope is the marginal energy of a token and whose intercept is the
//! power the host draws with no tokens flowing.

use serde_json::json;

use super::Outcome;
use crate::{
    analysis::regression,
    doc::num,
    energy::timeseries,
    plot::scatter_fit::{self, ScatterFit},
    rundir::RunData,
};

pub const NAME: &str = "energy";
pub const ABOUT: &str =
    "energy per device, prefill and decode, idle share, and power against token throughput (marginal J/token)";

/// Bins for the power-against-load fit: fine enough for many points, coarse enough that each
/// holds several counter updates.
const BIN_NS: u64 = 250_000_000;

pub fn run(run: &RunData) -> Result<Outcome, String> {
    let summary = run.summary();
    let (Some(meta), Some(samples), Some(e)) = (&run.config.energy, &run.energy, &summary.energy)
    else {
        return Err(run
            .config
            .notes
            .iter()
            .find(|n| n.starts_with("energy"))
            .cloned()
            .unwrap_or_else(|| {
                "no energy samples: the run was profiled without tbd's energy sensors".into()
            }));
    };
    let mut lines = vec![format!(
        "{} J over {:.2} s ({} W average, {} W peak); {}",
        num(e.total_j),
        e.window_s,
        num(e.avg_power_w),
        num(e.peak_power_w),
        e.by_device_j
            .iter()
            .map(|(k, v)| format!("{k} {:.0}%", v / e.total_j * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    )];
    if let Some(j) = e.j_per_output_token {
        lines.push(format!("{} J per output token on average", num(j)));
    }
    let mean = |k: &str| e.per_request.get(k).map(|m| m.dist.mean);
    if let (Some(p), Some(d)) = (mean("prefill_energy_j"), mean("decode_energy_j")) {
        if p + d > 0.0 {
            lines.push(format!(
                "per request: prefill {:.0}% and decode {:.0}% of its energy ({} J and {} J mean)",
                p / (p + d) * 100.0,
                d / (p + d) * 100.0,
                num(p),
                num(d)
            ));
        }
    }
    lines.push(format!(
        "{:.1}% of the window's energy fell in intervals with no request active",
        // + 0.0: an idle share of -0.0 (rounding) prints as 0.0.
        (e.unattributed_j / e.total_j * 100.0).max(0.0) + 0.0
    ));
    let bins = timeseries::bins(meta, samples, &run.records, BIN_NS);
    let points: Vec<(f64, f64)> = bins
        .iter()
        .filter_map(|b| Some((b.output_tokens_per_s, b.total_w?)))
        .collect();
    let mut data = serde_json::Map::new();
    data.insert("energy".into(), json!(e));
    let mut plots = Vec::new();
    match regression::fit(&points) {
        Some(fit) => {
            lines.push(format!(
                "power = {:.1} W + {:.4} J × output tokens/s (R² {:.3}, {} bins of {} ms): a token \
                 costs {:.4} J at the margin, and the host draws {:.1} W with none flowing",
                fit.intercept,
                fit.slope,
                fit.r2,
                fit.n,
                BIN_NS / 1_000_000,
                fit.slope,
                fit.intercept
            ));
            data.insert("power_against_tokens".into(), json!(fit));
            let s = ScatterFit {
                name: "energy-power-tokens",
                point: "250 ms bins",
                title: "Host power against output token throughput",
                x_desc: "output tokens/s",
                y_desc: "host power (W)",
                points: &points,
                fit,
            };
            match scatter_fit::render(&s, &run.dir) {
                Ok(d) => plots.push(d),
                Err(err) => lines.push(format!("power against tokens: plot not drawn: {err}")),
            }
        }
        None => lines.push(format!(
            "power against tokens: no fit ({} bins of {} ms; needs 3 or more with different \
             throughput)",
            points.len(),
            BIN_NS / 1_000_000
        )),
    }
    Ok(Outcome {
        analysis: NAME,
        lines,
        data: serde_json::Value::Object(data),
        plots,
    })
}
