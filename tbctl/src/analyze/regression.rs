//! Least squares with 95% intervals and R²: TTFT against input tokens (prefill cost), E2E
//! against output tokens (decode cost) and, with energy, a request's energy against its output
//! tokens, each drawn with its fit.

use serde_json::json;

use super::Outcome;
use crate::{
    analysis::regression::{self, Fit},
    plot::scatter_fit::{self, ScatterFit},
    rundir::RunData,
};

pub const NAME: &str = "regression";
pub const ABOUT: &str = "least squares with 95% CIs and R²: TTFT vs input tokens, E2E vs output \
                         tokens, request energy vs output tokens (with energy)";

/// (name, title, x axis, y axis, x of a record, y of a record)
type Pair = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    fn(&crate::record::RequestRecord) -> Option<f64>,
    fn(&crate::record::RequestRecord) -> Option<f64>,
);

const PAIRS: [Pair; 2] = [
    (
        "regression-ttft-input",
        "TTFT against input tokens",
        "input tokens",
        "TTFT (ms)",
        |r| r.input_tokens.map(|n| n as f64),
        |r| r.ttft_ms,
    ),
    (
        "regression-e2e-output",
        "E2E latency against output tokens",
        "output tokens",
        "E2E (ms)",
        |r| r.output_tokens.map(|n| n as f64),
        |r| r.e2e_ms,
    ),
];

/// Where one analysis collects its text, figures and plots.
struct Out<'a> {
    lines: &'a mut Vec<String>,
    data: &'a mut serde_json::Map<String, serde_json::Value>,
    plots: &'a mut Vec<crate::plot::Drawn>,
}

/// Fits `points`, says the fit in a line, keeps it under `name` and draws it with its points.
fn fit_and_draw(
    out: &mut Out<'_>,
    (name, title, x_desc, y_desc): (&'static str, &'static str, &'static str, &'static str),
    points: &[(f64, f64)],
    dir: &std::path::Path,
) {
    let Some(fit): Option<Fit> = regression::fit(points) else {
        out.lines.push(format!(
            "{title}: no fit ({} points; needs 3 or more with different {x_desc})",
            points.len()
        ));
        out.data.insert(name.into(), serde_json::Value::Null);
        return;
    };
    out.lines.push(format!(
        "{title}: {y_desc} = {:.4} + {:.4} × {x_desc} (slope 95% CI {}, intercept 95% CI {}), \
         R² {:.3}, {} requests",
        fit.intercept,
        fit.slope,
        ci(fit.slope_ci95),
        ci(fit.intercept_ci95),
        fit.r2,
        fit.n
    ));
    out.data.insert(name.into(), json!(fit));
    let s = ScatterFit {
        name,
        point: "requests",
        title,
        x_desc,
        y_desc,
        points,
        fit,
    };
    match scatter_fit::render(&s, dir) {
        Ok(d) => out.plots.push(d),
        Err(e) => out.lines.push(format!("{title}: plot not drawn: {e}")),
    }
}

/// A request's energy against its output tokens: the marginal J per token (slope) and the
/// fixed J per request (intercept), from the per-request split of the run's energy.
fn energy_against_tokens(run: &RunData, out: &mut Out<'_>) {
    let what = (
        "regression-energy-output",
        "Request energy against output tokens",
        "output tokens",
        "request energy (J)",
    );
    let split = match (&run.config.energy, &run.energy) {
        (Some(meta), Some(samples)) => {
            crate::energy::figures::request_energies(meta, samples, &run.records)
        }
        _ => None,
    };
    let Some(split) = split else {
        out.lines.push(format!(
            "{}: absent (the run has no energy samples covering it: {})",
            what.1,
            run.config
                .notes
                .iter()
                .find(|n| n.starts_with("energy"))
                .map(String::as_str)
                .unwrap_or("recorded without tbd's energy sensors")
        ));
        out.data.insert(what.0.into(), serde_json::Value::Null);
        return;
    };
    let points: Vec<(f64, f64)> = run
        .records
        .iter()
        .zip(&split.requests)
        .filter(|(r, _)| !r.warmup && r.success)
        .filter_map(|(r, e)| Some((r.output_tokens? as f64, e.total_j())))
        .collect();
    fit_and_draw(out, what, &points, &run.dir);
}

fn ci(v: Option<(f64, f64)>) -> String {
    v.map(|(a, b)| format!("[{a:.4}, {b:.4}]"))
        .unwrap_or_else(|| "n/a".into())
}

pub fn run(run: &RunData) -> Result<Outcome, String> {
    let mut lines = Vec::new();
    let mut data = serde_json::Map::new();
    let mut plots = Vec::new();
    let mut out = Out {
        lines: &mut lines,
        data: &mut data,
        plots: &mut plots,
    };
    for (name, title, x_desc, y_desc, fx, fy) in PAIRS {
        let points: Vec<(f64, f64)> = run
            .measured()
            .filter(|r| r.success)
            .filter_map(|r| Some((fx(r)?, fy(r)?)))
            .collect();
        fit_and_draw(&mut out, (name, title, x_desc, y_desc), &points, &run.dir);
    }
    energy_against_tokens(run, &mut out);
    Ok(Outcome {
        analysis: NAME,
        lines,
        data: serde_json::Value::Object(data),
        plots,
    })
}
