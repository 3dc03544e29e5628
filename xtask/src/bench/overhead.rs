//! The overhead bench: what a capturing tbd costs the traffic it measures.
//!
//! Two kinds of load, interleaved over rounds so that drift hits every phase alike:
//! - saturated: serve-sim answering at once, tbctl flat out, so every probe and every cycle of
//!   tbd comes out of requests per second (the worst case). Besides stopped, idle and
//!   capturing, a capture of one sleeping process shows what attached programs cost traffic
//!   they filter out: what every untracked process on the host pays, and the floor under any
//!   capture with these tracepoints;
//! - paced: serve-sim with its default timing (TTFT 40 ms, ITL 8 ms, jitter 50%), as an
//!   inference server answers, at a concurrency that leaves the cores some room and at one
//!   that fills them. Here capture shows in latency before it shows in throughput.

use std::{path::Path, process::Command, thread::JoinHandle, time::Duration};

use serde_json::Value;

use super::{fast_sim, load_args, pct, profile};
use crate::procs;

const ROUNDS: usize = 3;
/// Back-to-back (idle, capturing) pairs per round, in alternating order: the same tbd, seconds
/// apart, so that the VM's drift, which moves whole runs by 10%, mostly cancels in each ratio.
const PAIRS: usize = 2;
/// Concurrency of the paced loads: about 60% and about 95% of two cores on this VM.
const PACED: [u32; 2] = [256, 1024];

/// One run's figures.
#[derive(Clone, Copy, Default)]
struct Sample {
    rps: f64,
    ttft_p50_ms: f64,
    ttft_p99_ms: f64,
    itl_p99_ms: f64,
    /// Busy share of all cores over the middle of the run.
    busy_pct: f64,
    /// tbd's CPU over the middle of the run, in % of one core (capturing runs).
    tbd_cpu_pct: Option<f64>,
}

/// A load: serve-sim at `url` under tbctl at `concurrency` for `duration`.
struct Load<'a> {
    url: &'a str,
    concurrency: u32,
    duration: &'static str,
}

impl Load<'_> {
    /// One tbctl profile run, with tbd capturing when `daemon` is given; `tbd` is sampled.
    fn run(
        &self,
        dir: &Path,
        daemon: Option<&str>,
        tbd: Option<u32>,
    ) -> anyhow::Result<(Sample, Value)> {
        let conc = self.concurrency.to_string();
        let a = load_args(self.url, &conc, self.duration, daemon);
        let sampler = sample_middle(tbd);
        let summary = profile(dir, &a)?.0;
        let (busy_pct, tbd_cpu_pct) = sampler.join().unwrap_or((f64::NAN, None));
        let m = &summary["metrics"];
        let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
        let s = Sample {
            rps: f(&summary["request_throughput"]["value"]),
            ttft_p50_ms: f(&m["ttft_ms"]["p50"]),
            ttft_p99_ms: f(&m["ttft_ms"]["p99"]),
            itl_p99_ms: f(&m["itl_ms"]["p99"]),
            busy_pct,
            tbd_cpu_pct,
        };
        Ok((s, summary))
    }
}

/// Machine busy % (all cores) and `pid`'s CPU (% of one core) from 1 s to 3 s into a run:
/// the steady middle, not start-up or the daemon's stop and query.
fn sample_middle(pid: Option<u32>) -> JoinHandle<(f64, Option<f64>)> {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1000));
        let (c0, p0) = (cpu_times(), pid.and_then(cpu_ticks));
        std::thread::sleep(Duration::from_millis(2000));
        let (c1, p1) = (cpu_times(), pid.and_then(cpu_ticks));
        let busy = match (c0, c1) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                (b1 - b0) as f64 / (t1 - t0) as f64 * 100.0
            }
            _ => f64::NAN,
        };
        let tbd = p0
            .zip(p1)
            .map(|(a, b)| (b - a) as f64 / ticks_per_s() / 2.0 * 100.0);
        (busy, tbd)
    })
}

/// Nanoseconds per 1-byte write(2) to /dev/null from this (untracked) process: median of 5
/// loops of 500,000. With programs attached, the difference to idle is what a capture costs
/// every other process on the host per syscall (an entry and an exit probe here).
fn write_ns() -> anyhow::Result<f64> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    let fd = f.as_raw_fd();
    const N: u32 = 500_000;
    let mut per = Vec::new();
    for _ in 0..5 {
        let t = std::time::Instant::now();
        for _ in 0..N {
            // SAFETY: a 1-byte write from a live buffer to an open fd.
            unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) };
        }
        per.push(t.elapsed().as_nanos() as f64 / f64::from(N));
    }
    Ok(pct(&mut per, 0.5))
}

