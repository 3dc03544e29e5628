//! The energy bench: what tbd's sampler costs, how evenly it samples, and how close a run's
//! energy comes to the truth of a fixture with a known power curve.
//!
//! The sensors are the fixture powercap tree (sysfs reads, as on a real host without the perf
//! PMU): the GPU fixture re-reads a JSON file per query and would measure serde, not NVML.

use std::{path::Path, process::Command, sync::Arc, time::Duration};

use anyhow::Context;
use serde_json::{json, Value};

use super::{pct, profile};
use crate::{
    energy_fixture::{self, PowerFixture, Zone},
    procs,
};

/// Seconds the sampler runs at each interval for its CPU figure.
const CPU_SECONDS: u64 = 10;

/// The thread `name` of process `pid`: its on-CPU time (ns) from schedstat.
fn thread_cpu_ns(pid: u32, name: &str) -> anyhow::Result<u64> {
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let t = t?.path();
        if std::fs::read_to_string(t.join("comm"))?.trim() == name {
            let s = std::fs::read_to_string(t.join("schedstat"))?;
            return s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .context("schedstat");
        }
    }
    anyhow::bail!("tbd has no thread {name}")
}

/// Sample times from `tbctl energy --live --json --count n`.
fn live_times(daemon: &str, n: u64) -> anyhow::Result<Vec<u64>> {
    let o = Command::new(procs::bin("release", "tbctl"))
        .args([
            "energy",
            "--live",
            "--json",
            "--count",
            &n.to_string(),
            "--daemon",
            daemon,
        ])
        .output()?;
    anyhow::ensure!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)?;
            v["t_ns"].as_u64().context("t_ns")
        })
        .collect()
}

/// tbd with the fixture at `interval`: the sampler's CPU per second and its jitter.
fn sampler(dir: &Path, fx: &PowerFixture, interval: &str, n: u64) -> anyhow::Result<Value> {
    let sub = dir.join(format!("sampler-{interval}"));
    std::fs::create_dir_all(&sub)?;
    let root = fx.root.display().to_string();
    let (mut tbd, sock) = procs::start_tbd_with(
        "release",
        &sub,
        &["--sysfs-root", &root, "--energy-interval", interval],
    )?;
    let pid = tbd.child.id();
    std::thread::sleep(Duration::from_secs(1));
    let c0 = thread_cpu_ns(pid, "tb-energy")?;
    std::thread::sleep(Duration::from_secs(CPU_SECONDS));
    let c1 = thread_cpu_ns(pid, "tb-energy")?;
    let times = live_times(&sock.display().to_string(), n)?;
    tbd.stop();
    let want_ms: f64 = interval.trim_end_matches("ms").parse()?;
    let mut jitter: Vec<f64> = times
        .windows(2)
        .map(|w| ((w[1] - w[0]) as f64 / 1e6 - want_ms).abs())
        .collect();
    Ok(json!({
        "interval_ms": want_ms,
        "cpu_ms_per_s": (c1 - c0) as f64 / 1e6 / CPU_SECONDS as f64,
        "cpu_pct_of_one_core": (c1 - c0) as f64 / 1e7 / CPU_SECONDS as f64,
        "samples": times.len(),
        "jitter_p50_ms": pct(&mut jitter.clone(), 0.5),
        "jitter_p99_ms": pct(&mut jitter, 0.99),
    }))
}

/// Runs under a package drawing 100 W ± 60 W (a 0.7 s sine) sampled at 20 ms: each run's
/// energy against the curve's integral over its window.
fn window_error(dir: &Path) -> anyhow::Result<Value> {
    let sub = dir.join("window");
    let fx = PowerFixture::start(
        &sub.join("fx"),
        vec![Zone {
            dir: "intel-rapl:0".into(),
            name: "package-0".into(),
            power: Arc::new(|t: f64| 100.0 + 60.0 * (t * std::f64::consts::TAU / 0.7).sin()),
            range_uj: 262_143_328_850,
            has_counter: true,
        }],
        vec![],
        Duration::from_millis(1),
    );
    let root = fx.root.display().to_string();
    let (mut tbd, sock) = procs::start_tbd_with("release", &sub, &["--sysfs-root", &root])?;
    let (mut sim, port) = procs::start_sim("release", &sub, &["--ttft", "30ms", "--itl", "6ms"])?;
    let daemon = format!("unix:{}", sock.display());
    let url = format!("http://127.0.0.1:{port}");
    let mut runs = Vec::new();
    for requests in ["20", "60", "150"] {
        let (summary, _, run_dir) = profile(
            &sub,
            &[
                "--url",
                &url,
                "--concurrency",
                "8",
                "--requests",
                requests,
                "--max-tokens",
                "40",
                "--daemon",
                &daemon,
            ],
        )?;
        let run: Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("run.json"))?)?;
        let (from, to) = (
            run["energy"]["window_from_ns"].as_u64().context("window")?,
            run["energy"]["window_to_ns"].as_u64().context("window")?,
        );
        let truth = fx.truth_j(0, from, to);
        let got = summary["energy"]["energy_j"].as_f64().context("energy")?;
        runs.push(json!({
            "requests": requests,
            "window_s": (to - from) as f64 / 1e9,
            "truth_j": truth,
            "measured_j": got,
            "error_pct": (got - truth) / truth * 100.0,
            "run": run_dir.display().to_string(),
        }));
    }
    sim.stop();
    tbd.stop();
    let worst = runs
        .iter()
        .filter_map(|r| r["error_pct"].as_f64())
        .fold(0.0, |m: f64, e| m.max(e.abs()));
    Ok(
        json!({"curve": "100 W + 60 W sin(2 pi t / 0.7 s), counter updated every 1 ms, sampled every 20 ms", "runs": runs, "worst_abs_error_pct": worst}),
    )
}

/// The energy bench's figures.
pub fn energy(dir: &Path) -> anyhow::Result<Value> {
    let fx = energy_fixture::standard(&dir.join("sampler-fx"), Duration::from_millis(1));
    let at_100 = sampler(dir, &fx, "100ms", 50)?;
    let at_10 = sampler(dir, &fx, "10ms", 500)?;
    drop(fx);
    Ok(json!({
        "sampler_100ms": at_100,
        "sampler_10ms": at_10,
        "window": window_error(dir)?,
    }))
}
