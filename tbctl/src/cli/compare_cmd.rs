//! `tbctl compare BASE CURRENT [MORE…]`: loads the runs, compares, writes compare.md,
//! compare.html and compare.json, and exits 1 when a `--gate` fails.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{bail, Context};

use crate::{
    compare::{self, Gate},
    rundir::RunData,
};

/// `tbctl compare`.
#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// The base run directory, then the runs to compare with it.
    #[arg(required = true, num_args = 2..)]
    pub runs: Vec<PathBuf>,
    /// A bound on a change, e.g. ttft_p99=+5% (may grow 5%) or output_throughput=-3% (may
    /// shrink 3%); exit status 1 when one fails. Repeat for more.
    #[arg(long = "gate")]
    pub gates: Vec<String>,
    /// Where compare.md, compare.html, compare.json and plots/ go (default:
    /// runs/compare-BASE-vs-CURRENT).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seed of the bootstrap resampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print compare.json on stdout instead of the markdown.
    #[arg(long)]
    pub json: bool,
}

/// Runs `tbctl compare`.
pub fn run(a: CompareArgs) -> anyhow::Result<ExitCode> {
    let gates = a
        .gates
        .iter()
        .map(|g| g.parse::<Gate>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let mut runs = Vec::new();
    for r in &a.runs {
        if !r.is_dir() {
            bail!(
                "{} is not a run directory: compare reads what `tbctl profile` wrote to runs/<run_id>/",
                r.display()
            );
        }
        runs.push(RunData::open(r)?);
    }
    let out = a.out.clone().unwrap_or_else(|| {
        let ids: Vec<&str> = runs.iter().map(|r| r.config.run_id.as_str()).collect();
        PathBuf::from("runs").join(format!("compare-{}", ids.join("-vs-")))
    });
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create {}; pass a writable --out", out.display()))?;
    let report = compare::compare(runs, &gates, a.seed, &out).map_err(anyhow::Error::msg)?;
    compare::write(&report, &out).with_context(|| format!("writing into {}", out.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", std::fs::read_to_string(out.join("compare.md"))?);
        println!("{}", out.join("compare.html").display());
    }
    for c in &report.comparisons {
        for g in c.gates.iter().filter(|g| !g.passed) {
            eprintln!(
                "tbctl compare: gate {} failed for {}: {:.4} -> {:.4} ({:+.1}%)",
                g.gate.spec, c.current, g.base, g.current, g.change_pct
            );
        }
    }
    Ok(if report.gates_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
