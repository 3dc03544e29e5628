//! The probe-cost bench: what tbd's probes add to a client's and a server's own CPU per
//! request, resolved to tens of ns, for judging a change to the probes.
//!
//! One thread of this process plays client and server over a loopback TCP connection: each
//! iteration writes a 64-byte HTTP request line, reads it on the server socket, writes a
//! 180-byte SSE chunk back and reads it, so every data probe, the arrival program and the
//! kernel's dispatch of them run as in a one-chunk request with both ends on the host (on
//! loopback the receive path runs in the sender's context, so it is in this thread's CPU).
//! Rounds alternate runs without capture and runs with tbd capturing both sides
//! (`tbctl capture --pid SELF --port P`); the figure is the median of each round's
//! difference, with tbd's own CPU per iteration beside it. Whole-machine runs on this VM move
//! by a few µs per request between rounds; this one moves by tens of ns. One more capture with
//! BPF statistics on gives the runs per iteration and ns per run of each probe.
//! `PROBE_COST_BASELINE_TBD=PATH` adds a run capturing with another tbd build to each round.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::overhead::{bpf_figures, cpu_ticks, daemon_status, median_of, ticks_per_s};
use crate::procs;

const ROUNDS: usize = 9;
const ITERATIONS: u64 = 100_000;

/// This thread's CPU time, ns.
fn thread_cpu_ns() -> u64 {
    // SAFETY: getrusage fills the struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    ns(u.ru_utime) + ns(u.ru_stime)
}

/// `n` request/response iterations on a fresh connection to `listener`; CPU ns per
/// iteration.
fn ping_pong(listener: &TcpListener, n: u64) -> anyhow::Result<f64> {
    let mut client = TcpStream::connect(listener.local_addr()?)?;
    let (mut server, _) = listener.accept()?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let mut req = [b' '; 64];
    req[..36].copy_from_slice(b"POST /v1/chat/completions HTTP/1.1\r\n");
    let mut rsp = [b' '; 180];
    rsp[..8].copy_from_slice(b"data: {}");
    let (mut rq, mut rs) = ([0u8; 64], [0u8; 180]);
    let t0 = thread_cpu_ns();
    for _ in 0..n {
        client.write_all(&req)?;
        server.read_exact(&mut rq)?;
        server.write_all(&rsp)?;
        client.read_exact(&mut rs)?;
    }
    Ok((thread_cpu_ns() - t0) as f64 / n as f64)
}

/// `tbctl capture` of this process (client side) and of `port`'s accepted connections
/// (server side), returned once the capture runs; SIGINT stops it.
fn start_capture(daemon: &str, port: u16) -> anyhow::Result<Child> {
    let mut c = Command::new(procs::bin("release", "tbctl"))
        .args(["capture", "--pid", &std::process::id().to_string()])
        .args(["--port", &port.to_string(), "--daemon", daemon])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting tbctl capture")?;
    let mut err = BufReader::new(c.stderr.take().context("tbctl's stderr")?);
    let mut line = String::new();
    loop {
        line.clear();
        if err.read_line(&mut line)? == 0 {
            bail!("tbctl capture ended before its capture started");
        }
        if line.contains("capturing run") {
            break;
        }
    }
    // Drained from here on, so that tbctl never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    Ok(c)
}

fn stop_capture(mut c: Child) -> anyhow::Result<()> {
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
    let st = c.wait()?;
    if !st.success() {
        bail!("tbctl capture exited with {st}");
    }
    Ok(())
}

/// One capturing run through the tbd at `daemon` (pid `tbd`): (ns per iteration, tbd's own
/// ns per iteration while it captures, its start and stop left out).
fn captured(listener: &TcpListener, daemon: &str, tbd: u32) -> anyhow::Result<(f64, f64)> {
    let port = listener.local_addr()?.port();
    let cap = start_capture(daemon, port)?;
    let t0 = cpu_ticks(tbd);
    let ns = ping_pong(listener, ITERATIONS)?;
    // Read before the stop, whose work is per capture, not per request, once the reader
    // (draining every 10 ms) has taken the last events.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let t1 = cpu_ticks(tbd);
    stop_capture(cap)?;
    let tbd_ns = match (t0, t1) {
        (Some(a), Some(b)) => (b - a) as f64 / ticks_per_s() * 1e9 / ITERATIONS as f64,
        _ => f64::NAN,
    };
    Ok((ns, tbd_ns))
}

