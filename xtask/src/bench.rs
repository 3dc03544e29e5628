//! `cargo xtask bench [accuracy|capacity|capacity-sim|schedule|overhead|capture-cost|probe-cost|energy|events|replay|all]`: the issue targets, measured
//! in one run each, as ratios where the machine's speed matters. Release builds.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::{procs, setup::Env, sh};

mod accuracy;
mod capacity;
mod capture_cost;
mod energy;
mod fast_sse;
mod overhead;
mod probe_cost;
mod replay;
use overhead::overhead;

/// Runs the named benchmark(s) and writes target/bench/results.json.
pub fn run(_env: &Env, which: &str) -> anyhow::Result<()> {
    sh::cargo(&["build", "--release", "-p", "tbd", "-p", "tbctl"])?;
    let dir = sh::workspace_root().join("target/bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut results = serde_json::Map::new();
    let all = which == "all";
    let mut ran = false;
    if all || which == "accuracy" {
        results.insert("accuracy".into(), accuracy::accuracy(&dir)?);
        ran = true;
    }
    if all || which == "capacity" {
        results.insert("capacity".into(), capacity::capacity(&dir)?);
        ran = true;
    }
    if all || which == "capacity-sim" {
        results.insert("capacity_sim".into(), capacity_sim(&dir)?);
        ran = true;
    }
    if all || which == "schedule" {
        results.insert("schedule".into(), schedule(&dir)?);
        ran = true;
    }
    if all || which == "overhead" {
        results.insert("overhead".into(), overhead(&dir)?);
        ran = true;
    }
    if all || which == "capture-cost" {
        results.insert("capture_cost".into(), capture_cost::capture_cost(&dir)?);
        ran = true;
    }
    if all || which == "energy" {
        results.insert("energy".into(), energy::energy(&dir)?);
        ran = true;
    }
    if all || which == "probe-cost" {
        results.insert("probe_cost".into(), probe_cost::probe_cost(&dir)?);
        ran = true;
    }
    if all || which == "replay" {
        results.insert("replay".into(), replay::replay(&dir)?);
        ran = true;
    }
    if all || which == "events" {
        results.insert("events".into(), events()?);
        ran = true;
    }
    if !ran {
        bail!("unknown bench '{which}': use accuracy, capacity, capacity-sim, schedule, overhead, capture-cost, energy, events, replay, probe-cost or all");
    }
    let out = Value::Object(results);
    std::fs::write(dir.join("results.json"), serde_json::to_vec_pretty(&out)?)?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// `tbctl profile` arguments of a saturating load: `concurrency` streams of 16 tokens for
/// `duration` at `url`, captured by the tbd at `daemon` or without tbd.
fn load_args<'a>(
    url: &'a str,
    concurrency: &'a str,
    duration: &'a str,
    daemon: Option<&'a str>,
) -> Vec<&'a str> {
    let mut a = vec![
        "--url",
        url,
        "--concurrency",
        concurrency,
        "--duration",
        duration,
        "--max-tokens",
        "16",
        "--span-size",
        "small",
    ];
    match daemon {
        Some(d) => a.extend(["--daemon", d]),
        None => a.push("--no-daemon"),
    }
    a
}

/// Runs `tbctl profile ARGS --json` and returns its summary and CPU seconds (user+sys).
fn profile(dir: &Path, args: &[&str]) -> anyhow::Result<(Value, f64, PathBuf)> {
    let out = dir.join("runs");
    let before = children_cpu();
    let t0 = Instant::now();
    let o = Command::new(procs::bin("release", "tbctl"))
        .arg("profile")
        .args(args)
        .arg("--json")
        .arg("--out")
        .arg(&out)
        .output()
        .context("running tbctl profile")?;
    let cpu = children_cpu() - before;
    if !o.status.success() {
        bail!(
            "tbctl profile {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let summary: Value = serde_json::from_slice(&o.stdout)?;
    let run_dir = out.join(summary["run_id"].as_str().unwrap_or_default());
    eprintln!(
        "bench: profile {args:?} took {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    Ok((summary, cpu, run_dir))
}

/// CPU seconds used by reaped children so far.
fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn jsonl(path: &Path) -> anyhow::Result<Vec<Value>> {
    std::fs::read_to_string(path)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

fn u(v: &Value) -> Option<u64> {
    v.as_u64()
}

/// Highest sustained rate against serve-sim with no delay and 16 tokens per response.
fn capacity_sim(dir: &Path) -> anyhow::Result<Value> {
    let (mut sim, url) = fast_sim(dir)?;
    let (s, cpu, _) = profile(
        dir,
        &[
            "--url",
            &url,
            "--concurrency",
            "256",
            "--duration",
            "10s",
            "--max-tokens",
            "16",
            "--no-daemon",
            "--span-size",
            "small",
        ],
    )?;
    sim.stop();
    let ok = s["requests"]["succeeded"].as_f64().unwrap_or(0.0);
    Ok(serde_json::json!({
        "setup": "serve-sim with no delay, 16 tokens per response, --concurrency 256, 10 s, same 2 cores",
        "requests_per_s": s["request_throughput"]["value"],
        "requests_ok": ok,
        "requests_failed": s["requests"]["failed"],
        "tbctl_cpu_s": cpu,
        "tbctl_cpu_ms_per_request": if ok > 0.0 { cpu * 1e3 / ok } else { f64::NAN },
        "target_requests_per_s": 5000,
    }))
}

/// Poisson at 2,000 requests/s: dispatch lag.
fn schedule(dir: &Path) -> anyhow::Result<Value> {
    let (mut sim, url) = fast_sim(dir)?;
    let (s, _, _) = profile(
        dir,
        &[
            "--url",
            &url,
            "--rate",
            "2000",
            "--pattern",
            "poisson",
            "--duration",
            "10s",
            "--max-tokens",
            "16",
            "--no-daemon",
            "--span-size",
            "small",
        ],
    )?;
    sim.stop();
    Ok(serde_json::json!({
        "setup": "Poisson 2000 req/s for 10 s against serve-sim (no delay, 16 tokens)",
        "achieved_requests_per_s": s["request_throughput"]["value"],
        "dispatch_lag_ms": s["metrics"]["dispatch_lag_ms"],
        "target_p99_ms": 1.0,
    }))
}

/// Ring buffer -> tracker -> sled events per second (tbd's `ring_to_store` cargo bench).
fn events() -> anyhow::Result<Value> {
    tbd_bench("ring_to_store", &[])
}

/// Runs tbd's cargo bench `name` with `env` and returns the JSON line it prints last.
fn tbd_bench(name: &str, env: &[(&str, &std::ffi::OsStr)]) -> anyhow::Result<Value> {
    let o = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["bench", "-q", "-p", "tbd", "--bench", name])
        .envs(env.iter().copied())
        .current_dir(sh::workspace_root())
        .output()?;
    if !o.status.success() {
        bail!(
            "{name} bench failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("no result line from the {name} bench"))?;
    Ok(serde_json::from_str(line)?)
}

/// serve-sim with no delays: what the load generator itself can do.
fn fast_sim(dir: &Path) -> anyhow::Result<(procs::Bg, String)> {
    let (sim, port) = procs::start_sim(
        "release",
        dir,
        &["--ttft", "0", "--itl", "0", "--jitter", "0"],
    )?;
    Ok((sim, format!("http://127.0.0.1:{port}")))
}
