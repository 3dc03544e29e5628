//! The capacity bench: how many streaming requests per second tbctl drives, as a ratio to wrk
//! (raw HTTP, no SSE parsing, no records: the ceiling) and to vllm-bench (vLLM's Rust client,
//! the fastest peer) on the same server in the same run.
//!
//! All load ../shared/bench/fast-sse at 256 connections, in interleaved rounds, the order
//! rotating from round to round so that the VM's drift cancels in each round's ratios. Each run
//! is measured over its steady middle, alike for every client: from 1 s to 3.5 s after its
//! first requests reach nginx (vllm-bench tokenizes its whole dataset before sending, for tens
//! of seconds), requests as nginx itself counted them (stub_status) and CPU as the client
//! process's own (/proc/PID/stat), so start-up, connection set-up and summaries stay out.
//! tbctl's records are checked whole: every request succeeded with its 16 chunk times and its
//! tokens from `usage`; vllm-bench's own summary must show no failure and 16 tokens a request.
//!
//! vllm-bench is not vendored: build it from github.com/vllm-project/vllm-bench
//! (`cargo build --release`) and set VLLM_BENCH to the binary and VLLM_BENCH_TOKENIZER to a
//! directory with a tokenizer.json; without them the bench runs wrk and tbctl only and says so.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
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

/// Interleaved rounds, one run of each client per round.
const ROUNDS: usize = 5;
const CONNECTIONS: &str = "256";
const DURATION: &str = "5s";
/// The measured window, in seconds after the client's first requests reached nginx.
const WINDOW: (f64, f64) = (1.0, 3.5);
/// Content chunks in each fast-sse response.
const CHUNKS: usize = 16;
/// tbctl's mixed prompts average 340 tokens (40% 50-200, 40% 200-500, 20% 500-1000), so
/// vllm-bench's random prompts are given that length.
const PEER_INPUT_TOKENS: &str = "340";
/// vllm-bench has no duration: enough prompts to outlast the window at 45,000 req/s.
const PEER_PROMPTS: &str = "180000";

/// One run's steady-state figures.
#[derive(Clone, Copy, Debug, Default)]
struct Window {
    rps: f64,
    cpu_us_per_request: f64,
}

/// A load generator the bench runs.
enum Client {
    Wrk,
    Tbctl,
    VllmBench { bin: PathBuf, tokenizer: PathBuf },
}

impl Client {
    fn name(&self) -> &'static str {
        match self {
            Client::Wrk => "wrk",
            Client::Tbctl => "tbctl",
            Client::VllmBench { .. } => "vllm-bench",
        }
    }

    fn command(&self, sse: &FastSse, dir: &Path) -> Command {
        match self {
            Client::Wrk => {
                let mut c = Command::new("wrk");
                c.args(["-t2", "-c", CONNECTIONS, "-d", DURATION, "-s"])
                    .arg(sse.wrk_script())
                    .arg(format!("{URL}/v1/chat/completions"));
                c
            }
            Client::Tbctl => {
                let mut c = Command::new(procs::bin("release", "tbctl"));
                c.args(["profile", "--url", URL, "--concurrency", CONNECTIONS])
                    .args(["--max-tokens", "16", "--duration", DURATION, "--no-daemon"])
                    .arg("--json")
                    .arg("--out")
                    .arg(dir.join("runs"));
                c
            }
            Client::VllmBench { bin, tokenizer } => {
                let mut c = Command::new(bin);
                c.args(["--backend", "openai-chat", "--base-url", URL])
                    .args(["--endpoint", "/v1/chat/completions", "--model", "gt-model"])
                    .arg("--tokenizer")
                    .arg(tokenizer)
                    .args(["--dataset-name", "random", "--random-input-len"])
                    .args([PEER_INPUT_TOKENS, "--random-output-len", "16"])
                    .args([
                        "--num-prompts",
                        PEER_PROMPTS,
                        "--max-concurrency",
                        CONNECTIONS,
                    ])
                    .args([
                        "--request-rate",
                        "inf",
                        "--disable-tqdm",
                        "--no-steady-state",
                    ]);
                c
            }
        }
    }

    /// What the run's own output says it lacks: (incomplete requests, requests).
    fn check(&self, out: &Output, dir: &Path) -> anyhow::Result<(usize, usize)> {
        match self {
            Client::Wrk => Ok((0, 0)),
            Client::Tbctl => tbctl_records(out, dir),
            Client::VllmBench { .. } => peer_summary(&String::from_utf8_lossy(&out.stdout)),
        }
    }
}

