//! `tbctl compare BASE CURRENT [MORE…]`: every metric side by side with its change, a 95%
//! bootstrap interval of the change in median and p99, Mann-Whitney U on the distributions,
//! a comparability check of what the runs sent, and gates for CI.

pub mod comparable;
pub mod gate;

use std::{collections::BTreeMap, path::Path};

use serde::Serialize;

use crate::{
    analysis::significance::{self, MannWhitney, BOOTSTRAP_ROUNDS},
    catalogue::{self, Scope},
    doc::{num, Block, Document, Section, Table},
    energy::figures,
    kernel::join::KernelSamples,
    plot::{
        overlay::{self, RunSamples},
        Drawn,
    },
    record::RequestRecord,
    rundir::{self, RunData},
    stats::Distribution,
    summary::{self, Summary},
};

pub use gate::{Gate, GateResult};

/// A difference is called significant below this Mann-Whitney p-value and when the 95%
/// interval of the change in median excludes zero.
pub const ALPHA: f64 = 0.05;

/// One statistic of one metric in both runs.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Change {
    pub base: f64,
    pub current: f64,
    /// current − base.
    pub diff: f64,
    /// (current − base) / base, in percent; None when base is 0.
    pub diff_pct: Option<f64>,
    /// 95% bootstrap interval of current − base.
    pub ci95: Option<(f64, f64)>,
}

/// One metric compared.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MetricComparison {
    pub metric: String,
    /// Whose samples: the client's records, the kernel's exchanges, or the energy split.
    pub scope: Scope,
    pub unit: String,
    pub formula: String,
    pub base_count: u64,
    pub current_count: u64,
    pub mean: Change,
    pub p50: Change,
    pub p99: Change,
    pub mann_whitney: Option<MannWhitney>,
    /// p < ALPHA and the median's interval excludes 0.
    pub significant: bool,
}

/// A rate compared (one value per run: no distribution to test).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RateComparison {
    pub rate: String,
    pub unit: String,
    pub change: Change,
}

/// One current run against the base.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub base: String,
    pub current: String,
    pub metrics: Vec<MetricComparison>,
    pub rates: Vec<RateComparison>,
    /// Differences in what the runs sent.
    pub comparability: Vec<String>,
    pub gates: Vec<GateResult>,
}

/// compare.json.
#[derive(Clone, Debug, Serialize)]
pub struct CompareReport {
    pub base: String,
    pub comparisons: Vec<Comparison>,
    pub plots: Vec<Drawn>,
    /// How significance is decided.
    pub method: String,
    pub notes: Vec<String>,
}

impl CompareReport {
    /// Whether every gate of every comparison passed.
    pub fn gates_passed(&self) -> bool {
        self.comparisons
            .iter()
            .all(|c| c.gates.iter().all(|g| g.passed))
    }
}

fn change(base: f64, current: f64, ci95: Option<(f64, f64)>) -> Change {
    Change {
        base,
        current,
        diff: current - base,
        diff_pct: (base != 0.0).then(|| (current - base) / base.abs() * 100.0),
        ci95,
    }
}

/// A run ready to compare: its data, summary and samples of every scope.
struct Side {
    run: RunData,
    summary: Summary,
    samples: BTreeMap<&'static str, Vec<f64>>,
    kernel: BTreeMap<&'static str, Vec<f64>>,
    energy: BTreeMap<&'static str, Vec<f64>>,
}

impl Side {
    fn new(run: RunData) -> Self {
        let summary = run.summary();
        let measured: Vec<&RequestRecord> = run.measured().collect();
        let samples = summary::samples(&measured);
        let kernel = run
            .kernel
            .as_ref()
            .map(|lines| KernelSamples::of(lines, &measured).samples)
            .unwrap_or_default();
        let energy = match (&run.config.energy, &run.energy) {
            (Some(meta), Some(s)) => figures::request_energies(meta, s, &run.records)
                .map(|a| figures::request_samples(&run.records, &a.requests))
                .unwrap_or_default(),
            _ => BTreeMap::new(),
        };
        Self {
            run,
            summary,
            samples,
            kernel,
            energy,
        }
    }

