//! `tbctl overhead`: what the profiler costs on the user's host. The same seeded workload runs
//! with tbd capturing and without, interleaved (A B A B …) so drift falls on both, and six
//! figures come out with pass / warn / fail: latency overhead (with significance), dropped
//! events, export latency, coverage, completeness, and tbd's memory and CPU.

use std::{collections::BTreeMap, path::Path};

use serde::Serialize;

use crate::{
    analysis::significance::{self, MannWhitney},
    doc::{Block, Document, Section, Table},
    kernel::join::{ExportLatencyFacts, KernelLine},
    record::RequestRecord,
    report::assess::Level,
    rundir::{self, RunData},
    summary,
};

/// Latency overhead (p99 TTFT or E2E, capturing over not) that still passes, in percent.
pub const LATENCY_PASS_PCT: f64 = 1.0;
/// … and that still warns.
pub const LATENCY_WARN_PCT: f64 = 5.0;
/// Coverage and completeness that pass, and that still warn, in percent.
pub const SHARE_PASS_PCT: f64 = 99.9;
pub const SHARE_WARN_PCT: f64 = 99.0;
/// Export latency p95 that passes, and that still warns, in ms: a live view refreshes about
/// every quarter second.
pub const EXPORT_PASS_MS: f64 = 250.0;
pub const EXPORT_WARN_MS: f64 = 2_000.0;
/// tbd's own CPU per request that passes, and that still warns, in µs.
pub const CPU_PASS_US: f64 = 10.0;
pub const CPU_WARN_US: f64 = 30.0;

/// tbd's process figures around one capturing run.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct DaemonUsage {
    /// tbd's user + system CPU during the run, in seconds.
    pub cpu_s: f64,
    /// tbd's resident memory after the run, in KiB.
    pub rss_kib: u64,
}

/// One run of the interleaved series.
#[derive(Clone, Debug, Serialize)]
pub struct Leg {
    pub capturing: bool,
    pub run_id: String,
    pub dir: String,
    pub requests: u64,
    pub usage: Option<DaemonUsage>,
}

/// One figure with its verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    pub name: &'static str,
    pub level: Option<Level>,
    pub value: String,
    pub rule: String,
}

/// overhead.json.
#[derive(Clone, Debug, Serialize)]
pub struct Overhead {
    pub legs: Vec<Leg>,
    pub figures: Vec<Figure>,
    /// Latency changes, capturing less not capturing, pooled over the rounds.
    pub latency: Vec<LatencyChange>,
    pub notes: Vec<String>,
}

/// A latency metric with tbd capturing against without.
#[derive(Clone, Debug, Serialize)]
pub struct LatencyChange {
    pub metric: &'static str,
    pub off_mean: f64,
    pub on_mean: f64,
    pub off_p99: f64,
    pub on_p99: f64,
    /// (on − off) / off of the p99, in percent.
    pub p99_pct: f64,
    /// 95% bootstrap interval of on − off in the p99.
    pub p99_ci95: Option<(f64, f64)>,
    pub mann_whitney: Option<MannWhitney>,
}

/// Each run's client samples, computed once.
fn samples_of(runs: &[&RunData]) -> Vec<BTreeMap<&'static str, Vec<f64>>> {
    runs.iter()
        .map(|r| summary::samples(&r.measured().collect::<Vec<&RequestRecord>>()))
        .collect()
}