/// tbctl's records, each checked whole.
fn tbctl_records(out: &Output, dir: &Path) -> anyhow::Result<(usize, usize)> {
    let summary: Value = serde_json::from_slice(&out.stdout)?;
    let run_dir = dir
        .join("runs")
        .join(summary["run_id"].as_str().unwrap_or_default());
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
    Ok((incomplete, records.len()))
}

/// vllm-bench's summary: failed requests, and successful ones short of 16 tokens each.
fn peer_summary(text: &str) -> anyhow::Result<(usize, usize)> {
    let field = |name: &str| -> anyhow::Result<usize> {
        text.lines()
            .find_map(|l| l.split_once(name).map(|(_, v)| v.trim()))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no '{name}' in vllm-bench's output"))
    };
    let ok = field("Successful requests:")?;
    let failed = field("Failed requests:")?;
    let tokens = field("Total generated tokens:")?;
    let short = (ok * CHUNKS).saturating_sub(tokens).min(ok);
    Ok((failed + short, ok + failed))
}

/// Runs `client` and measures it over the window after its load began.
fn measure(sse: &FastSse, client: &Client, dir: &Path) -> anyhow::Result<(Window, usize, usize)> {
    let mut cmd = client.command(sse, dir);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let pid = child.id();
    // Load has begun when nginx's counter moves by more than our own status requests (one
    // per look) and a start-up request or two (vllm-bench asks for /v1/models and /tokenize).
    let mut last = sse.served()?;
    let begun = loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = sse.served()?;
        if now > last + 20 {
            break Instant::now();
        }
        last = now;
        if child.try_wait()?.is_some() {
            let out = child.wait_with_output()?;
            bail!(
                "{cmd:?} ended before sending: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    };
    let mark = || -> anyhow::Result<(u64, u64, Instant)> {
        let ticks = cpu_ticks(pid).context("the client ended before the measured window")?;
        Ok((sse.served()?, ticks, Instant::now()))
    };
    let wait_until = |s: f64| {
        let at = begun + Duration::from_secs_f64(s);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
    };
    wait_until(WINDOW.0);
    let (n0, c0, t0) = mark()?;
    wait_until(WINDOW.1);
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
    let (incomplete, requests) = client.check(&out, dir)?;
    Ok((w, incomplete, requests))
}

/// vllm-bench, where VLLM_BENCH and VLLM_BENCH_TOKENIZER name it; otherwise why not.
fn peer() -> Result<Client, String> {
    let (Some(bin), Some(tokenizer)) = (
        std::env::var_os("VLLM_BENCH"),
        std::env::var_os("VLLM_BENCH_TOKENIZER"),
    ) else {
        return Err("not run: set VLLM_BENCH to a vllm-bench binary (cargo build --release in github.com/vllm-project/vllm-bench) and VLLM_BENCH_TOKENIZER to a directory with a tokenizer.json".into());
    };
    let (bin, tokenizer) = (PathBuf::from(bin), PathBuf::from(tokenizer));
    if !bin.is_file() || !tokenizer.join("tokenizer.json").is_file() {
        return Err(format!(
            "not run: VLLM_BENCH={} is not a file or VLLM_BENCH_TOKENIZER={} has no tokenizer.json",
            bin.display(),
            tokenizer.display()
        ));
    }
    Ok(Client::VllmBench { bin, tokenizer })
}

/// `cargo xtask bench capacity`.
pub fn capacity(dir: &Path) -> anyhow::Result<Value> {
    if Command::new("wrk").arg("-v").output().is_err() {
        bail!("no wrk: run `cargo xtask setup` (it installs wrk)");
    }
    let mut clients = vec![Client::Wrk, Client::Tbctl];
    let peer_note = match peer() {
        Ok(p) => {
            clients.push(p);
            None
        }
        Err(why) => {
            eprintln!("bench: vllm-bench {why}");
            Some(why)
        }
    };
    let sse = FastSse::start(dir)?;
    // One unmeasured run of wrk and tbctl: nginx's and the page cache's first touches.
    for c in &clients[..2] {
        measure(&sse, c, dir)?;
    }
    // rounds[r][c]: client c's window in round r.
    let mut rounds: Vec<Vec<Window>> = Vec::new();
    let (mut incomplete, mut requests) = (vec![0; clients.len()], vec![0; clients.len()]);
    for r in 0..ROUNDS {
        // Every slot is written: the rotation visits each client once.
        let mut got = vec![Window::default(); clients.len()];
        for k in 0..clients.len() {
            // Rotate the order so that no client always runs first or last.
            let c = (k + r) % clients.len();
            let (w, bad, n) = measure(&sse, &clients[c], dir)?;
            incomplete[c] += bad;
            requests[c] += n;
            got[c] = w;
        }
        let line: Vec<String> = clients
            .iter()
            .zip(&got)
            .map(|(c, w)| {
                format!(
                    "{} {:.0} req/s {:.1} µs",
                    c.name(),
                    w.rps,
                    w.cpu_us_per_request
                )
            })
            .collect();
        eprintln!("bench: capacity round {}: {}", r + 1, line.join(", "));
        rounds.push(got);
    }
    // Per-round ratios of client `a` to client `b`, as median and range.
    let ratio = |a: usize, b: usize, f: fn(&Window) -> f64| {
        let v: Vec<f64> = rounds.iter().map(|w| f(&w[a]) / f(&w[b])).collect();
        json!({
            "median": median_of(&v),
            "min": v.iter().cloned().fold(f64::INFINITY, f64::min),
            "max": v.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        })
    };
    let median = |c: usize, f: fn(&Window) -> f64| {
        median_of(&rounds.iter().map(|w| f(&w[c])).collect::<Vec<_>>())
    };
    let rps = |w: &Window| w.rps;
    let cpu = |w: &Window| w.cpu_us_per_request;
    let mut out = json!({
        "setup": format!("{ROUNDS} interleaved rounds (order rotating) of wrk -t2 -c{CONNECTIONS} -d{DURATION} (post.lua), tbctl profile --concurrency {CONNECTIONS} --max-tokens 16 --duration {DURATION} --no-daemon and, where built, vllm-bench (openai-chat, random {PEER_INPUT_TOKENS}-token prompts, 16 tokens out, --max-concurrency {CONNECTIONS}) against fast-sse (nginx, one worker, {CHUNKS} content chunks); each run measured from {}s to {}s after its first requests reached nginx: requests nginx counted, and the client process's own CPU", WINDOW.0, WINDOW.1),
        "wrk_requests_per_s": median(0, rps),
        "wrk_cpu_us_per_request": median(0, cpu),
        "tbctl_requests_per_s": median(1, rps),
        "tbctl_cpu_us_per_request": median(1, cpu),
        "throughput_vs_wrk": ratio(1, 0, rps),
        "cpu_per_request_vs_wrk": ratio(1, 0, cpu),
        "tbctl_records": requests[1],
        "tbctl_records_incomplete": incomplete[1],
        "target_throughput_vs_wrk": 0.75,
        "target_cpu_per_request_vs_wrk": 3.0,
        "target_throughput_vs_fastest_peer": 1.2,
    });
    match peer_note {
        Some(why) => out["vllm_bench"] = json!(why),
        None => {
            out["vllm_bench"] = json!({
                "requests_per_s": median(2, rps),
                "cpu_us_per_request": median(2, cpu),
                "throughput_vs_wrk": ratio(2, 0, rps),
                "cpu_per_request_vs_wrk": ratio(2, 0, cpu),
                "requests": requests[2],
                "requests_incomplete": incomplete[2],
            });
            out["tbctl_throughput_vs_fastest_peer"] = ratio(1, 2, rps);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::peer_summary;

    #[test]
    fn the_peers_summary_counts_failures_and_requests_short_of_their_tokens() {
        let text = "  4.20 Successful requests:                     20000     \n  4.20 Failed requests:                         3         \n  4.20 Total generated tokens:                  319990    \n";
        // 3 failed, and 10 tokens short: at most 10 requests lacked one.
        assert_eq!(peer_summary(text).unwrap(), (13, 20003));
        let whole = text.replace("319990", "320000").replace(" 3 ", " 0 ");
        assert_eq!(peer_summary(&whole).unwrap(), (0, 20000));
        assert!(peer_summary("Successful requests: 5\n").is_err());
    }
}
