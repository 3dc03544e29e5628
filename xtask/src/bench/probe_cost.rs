//! The probe-cost bench: what tbd's probes add to a client's and a server's own CPU per
//! request, resolved to tens of ns, for judging a change to the probes.
//!
//! One thread of this process plays client and server over a loopback TCP connection: each
//! iteration writes a 64-byte HTTP request line, reads it on the server socket, then writes
//! 180-byte SSE chunks back one at a time, each read before the next is written (as tokens
//! spaced in time are), so every data probe, the arrival program and the kernel's dispatch of
//! them run as in a streamed request with both ends on the host (on loopback the receive path
//! runs in the sender's context, so it is in this thread's CPU). Three shapes: one chunk,
//! sixteen (the capture-cost target's), and one chunk on 256 connections in turn (the probes'
//! per-socket state cache-cold, as at saturation).
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

/// This thread's CPU time, ns.
fn thread_cpu_ns() -> u64 {
    // SAFETY: getrusage fills the struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    ns(u.ru_utime) + ns(u.ru_stime)
}

/// What one iteration is: a request and a response of `chunks` chunks, each written by the
/// server and read by the client before the next (as tokens spaced in time are), `n` times,
/// on `conns` connections in turn.
#[derive(Clone, Copy)]
struct Shape {
    chunks: u32,
    conns: usize,
    n: u64,
}

impl Shape {
    /// The shape's name in the output.
    fn name(self) -> String {
        match self.conns {
            1 => format!("{}_chunks", self.chunks),
            c => format!("{}_chunks_{c}_connections", self.chunks),
        }
    }
}

/// One streamed request of 1 chunk, one of 16 (the capture-cost target's shape), and one of 1
/// chunk on 256 connections in turn: the probes' per-socket state is out of the CPU's nearer
/// caches each time a socket comes round again, as at saturation with many streams, which one
/// connection never shows.
const SHAPES: [Shape; 3] = [
    Shape {
        chunks: 1,
        conns: 1,
        n: 100_000,
    },
    Shape {
        chunks: 16,
        conns: 1,
        n: 20_000,
    },
    Shape {
        chunks: 1,
        conns: 256,
        n: 100_000,
    },
];

