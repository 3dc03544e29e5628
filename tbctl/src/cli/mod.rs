//! tbctl's command line: the edge where errors become one line and an exit code.

pub mod analyze_cmd;
pub mod capture_cmd;
pub mod compare_cmd;
pub mod daemon_cmds;
pub mod energy_cmd;
pub mod output;
pub mod overhead_cmd;
pub mod profile;
pub mod profile_from;
pub mod progress;
pub mod repeat;
pub mod report_cmd;
pub mod sweep_cmd;
pub mod trace_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::catalogue::{self, Scope};

fn metrics_help() -> String {
    let mut s = catalogue::help(
        Scope::Client,
        "Metrics (all times CLOCK_MONOTONIC; printed in summary.json too):",
    );
    s.push_str(&catalogue::help(Scope::Rate, "Rates:"));
    s.push_str(&catalogue::help(
        Scope::Kernel,
        "Kernel split (with tbd; summary.json `kernel`):",
    ));
    s
}

/// TrafficBench client: profile inference endpoints with exact client and kernel timing.
#[derive(Parser, Debug)]
#[command(name = "tbctl", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// tbctl's commands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Drive load at an endpoint and measure every request (with kernel timing when tbd runs).
    #[command(after_long_help = metrics_help(), after_help = metrics_help())]
    Profile(Box<profile::ProfileArgs>),
    /// A simulated inference server (OpenAI and Ollama APIs) that logs its own ground truth.
    ServeSim(crate::sim::SimArgs),
    /// Kernel timing of another load generator or server: `-- CMD`, `--pid`, `--port`.
    Capture(capture_cmd::CaptureArgs),
    /// The daemon: `tbctl daemon status`.
    Daemon {
        #[command(subcommand)]
        cmd: DaemonCmd,
    },
    /// Runs stored by the daemon: list, `show ID`, `delete ID`.
    Runs {
        #[command(subcommand)]
        cmd: Option<RunsCmd>,
        /// tbd's socket (unix:PATH or PATH).
        #[arg(long, global = true)]
        daemon: Option<String>,
        /// JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Network analysis of a run from kernel data: connections, DNS, TTFB/TTLB, reads, insights.
    #[command(after_long_help = trace_cmd::formulas_help(), after_help = trace_cmd::formulas_help())]
    Trace(trace_cmd::TraceArgs),
    /// A run's report: report.md, report.html and report.json with plots, SLO checks and
    /// recommendations.
    Report(report_cmd::ReportArgs),
    /// One plot of a run into its plots/ directory (PNG and SVG).
    Plot(report_cmd::PlotArgs),
    /// Runs side by side: changes with bootstrap intervals, Mann-Whitney U, comparability,
    /// and `--gate` bounds that exit 1 when broken.
    Compare(compare_cmd::CompareArgs),
    /// An analysis of a run: regression (with confidence intervals), steady-state, network.
    Analyze(analyze_cmd::AnalyzeArgs),
    /// One run per load level (given, or stepped up until the server saturates) and the sweep
    /// report: throughput against latency, goodput against load, the saturation point.
    Sweep(Box<sweep_cmd::SweepArgs>),
    /// What the profiler costs here: the same workload without tbd and with it, interleaved,
    /// as six figures with pass / warn / fail; `--validate-only` checks without load.
    Overhead(Box<overhead_cmd::OverheadArgs>),
    /// Every kind this build knows: APIs, datasets, traces, patterns, analyses, plots, metrics.
    List(analyze_cmd::ListArgs),
    /// A run's energy per source, per token and per request (`tbctl energy RUN`), or the
    /// host's power live from tbd (`tbctl energy --live`).
    #[command(after_long_help = energy_help(), after_help = energy_help())]
    Energy(energy_cmd::EnergyArgs),
}

fn energy_help() -> String {
    catalogue::help(Scope::Energy, "Energy figures (summary.json `energy`):")
}

/// `tbctl daemon ...`.
#[derive(Subcommand, Debug)]
pub enum DaemonCmd {
    /// Version, kernel, probes with BPF run time, sensors, loss counters.
    Status {
        /// tbd's socket (unix:PATH or PATH).
        #[arg(long)]
        daemon: Option<String>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `tbctl runs ...`.
#[derive(Subcommand, Debug)]
pub enum RunsCmd {
    /// One run's header.
    Show { id: String },
    /// Delete a run and its records.
    Delete { id: String },
}

/// Entry point of the `tbctl` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tbctl: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.cmd {
            Cmd::Profile(a) => profile::run(*a).await,
            Cmd::Capture(a) => capture_cmd::run(a).await,
            Cmd::ServeSim(a) => crate::sim::run(a).await.map(|_| ExitCode::SUCCESS),
            Cmd::Daemon {
                cmd: DaemonCmd::Status { daemon, json },
            } => daemon_cmds::status(&daemon, json)
                .await
                .map(|_| ExitCode::SUCCESS),
            Cmd::Runs { cmd, daemon, json } => match cmd {
                None => daemon_cmds::list(&daemon, json).await,
                Some(RunsCmd::Show { id }) => daemon_cmds::show(&daemon, &id).await,
                Some(RunsCmd::Delete { id }) => daemon_cmds::delete(&daemon, &id).await,
            }
            .map(|_| ExitCode::SUCCESS),
            Cmd::Trace(a) => trace_cmd::run(a).await.map(|_| ExitCode::SUCCESS),
            Cmd::Report(a) => report_cmd::run_report(a).map(|_| ExitCode::SUCCESS),
            Cmd::Plot(a) => report_cmd::run_plot(a).map(|_| ExitCode::SUCCESS),
            Cmd::Compare(a) => compare_cmd::run(a),
            Cmd::Sweep(a) => sweep_cmd::run(*a).await,
            Cmd::Overhead(a) => overhead_cmd::run(*a).await,
            Cmd::Analyze(a) => analyze_cmd::run_analyze(a).map(|_| ExitCode::SUCCESS),
            Cmd::List(a) => analyze_cmd::run_list(a).map(|_| ExitCode::SUCCESS),
            Cmd::Energy(a) => energy_cmd::run(a).await.map(|_| ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tbctl: {}", one_line(&e));
            ExitCode::from(2)
        }
    }
}

/// The error chain on one line.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}