    /// The samples of a scope.
    fn of(&self, scope: Scope) -> &BTreeMap<&'static str, Vec<f64>> {
        match scope {
            Scope::Kernel => &self.kernel,
            Scope::Energy => &self.energy,
            _ => &self.samples,
        }
    }

    fn label(&self) -> String {
        let c = &self.run.config;
        if c.label.is_empty() {
            c.run_id.clone()
        } else {
            format!("{} ({})", c.run_id, c.label)
        }
    }
}

/// Every distribution of the client's records, the kernel's exchanges and the per-request
/// energy split that both runs have, compared.
fn compare_metrics(base: &Side, cur: &Side, seed: u64) -> Vec<MetricComparison> {
    [Scope::Client, Scope::Kernel, Scope::Energy]
        .into_iter()
        .flat_map(catalogue::of)
        .filter_map(|d| {
            let (b, c) = (base.of(d.scope).get(d.name)?, cur.of(d.scope).get(d.name)?);
            let (bd, cd) = (
                Distribution::of(&mut b.clone())?,
                Distribution::of(&mut c.clone())?,
            );
            let boot = |stat| significance::bootstrap_diff(b, c, stat, BOOTSTRAP_ROUNDS, seed);
            let p50 = change(bd.p50, cd.p50, boot(significance::median));
            let mw = significance::mann_whitney(b, c);
            let significant = mw.is_some_and(|m| m.p < ALPHA)
                && p50.ci95.is_some_and(|(lo, hi)| lo > 0.0 || hi < 0.0);
            Some(MetricComparison {
                metric: d.name.into(),
                scope: d.scope,
                unit: d.unit.into(),
                formula: d.formula.into(),
                base_count: bd.count,
                current_count: cd.count,
                mean: change(bd.mean, cd.mean, None),
                p99: change(bd.p99, cd.p99, boot(significance::p99)),
                p50,
                mann_whitney: mw,
                significant,
            })
        })
        .collect()
}

/// Whole-run figures (rates, and energy when both runs have it), one value per run.
fn compare_rates(base: &Summary, cur: &Summary) -> Vec<RateComparison> {
    catalogue::of(Scope::Rate)
        .chain(catalogue::of(Scope::Energy).filter(|d| d.per == "run"))
        .filter_map(|d| {
            let b = gate::figure(base, d.name, "value")?;
            let c = gate::figure(cur, d.name, "value")?;
            Some(RateComparison {
                rate: d.name.into(),
                unit: d.unit.into(),
                change: change(b, c, None),
            })
        })
        .collect()
}

/// Compares every run after the first with the first, checks the gates, and draws the
/// overlaid CDFs into `out`. Err: one line (a gate naming a figure a run lacks).
pub fn compare(
    runs: Vec<RunData>,
    gates: &[Gate],
    seed: u64,
    out: &Path,
) -> Result<CompareReport, String> {
    let sides: Vec<Side> = runs.into_iter().map(Side::new).collect();
    let (base, rest) = sides
        .split_first()
        .ok_or("compare needs two runs or more")?;
    let mut comparisons = Vec::new();
    for cur in rest {
        let gates = gates
            .iter()
            .map(|g| g.check(&base.summary, &cur.summary))
            .collect::<Result<Vec<_>, _>>()?;
        comparisons.push(Comparison {
            base: base.run.config.run_id.clone(),
            current: cur.run.config.run_id.clone(),
            metrics: compare_metrics(base, cur, seed),
            rates: compare_rates(&base.summary, &cur.summary),
            comparability: comparable::check(&base.run, &base.summary, &cur.run, &cur.summary),
            gates,
        });
    }
    let overlay_input: Vec<RunSamples> = sides
        .iter()
        .map(|s| RunSamples {
            label: s.label(),
            samples: &s.samples,
        })
        .collect();
    let mut notes = Vec::new();
    let plots = match overlay::render(&overlay_input, out) {
        Ok(d) => vec![d],
        Err(e) => {
            notes.push(format!("the CDF overlay was not drawn: {e}"));
            Vec::new()
        }
    };
    Ok(CompareReport {
        base: base.run.config.run_id.clone(),
        comparisons,
        plots,
        method: method(),
        notes,
    })
}

