//! `tbctl report`: a run's configuration, results with formulas, assessment against its SLOs,
//! recommendations and plots, as report.json, report.md and report.html (one self-contained
//! file with inline SVG). The document is built once ([`Document`]) and rendered twice.

pub mod advice;
pub mod assess;
pub mod energy;

use serde::Serialize;

use crate::{
    catalogue::{self, Scope},
    doc::{num, Block, Document, Section, Table},
    kernel::trace::{self, Insight, TraceReport},
    plot::{self, Drawn, PlotInput},
    record::RequestRecord,
    rundir::{self, RunConfig, RunData},
    slo::Slo,
    summary::{self, Summary},
};

/// A plot kind the run could not have, and why.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Absent {
    pub kind: String,
    pub reason: String,
}

/// report.json.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub run_id: String,
    pub config: RunConfig,
    pub summary: Summary,
    /// Worst level of the checks.
    pub overall: assess::Level,
    pub assessment: Vec<Check>,
    /// How pass / warn / fail are decided.
    pub assessment_rule: String,
    pub recommendations: Vec<Insight>,
    /// `tbctl trace`'s analysis, when the run has kernel timing.
    pub network: Option<TraceReport>,
    pub plots: Vec<Drawn>,
    pub plots_absent: Vec<Absent>,
    /// Sections missing from the report and why (never read absence as zero).
    pub notes: Vec<String>,
}

pub use assess::Check;

/// Builds the report of `run` and draws its plots into `<run>/plots/`. `slo` overrides the
/// SLOs the run was profiled with.
pub fn build(run: &RunData, slo: Option<Slo>) -> Report {
    let summary = match &slo {
        Some(s) => summary::of_run_with_slo(run, Some(s)),
        None => run.summary(),
    };
    let measured: Vec<&RequestRecord> = run.measured().collect();
    let network = run.kernel.as_ref().map(|lines| {
        let mut r = trace::analyze(lines, &run.records);
        r.run = run.dir.display().to_string();
        r.source = rundir::KERNEL.into();
        r
    });
    let assessment = assess::assess(&summary, &measured, summary.slo.as_ref());
    let recommendations = advice::recommend(&summary, &measured, network.as_ref());
    let input = PlotInput::new(run, &summary);
    let (mut plots, mut plots_absent) = (Vec::new(), Vec::new());
    for k in plot::KINDS {
        match plot::render(&input, k) {
            Ok(d) => plots.push(d),
            Err(reason) => plots_absent.push(Absent {
                kind: k.name.into(),
                reason,
            }),
        }
    }
    let mut notes = summary.notes.clone();
    if summary.slo.is_none() {
        notes.push(
            "no SLO: pass --slo (e.g. ttft=500ms,tpot=50ms) to profile or report for goodput \
             and the SLO checks"
                .into(),
        );
    }
    Report {
        run_id: run.config.run_id.clone(),
        config: run.config.clone(),
        overall: assess::overall(&assessment),
        assessment,
        assessment_rule: assess::rule(),
        recommendations,
        network,
        plots,
        plots_absent,
        notes,
        summary,
    }
}

/// Writes report.json, report.md and report.html into the run directory.
pub fn write(run: &RunData, report: &Report) -> std::io::Result<()> {
    rundir::write_json(&run.dir, "report.json", report)?;
    document(report).write(&run.dir, "report")
}

