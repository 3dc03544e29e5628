//! `tbctl sweep`: one run per load level (rates or concurrencies, given or stepped up until
//! the server saturates), and the sweep report: throughput against latency, goodput against
//! load, and the saturation point.

use std::path::Path;

use serde::Serialize;

use crate::{
    doc::{Block, Document, Section, Table},
    plot::{sweep_curves, Drawn},
    rundir,
    summary::Summary,
};

/// Errors above this share of requests mean the server is past saturation.
pub const ERROR_RATE_MAX: f64 = 0.05;
/// TTFT p50 above this multiple of the lightest load's: requests are queueing.
pub const TTFT_GROWTH_MAX: f64 = 3.0;
/// Open loop: served below this share of the offered rate.
pub const SERVED_SHARE_MIN: f64 = 0.9;
/// Closed loop: below saturation throughput grows with the requests in flight (Little's law);
/// a step is past the knee when throughput rises by less than this share of the concurrency's
/// rise (2x the concurrency must give at least 1.5x the tokens/s). A fixed gain like 10% let
/// the client's own turnaround gaps at the knee (slots idle between a response and the next
/// request) pass for headroom.
pub const SCALING_SHARE_MIN: f64 = 0.5;

/// What a sweep varies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Open loop: requests per second.
    Rate,
    /// Closed loop: requests in flight.
    Concurrency,
}

impl Mode {
    /// The load's name and unit.
    pub fn unit(self) -> &'static str {
        match self {
            Mode::Rate => "offered req/s",
            Mode::Concurrency => "concurrency",
        }
    }
}

/// One load level's figures.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Step {
    pub load: f64,
    pub run_id: String,
    pub dir: String,
    pub request_throughput: f64,
    pub output_token_throughput: f64,
    pub goodput: Option<f64>,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    pub tpot_p50_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
    pub error_rate: f64,
    /// Host energy per output token, when tbd had a sensor.
    #[serde(default)]
    pub j_per_output_token: Option<f64>,
    /// Why this step is past saturation, if it is.
    pub saturated: Option<String>,
}

impl Step {
    /// The step's figures from its run's summary.
    pub fn new(load: f64, dir: &Path, s: &Summary) -> Self {
        let m = |name: &str, p99: bool| {
            s.metrics
                .get(name)
                .map(|m| if p99 { m.dist.p99 } else { m.dist.p50 })
        };
        Step {
            load,
            run_id: s.run_id.clone(),
            dir: dir.display().to_string(),
            request_throughput: s.request_throughput.value,
            output_token_throughput: s.output_token_throughput.value,
            goodput: s.goodput.as_ref().map(|g| g.value),
            ttft_p50_ms: m("ttft_ms", false),
            ttft_p99_ms: m("ttft_ms", true),
            tpot_p50_ms: m("tpot_ms", false),
            e2e_p99_ms: m("e2e_ms", true),
            error_rate: if s.requests.total > 0 {
                s.requests.failed as f64 / s.requests.total as f64
            } else {
                0.0
            },
            j_per_output_token: s.energy.as_ref().and_then(|e| e.j_per_output_token),
            saturated: None,
        }
    }
}

/// Why `step` is past saturation given the steps before it (lighter loads), if it is.
pub fn saturation(mode: Mode, before: &[Step], step: &Step) -> Option<String> {
    if step.error_rate > ERROR_RATE_MAX {
        return Some(format!(
            "errors rose to {:.1}% of requests (over {:.0}%)",
            step.error_rate * 100.0,
            ERROR_RATE_MAX * 100.0
        ));
    }
    if let (Some(first), Some(now)) = (before.first().and_then(|s| s.ttft_p50_ms), step.ttft_p50_ms)
    {
        if now > TTFT_GROWTH_MAX * first {
            return Some(format!(
                "TTFT p50 {now:.1} ms is {:.1}x the lightest load's {first:.1} ms (over \
                 {TTFT_GROWTH_MAX}x): requests queue",
                now / first
            ));
        }
    }
    let prev = before.last()?;
    if let (Some(g0), Some(g1)) = (prev.goodput, step.goodput) {
        if g1 < g0 {
            return Some(format!(
                "goodput fell from {g0:.2} to {g1:.2} req/s as the load grew"
            ));
        }
    }
    match mode {
        Mode::Rate if step.request_throughput < SERVED_SHARE_MIN * step.load => Some(format!(
            "served {:.2} of {:.2} req/s offered (under {:.0}%)",
            step.request_throughput,
            step.load,
            SERVED_SHARE_MIN * 100.0
        )),
        Mode::Concurrency => {
            let load_rise = step.load / prev.load - 1.0;
            let rise = step.output_token_throughput / prev.output_token_throughput - 1.0;
            (rise < SCALING_SHARE_MIN * load_rise).then(|| {
                format!(
                    "output throughput rose only {:.0}% ({:.1} to {:.1} tokens/s) for {:.1}x the \
                     load (under {:.0}% of the load's rise)",
                    rise * 100.0,
                    prev.output_token_throughput,
                    step.output_token_throughput,
                    step.load / prev.load,
                    SCALING_SHARE_MIN * 100.0
                )
            })
        }
        _ => None,
    }
}

