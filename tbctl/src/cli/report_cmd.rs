//! `tbctl report RUN` and `tbctl plot RUN --kind K`: the run directory in, report files and
//! plots out, next to the run's data.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::{
    plot::{self, PlotInput},
    report,
    rundir::RunData,
    slo::Slo,
};

/// `tbctl report RUN`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// A run directory written by `tbctl profile`.
    pub run: PathBuf,
    /// Assess against these SLOs instead of the run's own, e.g. ttft=500ms,tpot=50ms.
    #[arg(long)]
    pub slo: Option<String>,
    /// Print report.json on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `tbctl plot RUN --kind K`.
#[derive(clap::Args, Debug)]
pub struct PlotArgs {
    /// A run directory written by `tbctl profile`.
    pub run: PathBuf,
    /// The plot to draw (`tbctl list plots` names them).
    #[arg(long)]
    pub kind: String,
}

fn open(run: &Path) -> anyhow::Result<RunData> {
    if !run.is_dir() {
        bail!(
            "{} is not a run directory: report and plot read the client records that \
             `tbctl profile` writes to runs/<run_id>/ (tbd keeps kernel data only)",
            run.display()
        );
    }
    Ok(RunData::open(run)?)
}

/// Runs `tbctl report`.
pub fn run_report(a: ReportArgs) -> anyhow::Result<()> {
    let slo = a
        .slo
        .as_deref()
        .map(str::parse::<Slo>)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let run = open(&a.run)?;
    let r = report::build(&run, slo);
    report::write(&run, &r)
        .with_context(|| format!("writing the report into {}", a.run.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "report of run {}: {} ({} checks); {} plots drawn{}",
        r.run_id,
        r.overall.word(),
        r.assessment.len(),
        r.plots.len(),
        if r.plots_absent.is_empty() {
            String::new()
        } else {
            format!(
                ", {} not drawn ({})",
                r.plots_absent.len(),
                r.plots_absent
                    .iter()
                    .map(|p| p.kind.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    for c in &r.assessment {
        println!("  {} {}: {}", c.level.word(), c.name, c.text);
    }
    for i in r.recommendations.iter().take(5) {
        println!("  - {}", i.text);
    }
    for f in ["report.md", "report.html", "report.json"] {
        println!("{}", run.dir.join(f).display());
    }
    Ok(())
}

/// Runs `tbctl plot`.
pub fn run_plot(a: PlotArgs) -> anyhow::Result<()> {
    let kind = plot::kind(&a.kind).map_err(anyhow::Error::msg)?;
    let run = open(&a.run)?;
    let summary = run.summary();
    let input = PlotInput::new(&run, &summary);
    let drawn = plot::render(&input, kind).map_err(|why| {
        anyhow::anyhow!("cannot draw {} for {}: {why}", kind.name, a.run.display())
    })?;
    println!("{}", run.dir.join(&drawn.png).display());
    println!("{}", run.dir.join(&drawn.svg).display());
    Ok(())
}
