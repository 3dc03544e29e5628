//! `tbctl analyze RUN --analysis A` and `tbctl list [CATEGORY]`.

use std::path::PathBuf;

use anyhow::bail;

use crate::{analyze, registry, rundir::RunData};

/// `tbctl analyze`.
#[derive(clap::Args, Debug)]
pub struct AnalyzeArgs {
    /// A run directory written by `tbctl profile`.
    pub run: PathBuf,
    /// regression, steady-state or network (`tbctl list analyses`).
    #[arg(long)]
    pub analysis: String,
    /// Print the analysis as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `tbctl list`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// all, apis, datasets, traces, trace-formats, patterns, analyses, plots or metrics.
    #[arg(default_value = "all")]
    pub category: String,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `tbctl analyze`.
pub fn run_analyze(a: AnalyzeArgs) -> anyhow::Result<()> {
    let kind = analyze::kind(&a.analysis).map_err(anyhow::Error::msg)?;
    if !a.run.is_dir() {
        bail!(
            "{} is not a run directory: analyze reads what `tbctl profile` wrote to runs/<run_id>/",
            a.run.display()
        );
    }
    let run = RunData::open(&a.run)?;
    let out = analyze::run_and_write(kind, &run)
        .map_err(|why| anyhow::anyhow!("{} of {}: {why}", kind.name, a.run.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    for l in &out.lines {
        println!("{l}");
    }
    for p in &out.plots {
        println!("{}", run.dir.join(&p.png).display());
    }
    Ok(())
}

/// Runs `tbctl list`.
pub fn run_list(a: ListArgs) -> anyhow::Result<()> {
    let entries = registry::list(&a.category).map_err(anyhow::Error::msg)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    let mut last = "";
    for e in &entries {
        if e.category != last {
            println!("{}:", e.category);
            last = e.category;
        }
        println!("  {:<24} {}", e.name, e.about);
    }
    Ok(())
}