fn wall_time(unix_ns: u64) -> String {
    jiff::Timestamp::from_nanosecond(unix_ns as i128)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

fn configuration(r: &Report) -> Section {
    let c = &r.config;
    let slo = c
        .slo
        .as_ref()
        .or(r.summary.slo.as_ref())
        .map(|s| {
            [("ttft", s.ttft_ms), ("tpot", s.tpot_ms), ("e2e", s.e2e_ms)]
                .iter()
                .filter_map(|(k, v)| v.map(|v| format!("{k} <= {v} ms")))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|| "none".into());
    let kernel = if c.daemon.used {
        format!(
            "tbd at {}{}",
            c.daemon.socket,
            c.daemon
                .server_port
                .map(|p| format!(", server port {p} timed too"))
                .unwrap_or_default()
        )
    } else {
        "off".into()
    };
    let rows = [
        ("run", c.run_id.clone()),
        ("target", c.target.clone()),
        ("model", c.model.clone()),
        ("API", c.api.clone()),
        ("workload", c.workload.clone()),
        ("label", c.label.clone()),
        ("SLO", slo),
        ("kernel timing", kernel),
        ("started", wall_time(c.start_unix_ns)),
        (
            "measured span",
            format!(
                "{:.2} s (first send to last response)",
                r.summary.duration_s
            ),
        ),
        (
            "host",
            format!(
                "{} (kernel {}, {} CPUs)",
                c.host.hostname, c.host.kernel, c.host.cpus
            ),
        ),
        ("tool", format!("{} {}", c.tool, c.version)),
        ("command", c.command.join(" ")),
    ];
    Section {
        title: "Configuration".into(),
        blocks: vec![Block::Table(Table {
            header: vec!["".into(), "".into()],
            rows: rows
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| vec![k.into(), v])
                .collect(),
        })],
    }
}

fn assessment(r: &Report) -> Section {
    let mut blocks = vec![Block::Para(format!("Overall: **{}**.", r.overall.word()))];
    blocks.push(Block::Table(Table {
        header: vec!["check".into(), "result".into(), "detail".into()],
        rows: r
            .assessment
            .iter()
            .map(|c| vec![c.name.clone(), c.level.word().into(), c.text.clone()])
            .collect(),
    }));
    blocks.push(Block::Para(format!("Rule: {}.", r.assessment_rule)));
    Section {
        title: "Assessment".into(),
        blocks,
    }
}

fn dist_header() -> Vec<String> {
    [
        "metric", "unit", "count", "mean", "p50", "p90", "p99", "max", "formula",
    ]
    .map(String::from)
    .to_vec()
}

fn dist_row(name: &str, unit: &str, d: &crate::stats::Distribution, formula: &str) -> Vec<String> {
    vec![
        name.into(),
        unit.into(),
        d.count.to_string(),
        num(d.mean),
        num(d.p50),
        num(d.p90),
        num(d.p99),
        num(d.max),
        formula.into(),
    ]
}

fn results(r: &Report) -> Section {
    let s = &r.summary;
    let rows = catalogue::of(Scope::Client)
        .filter_map(|d| {
            let m = s.metrics.get(d.name)?;
            Some(dist_row(d.name, d.unit, &m.dist, d.formula))
        })
        .collect();
    let mut rates = vec![
        vec![
            "request_throughput".into(),
            format!("{:.3} req/s", s.request_throughput.value),
            s.request_throughput.formula.clone(),
        ],
        vec![
            "output_token_throughput".into(),
            format!("{:.1} tokens/s", s.output_token_throughput.value),
            s.output_token_throughput.formula.clone(),
        ],
    ];
    if let Some(g) = &s.goodput {
        rates.push(vec![
            "goodput".into(),
            format!("{:.3} req/s", g.value),
            g.formula.clone(),
        ]);
    }
    let mut blocks = vec![
        Block::Para(format!(
            "{} measured requests: {} succeeded, {} failed{}; {} s measured.",
            s.requests.total,
            s.requests.succeeded,
            s.requests.failed,
            if s.requests.warmup_excluded > 0 {
                format!(
                    " ({} warm-up requests excluded)",
                    s.requests.warmup_excluded
                )
            } else {
                String::new()
            },
            num(s.duration_s)
        )),
        Block::Table(Table {
            header: dist_header(),
            rows,
        }),
        Block::Table(Table {
            header: vec!["rate".into(), "value".into(), "formula".into()],
            rows: rates,
        }),
    ];
    let classes: Vec<String> = s
        .errors_by_class
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    if !classes.is_empty() {
        blocks.push(Block::Para(format!(
            "Errors by class: {}.",
            classes.join(", ")
        )));
    }
    let sources: Vec<String> = s
        .token_sources
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    if !sources.is_empty() {
        blocks.push(Block::Para(format!(
            "Output tokens counted from: {}.",
            sources.join(", ")
        )));
    }
    Section {
        title: "Results".into(),
        blocks,
    }
}

fn kernel(r: &Report) -> Option<Section> {
    let k = r.summary.kernel.as_ref()?;
    let rows = catalogue::of(Scope::Kernel)
        .filter_map(|d| {
            let m = k.metrics.get(d.name)?;
            Some(dist_row(d.name, d.unit, &m.dist, d.formula))
        })
        .collect();
    let lost: u64 = k.lost_events.values().sum();
    Some(Section {
        title: "Kernel view (tbd)".into(),
        blocks: vec![
            Block::Para(format!(
                "The kernel saw {} of {} requests on the client side and {} on the server side; \
                 {} connections, {} DNS lookups, {} events lost{}.",
                k.seen_client_side,
                k.requests,
                k.seen_server_side,
                k.connections,
                k.dns_lookups,
                lost,
                if lost > 0 {
                    format!(" ({:?})", k.lost_events)
                } else {
                    String::new()
                }
            )),
            Block::Table(Table {
                header: dist_header(),
                rows,
            }),
        ],
    })
}

fn recommendations(r: &Report) -> Section {
    let items: Vec<String> = r
        .recommendations
        .iter()
        .map(|i| {
            let tag = match i.level {
                trace::Level::Warn => "**warn**",
                trace::Level::Info => "info",
            };
            format!("{tag} ({}): {}", i.topic, i.text)
        })
        .collect();
    Section {
        title: "Recommendations".into(),
        blocks: vec![if items.is_empty() {
            Block::Para("Nothing stands out.".into())
        } else {
            Block::Bullets(items)
        }],
    }
}

fn plots(r: &Report) -> Section {
    let mut blocks: Vec<Block> = r.plots.iter().cloned().map(Block::Plot).collect();
    if !r.plots_absent.is_empty() {
        blocks.push(Block::Bullets(
            r.plots_absent
                .iter()
                .map(|a| format!("{} not drawn: {}", a.kind, a.reason))
                .collect(),
        ));
    }
    Section {
        title: "Plots".into(),
        blocks,
    }
}

/// The report's sections.
pub fn document(r: &Report) -> Document {
    let mut sections = vec![configuration(r), assessment(r), results(r)];
    sections.extend(kernel(r));
    sections.push(energy::section(r));
    sections.push(recommendations(r));
    sections.push(plots(r));
    if !r.notes.is_empty() {
        sections.push(Section {
            title: "Notes".into(),
            blocks: vec![Block::Bullets(r.notes.clone())],
        });
    }
    Document {
        title: format!("TrafficBench report: run {}", r.run_id),
        sections,
    }
}