/// `shape.n` request/response iterations on `shape.conns` fresh connections to `listener`, in
/// turn; CPU ns per iteration (the connections' set-up left out).
fn ping_pong(listener: &TcpListener, shape: Shape) -> anyhow::Result<f64> {
    let mut pairs = Vec::with_capacity(shape.conns);
    for _ in 0..shape.conns {
        let client = TcpStream::connect(listener.local_addr()?)?;
        let (server, _) = listener.accept()?;
        client.set_nodelay(true)?;
        server.set_nodelay(true)?;
        pairs.push((client, server));
    }
    let mut req = [b' '; 64];
    req[..36].copy_from_slice(b"POST /v1/chat/completions HTTP/1.1\r\n");
    let mut rsp = [b' '; 180];
    rsp[..8].copy_from_slice(b"data: {}");
    let (mut rq, mut rs) = ([0u8; 64], [0u8; 180]);
    let t0 = thread_cpu_ns();
    for i in 0..shape.n {
        let (client, server) = &mut pairs[i as usize % shape.conns];
        client.write_all(&req)?;
        server.read_exact(&mut rq)?;
        for _ in 0..shape.chunks {
            server.write_all(&rsp)?;
            client.read_exact(&mut rs)?;
        }
    }
    Ok((thread_cpu_ns() - t0) as f64 / shape.n as f64)
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

/// A tbd the bench captures through: its process and its address for tbctl.
struct Daemon {
    bg: procs::Bg,
    addr: String,
}

/// One capturing run through `d`: (ns per iteration, tbd's own ns per iteration while it
/// captures, its start and stop left out).
fn captured(listener: &TcpListener, d: &Daemon, shape: Shape) -> anyhow::Result<(f64, f64)> {
    let port = listener.local_addr()?.port();
    let cap = start_capture(&d.addr, port)?;
    let tbd = d.bg.child.id();
    let t0 = cpu_ticks(tbd);
    let ns = ping_pong(listener, shape)?;
    // Read before the stop, whose work is per capture, not per request, once the reader
    // (draining every 10 ms) has taken the last events.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let t1 = cpu_ticks(tbd);
    stop_capture(cap)?;
    let tbd_ns = match (t0, t1) {
        (Some(a), Some(b)) => (b - a) as f64 / ticks_per_s() * 1e9 / shape.n as f64,
        _ => f64::NAN,
    };
    Ok((ns, tbd_ns))
}

/// The rounds of one shape, through this build's tbd and, if any, the baseline's.
fn rounds_of(
    listener: &TcpListener,
    shape: Shape,
    this: &Daemon,
    baseline: Option<&Daemon>,
) -> anyhow::Result<Value> {
    // Warm-up: the first connections and page-cache touches.
    ping_pong(listener, shape)?;
    captured(listener, this, shape)?;
    let (mut added, mut tbd_ns, mut base_added, mut this_minus_base) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut rounds = Vec::new();
    for r in 0..ROUNDS {
        // Alternating order, so that a drift across a round cancels over rounds.
        let off_first = r % 2 == 0;
        let mut off = 0.0;
        if off_first {
            off = ping_pong(listener, shape)?;
        }
        let (on, t) = captured(listener, this, shape)?;
        let base = match baseline {
            Some(b) => Some(captured(listener, b, shape)?.0),
            None => None,
        };
        if !off_first {
            off = ping_pong(listener, shape)?;
        }
        added.push(on - off);
        tbd_ns.push(t);
        if let Some(b) = base {
            base_added.push(b - off);
            this_minus_base.push(on - b);
        }
        rounds.push(json!({"off_ns": off.round(), "capturing_ns": on.round(), "baseline_ns": base.map(f64::round), "tbd_ns": t.round()}));
    }
    let r1 = |x: Option<f64>| x.map(|v| (v * 10.0).round() / 10.0);
    Ok(json!({
        "chunks": shape.chunks,
        "connections": shape.conns,
        "iterations": shape.n,
        "added_ns_per_request_median": r1(median_of(&added)),
        "tbd_ns_per_request_median": r1(median_of(&tbd_ns)),
        "baseline_added_ns_per_request_median": r1(median_of(&base_added)),
        "this_minus_baseline_ns_per_request_median": r1(median_of(&this_minus_base)),
        "rounds": rounds,
    }))
}

/// Runs the bench; see the module docs.
pub fn probe_cost(dir: &Path) -> anyhow::Result<Value> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let start = |name: &str, bin: &Path, stats: &str| -> anyhow::Result<Daemon> {
        let d = dir.join(name);
        std::fs::create_dir_all(&d)?;
        let (bg, sock) = procs::start_tbd_bin(bin, &d, &["--bpf-stats", stats])?;
        Ok(Daemon {
            bg,
            addr: format!("unix:{}", sock.display()),
        })
    };
    let this_bin = procs::bin("release", "tbd");
    let base_bin = std::env::var_os("PROBE_COST_BASELINE_TBD").map(std::path::PathBuf::from);
    let this = start("tbd-probe-cost", &this_bin, "off")?;
    let baseline = match &base_bin {
        Some(b) => Some(start("tbd-probe-cost-base", b, "off")?),
        None => None,
    };
    let mut shapes = Vec::new();
    for shape in SHAPES {
        shapes.push(rounds_of(&listener, shape, &this, baseline.as_ref())?);
    }
    drop(baseline);
    drop(this);
    // Runs per request and ns per run for each shape, from a tbd that keeps statistics (and
    // from the baseline build the same way).
    let with_stats = |name: &str, bin: &Path| -> anyhow::Result<Value> {
        let d = start(name, bin, "always")?;
        let mut per_shape = serde_json::Map::new();
        for shape in SHAPES {
            let before = daemon_status(&d.addr)?;
            captured(&listener, &d, shape)?;
            let after = daemon_status(&d.addr)?;
            per_shape.insert(
                shape.name(),
                bpf_figures(&stats_since(&before, &after), shape.n),
            );
        }
        Ok(Value::Object(per_shape))
    };
    let bpf = with_stats("tbd-probe-cost-stats", &this_bin)?;
    let baseline_bpf = match &base_bin {
        Some(b) => with_stats("tbd-probe-cost-base-stats", b)?,
        None => Value::Null,
    };
    Ok(json!({
        "setup": format!("one thread, loopback TCP: a 64-byte request written and read, then 180-byte chunks each written and read, on one connection or many in turn, {ROUNDS} rounds"),
        "shapes": shapes,
        "bpf": bpf,
        "baseline_bpf": baseline_bpf,
    }))
}

/// The probes' statistics of a `tbctl daemon status --json` taken after `before`, less
/// `before`'s: what one capture added.
fn stats_since(before: &Value, after: &Value) -> Value {
    let mut after = after.clone();
    if let Some(probes) = after["probes"].as_array_mut() {
        for p in probes {
            let was = before["probes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|b| b["name"] == p["name"]);
            for f in ["run_count", "run_time_ns"] {
                let minus = was.and_then(|b| b[f].as_u64()).unwrap_or(0);
                if let Some(v) = p[f].as_u64() {
                    p[f] = (v.saturating_sub(minus)).into();
                }
            }
        }
    }
    after
}
