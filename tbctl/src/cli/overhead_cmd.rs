//! `tbctl overhead`: interleaved runs without and with tbd, and the six figures of what the
//! profiler costs; `--validate-only` checks daemon, probes, sensors and target without load.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{bail, Context};
use tb_proto::v1::GetInfoRequest;

use super::profile::{run_once, ProfileArgs};
use crate::{
    api::discover,
    daemon,
    overhead::{self, DaemonUsage, Leg},
    report::assess::Level,
    rundir::RunData,
};

/// `tbctl overhead`: every `tbctl profile` argument (the workload of each leg), plus:
#[derive(clap::Args, Debug)]
pub struct OverheadArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Pairs of legs (without tbd, then with it).
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Check the daemon, its probes and sensors and the target, without load.
    #[arg(long)]
    pub validate_only: bool,
}

/// Runs `tbctl overhead`; exit status 1 when a figure fails (or, validating, a check fails).
pub async fn run(a: OverheadArgs) -> anyhow::Result<ExitCode> {
    if a.profile.no_daemon {
        bail!("tbctl overhead compares runs with tbd and without: drop --no-daemon");
    }
    let socket = daemon::socket_path(
        a.profile
            .daemon
            .as_deref()
            .unwrap_or(daemon::DEFAULT_SOCKET),
    );
    let mut client = daemon::connect(&socket).await?;
    let info = client
        .get_info(GetInfoRequest {})
        .await
        .map_err(daemon::DaemonError::from)?
        .into_inner();
    if a.validate_only {
        return validate(&a, &info).await;
    }
    if a.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let mut legs = Vec::new();
    let mut runs = Vec::new();
    for round in 1..=a.rounds {
        for capturing in [false, true] {
            let mut p = a.profile.clone();
            p.no_daemon = !capturing;
            p.json = true;
            p.label = format!(
                "overhead round {round} {}",
                if capturing { "with tbd" } else { "without" }
            );
            eprintln!("tbctl overhead: round {round}, {}", p.label);
            let before = capturing
                .then(|| overhead::daemon_usage(info.pid))
                .flatten();
            let f = run_once(&p).await?;
            let usage = before
                .zip(overhead::daemon_usage(info.pid))
                .map(|(b, a)| DaemonUsage {
                    cpu_s: a.0 - b.0,
                    rss_kib: a.1,
                });
            legs.push(Leg {
                capturing,
                run_id: f.summary.run_id.clone(),
                dir: f.dir.display().to_string(),
                requests: f.summary.requests.total,
                usage,
            });
            runs.push(RunData::open(&f.dir)?);
        }
    }
    let after = client
        .get_info(GetInfoRequest {})
        .await
        .map_err(daemon::DaemonError::from)?
        .into_inner();
    let (t, n) = after.probes.iter().fold((0u64, 0u64), |(t, n), p| {
        (t + p.run_time_ns, n + p.run_count)
    });
    let bpf = (n > 0).then(|| t as f64 / n as f64);
    let o = overhead::figures(legs, &runs, bpf);
    let out: PathBuf = a.profile.out.join(format!("overhead-{}", o.legs[0].run_id));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    overhead::write(&o, &out).with_context(|| format!("writing into {}", out.display()))?;
    if a.profile.json {
        println!("{}", serde_json::to_string_pretty(&o)?);
    } else {
        print!("{}", std::fs::read_to_string(out.join("overhead.md"))?);
        println!("{}", out.join("overhead.html").display());
    }
    let failed = o.figures.iter().any(|f| f.level == Some(Level::Fail));
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn validate(a: &OverheadArgs, info: &tb_proto::v1::DaemonInfo) -> anyhow::Result<ExitCode> {
    let mut ok = true;
    println!(
        "daemon: tbd {} (pid {}) on kernel {}: ok",
        info.version, info.pid, info.kernel
    );
    let loaded = info.probes.len();
    if loaded == 0 {
        ok = false;
        println!("probes: none loaded: FAIL");
    } else {
        println!(
            "probes: {loaded} loaded, {} attached (attached only while capturing): ok",
            info.probes.iter().filter(|p| p.attached).count()
        );
    }
    for s in &info.sensors {
        println!(
            "sensor {}: {}",
            s.name,
            if s.present {
                "present".to_string()
            } else {
                format!("absent ({})", s.reason)
            }
        );
    }
    let url = a
        .profile
        .url
        .as_deref()
        .context("no --url: give the target to check")?;
    let target = crate::client::Target::parse(url)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("http client")?;
    let base = format!("http://{}{}", target.authority(), target.base_path);
    match discover::detect(&http, &base, a.profile.api_key.as_deref()).await {
        Ok(d) => println!(
            "target: {url} answers as {} with models {}: ok",
            d.flavour.name(),
            d.models.join(", ")
        ),
        Err(e) => {
            ok = false;
            println!("target: {url}: {e}: FAIL");
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
