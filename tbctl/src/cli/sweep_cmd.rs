//! `tbctl sweep`: `tbctl profile` at each load level, then the sweep report.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{bail, Context};

use super::profile::{run_once, ProfileArgs};
use crate::sweep::{self, Mode, Step};

/// `tbctl sweep`: every `tbctl profile` argument, plus the loads.
#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Open-loop rates to run, e.g. 5,10,20,40 (requests/s).
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["concurrencies", "auto"])]
    pub rates: Vec<f64>,
    /// Closed-loop concurrencies to run, e.g. 1,2,4,8.
    #[arg(long, value_delimiter = ',', conflicts_with = "auto")]
    pub concurrencies: Vec<f64>,
    /// Step a load up until the server saturates: rate or concurrency.
    #[arg(long)]
    pub auto: Option<String>,
    /// --auto: the first load.
    #[arg(long, default_value_t = 1.0)]
    pub start: f64,
    /// --auto: each load is the last times this.
    #[arg(long, default_value_t = 2.0)]
    pub factor: f64,
    /// --auto: at most this many steps.
    #[arg(long, default_value_t = 8)]
    pub max_steps: u32,
}

fn loads(a: &SweepArgs) -> anyhow::Result<(Mode, Vec<f64>, bool)> {
    let (mode, loads, auto) = match a.auto.as_deref() {
        Some("rate") => (Mode::Rate, stepped(a)?, true),
        Some("concurrency") => (Mode::Concurrency, stepped(a)?, true),
        Some(other) => bail!("bad --auto '{other}': use rate or concurrency"),
        None if !a.rates.is_empty() => (Mode::Rate, a.rates.clone(), false),
        None if !a.concurrencies.is_empty() => (Mode::Concurrency, a.concurrencies.clone(), false),
        None => bail!(
            "tbctl sweep needs loads: --rates 5,10,20, --concurrencies 1,2,4 or --auto rate|concurrency"
        ),
    };
    if let Some(bad) = loads.iter().find(|l| !(l.is_finite() && **l > 0.0)) {
        bail!("bad load {bad}: every rate or concurrency must be above 0");
    }
    if mode == Mode::Concurrency && loads.iter().any(|l| l.fract() != 0.0) {
        bail!("concurrencies are whole numbers of requests in flight");
    }
    Ok((mode, loads, auto))
}

fn stepped(a: &SweepArgs) -> anyhow::Result<Vec<f64>> {
    if a.factor.is_nan() || a.factor <= 1.0 || a.max_steps == 0 {
        bail!("--auto needs --factor above 1 and --max-steps of 1 or more");
    }
    Ok((0..a.max_steps)
        .map(|i| a.start * a.factor.powi(i as i32))
        .collect())
}

/// Runs `tbctl sweep`.
pub async fn run(a: SweepArgs) -> anyhow::Result<ExitCode> {
    let (mode, loads, auto) = loads(&a)?;
    if a.profile.from.is_some() || a.profile.repeat != 1 {
        bail!("tbctl sweep takes no --from or --repeat: it sets the load of each run itself");
    }
    let mut steps: Vec<Step> = Vec::new();
    for load in loads {
        let mut p = a.profile.clone();
        match mode {
            Mode::Rate => {
                p.rate = Some(load);
                p.ramp = None;
            }
            Mode::Concurrency => {
                p.concurrency = Some(load as usize);
                p.rate = None;
            }
        }
        p.json = true;
        if p.label.is_empty() {
            p.label = format!("sweep {} {load}", mode.unit());
        }
        eprintln!("tbctl sweep: {} {load}", mode.unit());
        let f = run_once(&p).await?;
        let mut step = Step::new(load, &f.dir, &f.summary);
        step.saturated = sweep::saturation(mode, &steps, &step);
        if let Some(why) = &step.saturated {
            eprintln!("tbctl sweep: saturated at {} {load}: {why}", mode.unit());
        }
        let stop = auto && step.saturated.is_some();
        steps.push(step);
        if stop {
            break;
        }
    }
    let first = steps.first().map(|s| s.run_id.clone()).unwrap_or_default();
    let out: PathBuf = a.profile.out.join(format!("sweep-{first}"));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let s = sweep::finish(mode, steps, &out);
    sweep::write(&s, &out).with_context(|| format!("writing into {}", out.display()))?;
    if a.profile.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", std::fs::read_to_string(out.join("sweep.md"))?);
        println!("{}", out.join("sweep.html").display());
    }
    Ok(ExitCode::SUCCESS)
}
