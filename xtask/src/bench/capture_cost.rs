//! The capture-cost bench: what kernel capture costs per streamed request, at saturation.
//!
//! tbctl drives 256 streams against the fast static SSE server (nginx, one worker, 16 content
//! chunks per response: ../shared/bench/fast-sse), both ends on this host, in interleaved pairs
//! of runs with tbd stopped-from-capturing (`--no-daemon`) and capturing both sides, the order
//! alternating from pair to pair, so that the VM's drift cancels in each pair's difference.
//! Each run is measured over its steady middle: the whole machine's busy CPU (every process and
//! the kernel: probe runs, tracepoint dispatch, tbd, tbctl, nginx) divided by the requests that
//! ended inside the window. The capture's cost is the difference within each pair, median over
//! pairs. tbd keeps BPF statistics off for these (they add a clock read to every program run);
//! one more capture with statistics on gives the run time per program run and the runs per
//! request. Stored bytes are the run's record bytes per kind, as tbd counts them.
//!
//! `CAPTURE_COST_BASELINE_TBD=PATH` adds a third run to each round, capturing through another
//! tbd build (an older commit's, say), so that a change's effect is measured in the same
//! rounds rather than across runs of the bench, which this VM's drift moves by more than most
//! changes.

use std::{
    path::{Path, PathBuf},
    process::Command,
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::fast_sse::{FastSse, URL};
use super::{
    jsonl, load_args,
    overhead::{bpf_figures, cpu_ticks, cpu_times, daemon_status, median_of, ticks_per_s},
    profile,
};
use crate::procs;

/// Interleaved rounds of (stopped, capturing) and, with a baseline, capturing with it.
/// Nine: on this VM single pairs ranged from -2 to 27 µs with five.
const PAIRS: usize = 9;
const STREAMS: &str = "256";
const DURATION: &str = "5s";
/// The measured window inside each run, in seconds after tbctl starts: past the capture's
/// start and the first connections, before the drain.
const WINDOW: (f64, f64) = (1.5, 4.0);

/// What a run of a round captures with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arm {
    /// tbd not capturing (`--no-daemon`).
    Stopped = 0,
    /// This build's tbd capturing both sides.
    Capturing = 1,
    /// The tbd named by `CAPTURE_COST_BASELINE_TBD` capturing both sides.
    Baseline = 2,
}

/// One run's steady-state figures.
#[derive(Clone, Copy, Debug, Default)]
struct Window {
    /// Requests that ended inside the window, per second.
    rps: f64,
    /// Whole-machine busy CPU per request ended inside the window, µs.
    cpu_us_per_request: f64,
    /// tbd's own CPU per request, µs (capturing runs).
    tbd_us_per_request: Option<f64>,
}