/// Runs the bench; see the module docs.
pub fn probe_cost(dir: &Path) -> anyhow::Result<Value> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let start = |name: &str, bin: &Path, stats: &str| -> anyhow::Result<_> {
        let d = dir.join(name);
        std::fs::create_dir_all(&d)?;
        let (bg, sock) = procs::start_tbd_bin(bin, &d, &["--bpf-stats", stats])?;
        Ok((bg, format!("unix:{}", sock.display())))
    };
    let (this, this_d) = start("tbd-probe-cost", &procs::bin("release", "tbd"), "off")?;
    let baseline = match std::env::var_os("PROBE_COST_BASELINE_TBD") {
        Some(b) => Some(start("tbd-probe-cost-base", Path::new(&b), "off")?),
        None => None,
    };
    // Warm-up: the first connections and page-cache touches.
    ping_pong(&listener, ITERATIONS / 10)?;
    captured(&listener, &this_d, this.child.id())?;
    let (mut added, mut tbd_ns, mut base_added, mut this_minus_base) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut rounds = Vec::new();
    for r in 0..ROUNDS {
        // Alternating order, so that a drift across a round cancels over rounds.
        let off_first = r % 2 == 0;
        let mut off = 0.0;
        if off_first {
            off = ping_pong(&listener, ITERATIONS)?;
        }
        let (on, t) = captured(&listener, &this_d, this.child.id())?;
        let base = match &baseline {
            Some((b, d)) => Some(captured(&listener, d, b.child.id())?.0),
            None => None,
        };
        if !off_first {
            off = ping_pong(&listener, ITERATIONS)?;
        }
        added.push(on - off);
        tbd_ns.push(t);
        if let Some(b) = base {
            base_added.push(b - off);
            this_minus_base.push(on - b);
        }
        rounds.push(json!({"off_ns": off.round(), "capturing_ns": on.round(), "baseline_ns": base.map(f64::round), "tbd_ns": t.round()}));
    }
    drop(baseline);
    drop(this);
    // Runs per iteration and ns per run, from a tbd that keeps statistics (and from the
    // baseline build the same way).
    let with_stats = |name: &str, bin: &Path| -> anyhow::Result<Value> {
        let (stats, stats_d) = start(name, bin, "always")?;
        captured(&listener, &stats_d, stats.child.id())?;
        let info = daemon_status(&stats_d)?;
        drop(stats);
        Ok(bpf_figures(&info, ITERATIONS))
    };
    let bpf = with_stats("tbd-probe-cost-stats", &procs::bin("release", "tbd"))?;
    let baseline_bpf = match std::env::var_os("PROBE_COST_BASELINE_TBD") {
        Some(b) => with_stats("tbd-probe-cost-base-stats", Path::new(&b))?,
        None => Value::Null,
    };
    let r1 = |x: Option<f64>| x.map(|v| (v * 10.0).round() / 10.0);
    Ok(json!({
        "setup": format!("one thread, loopback TCP, {ITERATIONS} iterations of a 64-byte request and a 180-byte reply (4 data syscalls), {ROUNDS} rounds"),
        "added_ns_per_iteration_median": r1(median_of(&added)),
        "tbd_ns_per_iteration_median": r1(median_of(&tbd_ns)),
        "baseline_added_ns_per_iteration_median": r1(median_of(&base_added)),
        "this_minus_baseline_ns_per_iteration_median": r1(median_of(&this_minus_base)),
        "rounds": rounds,
        "bpf": bpf,
        "baseline_bpf": baseline_bpf,
    }))
}
