//! `tbctl energy`: a run's energy figures and power series (`tbctl energy RUN`), or the
//! host's power live from tbd (`tbctl energy --live`).

use std::{collections::BTreeMap, io::IsTerminal, path::PathBuf, time::Duration};

use anyhow::{bail, Context};
use clap::Args;
use tb_proto::v1::{GetInfoRequest, WatchEnergyRequest};
use tokio_stream::StreamExt;

use crate::{
    cli::output,
    daemon,
    energy::{
        timeseries::{self, SERIES_CSV},
        Sample,
    },
    rundir::RunData,
};

/// Energy per run, per token and per request, or live power.
#[derive(Args, Debug)]
pub struct EnergyArgs {
    /// A run directory: print its energy figures and write energy_series.csv into it.
    pub run: Option<PathBuf>,
    /// Stream the host's power per source from tbd instead.
    #[arg(long, conflicts_with = "run")]
    pub live: bool,
    /// One JSON line per sample (--live), or the run's figures as JSON.
    #[arg(long)]
    pub json: bool,
    /// Stop --live after this many samples.
    #[arg(long)]
    pub count: Option<u64>,
    /// Bin width of energy_series.csv.
    #[arg(long, default_value = "100ms", value_parser = crate::workload::duration::parse_duration)]
    pub bin: Duration,
    /// tbd's socket (unix:PATH or PATH), for --live.
    #[arg(long)]
    pub daemon: Option<String>,
}

/// Runs `tbctl energy`.
pub async fn run(a: EnergyArgs) -> anyhow::Result<()> {
    match (&a.run, a.live) {
        (Some(dir), false) => of_run(dir, &a),
        (None, true) => live(&a).await,
        _ => bail!("give a run directory (tbctl energy runs/ID) or --live"),
    }
}

fn of_run(dir: &std::path::Path, a: &EnergyArgs) -> anyhow::Result<()> {
    let run = RunData::open(dir)?;
    let summary = run.summary();
    let (Some(meta), Some(samples), Some(energy)) =
        (&run.config.energy, &run.energy, &summary.energy)
    else {
        let why: Vec<&String> = run
            .config
            .notes
            .iter()
            .filter(|n| n.starts_with("energy"))
            .collect();
        bail!(
            "run {} has no energy figures: {}",
            run.config.run_id,
            match why.first() {
                Some(n) => n.as_str(),
                None if run.config.energy.is_some() =>
                    "tbd's counters did not cover the run's window",
                None => "it was recorded without tbd's energy sensors",
            }
        );
    };
    let bins = timeseries::bins(meta, samples, &run.records, a.bin.as_nanos() as u64);
    let path = dir.join(SERIES_CSV);
    std::fs::write(&path, timeseries::csv(meta, &bins))
        .with_context(|| format!("cannot write {}", path.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(energy)?);
    } else {
        output::print_energy(energy);
        println!("power and tokens/s per {:?}: {}", a.bin, path.display());
    }
    Ok(())
}

/// Power per domain from two consecutive samples (the counter's difference), or the device's
/// own power reading where the counter did not move.
fn powers(prev: Option<&Sample>, now: &Sample) -> BTreeMap<String, f64> {
    now.readings
        .iter()
        .filter_map(|r| {
            let from_counter = prev.and_then(|p| {
                let before = p.readings.iter().find(|q| q.domain == r.domain)?;
                let dt = now.t_ns.checked_sub(p.t_ns).filter(|d| *d > 0)? as f64 / 1e9;
                let de = r.energy_j? - before.energy_j?;
                (de > 0.0).then_some(de / dt)
            });
            Some((r.domain.clone(), from_counter.or(r.power_w)?))
        })
        .collect()
}

async fn live(a: &EnergyArgs) -> anyhow::Result<()> {
    let socket = daemon::socket_path(a.daemon.as_deref().unwrap_or(daemon::DEFAULT_SOCKET));
    let mut client = daemon::connect(&socket).await?;
    let info = client.get_info(GetInfoRequest {}).await?.into_inner();
    let domains: Vec<_> = info
        .sensors
        .iter()
        .filter(|s| s.present)
        .flat_map(|s| s.domains.clone())
        .collect();
    if domains.is_empty() {
        let why: Vec<String> = info
            .sensors
            .iter()
            .map(|s| format!("{}: {}", s.name, s.reason))
            .collect();
        bail!("no energy sensor on tbd's host: {}", why.join("; "));
    }
    let mut stream = client
        .watch_energy(WatchEnergyRequest {})
        .await?
        .into_inner();
    let tty = std::io::stdout().is_terminal() && !a.json;
    let (mut prev, mut n, mut shown_ns) = (None::<Sample>, 0u64, 0u64);
    while let Some(s) = stream.next().await {
        let s = Sample::from(s?);
        let p = powers(prev.as_ref(), &s);
        if prev.is_none() {
            // Counters give power only from two samples: the first is their zero.
            prev = Some(s);
            continue;
        }
        let total: f64 = domains
            .iter()
            .filter(|d| d.in_total)
            .filter_map(|d| p.get(&d.name))
            .sum();
        if a.json {
            println!(
                "{}",
                serde_json::json!({"t_ns": s.t_ns, "power_w": p, "total_w": total, "readings": s.readings})
            );
        } else if tty {
            // A table refreshed at most 4 times a second: readable at 20 ms samples.
            if s.t_ns.saturating_sub(shown_ns) >= 250_000_000 {
                shown_ns = s.t_ns;
                print!("\x1b[H\x1b[2J");
                println!(
                    "tbd power (W), sample every {:.0} ms",
                    info.energy_interval_ns as f64 / 1e6
                );
                for d in &domains {
                    let w = p
                        .get(&d.name)
                        .map(|w| format!("{w:9.1}"))
                        .unwrap_or("        -".into());
                    let mark = if d.in_total {
                        ""
                    } else {
                        "  (inside another domain)"
                    };
                    println!("{:<28} {w}{mark}", d.name);
                }
                println!("{:<28} {total:9.1}", "total");
            }
        } else {
            let cells: Vec<String> = p.iter().map(|(k, v)| format!("{k}={v:.1}")).collect();
            println!("{} total={total:.1} {}", s.t_ns, cells.join(" "));
        }
        prev = Some(s);
        n += 1;
        if a.count.is_some_and(|c| n >= c) {
            break;
        }
    }
    Ok(())
}