/// Starts a capture whose filters match none of the bench's traffic (a sleeping process and
/// a port nobody listens on) and waits until it runs; stopping the returned processes ends it.
fn filtered_capture(dir: &Path, daemon: &str) -> anyhow::Result<(procs::Bg, procs::Bg)> {
    let sleeper = procs::Bg::spawn(
        "sleep",
        Command::new("sleep").arg("600"),
        &dir.join("sleep.log"),
    )?;
    let pid = sleeper.child.id().to_string();
    let capture = procs::Bg::spawn(
        "tbctl capture",
        Command::new(procs::bin("release", "tbctl"))
            .args(["capture", "--pid", &pid, "--port", "9", "--daemon", daemon]),
        &dir.join("filtered-capture.log"),
    )?;
    for _ in 0..100 {
        let v = daemon_status(daemon)?;
        if v["active_run"].as_str().is_some_and(|r| !r.is_empty()) {
            return Ok((capture, sleeper));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!(
        "the filtered-out capture did not start; see {}",
        dir.join("filtered-capture.log").display()
    )
}

/// Runs the bench; see the module docs.
pub fn overhead(dir: &Path) -> anyhow::Result<Value> {
    let (mut fast, fast_url) = fast_sim(dir)?;
    let paced_dir = dir.join("paced-sim");
    std::fs::create_dir_all(&paced_dir)?;
    let (mut paced, paced_port) = procs::start_sim("release", &paced_dir, &[])?;
    let paced_url = format!("http://127.0.0.1:{paced_port}");
    let saturated = Load {
        url: &fast_url,
        concurrency: 64,
        duration: "4s",
    };
    let paired_load = Load {
        url: &fast_url,
        concurrency: 64,
        duration: "3s",
    };
    let paced_loads: Vec<Load> = PACED
        .iter()
        .map(|&c| Load {
            url: &paced_url,
            concurrency: c,
            duration: "5s",
        })
        .collect();

    let (mut stopped, mut idle, mut on) = (Vec::new(), Vec::new(), Vec::new());
    let mut filtered = Vec::new();
    let mut paired = Vec::new();
    let (mut write_idle, mut write_filtered) = (Vec::new(), Vec::new());
    let mut paced_off = vec![Vec::new(); PACED.len()];
    let mut paced_on = vec![Vec::new(); PACED.len()];
    let (mut idle_rss_kib, mut busy_rss_kib) = (None, None);
    let mut settled_rss_kib = Vec::new();
    let (mut last_on, mut info) = (Value::Null, Value::Null);
    for round in 0..ROUNDS {
        let tdir = dir.join(format!("tbd-{round}"));
        std::fs::create_dir_all(&tdir)?;
        let (mut tbd, sock) = procs::start_tbd("release", &tdir)?;
        std::thread::sleep(Duration::from_secs(1));
        let pid = tbd.child.id();
        idle_rss_kib = idle_rss_kib.or(rss_kib(pid));
        let daemon = format!("unix:{}", sock.display());
        idle.push(saturated.run(dir, None, None)?.0);
        write_idle.push(write_ns()?);
        let (mut capture, mut sleeper) = filtered_capture(&tdir, &daemon)?;
        // Past the capture's first second, when sampled BPF statistics are off again (as
        // they are nine seconds in ten).
        std::thread::sleep(Duration::from_millis(1200));
        write_filtered.push(write_ns()?);
        filtered.push(saturated.run(dir, None, Some(pid))?.0);
        capture.stop();
        sleeper.stop();
        for p in 0..PAIRS {
            let capture_first = (round * PAIRS + p) % 2 == 1;
            let mut pair = [0.0; 2];
            for capturing in [capture_first, !capture_first] {
                let d = capturing.then_some(daemon.as_str());
                pair[usize::from(capturing)] = paired_load.run(dir, d, Some(pid))?.0.rps;
            }
            paired.push(pair[1] / pair[0]);
        }
        let (s, summary) = saturated.run(dir, Some(&daemon), Some(pid))?;
        on.push(s);
        last_on = summary;
        info = daemon_status(&daemon)?;
        busy_rss_kib = rss_kib(pid);
        for (i, l) in paced_loads.iter().enumerate() {
            paced_on[i].push(l.run(dir, Some(&daemon), Some(pid))?.0);
        }
        // tbd gives sled's memory back once the store has been idle for 2 s.
        std::thread::sleep(Duration::from_secs(4));
        settled_rss_kib.push(rss_kib(pid));
        tbd.stop();
        stopped.push(saturated.run(dir, None, None)?.0);
        for (i, l) in paced_loads.iter().enumerate() {
            paced_off[i].push(l.run(dir, None, None)?.0);
        }
    }
    let whole = whole_capture_bpf(dir, &saturated)?;
    fast.stop();
    paced.stop();

    let (t, n) = bpf_totals(&info);
    let paced_json: Vec<Value> = PACED
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (off, on) = (&paced_off[i], &paced_on[i]);
            serde_json::json!({
                "concurrency": c,
                "rps_tbd_stopped": field(off, |s| s.rps),
                "rps_tbd_capturing": field(on, |s| s.rps),
                "ratio_capturing_to_stopped": median(off, |s| s.rps).map(|o| median(on, |s| s.rps).unwrap_or(0.0) / o),
                "machine_busy_pct_stopped": median(off, |s| s.busy_pct),
                "machine_busy_pct_capturing": median(on, |s| s.busy_pct),
                "ttft_p50_ms_stopped_capturing": [median(off, |s| s.ttft_p50_ms), median(on, |s| s.ttft_p50_ms)],
                "ttft_p99_ms_stopped_capturing": [median(off, |s| s.ttft_p99_ms), median(on, |s| s.ttft_p99_ms)],
                "itl_p99_ms_stopped_capturing": [median(off, |s| s.itl_p99_ms), median(on, |s| s.itl_p99_ms)],
                "tbd_cpu_pct_of_one_core": field(on, |s| s.tbd_cpu_pct.unwrap_or(f64::NAN)),
            })
        })
        .collect();
    Ok(serde_json::json!({
        "setup": format!("{ROUNDS} interleaved rounds. Saturated: serve-sim with no delay, 16 tokens, under tbctl --concurrency 64 for 4 s, with tbd running idle (programs loaded, attached only while capturing), capturing a sleeping process only (every program attached, all this traffic filtered out), capturing both sides, and stopped. Paired: {PAIRS} back-to-back 3 s runs per round with the same tbd idle and capturing, in alternating order, ratio per pair. Paced: serve-sim's default timing (TTFT 40 ms, ITL 8 ms, jitter 0.5), 16 tokens, tbctl --concurrency {PACED:?} for 5 s, tbd capturing and stopped. Medians of the rounds."),
        "target_ratio": 0.98,
        "rps_tbd_stopped": field(&stopped, |s| s.rps),
        "rps_tbd_idle": field(&idle, |s| s.rps),
        "rps_tbd_capturing": field(&on, |s| s.rps),
        "rps_tbd_capturing_nothing_matching": field(&filtered, |s| s.rps),
        "ratio_capturing_to_stopped": median(&stopped, |s| s.rps).map(|o| median(&on, |s| s.rps).unwrap_or(0.0) / o),
        "ratio_idle_to_stopped": median(&stopped, |s| s.rps).map(|o| median(&idle, |s| s.rps).unwrap_or(0.0) / o),
        "paired_ratios_capturing_to_idle": paired,
        "paired_ratio_capturing_to_idle_median": median_of(&paired),
        "ratio_filtered_out_to_stopped": median(&stopped, |s| s.rps).map(|o| median(&filtered, |s| s.rps).unwrap_or(0.0) / o),
        "tbd_cpu_pct_of_one_core_filtered_out": field(&filtered, |s| s.tbd_cpu_pct.unwrap_or(f64::NAN)),
        "untracked_write_ns_idle": write_idle,
        "untracked_write_ns_filtered_out": write_filtered,
        "untracked_write_ns_added_median": median_of(&write_filtered).zip(median_of(&write_idle)).map(|(f, i)| f - i),
        "machine_busy_pct_stopped": median(&stopped, |s| s.busy_pct),
        "tbd_cpu_pct_of_one_core_while_capturing": field(&on, |s| s.tbd_cpu_pct.unwrap_or(f64::NAN)),
        "paced": paced_json,
        "kernel_seen_last_capture": last_on["kernel"],
        "bpf_mean_ns_per_run_last_capture": if n > 0 { t as f64 / n as f64 } else { f64::NAN },
        "bpf_runs_last_capture": n,
        "bpf_whole_capture": whole,
        "events_received_last_capture": info["events_received"],
        "lost_last_capture": info["lost"],
        "tbd_idle_rss_kib": idle_rss_kib,
        "tbd_rss_after_capture_and_query_kib": busy_rss_kib,
        "tbd_rss_4s_after_all_captures_kib": settled_rss_kib,
    }))
}