/// How significance is decided, for the report.
pub fn method() -> String {
    format!(
        "changes are current - base; 95% intervals are percentile bootstraps ({BOOTSTRAP_ROUNDS} \
         resamplings of each run, fixed seed, at most {} samples per run); Mann-Whitney U is \
         two-sided with the normal approximation (tie and continuity corrected); a change is \
         significant when p < {ALPHA} and the median's interval excludes 0",
        significance::BOOTSTRAP_MAX_SAMPLES
    )
}

fn pct(v: Option<f64>) -> String {
    v.map(|p| format!("{p:+.1}%"))
        .unwrap_or_else(|| "n/a".into())
}

fn ci(v: Option<(f64, f64)>) -> String {
    v.map(|(a, b)| format!("[{}, {}]", num(a), num(b)))
        .unwrap_or_default()
}

/// The comparison as a document (markdown and HTML).
pub fn document(r: &CompareReport) -> Document {
    let mut sections = Vec::new();
    for c in &r.comparisons {
        let mut blocks = Vec::new();
        if c.comparability.is_empty() {
            blocks.push(Block::Para(
                "The runs sent the same workload (seed, dataset or trace, output length, load, \
                 API and token source agree)."
                    .into(),
            ));
        } else {
            blocks.push(Block::Bullets(
                c.comparability
                    .iter()
                    .map(|w| format!("**warn** {w}"))
                    .collect(),
            ));
        }
        let mut rows = Vec::new();
        for m in &c.metrics {
            let name = match m.scope {
                Scope::Client => m.metric.clone(),
                other => format!("{} ({})", m.metric, other.name()),
            };
            for (stat, ch) in [("p50", &m.p50), ("p99", &m.p99), ("mean", &m.mean)] {
                rows.push(vec![
                    name.clone(),
                    stat.into(),
                    num(ch.base),
                    num(ch.current),
                    num(ch.diff),
                    pct(ch.diff_pct),
                    ci(ch.ci95),
                    if stat == "p50" {
                        m.mann_whitney
                            .map(|w| format!("{:.4}", w.p))
                            .unwrap_or_default()
                    } else {
                        String::new()
                    },
                    if stat == "p50" && m.significant {
                        "**significant**".into()
                    } else {
                        String::new()
                    },
                ]);
            }
        }
        blocks.push(Block::Table(Table {
            header: [
                "metric",
                "stat",
                "base",
                "current",
                "change",
                "change %",
                "95% CI of change",
                "Mann-Whitney p",
                "",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        }));
        blocks.push(Block::Table(Table {
            header: ["rate", "unit", "base", "current", "change %"]
                .map(String::from)
                .to_vec(),
            rows: c
                .rates
                .iter()
                .map(|x| {
                    vec![
                        x.rate.clone(),
                        x.unit.clone(),
                        num(x.change.base),
                        num(x.change.current),
                        pct(x.change.diff_pct),
                    ]
                })
                .collect(),
        }));
        if !c.gates.is_empty() {
            blocks.push(Block::Table(Table {
                header: ["gate", "base", "current", "change %", "result"]
                    .map(String::from)
                    .to_vec(),
                rows: c
                    .gates
                    .iter()
                    .map(|g| {
                        vec![
                            g.gate.spec.clone(),
                            num(g.base),
                            num(g.current),
                            pct(Some(g.change_pct)),
                            if g.passed { "PASS" } else { "FAIL" }.into(),
                        ]
                    })
                    .collect(),
            }));
        }
        sections.push(Section {
            title: format!("{} against {}", c.current, c.base),
            blocks,
        });
    }
    sections.push(Section {
        title: "Plots".into(),
        blocks: r.plots.iter().cloned().map(Block::Plot).collect(),
    });
    let mut notes = vec![format!("Method: {}.", r.method)];
    notes.extend(r.notes.iter().cloned());
    sections.push(Section {
        title: "Method".into(),
        blocks: vec![Block::Bullets(notes)],
    });
    Document {
        title: format!("TrafficBench comparison against run {}", r.base),
        sections,
    }
}

/// Writes compare.json, compare.md and compare.html into `out`.
pub fn write(r: &CompareReport, out: &Path) -> std::io::Result<()> {
    rundir::write_json(out, "compare.json", r)?;
    document(r).write(out, "compare")
}