/// sweep.json.
#[derive(Clone, Debug, Serialize)]
pub struct Sweep {
    pub mode: Mode,
    pub steps: Vec<Step>,
    /// The highest load before the first saturated step; None when no step saturated (the
    /// server's limit lies beyond the sweep) or the first one did.
    pub saturation_point: Option<f64>,
    pub rules: String,
    pub plots: Vec<Drawn>,
    /// Loads on the J/output token against TTFT p99 Pareto front: no other step has both
    /// fewer J per output token and a lower TTFT p99.
    pub pareto_front: Vec<f64>,
    pub notes: Vec<String>,
}

/// The loads of the steps no other step beats on both J per output token and TTFT p99 (each
/// lower or equal, one lower): the energy/latency trade-offs worth running at, in load order;
/// empty without energy figures.
pub fn pareto(steps: &[Step]) -> Vec<f64> {
    let with: Vec<(&Step, f64, f64)> = steps
        .iter()
        .filter_map(|s| Some((s, s.j_per_output_token?, s.ttft_p99_ms?)))
        .collect();
    with.iter()
        .filter(|(_, ja, ta)| {
            !with
                .iter()
                .any(|(_, jb, tb)| jb <= ja && tb <= ta && (jb < ja || tb < ta))
        })
        .map(|(s, _, _)| s.load)
        .collect()
}

/// How saturation is decided, for the report.
pub fn rules() -> String {
    format!(
        "a step is past saturation when errors exceed {:.0}% of requests, TTFT p50 exceeds \
         {TTFT_GROWTH_MAX}x the lightest load's, goodput falls, or (open loop) fewer than {:.0}% \
         of the offered requests per second are served, or (closed loop) output throughput \
         rises by less than {:.0}% of the concurrency's rise (1.5x for 2x)",
        ERROR_RATE_MAX * 100.0,
        SERVED_SHARE_MIN * 100.0,
        SCALING_SHARE_MIN * 100.0
    )
}