/// `tbctl daemon status --json` of the tbd at `daemon`; null when it printed no JSON.
pub(super) fn daemon_status(daemon: &str) -> anyhow::Result<Value> {
    let o = Command::new(procs::bin("release", "tbctl"))
        .args(["daemon", "status", "--json", "--daemon", daemon])
        .output()?;
    Ok(serde_json::from_slice(&o.stdout).unwrap_or(Value::Null))
}

/// (run time ns, runs) summed over the probes of a `tbctl daemon status --json`.
fn bpf_totals(info: &Value) -> (u64, u64) {
    info["probes"]
        .as_array()
        .into_iter()
        .flatten()
        .fold((0, 0), |(t, n), p| {
            (
                t + p["run_time_ns"].as_u64().unwrap_or(0),
                n + p["run_count"].as_u64().unwrap_or(0),
            )
        })
}

/// BPF run time over a whole saturated capture, from a tbd that keeps statistics throughout
/// (`--bpf-stats always`). The rounds' tbd samples the capture's first second only (its
/// default), which is the load's ramp-up: fewer, larger reads and new connections, so a
/// higher mean per run than the steady state the rest of a capture runs in.
fn whole_capture_bpf(dir: &Path, load: &Load) -> anyhow::Result<Value> {
    let tdir = dir.join("tbd-stats-always");
    std::fs::create_dir_all(&tdir)?;
    let (mut tbd, sock) = procs::start_tbd_with("release", &tdir, &["--bpf-stats", "always"])?;
    let daemon = format!("unix:{}", sock.display());
    let (_, summary) = load.run(dir, Some(&daemon), None)?;
    let info = daemon_status(&daemon)?;
    tbd.stop();
    Ok(
        bpf_figures(&info, summary["kernel"]["requests"].as_u64().unwrap_or(0))
            .as_object()
            .cloned()
            .map(|mut m| {
                m.insert("rps".into(), summary["request_throughput"]["value"].clone());
                Value::Object(m)
            })
            .unwrap_or_default(),
    )
}

