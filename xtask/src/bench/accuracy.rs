//! The accuracy bench: tbctl's TTFT and per-gap errors against serve-sim's own log of when it
//! read each request and wrote each token, 64 streams, as tbctl read the chunks and, with tbd
//! capturing, as they arrived at tbctl's socket (cgroup_skb ingress), and, with `--socket-arrivals`,
//! as the socket's own receive stamps (SO_TIMESTAMPING) place them, with and without tbd.
//!
//! One warm-up request per stream goes first: the 64 first requests leave tbctl in the same
//! millisecond and serve-sim reads them one after another, the last up to ~3 ms after it
//! arrived. That wait is the server's (bytes unread in its socket), so its log's TTFT, which
//! starts at the read, leaves it out while every client sees it. Those requests are reported
//! apart.

use std::{collections::HashMap, path::Path};

use serde_json::{json, Value};

use super::{jsonl, pct, profile, u};
use crate::procs;

/// Absolute errors against the server's log, ms.
#[derive(Default)]
struct Errors {
    ttft: Vec<f64>,
    warmup_ttft: Vec<f64>,
    gap: Vec<f64>,
}

impl Errors {
    fn json(mut self) -> Value {
        json!({
            "requests": self.ttft.len(),
            "ttft_abs_error_ms": {"p50": pct(&mut self.ttft, 0.5), "p99": pct(&mut self.ttft, 0.99), "max": pct(&mut self.ttft, 1.0)},
            "gap_abs_error_ms": {"p50": pct(&mut self.gap, 0.5), "p99": pct(&mut self.gap, 0.99), "max": pct(&mut self.gap, 1.0)},
            "warmup_ttft_abs_error_ms": {"p50": pct(&mut self.warmup_ttft, 0.5), "max": pct(&mut self.warmup_ttft, 1.0)},
        })
    }
}