/// The sweep of `steps` (each already marked), with its plots drawn into `out`.
pub fn finish(mode: Mode, steps: Vec<Step>, out: &Path) -> Sweep {
    let first_bad = steps.iter().position(|s| s.saturated.is_some());
    let saturation_point = match first_bad {
        Some(i) if i > 0 => Some(steps[i - 1].load),
        _ => None,
    };
    let mut notes = Vec::new();
    match first_bad {
        None => notes.push(
            "no step saturated the server: its limit lies beyond the highest load swept".into(),
        ),
        Some(0) => notes.push("the lightest load already saturated the server".into()),
        Some(_) => {}
    }
    let pareto = pareto(&steps);
    if pareto.is_empty() {
        notes.push(
            "energy absent: no run of the sweep has energy figures, so no J/token Pareto front"
                .into(),
        );
    }
    let plots = match sweep_curves::render(mode, &steps, saturation_point, out) {
        Ok(d) => vec![d],
        Err(e) => {
            notes.push(format!("the sweep plot was not drawn: {e}"));
            Vec::new()
        }
    };
    Sweep {
        mode,
        steps,
        saturation_point,
        rules: rules(),
        plots,
        pareto_front: pareto,
        notes,
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_default()
}

/// The sweep as a document.
pub fn document(s: &Sweep) -> Document {
    let rows = s
        .steps
        .iter()
        .map(|x| {
            vec![
                format!("{}", x.load),
                format!("{:.2}", x.request_throughput),
                format!("{:.1}", x.output_token_throughput),
                opt(x.goodput),
                opt(x.ttft_p50_ms),
                opt(x.ttft_p99_ms),
                opt(x.tpot_p50_ms),
                opt(x.e2e_p99_ms),
                format!("{:.1}%", x.error_rate * 100.0),
                x.j_per_output_token
                    .map(|j| format!("{j:.3}"))
                    .unwrap_or_default(),
                x.saturated.clone().unwrap_or_else(|| "no".into()),
                x.run_id.clone(),
            ]
        })
        .collect();
    let point = match s.saturation_point {
        Some(p) => format!(
            "Saturation point: **{p} {}**, the highest load before the first saturated step.",
            s.mode.unit()
        ),
        None => "Saturation point: not found in this sweep.".into(),
    };
    let point = if s.pareto_front.is_empty() {
        point
    } else {
        format!(
            "{point} J/output token against TTFT p99 Pareto front (no other step has both \
             fewer J per output token and a lower TTFT p99): {} {}.",
            s.pareto_front
                .iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            s.mode.unit()
        )
    };
    Document {
        title: format!("TrafficBench sweep over {}", s.mode.unit()),
        sections: vec![
            Section {
                title: "Steps".into(),
                blocks: vec![
                    Block::Para(point),
                    Block::Table(Table {
                        header: [
                            s.mode.unit(),
                            "req/s",
                            "tokens/s",
                            "goodput",
                            "TTFT p50 ms",
                            "TTFT p99 ms",
                            "TPOT p50 ms",
                            "E2E p99 ms",
                            "errors",
                            "J/output token",
                            "saturated",
                            "run",
                        ]
                        .map(String::from)
                        .to_vec(),
                        rows,
                    }),
                    Block::Para(format!("Rule: {}.", s.rules)),
                ],
            },
            Section {
                title: "Plots".into(),
                blocks: s.plots.iter().cloned().map(Block::Plot).collect(),
            },
            Section {
                title: "Notes".into(),
                blocks: vec![Block::Bullets(s.notes.clone())],
            },
        ],
    }
}

/// Writes sweep.json, sweep.md and sweep.html into `out`.
pub fn write(s: &Sweep, out: &Path) -> std::io::Result<()> {
    rundir::write_json(out, "sweep.json", s)?;
    document(s).write(out, "sweep")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(load: f64, tokens: f64, ttft: f64) -> Step {
        Step {
            load,
            run_id: String::new(),
            dir: String::new(),
            request_throughput: tokens / 8.0,
            output_token_throughput: tokens,
            goodput: None,
            ttft_p50_ms: Some(ttft),
            ttft_p99_ms: None,
            tpot_p50_ms: None,
            e2e_p99_ms: None,
            error_rate: 0.0,
            j_per_output_token: None,
            saturated: None,
        }
    }

    #[test]
    fn the_pareto_front_keeps_the_steps_nothing_beats_on_both_energy_and_ttft_p99() {
        let with = |load, j, ttft_p99| {
            let mut s = step(load, 100.0, 20.0);
            s.j_per_output_token = Some(j);
            s.ttft_p99_ms = Some(ttft_p99);
            s
        };
        let steps = [
            // The fastest, the most energy per token: on the front.
            with(1.0, 2.0, 30.0),
            // Less energy, a little slower: on the front.
            with(2.0, 1.0, 40.0),
            // Less energy still, slower again: on the front.
            with(4.0, 0.8, 90.0),
            // More energy and slower than load 4: beaten.
            with(8.0, 0.9, 400.0),
        ];
        assert_eq!(pareto(&steps), vec![1.0, 2.0, 4.0]);
        assert!(
            pareto(&[step(1.0, 100.0, 20.0)]).is_empty(),
            "no energy, no front"
        );
    }

    #[test]
    fn each_rule_names_its_figures() {
        let before = [step(1.0, 100.0, 20.0), step(2.0, 200.0, 21.0)];
        assert_eq!(
            saturation(Mode::Concurrency, &before, &step(4.0, 300.0, 22.0)),
            None,
            "1.5x the tokens for 2x the concurrency is still below the knee"
        );
        // The CI run that made this rule: 12% more tokens for twice the requests in flight.
        let flat = saturation(Mode::Concurrency, &before, &step(4.0, 224.0, 22.0)).unwrap();
        assert!(flat.contains("rose only 12%"), "{flat}");
        assert!(saturation(Mode::Concurrency, &before, &step(4.0, 290.0, 22.0)).is_some());
        let slow = saturation(Mode::Concurrency, &before, &step(4.0, 400.0, 61.0)).unwrap();
        assert!(slow.contains("3.0x the lightest"), "{slow}");
        let mut bad = step(4.0, 400.0, 22.0);
        bad.error_rate = 0.06;
        assert!(saturation(Mode::Rate, &before, &bad)
            .unwrap()
            .contains("6.0%"));
        // Offered 40 req/s, served 25.
        let short = saturation(Mode::Rate, &before, &step(40.0, 200.0, 22.0)).unwrap();
        assert!(short.contains("served 25.00 of 40.00"), "{short}");
    }
}
