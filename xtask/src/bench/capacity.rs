//! The capacity bench: how many streaming requests per second tbctl drives, as a ratio to wrk
//! (raw HTTP, no SSE parsing, no records: the ceiling) on the same server in the same run.
//!
//! Both load ../shared/bench/fast-sse at 256 connections, in interleaved pairs, the order
//! alternating from pair to pair so that the VM's drift cancels in each pair's ratio. Each run
//! is measured over its steady middle, alike for both clients: requests are what nginx itself
//! counted (stub_status) and CPU is the client process's own (/proc/PID/stat), so start-up,
//! connection set-up and tbctl's summary at the end stay out. tbctl's records are checked
//! whole: every request succeeded with its 16 chunk times and its tokens from `usage`.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::{
    fast_sse::{FastSse, URL},
    jsonl,
    overhead::{cpu_ticks, median_of, ticks_per_s},
};
use crate::procs;

/// Interleaved (wrk, tbctl) pairs.
const PAIRS: usize = 5;
const CONNECTIONS: &str = "256";
const DURATION: &str = "5s";
/// The measured window, in seconds after the client starts.
const WINDOW: (f64, f64) = (1.5, 4.0);
/// Content chunks in each fast-sse response.
const CHUNKS: usize = 16;

/// One run's steady-state figures.
#[derive(Clone, Copy, Debug)]
struct Window {
    rps: f64,
    cpu_us_per_request: f64,
}

/// Runs `cmd` and measures it over the window.
fn measure(sse: &FastSse, cmd: &mut Command) -> anyhow::Result<(Window, std::process::Output)> {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let pid = child.id();
    let mark = || -> anyhow::Result<(u64, u64, Instant)> {
        let ticks = cpu_ticks(pid).context("the client ended before the measured window")?;
        Ok((sse.served()?, ticks, Instant::now()))
    };
    std::thread::sleep(Duration::from_secs_f64(WINDOW.0));
    let (n0, c0, t0) = mark()?;
    std::thread::sleep(Duration::from_secs_f64(WINDOW.1 - WINDOW.0));
    let (n1, c1, t1) = mark()?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // The second mark's own status request is in its count.
    let served = n1.saturating_sub(n0 + 1) as f64;
    if served == 0.0 {
        bail!("nginx served nothing inside the measured window of {cmd:?}");
    }
    let w = Window {
        rps: served / (t1 - t0).as_secs_f64(),
        cpu_us_per_request: (c1 - c0) as f64 / ticks_per_s() / served * 1e6,
    };
    Ok((w, out))
}

fn wrk(sse: &FastSse) -> anyhow::Result<Window> {
    let (w, _) = measure(
        sse,
        Command::new("wrk")
            .args(["-t2", "-c", CONNECTIONS, "-d", DURATION, "-s"])
            .arg(sse.wrk_script())
            .arg(format!("{URL}/v1/chat/completions")),
    )?;
    Ok(w)
}

/// A tbctl run, and what its records lack: (incomplete records, records).
fn tbctl(sse: &FastSse, dir: &Path) -> anyhow::Result<(Window, usize, usize)> {
    let out_dir = dir.join("runs");
    let (w, out) = measure(
        sse,
        Command::new(procs::bin("release", "tbctl"))
            .args(["profile", "--url", URL, "--concurrency", CONNECTIONS])
            .args(["--max-tokens", "16", "--duration", DURATION, "--no-daemon"])
            .arg("--json")
            .arg("--out")
            .arg(&out_dir),
    )?;
    let summary: Value = serde_json::from_slice(&out.stdout)?;
    let run_dir = out_dir.join(summary["run_id"].as_str().unwrap_or_default());
    let records = jsonl(&run_dir.join("requests.jsonl"))?;
    let records: Vec<&Value> = records.iter().skip(1).collect();
    let incomplete = records
        .iter()
        .filter(|r| {
            r["success"] != true
                || r["chunks"].as_array().map_or(0, Vec::len) != CHUNKS
                || r["token_source"] != "usage"
                || r["output_tokens"] != CHUNKS as u64
        })
        .count();
    // Each run's records are only needed for this check.
    let _ = std::fs::remove_dir_all(&run_dir);
    Ok((w, incomplete, records.len()))
}

/// `cargo xtask bench capacity`.
pub fn capacity(dir: &Path) -> anyhow::Result<Value> {
    if Command::new("wrk").arg("-v").output().is_err() {
        bail!("no wrk: run `cargo xtask setup` (it installs wrk)");
    }
    let sse = FastSse::start(dir)?;
    // One unmeasured run of each: nginx's and the page cache's first touches.
    wrk(&sse)?;
    tbctl(&sse, dir)?;
    let (mut pairs, mut incomplete, mut records) = (Vec::new(), 0, 0);
    for i in 0..PAIRS {
        let (w, t) = if i % 2 == 0 {
            let w = wrk(&sse)?;
            (w, tbctl(&sse, dir)?)
        } else {
            let t = tbctl(&sse, dir)?;
            (wrk(&sse)?, t)
        };
        let (t, bad, n) = t;
        incomplete += bad;
        records += n;
        eprintln!(
            "bench: capacity pair {}: wrk {:.0} req/s {:.1} µs, tbctl {:.0} req/s {:.1} µs",
            i + 1,
            w.rps,
            w.cpu_us_per_request,
            t.rps,
            t.cpu_us_per_request
        );
        pairs.push((w, t));
    }
    let ratio = |f: fn(&(Window, Window)) -> f64| {
        let v: Vec<f64> = pairs.iter().map(f).collect();
        json!({
            "median": median_of(&v),
            "min": v.iter().cloned().fold(f64::INFINITY, f64::min),
            "max": v.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        })
    };
    let pick = |f: fn(&Window) -> f64, of_tbctl: bool| {
        let v: Vec<f64> = pairs
            .iter()
            .map(|p| f(if of_tbctl { &p.1 } else { &p.0 }))
            .collect();
        median_of(&v)
    };
    Ok(json!({
        "setup": format!("{PAIRS} interleaved pairs (order alternating) of wrk -t2 -c{CONNECTIONS} -d{DURATION} (post.lua) and tbctl profile --concurrency {CONNECTIONS} --max-tokens 16 --duration {DURATION} --no-daemon against fast-sse (nginx, one worker, {CHUNKS} content chunks); each run measured from {}s to {}s: requests nginx counted, and the client process's own CPU", WINDOW.0, WINDOW.1),
        "wrk_requests_per_s": pick(|w| w.rps, false),
        "wrk_cpu_us_per_request": pick(|w| w.cpu_us_per_request, false),
        "tbctl_requests_per_s": pick(|w| w.rps, true),
        "tbctl_cpu_us_per_request": pick(|w| w.cpu_us_per_request, true),
        "throughput_vs_wrk": ratio(|(w, t)| t.rps / w.rps),
        "cpu_per_request_vs_wrk": ratio(|(w, t)| t.cpu_us_per_request / w.cpu_us_per_request),
        "tbctl_records": records,
        "tbctl_records_incomplete": incomplete,
        "target_throughput_vs_wrk": 0.75,
        "target_cpu_per_request_vs_wrk": 3.0,
    }))
}
