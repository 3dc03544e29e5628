//! `tbctl trace RUN`: loads a run's kernel lines (from its directory, or from tbd by run id),
//! analyses them with `kernel::trace` and prints the table and insights, or the JSON report.

use std::path::Path;

use anyhow::{bail, Context};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, Table};

use crate::{
    catalogue::{self, Scope},
    daemon::{self, DaemonError},
    doc::num,
    kernel::{
        capture,
        join::{self, KernelLine},
        trace::{self, Level, TraceReport},
    },
    record::RequestRecord,
    rundir::{self, RunData},
};

/// `tbctl trace RUN [--json] [--daemon ADDR]`.
#[derive(clap::Args, Debug)]
pub struct TraceArgs {
    /// A run directory (holding kernel.jsonl), or a run id stored by tbd when no such directory exists.
    pub run: String,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// tbd's socket (unix:PATH or PATH), asked when RUN is a run id.
    #[arg(long)]
    pub daemon: Option<String>,
}

/// A run's kernel lines and client records, with where they came from and what is missing.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Kernel exchange lines, both sides.
    pub lines: Vec<KernelLine>,
    /// Client records; empty when unknown.
    pub records: Vec<RequestRecord>,
    /// "kernel.jsonl" or "tbd".
    pub source: &'static str,
    /// Why something is missing.
    pub notes: Vec<String>,
}

/// The figure formulas, for `--help`.
pub fn formulas_help() -> String {
    let mut s = catalogue::help(Scope::Trace, "Figures (kernel times, CLOCK_MONOTONIC):");
    s.push_str(&format!(
        "Insights: server-bound when the server takes >= {:.0}% of TTFB; connection reuse \
         below {:.0}% is checked for missing keep-alive; inter-chunk latency is stable when \
         stddev / mean < {}; any TCP retransmit is a warning.\n",
        trace::SERVER_BOUND_SHARE * 100.0,
        trace::REUSE_HEALTHY_RATE * 100.0,
        trace::ICL_STABLE_CV
    ));
    s
}

/// Reads a run directory's kernel.jsonl and requests.jsonl.
pub fn load_dir(dir: &Path) -> anyhow::Result<Loaded> {
    if !dir.join(rundir::KERNEL).is_file() {
        if !dir.join(rundir::RUN_JSON).is_file() && !dir.join(rundir::REQUESTS).is_file() {
            return Err(rundir::RunDirError::NotARun(dir.into()).into());
        }
        bail!(
            "run {} has no kernel.jsonl: it was profiled without tbd; profile again with tbd running",
            dir.display()
        );
    }
    let run = RunData::open(dir)?;
    let lines = run.kernel.unwrap_or_default();
    let mut loaded = Loaded {
        lines,
        records: run.records,
        source: "kernel.jsonl",
        ..Default::default()
    };
    if !dir.join(rundir::REQUESTS).is_file() {
        loaded.notes.push(format!(
            "{} is missing: per-token figures and first-token positions are unknown",
            dir.join(rundir::REQUESTS).display()
        ));
    }
    Ok(loaded)
}

/// Fetches a run's exchanges from tbd and turns them into kernel lines.
pub async fn load_daemon(run: &str, addr: Option<&str>) -> anyhow::Result<Loaded> {
    let socket = daemon::socket_path(addr.unwrap_or(daemon::DEFAULT_SOCKET));
    let mut client = match daemon::connect(&socket).await {
        Ok(c) => c,
        Err(DaemonError::Absent(p)) => bail!(
            "no run directory {run}, and no tbd at {} to ask for run id {run}: pass a run \
             directory, or start tbd (systemctl start tbd)",
            p.display()
        ),
        Err(e) => {
            return Err(e).context(format!(
                "no run directory {run}; asking tbd for run id {run}"
            ))
        }
    };
    let data = match capture::fetch(&mut client, run).await {
        Err(DaemonError::Rpc(s)) if s.code() == tonic::Code::NotFound => bail!(
            "no run directory {run}, and tbd has no run {run}: list stored runs with `tbctl runs`"
        ),
        r => r.with_context(|| format!("fetching run {run} from tbd"))?,
    };
    let conns: std::collections::HashMap<(&str, u64), &tb_proto::v1::Connection> = data
        .connections
        .iter()
        .map(|c| ((c.side.as_str(), c.conn_id), c))
        .collect();
    let lines = data
        .exchanges
        .iter()
        .map(|e| {
            join::line_for(
                e,
                conns.get(&(e.side.as_str(), e.conn_id)).copied(),
                &data.dns,
            )
        })
        .collect();
    let mut notes = vec![
        "from tbd: tbd cannot serve the client records back, so tokens and first-token \
         positions are unknown (gaps count from the first response read); `tbctl trace` on \
         the run directory has them"
            .to_string(),
        "from tbd: every exchange of the run's processes is included, warm-up and untagged \
         ones too (a run directory's kernel.jsonl holds measured requests only)"
            .to_string(),
    ];
    let lost: u64 = data.run.lost.iter().map(|l| l.count).sum();
    if lost > 0 {
        notes.push(format!(
            "the kernel lost {lost} events during the run: some exchanges may be missing or partial"
        ));
    }
    Ok(Loaded {
        lines,
        records: Vec::new(),
        source: "tbd",
        notes,
    })
}

/// Loads RUN: a run directory when one exists, otherwise a run id asked of tbd.
pub async fn load(run: &str, addr: Option<&str>) -> anyhow::Result<Loaded> {
    let dir = Path::new(run);
    if dir.is_dir() {
        load_dir(dir)
    } else {
        load_daemon(run, addr).await
    }
}