/// The errors of each record whose content chunks `times` gives (one time per chunk of the
/// record, in order) against the server's log `truth`.
fn errors(
    records: &[Value],
    truth: &HashMap<u64, Value>,
    times: impl Fn(&Value) -> Option<Vec<u64>>,
) -> Errors {
    let mut e = Errors::default();
    // The first line is the run's header.
    for r in records.iter().skip(1) {
        let Some(t) = u(&r["request_id"]).and_then(|id| truth.get(&id)) else {
            continue;
        };
        let (Some(sent), Some(client)) = (u(&r["t_sent_ns"]), times(r)) else {
            continue;
        };
        let server: Vec<u64> = t["chunks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| u(&c[0]))
            .collect();
        let (Some(t_read), Some(&t_first)) = (u(&t["t_read_ns"]), server.first()) else {
            continue;
        };
        if server.len() != client.len() {
            continue;
        }
        let client_ttft = client[0] as f64 - sent as f64;
        let true_ttft = t_first as f64 - t_read as f64;
        let err = (client_ttft - true_ttft).abs() / 1e6;
        if r["warmup"].as_bool() == Some(true) {
            e.warmup_ttft.push(err);
            continue;
        }
        e.ttft.push(err);
        for i in 1..server.len() {
            let cg = client[i] as f64 - client[i - 1] as f64;
            let tg = server[i] as f64 - server[i - 1] as f64;
            e.gap.push((cg - tg).abs() / 1e6);
        }
    }
    e
}

/// The record's content chunk times as tbctl read them.
fn read_times(r: &Value) -> Option<Vec<u64>> {
    r["chunks"].as_array()?.iter().map(|c| u(&c[0])).collect()
}

/// The record's content chunk times at their socket arrival (`--socket-arrivals`).
fn socket_times(r: &Value) -> Option<Vec<u64>> {
    r["chunk_arrivals_ns"].as_array()?.iter().map(u).collect()
}

/// A run's requests.jsonl, kernel.jsonl (empty without tbd), serve-sim's log by request id,
/// and summary.
struct Run {
    records: Vec<Value>,
    kernel: Vec<Value>,
    truth: HashMap<u64, Value>,
    summary: Value,
}

/// One run of 300 requests against a fresh serve-sim, with `extra` profile arguments.
fn run(dir: &Path, name: &str, daemon: Option<&str>, extra: &[&str]) -> anyhow::Result<Run> {
    let sdir = dir.join(name);
    std::fs::create_dir_all(&sdir)?;
    let truth_path = sdir.join("truth.jsonl");
    let truth_arg = truth_path.display().to_string();
    let (mut sim, port) = procs::start_sim(
        "release",
        &sdir,
        &[
            "--ttft", "40ms", "--itl", "8ms", "--jitter", "0.5", "--seed", "7", "--truth",
            &truth_arg,
        ],
    )?;
    let url = format!("http://127.0.0.1:{port}");
    let mut args = vec![
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
    ];
    args.extend(extra);
    match daemon {
        Some(d) => args.extend(["--daemon", d]),
        None => args.push("--no-daemon"),
    }
    let (summary, _, run_dir) = profile(dir, &args)?;
    sim.stop();
    let truth = jsonl(&truth_path)?
        .into_iter()
        .filter_map(|t| {
            let id = u(&t["request_id"]).or_else(|| t["request_id"].as_str()?.parse().ok())?;
            Some((id, t))
        })
        .collect();
    let kernel = if daemon.is_some() {
        jsonl(&run_dir.join("kernel.jsonl"))?
    } else {
        Vec::new()
    };
    Ok(Run {
        records: jsonl(&run_dir.join("requests.jsonl"))?,
        kernel,
        truth,
        summary,
    })
}

/// Runs the bench; see the module docs.
pub fn accuracy(dir: &Path) -> anyhow::Result<Value> {
    let plain_run = run(dir, "plain", None, &[])?;
    let plain = errors(&plain_run.records, &plain_run.truth, read_times);
    let socket_run = run(dir, "socket", None, &["--socket-arrivals"])?;
    let socket = errors(&socket_run.records, &socket_run.truth, socket_times);
    let socket_read = errors(&socket_run.records, &socket_run.truth, read_times);

    let tdir = dir.join("tbd-accuracy");
    std::fs::create_dir_all(&tdir)?;
    let (mut tbd, sock) = procs::start_tbd("release", &tdir)?;
    let daemon = format!("unix:{}", sock.display());
    let captured = run(dir, "captured", Some(&daemon), &["--socket-arrivals"]);
    tbd.stop();
    let Run {
        records,
        kernel,
        truth,
        ..
    } = captured?;
    let arrivals: HashMap<u64, Vec<u64>> = kernel
        .iter()
        .filter(|l| l["side"] == "client")
        .filter_map(|l| {
            let a: Vec<u64> = l["content_arrivals_ns"]
                .as_array()?
                .iter()
                .filter_map(u)
                .collect();
            Some((u(&l["request_id"])?, a))
        })
        .collect();
    let with_arrivals = arrivals.len();
    // serve-sim's log starts TTFT at its read of the request; the request may have waited in
    // its socket before that (at 64 streams on two cores, up to half a millisecond), which
    // every client sees. The same log with TTFT from the request's arrival at serve-sim's
    // socket (tbd's server side) leaves that wait in.
    let from_arrival: HashMap<u64, Value> = kernel
        .iter()
        .filter(|l| l["side"] == "server")
        .filter_map(|l| {
            let id = u(&l["request_id"])?;
            let mut t = truth.get(&id)?.clone();
            t["t_read_ns"] = l["arrivals"][0][0].clone();
            u(&t["t_read_ns"]).map(|_| (id, t))
        })
        .collect();
    // Truth from the kernel instead of serve-sim's log: each content chunk at the return of
    // the server's write(2) that sent it (tbd's server side; the log only says which write,
    // the first to return after its stamp), TTFT from the request's arrival. No figure of
    // serve-sim's own clock or pacing is left in it.
    let from_kernel: HashMap<u64, Value> = kernel
        .iter()
        .filter(|l| l["side"] == "server")
        .filter_map(|l| {
            let id = u(&l["request_id"])?;
            let writes: Vec<u64> = l["chunks"]
                .as_array()?
                .iter()
                .filter_map(|c| u(&c[0]))
                .collect();
            let logged = truth.get(&id)?["chunks"].as_array()?;
            let chunks: Vec<Value> = logged
                .iter()
                .map(|c| {
                    let stamp = u(&c[0])?;
                    let w = writes.iter().find(|&&w| w >= stamp)?;
                    Some(json!([w, c[1].clone()]))
                })
                .collect::<Option<_>>()?;
            Some((
                id,
                json!({"t_read_ns": l["arrivals"][0][0].clone(), "chunks": chunks}),
            ))
        })
        .collect();
    let read = errors(&records, &truth, read_times);
    let arrival_times = |r: &Value| arrivals.get(&u(&r["request_id"])?).cloned();
    let arrived = errors(&records, &truth, arrival_times);
    let arrived_from_arrival = errors(&records, &from_arrival, arrival_times);
    let socket_from_arrival = errors(&records, &from_arrival, socket_times);
    let arrived_kernel_truth = errors(&records, &from_kernel, arrival_times);
    let socket_kernel_truth = errors(&records, &from_kernel, socket_times);
    let read_kernel_truth = errors(&records, &from_kernel, read_times);
    // The same reads stamped twice: the ingress arrival minus the socket's receive stamp.
    let mut probe_minus_socket: Vec<f64> = records
        .iter()
        .filter_map(|r| Some((arrivals.get(&u(&r["request_id"])?)?, socket_times(r)?)))
        .filter(|(k, s)| k.len() == s.len())
        .flat_map(|(k, s)| {
            k.iter()
                .zip(s)
                .map(|(&k, s)| (k as f64 - s as f64) / 1e6)
                .collect::<Vec<_>>()
        })
        .collect();
    Ok(json!({
        "setup": "serve-sim TTFT 40ms, ITL 8ms, jitter ±50%, 32 tokens, 300 requests after a warm-up of one per stream, 64 streams, same 2 cores; once without tbd, once without tbd with --socket-arrivals, once with tbd capturing and --socket-arrivals (read, ingress arrival and socket stamp from the same run)",
        "read_time": plain.json(),
        "socket_arrival_time": socket.json(),
        "socket_run_read_time": socket_read.json(),
        "captured_socket_arrival_time_truth_from_request_arrival": socket_from_arrival.json(),
        "kernel_truth": {
            "what": "truth from tbd's server side: each chunk at the return of the server write that sent it, TTFT from the request's arrival at the server's socket",
            "read_time": read_kernel_truth.json(),
            "arrival_time": arrived_kernel_truth.json(),
            "socket_arrival_time": socket_kernel_truth.json(),
        },
        "captured_chunks_probe_minus_socket_ms": {
            "count": probe_minus_socket.len(),
            "min": pct(&mut probe_minus_socket, 0.0),
            "p50": pct(&mut probe_minus_socket, 0.5),
            "p99": pct(&mut probe_minus_socket, 0.99),
            "max": pct(&mut probe_minus_socket, 1.0),
        },
        "target_read_time_p99_ms": {"ttft": 1.0, "gap": 0.5},
        "captured_read_time": read.json(),
        "captured_arrival_time": arrived.json(),
        "captured_arrival_time_truth_from_request_arrival": arrived_from_arrival.json(),
        "captured_requests_with_arrivals": with_arrivals,
        "target_arrival_p99_ms": {"ttft": 0.1, "gap": 0.1},
        "client_ttft_p50_ms": plain_run.summary["metrics"]["ttft_ms"]["p50"],
    }))
}