fn mono_ns() -> u64 {
    // SAFETY: clock_gettime fills the timespec.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Machine busy jiffies, tbd's ticks and the monotonic time at the window's two ends.
type Marks = Option<((u64, Option<u64>, u64), (u64, Option<u64>, u64))>;

fn mark_window(tbd: Option<u32>) -> JoinHandle<Marks> {
    std::thread::spawn(move || {
        let mark = || Some((cpu_times()?.0, tbd.and_then(cpu_ticks), mono_ns()));
        std::thread::sleep(Duration::from_secs_f64(WINDOW.0));
        let a = mark()?;
        std::thread::sleep(Duration::from_secs_f64(WINDOW.1 - WINDOW.0));
        Some((a, mark()?))
    })
}

/// One `tbctl profile` run, capturing through `daemon` when given.
fn run(
    dir: &Path,
    daemon: Option<&str>,
    tbd: Option<u32>,
) -> anyhow::Result<(Window, Value, PathBuf)> {
    let a = load_args(URL, STREAMS, DURATION, daemon);
    let marks = mark_window(tbd);
    let (summary, _, run_dir) = profile(dir, &a)?;
    let ((busy0, tbd0, t0), (busy1, tbd1, t1)) = marks
        .join()
        .ok()
        .flatten()
        .context("could not read /proc/stat")?;
    let ended = jsonl(&run_dir.join("requests.jsonl"))?
        .iter()
        .filter_map(|r| r["t_end_ns"].as_u64())
        .filter(|t| (t0..t1).contains(t))
        .count() as f64;
    if ended == 0.0 {
        bail!(
            "no request ended inside the measured window of {}",
            run_dir.display()
        );
    }
    let per_request_us = |ticks: u64| ticks as f64 / ticks_per_s() / ended * 1e6;
    let w = Window {
        rps: ended / ((t1 - t0) as f64 / 1e9),
        cpu_us_per_request: per_request_us(busy1 - busy0),
        tbd_us_per_request: tbd0.zip(tbd1).map(|(a, b)| per_request_us(b - a)),
    };
    Ok((w, summary, run_dir))
}

/// `tbctl runs show ID --json` of a finished run.
fn stored_run(daemon: &str, run_id: &str) -> anyhow::Result<Value> {
    let o = Command::new(procs::bin("release", "tbctl"))
        .args(["runs", "--daemon", daemon, "show", run_id])
        .output()?;
    serde_json::from_slice(&o.stdout).with_context(|| {
        format!(
            "tbctl runs show {run_id}: {}",
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// Bytes under `dir`, recursively.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Runs the bench; see the module docs.
pub fn capture_cost(dir: &Path) -> anyhow::Result<Value> {
    let _sse = FastSse::start(dir)?;
    let tdir = dir.join("tbd-cost");
    std::fs::create_dir_all(&tdir)?;
    let (mut tbd, sock) = procs::start_tbd_with("release", &tdir, &["--bpf-stats", "off"])?;
    let pid = tbd.child.id();
    let daemon = format!("unix:{}", sock.display());
    // One unmeasured run of each kind: nginx's and the page cache's first touches.
    run(dir, None, None)?;
    run(dir, Some(&daemon), Some(pid))?;

    // Another tbd build to compare with, capturing in a third run of each round.
    let baseline = match std::env::var_os("CAPTURE_COST_BASELINE_TBD") {
        Some(bin) => {
            let bdir = dir.join("tbd-cost-baseline");
            std::fs::create_dir_all(&bdir)?;
            let (b, bsock) = procs::start_tbd_bin(Path::new(&bin), &bdir, &["--bpf-stats", "off"])?;
            let bdaemon = format!("unix:{}", bsock.display());
            run(dir, Some(&bdaemon), Some(b.child.id()))?;
            Some((b, bdaemon))
        }
        None => None,
    };
    // Each arm with the daemon it captures through and that daemon's pid.
    let mut arms = vec![
        (Arm::Stopped, None),
        (Arm::Capturing, Some((daemon.clone(), pid))),
    ];
    if let Some((b, bdaemon)) = &baseline {
        arms.push((Arm::Baseline, Some((bdaemon.clone(), b.child.id()))));
    }

    let (mut cpu_added, mut ratio, mut tbd_us) = (Vec::new(), Vec::new(), Vec::new());
    let (mut off_cpu, mut on_cpu) = (Vec::new(), Vec::new());
    let (mut base_added, mut base_ratio, mut base_tbd_us, mut change) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut stored = Vec::new();
    let mut kernel = Value::Null;
    let disk_before = dir_bytes(&tdir.join("data"));
    for p in 0..PAIRS {
        // The order rotates from round to round, so that the VM's drift cancels.
        let mut round = [Window::default(); 3];
        for i in 0..arms.len() {
            let (arm, with) = &arms[(p + i) % arms.len()];
            let arm = *arm;
            let (w, summary, _) = run(
                dir,
                with.as_ref().map(|(d, _)| d.as_str()),
                with.as_ref().map(|(_, pid)| *pid),
            )?;
            if arm == Arm::Capturing {
                let id = summary["run_id"].as_str().unwrap_or_default();
                let r = stored_run(&daemon, id)?;
                let requests = summary["kernel"]["requests"].as_u64().unwrap_or(0);
                stored.push((r, requests));
                kernel = summary["kernel"].clone();
            }
            round[arm as usize] = w;
        }
        let [off, on, base] = round;
        eprintln!("bench: capture-cost round {p}: off {off:?}, on {on:?}, baseline {base:?}");
        off_cpu.push(off.cpu_us_per_request);
        on_cpu.push(on.cpu_us_per_request);
        cpu_added.push(on.cpu_us_per_request - off.cpu_us_per_request);
        ratio.push(on.rps / off.rps);
        tbd_us.extend(on.tbd_us_per_request);
        if baseline.is_some() {
            base_added.push(base.cpu_us_per_request - off.cpu_us_per_request);
            base_ratio.push(base.rps / off.rps);
            base_tbd_us.extend(base.tbd_us_per_request);
            change.push(on.cpu_us_per_request - base.cpu_us_per_request);
        }
    }
    if let Some((mut b, _)) = baseline {
        b.stop();
    }
    let captured_requests: u64 = stored.iter().map(|(_, n)| n).sum();
    let info = daemon_status(&daemon)?;
    let disk_after = dir_bytes(&tdir.join("data"));
    let streamed = streamed_bytes(dir, &daemon)?;
    tbd.stop();

    let stats = with_bpf_stats(dir)?;
    let mut out = json!({
        "setup": format!("{PAIRS} interleaved rounds (order rotating) of tbctl profile --concurrency {STREAMS} --max-tokens 16 --duration {DURATION} against fast-sse (nginx, one worker, 16 content chunks), --no-daemon against capturing both sides with tbd --bpf-stats off; each run measured from {}s to {}s: whole-machine busy CPU (/proc/stat) and tbd's CPU (/proc/PID/stat) over the requests that ended in that window. One more capture with --bpf-stats always for the BPF figures.", WINDOW.0, WINDOW.1),
        "cpu_us_per_request_stopped": off_cpu,
        "cpu_us_per_request_capturing": on_cpu,
        "capture_cpu_us_per_request": cpu_added,
        "capture_cpu_us_per_request_median": median_of(&cpu_added),
        "target_capture_cpu_us_per_request": 5.0,
        "tbd_cpu_us_per_request": tbd_us,
        "throughput_ratio_capturing_to_stopped": ratio,
        "throughput_ratio_median": median_of(&ratio),
        "target_throughput_ratio": 0.98,
        "target_stored_kernel_bytes_per_request": 350,
        "store_disk_growth_bytes_per_request": if captured_requests > 0 { disk_after.saturating_sub(disk_before) as f64 / captured_requests as f64 } else { f64::NAN },
        "streamed": streamed,
        "kernel_last_capture": kernel,
        "lost_events": info["lost"],
        "store_reopens": info["store_reopens"],
        "bpf": stats,
    });
    if !base_added.is_empty() {
        out["baseline"] = json!({
            "tbd": std::env::var("CAPTURE_COST_BASELINE_TBD").unwrap_or_default(),
            "capture_cpu_us_per_request": base_added,
            "capture_cpu_us_per_request_median": median_of(&base_added),
            "tbd_cpu_us_per_request": base_tbd_us,
            "throughput_ratio_capturing_to_stopped": base_ratio,
            "throughput_ratio_median": median_of(&base_ratio),
            "this_build_minus_baseline_cpu_us_per_request": change,
            "this_build_minus_baseline_median": median_of(&change),
        });
    }
    if let Some(o) = out.as_object_mut() {
        o.extend(bytes_per_request(&stored));
    }
    Ok(out)
}

/// Stored bytes per request over captures (`tbctl runs show` JSON, requests): in all, of the
/// kernel's records (every kind but the uploaded client records), and per kind.
fn bytes_per_request(runs: &[(Value, u64)]) -> serde_json::Map<String, Value> {
    let requests: u64 = runs.iter().map(|(_, n)| n).sum();
    let per = |b: u64| {
        if requests > 0 {
            b as f64 / requests as f64
        } else {
            f64::NAN
        }
    };
    let mut by_kind: std::collections::BTreeMap<String, u64> = Default::default();
    for (r, _) in runs {
        for (k, v) in r["stored_bytes_by_kind"].as_object().into_iter().flatten() {
            *by_kind.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
        }
    }
    let total: u64 = runs
        .iter()
        .filter_map(|(r, _)| r["stored_bytes"].as_u64())
        .sum();
    let kernel: u64 = by_kind
        .iter()
        .filter(|(k, _)| k.as_str() != "client_records")
        .map(|(_, v)| v)
        .sum();
    let v = json!({
        "stored_bytes_per_request": per(total),
        "stored_kernel_bytes_per_request": per(kernel),
        "stored_bytes_per_request_by_kind": by_kind.iter().map(|(k, v)| (k.clone(), json!(per(*v)))).collect::<serde_json::Map<_, _>>(),
    });
    v.as_object().cloned().unwrap_or_default()
}

/// Stored bytes per request where every token is a write of its own: serve-sim streaming 16
/// tokens 1 ms apart (fast-sse's nginx sends its whole body in one), 64 streams for 3 s.
fn streamed_bytes(dir: &Path, daemon: &str) -> anyhow::Result<Value> {
    let sdir = dir.join("streamed-sim");
    std::fs::create_dir_all(&sdir)?;
    let (mut sim, port) = procs::start_sim(
        "release",
        &sdir,
        &["--ttft", "1ms", "--itl", "1ms", "--jitter", "0"],
    )?;
    let url = format!("http://127.0.0.1:{port}");
    let (summary, _, run_dir) = profile(dir, &load_args(&url, "64", "3s", Some(daemon)))?;
    sim.stop();
    let requests = summary["kernel"]["requests"].as_u64().unwrap_or(0);
    let chunks: usize = jsonl(&run_dir.join("kernel.jsonl"))?
        .iter()
        .map(|x| x["chunks"].as_array().map_or(0, Vec::len))
        .sum();
    let run = stored_run(daemon, summary["run_id"].as_str().unwrap_or_default())?;
    let mut out = json!({
        "setup": "serve-sim --ttft 1ms --itl 1ms --jitter 0, 16 tokens, 64 streams, 3 s, the same tbd",
        "requests": requests,
        "kernel_chunks_per_request": chunks as f64 / requests.max(1) as f64,
    });
    if let Some(o) = out.as_object_mut() {
        o.extend(bytes_per_request(&[(run, requests)]));
    }
    Ok(out)
}

/// One capture from a tbd with BPF statistics always on: run time per program run, runs per
/// request, per probe.
fn with_bpf_stats(dir: &Path) -> anyhow::Result<Value> {
    let tdir = dir.join("tbd-cost-stats");
    std::fs::create_dir_all(&tdir)?;
    let (mut tbd, sock) = procs::start_tbd_with("release", &tdir, &["--bpf-stats", "always"])?;
    let daemon = format!("unix:{}", sock.display());
    let (_, summary, _) = run(dir, Some(&daemon), None)?;
    let info = daemon_status(&daemon)?;
    tbd.stop();
    Ok(bpf_figures(
        &info,
        summary["kernel"]["requests"].as_u64().unwrap_or(0),
    ))
}