/// The report for loaded data, labelled with the run and its source.
pub fn report(run: &str, mut loaded: Loaded) -> TraceReport {
    // Exchanges no client record names (another load generator's) pair by connection.
    let paired = crate::kernel::pair::by_connection(&mut loaded.lines);
    if paired > 0 {
        loaded.notes.push(format!(
            "{paired} exchanges without a tbctl request id paired with the server's side by \
             connection (address and port)"
        ));
    }
    let mut r = trace::analyze(&loaded.lines, &loaded.records);
    r.run = run.to_string();
    r.source = loaded.source.to_string();
    let mut notes = loaded.notes;
    notes.append(&mut r.notes);
    r.notes = notes;
    r
}

/// `tbctl trace`.
pub async fn run(a: TraceArgs) -> anyhow::Result<()> {
    let loaded = load(&a.run, a.daemon.as_deref()).await?;
    let r = report(&a.run, loaded);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_report(&r);
    }
    Ok(())
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.0}%", v * 100.0))
}

/// Prints the figures table, counts, insights and notes.
pub fn print_report(r: &TraceReport) {
    println!("trace of run {} (from {})", r.run, r.source);
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "figure", "unit", "count", "min", "max", "mean", "p50", "p90", "p95", "p99",
    ]);
    for fig in &r.figures {
        let d = &fig.dist;
        t.add_row(vec![
            Cell::new(fig.name),
            Cell::new(fig.unit),
            Cell::new(d.count),
            Cell::new(num(d.min)),
            Cell::new(num(d.max)),
            Cell::new(num(d.mean)),
            Cell::new(num(d.p50)),
            Cell::new(num(d.p90)),
            Cell::new(num(d.p95)),
            Cell::new(num(d.p99)),
        ]);
    }
    if !r.figures.is_empty() {
        println!("{t}");
        for fig in &r.figures {
            println!("  {:<22} {}", fig.name, fig.formula);
        }
    }
    let c = &r.connections;
    println!(
        "exchanges: {} client side, {} server side; {} joined to client records",
        r.client_exchanges, r.server_exchanges, r.joined_records
    );
    println!(
        "connections: {} opened; {} of {} exchanges reused one (reuse rate {} = reused / \
         exchanges); at most {} in flight at once (best possible reuse {})",
        c.created,
        c.reused_exchanges,
        c.exchanges,
        pct(c.reuse_rate),
        c.peak_in_flight,
        pct(c.best_reuse_rate)
    );
    let by = &c.closed_first_by;
    println!(
        "connections ended first by: server {}, client {}, reset {}, not seen ending {}",
        by.server, by.client, by.reset, by.unseen
    );
    println!(
        "dns: {} lookups, {} cache hits",
        r.dns.lookups, r.dns.cache_hits
    );
    println!(
        "retransmits: {} (client {}, server {})",
        r.retransmits.total, r.retransmits.client, r.retransmits.server
    );
    for i in &r.insights {
        let tag = match i.level {
            Level::Info => "insight",
            Level::Warn => "warning",
        };
        println!("{tag}: {}", i.text);
    }
    for n in &r.notes {
        println!("note: {n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{kernel::join::ConnInfo, record::RunMeta};

    fn write_jsonl<T: serde::Serialize>(path: &Path, rows: &[T]) {
        let text: String = rows
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn loads_a_run_directory_and_analyses_it() {
        let dir = tempfile::tempdir().unwrap();
        let meta = RunMeta::fixture("r1");
        let rec = RequestRecord {
            request_id: 1,
            output_tokens: Some(4),
            success: true,
            ..Default::default()
        };
        let mut req = serde_json::to_string(&meta).unwrap() + "\n";
        req.push_str(&(serde_json::to_string(&rec).unwrap() + "\n"));
        std::fs::write(dir.path().join("requests.jsonl"), req).unwrap();
        let line = KernelLine {
            request_id: Some(1),
            side: "client".into(),
            conn: ConnInfo {
                id: 3,
                new: true,
                connect_ns: Some(50_000),
                ..Default::default()
            },
            t_request_first_ns: Some(1_000_000),
            t_request_last_ns: Some(1_100_000),
            t_response_first_ns: Some(5_000_000),
            t_response_last_ns: Some(9_000_000),
            chunks: vec![[5_000_000, 100], [9_000_000, 100]],
            response_bytes: 200,
            ..Default::default()
        };
        write_jsonl(&dir.path().join("kernel.jsonl"), &[line]);

        let run = dir.path().to_str().unwrap();
        let loaded = load_dir(dir.path()).unwrap();
        assert_eq!((loaded.lines.len(), loaded.records.len()), (1, 1));
        let r = report(run, loaded);
        assert_eq!((r.run.as_str(), r.source.as_str()), (run, "kernel.jsonl"));
        assert_eq!(r.joined_records, 1);
        assert_eq!(r.figure("ttfb_ms").unwrap().dist.p50, 4.0);
        assert_eq!(r.figure("bytes_per_token").unwrap().dist.p50, 50.0);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["figures"][0]["name"], "connect_ms");
        assert!(json["figures"][0]["p99.9"].is_number());
    }

    #[test]
    fn a_run_without_kernel_jsonl_says_how_to_get_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("requests.jsonl"), "{}\n").unwrap();
        let e = load_dir(dir.path()).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "run {} has no kernel.jsonl: it was profiled without tbd; profile again with tbd running",
                dir.path().display()
            )
        );
        let empty = tempfile::tempdir().unwrap();
        let e = load_dir(empty.path()).unwrap_err().to_string();
        assert!(e.contains("not a run directory"), "{e}");
    }
}