/// One metric's samples of every run, pooled.
fn pooled(samples: &[BTreeMap<&'static str, Vec<f64>>], metric: &str) -> Vec<f64> {
    samples
        .iter()
        .flat_map(|s| s.get(metric).into_iter().flatten().copied())
        .collect()
}

fn latency(off: &[&RunData], on: &[&RunData]) -> Vec<LatencyChange> {
    let (off, on) = (samples_of(off), samples_of(on));
    ["ttft_ms", "e2e_ms"]
        .into_iter()
        .filter_map(|metric| {
            let (mut a, mut b) = (pooled(&off, metric), pooled(&on, metric));
            if a.is_empty() || b.is_empty() {
                return None;
            }
            let (da, db) = (
                crate::stats::Distribution::of(&mut a)?,
                crate::stats::Distribution::of(&mut b)?,
            );
            Some(LatencyChange {
                metric,
                off_mean: da.mean,
                on_mean: db.mean,
                off_p99: da.p99,
                on_p99: db.p99,
                p99_pct: (db.p99 - da.p99) / da.p99 * 100.0,
                p99_ci95: significance::bootstrap_diff(
                    &a,
                    &b,
                    significance::p99,
                    significance::BOOTSTRAP_ROUNDS,
                    0,
                ),
                mann_whitney: significance::mann_whitney(&a, &b),
            })
        })
        .collect()
}

/// Whether a kernel line has every field an exchange needs.
fn complete(l: &KernelLine) -> bool {
    l.t_request_first_ns.is_some()
        && l.t_request_last_ns.is_some()
        && l.t_response_first_ns.is_some()
        && l.t_response_last_ns.is_some()
        && l.http_status.is_some()
        && !l.chunks.is_empty()
}

/// The figures of an interleaved series; `runs` pairs each leg with its run directory.
pub fn figures(legs: Vec<Leg>, runs: &[RunData], bpf_ns_per_run: Option<f64>) -> Overhead {
    let off: Vec<&RunData> = runs.iter().filter(|r| r.kernel.is_none()).collect();
    let on: Vec<&RunData> = runs.iter().filter(|r| r.kernel.is_some()).collect();
    let mut figures = Vec::new();
    let lat = latency(&off, &on);
    let worst = lat
        .iter()
        .map(|l| l.p99_pct)
        .fold(f64::NEG_INFINITY, f64::max);
    // An increase the test cannot tell from noise passes whatever its size.
    let significant = lat.iter().any(|l| {
        l.mann_whitney.is_some_and(|m| m.p < 0.05) && l.p99_ci95.is_some_and(|(lo, _)| lo > 0.0)
    });
    figures.push(Figure {
        name: "overhead latency",
        level: lat.first().map(|_| {
            if worst <= LATENCY_PASS_PCT || !significant {
                Level::Pass
            } else if worst <= LATENCY_WARN_PCT {
                Level::Warn
            } else {
                Level::Fail
            }
        }),
        value: lat
            .iter()
            .map(|l| {
                format!(
                    "{} p99 {:.3} -> {:.3} ms ({:+.1}%), mean {:.3} -> {:.3} ms",
                    l.metric, l.off_p99, l.on_p99, l.p99_pct, l.off_mean, l.on_mean
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        rule: format!(
            "pass when the worst p99 grows at most {LATENCY_PASS_PCT}% or the growth is not \
             significant (Mann-Whitney p >= 0.05 or a p99 interval holding 0), warn to \
             {LATENCY_WARN_PCT}%"
        ),
    });
    let kernels: Vec<_> = on
        .iter()
        .map(|r| r.summary().kernel.unwrap_or_default())
        .collect();
    let lost: u64 = kernels.iter().flat_map(|k| k.lost_events.values()).sum();
    figures.push(Figure {
        name: "dropped events",
        level: Some(if lost == 0 { Level::Pass } else { Level::Fail }),
        value: format!("{lost} events lost in the kernel over the capturing runs"),
        rule: "pass at 0 (every loss counter: ring buffer full, in-flight, pids, sockets)".into(),
    });
    let exports: Vec<ExportLatencyFacts> = on
        .iter()
        .filter_map(|r| r.config.capture.as_ref()?.export_latency)
        .filter(|e| e.exchanges > 0)
        .collect();
    // The worst leg's p95: each leg is one capture, and its tail is what a user waits.
    let p95_ms = exports
        .iter()
        .map(|e| e.p95_us)
        .max()
        .map(|us| us as f64 / 1e3);
    figures.push(Figure {
        name: "export latency",
        level: p95_ms.map(|ms| {
            if ms <= EXPORT_PASS_MS {
                Level::Pass
            } else if ms <= EXPORT_WARN_MS {
                Level::Warn
            } else {
                Level::Fail
            }
        }),
        value: match p95_ms {
            Some(ms) => format!(
                "p95 {ms:.1} ms (worst leg), p50 {:.1} ms, max {:.1} ms over {} exchanges",
                exports.iter().map(|e| e.p50_us).max().unwrap_or(0) as f64 / 1e3,
                exports.iter().map(|e| e.max_us).max().unwrap_or(0) as f64 / 1e3,
                exports.iter().map(|e| e.exchanges).sum::<u64>()
            ),
            None => "not measured: no capturing leg reported it (a tbd older than this tbctl)"
                .into(),
        },
        rule: format!(
            "from the kernel's stamp of an exchange's last byte to the store write that made it              queryable: pass to {EXPORT_PASS_MS} ms p95, warn to {EXPORT_WARN_MS} ms"
        ),
    });
    let (requests, both): (u64, u64) = kernels.iter().fold((0, 0), |(n, b), k| {
        (
            n + k.requests,
            b + k.seen_client_side.min(k.seen_server_side),
        )
    });
    let coverage = if requests > 0 {
        both as f64 / requests as f64 * 100.0
    } else {
        0.0
    };
    figures.push(Figure {
        name: "coverage",
        level: (requests > 0).then(|| Level::of_share(coverage, SHARE_PASS_PCT, SHARE_WARN_PCT)),
        value: format!("{both} of {requests} requests seen on both sides ({coverage:.2}%)"),
        rule: format!("pass from {SHARE_PASS_PCT}%, warn from {SHARE_WARN_PCT}%"),
    });
    let lines: Vec<&KernelLine> = on.iter().flat_map(|r| r.kernel.iter().flatten()).collect();
    let whole = lines.iter().filter(|l| complete(l)).count();
    let completeness = if lines.is_empty() {
        0.0
    } else {
        whole as f64 / lines.len() as f64 * 100.0
    };
    figures.push(Figure {
        name: "completeness",
        level: (!lines.is_empty())
            .then(|| Level::of_share(completeness, SHARE_PASS_PCT, SHARE_WARN_PCT)),
        value: format!(
            "{whole} of {} exchanges with request and response times, status and chunks \
             ({completeness:.2}%)",
            lines.len()
        ),
        rule: format!("pass from {SHARE_PASS_PCT}%, warn from {SHARE_WARN_PCT}%"),
    });
    let usage: Vec<(DaemonUsage, u64)> = legs
        .iter()
        .filter_map(|l| Some((l.usage?, l.requests)))
        .collect();
    let cpu_s: f64 = usage.iter().map(|u| u.0.cpu_s).sum();
    let reqs: u64 = usage.iter().map(|u| u.1).sum();
    let rss = usage.iter().map(|u| u.0.rss_kib).max().unwrap_or(0);
    let cpu_us = if reqs > 0 {
        cpu_s * 1e6 / reqs as f64
    } else {
        0.0
    };
    figures.push(Figure {
        name: "memory and CPU",
        level: (reqs > 0).then_some(if cpu_us <= CPU_PASS_US {
            Level::Pass
        } else if cpu_us <= CPU_WARN_US {
            Level::Warn
        } else {
            Level::Fail
        }),
        value: format!(
            "tbd CPU {cpu_us:.1} µs per request ({cpu_s:.3} s over {reqs}), RSS up to {rss} \
             KiB{}",
            bpf_ns_per_run
                .map(|n| format!(", BPF {n:.0} ns per program run (sampled)"))
                .unwrap_or_default()
        ),
        rule: format!(
            "tbd's own CPU over whole capturing legs (capture start, load, stop and queries: \
             short legs overstate it): pass to {CPU_PASS_US} µs per request, warn to \
             {CPU_WARN_US} µs; the probes' kernel time shows in the latency figures"
        ),
    });
    Overhead {
        legs,
        figures,
        latency: lat,
        notes: vec![
            "legs alternate without and with tbd (A B A B ...), the same seed each time, so \
             drift of the host falls on both"
                .into(),
        ],
    }
}

/// The report as a document.
pub fn document(o: &Overhead) -> Document {
    let rows = o
        .figures
        .iter()
        .map(|f| {
            vec![
                f.name.to_string(),
                f.level.map_or("n/a", |l| l.word()).to_string(),
                f.value.clone(),
                f.rule.clone(),
            ]
        })
        .collect();
    let legs = o
        .legs
        .iter()
        .map(|l| {
            vec![
                if l.capturing { "with tbd" } else { "without" }.to_string(),
                l.run_id.clone(),
                l.requests.to_string(),
                l.usage
                    .map(|u| format!("{:.3} s CPU, {} KiB", u.cpu_s, u.rss_kib))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    Document {
        title: "TrafficBench overhead: the same workload with tbd capturing and without".into(),
        sections: vec![
            Section {
                title: "Figures".into(),
                blocks: vec![Block::Table(Table {
                    header: ["figure", "result", "value", "rule"]
                        .map(String::from)
                        .to_vec(),
                    rows,
                })],
            },
            Section {
                title: "Runs, in the order they ran".into(),
                blocks: vec![
                    Block::Table(Table {
                        header: ["leg", "run", "requests", "tbd"].map(String::from).to_vec(),
                        rows: legs,
                    }),
                    Block::Bullets(o.notes.clone()),
                ],
            },
        ],
    }
}

/// Writes overhead.json, overhead.md and overhead.html into `out`.
pub fn write(o: &Overhead, out: &Path) -> std::io::Result<()> {
    rundir::write_json(out, "overhead.json", o)?;
    document(o).write(out, "overhead")
}

/// tbd's CPU seconds and RSS from /proc (None when it cannot be read).
pub fn daemon_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())?;
    Some((ticks / hz, rss))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_usage_reads_from_proc() {
        let (cpu, rss) = daemon_usage(std::process::id()).unwrap();
        assert!(cpu >= 0.0 && rss > 0);
        assert!(daemon_usage(u32::MAX).is_none());
    }

    #[test]
    fn a_line_missing_any_time_is_incomplete() {
        let mut l = KernelLine {
            t_request_first_ns: Some(1),
            t_request_last_ns: Some(2),
            t_response_first_ns: Some(3),
            t_response_last_ns: Some(4),
            http_status: Some(200),
            chunks: vec![[3, 10]],
            ..Default::default()
        };
        assert!(complete(&l));
        l.t_response_last_ns = None;
        assert!(!complete(&l));
    }
}
