//! `cargo xtask bench [accuracy|capacity|schedule|overhead|capture-cost|energy|events|all]`: the issue targets, measured
//! in one run each, as ratios where the machine's speed matters. Release builds.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::{procs, setup::Env, sh};

mod capture_cost;
mod energy;
mod overhead;
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
        results.insert("accuracy".into(), accuracy(&dir)?);
        ran = true;
    }
    if all || which == "capacity" {
        results.insert("capacity".into(), capacity(&dir)?);
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
    if all || which == "events" {
        results.insert("events".into(), events()?);
        ran = true;
    }
    if !ran {
        bail!("unknown bench '{which}': use accuracy, capacity, schedule, overhead, capture-cost, energy, events or all");
    }
    let out = Value::Object(results);
    std::fs::write(dir.join("results.json"), serde_json::to_vec_pretty(&out)?)?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
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

/// Client TTFT and per-gap errors against serve-sim's own log, 64 streams.
///
/// One warm-up request per stream goes first: the 64 first requests leave tbctl in the same
/// millisecond and serve-sim reads them one after another, the last up to ~3 ms after it arrived.
/// That wait is the server's (bytes unread in its socket), so its log's TTFT, which starts at
/// the read, leaves it out while every client sees it. Those requests are reported apart.
fn accuracy(dir: &Path) -> anyhow::Result<Value> {
    let truth_path = dir.join("truth.jsonl");
    let truth_arg = truth_path.display().to_string();
    let (mut sim, port) = procs::start_sim(
        "release",
        dir,
        &[
            "--ttft", "40ms", "--itl", "8ms", "--jitter", "0.5", "--seed", "7", "--truth",
            &truth_arg,
        ],
    )?;
    let url = format!("http://127.0.0.1:{port}");
    let (summary, _, run_dir) = profile(
        dir,
        &[
            "--url",
            &url,
            "--concurrency",
            "64",
            "--requests",
            "300",
            "--warmup",
            "64",
            "--max-tokens",
            "32",
            "--no-daemon",
        ],
    )?;
    sim.stop();
    let truth: HashMap<u64, Value> = jsonl(&truth_path)?
        .into_iter()
        .filter_map(|t| {
            let id = u(&t["request_id"]).or_else(|| t["request_id"].as_str()?.parse().ok())?;
            Some((id, t))
        })
        .collect();
    let records = jsonl(&run_dir.join("requests.jsonl"))?;
    let (mut ttft_err, mut gap_err) = (Vec::new(), Vec::new());
    let mut first_ttft_err = Vec::new();
    let mut matched = 0;
    for r in records.iter().skip(1) {
        let Some(id) = u(&r["request_id"]) else {
            continue;
        };
        let Some(t) = truth.get(&id) else { continue };
        let (Some(sent), Some(first)) = (u(&r["t_sent_ns"]), u(&r["t_first_token_ns"])) else {
            continue;
        };
        let tchunks: Vec<u64> = t["chunks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| u(&c[0]))
            .collect();
        let cchunks: Vec<u64> = r["chunks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| u(&c[0]))
            .collect();
        let (Some(t_read), Some(&t_first)) = (u(&t["t_read_ns"]), tchunks.first()) else {
            continue;
        };
        if tchunks.len() != cchunks.len() {
            continue;
        }
        let client_ttft = first as f64 - sent as f64;
        let true_ttft = t_first as f64 - t_read as f64;
        let err = (client_ttft - true_ttft).abs() / 1e6;
        if r["warmup"].as_bool() == Some(true) {
            first_ttft_err.push(err);
            continue;
        }
        matched += 1;
        ttft_err.push(err);
        for i in 1..tchunks.len() {
            let cg = cchunks[i] as f64 - cchunks[i - 1] as f64;
            let tg = tchunks[i] as f64 - tchunks[i - 1] as f64;
            gap_err.push((cg - tg).abs() / 1e6);
        }
    }
    Ok(serde_json::json!({
        "setup": "serve-sim TTFT 40ms, ITL 8ms, jitter ±50%, 32 tokens, 300 requests after a warm-up of one per stream, 64 streams, same 2 cores",
        "requests_matched": matched,
        "warmup_ttft_abs_error_ms": {"p50": pct(&mut first_ttft_err, 0.5), "max": pct(&mut first_ttft_err, 1.0), "why": "the 64 first requests arrive together and the server reads them one by one: its log starts their TTFT late"},
        "ttft_abs_error_ms": {"p50": pct(&mut ttft_err, 0.5), "p99": pct(&mut ttft_err, 0.99), "target_p99": 1.0},
        "gap_abs_error_ms": {"p50": pct(&mut gap_err, 0.5), "p99": pct(&mut gap_err, 0.99), "target_p99": 0.5},
        "client_ttft_p50_ms": summary["metrics"]["ttft_ms"]["p50"],
    }))
}

/// Highest sustained rate against serve-sim with no delay and 16 tokens per response.
fn capacity(dir: &Path) -> anyhow::Result<Value> {
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
    let o = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["bench", "-q", "-p", "tbd", "--bench", "ring_to_store"])
        .current_dir(sh::workspace_root())
        .output()?;
    if !o.status.success() {
        bail!(
            "ring_to_store bench failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("no result line")?;
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