/// The BPF figures of a `tbctl daemon status --json` taken after a capture of `requests`
/// requests: mean run time, runs and time per request, and each probe's share.
pub(super) fn bpf_figures(info: &Value, requests: u64) -> Value {
    let (t, n) = bpf_totals(info);
    let per_request = |x: f64| {
        if requests > 0 {
            x / requests as f64
        } else {
            f64::NAN
        }
    };
    let per_probe: serde_json::Map<String, Value> = info["probes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let runs = p["run_count"].as_u64().filter(|&r| r > 0)?;
            let ns = p["run_time_ns"].as_u64().unwrap_or(0);
            Some((
                p["name"].as_str()?.to_owned(),
                serde_json::json!({"runs": runs, "runs_per_request": per_request(runs as f64), "mean_ns": ns as f64 / runs as f64}),
            ))
        })
        .collect();
    serde_json::json!({
        "mean_ns_per_run": if n > 0 { t as f64 / n as f64 } else { f64::NAN },
        "runs": n,
        "requests": requests,
        "runs_per_request": per_request(n as f64),
        "bpf_us_per_request": per_request(t as f64 / 1000.0),
        "per_probe": per_probe,
    })
}

fn field(v: &[Sample], f: impl Fn(&Sample) -> f64) -> Vec<f64> {
    v.iter().map(f).collect()
}

/// The median of one figure over the rounds; None when there were none.
/// The median of plain figures; None when there were none.
pub(super) fn median_of(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| pct(&mut v.to_vec(), 0.5))
}

fn median(v: &[Sample], f: impl Fn(&Sample) -> f64) -> Option<f64> {
    median_of(&field(v, f))
}

/// (busy, total) jiffies of all cores, from /proc/stat's `cpu` line.
pub(super) fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = f.iter().take(8).sum();
    let idle = f.get(3)? + f.get(4)?;
    Some((total - idle, total))
}

/// utime + stime of a process, in clock ticks.
pub(super) fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised comm: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

pub(super) fn ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
