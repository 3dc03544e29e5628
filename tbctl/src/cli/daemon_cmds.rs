//! `tbctl daemon status`, `tbctl runs`, `tbctl runs show ID`, `tbctl runs delete ID`.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use tb_proto::v1::{DeleteRunRequest, GetInfoRequest, GetRunRequest, ListRunsRequest, Run};

use crate::daemon;

/// tbd's socket from `--daemon`, or the default.
pub fn socket(addr: &Option<String>) -> std::path::PathBuf {
    daemon::socket_path(addr.as_deref().unwrap_or(daemon::DEFAULT_SOCKET))
}

/// `tbctl daemon status`.
pub async fn status(addr: &Option<String>, json: bool) -> anyhow::Result<()> {
    let mut c = daemon::connect(&socket(addr)).await?;
    let info = c.get_info(GetInfoRequest {}).await?.into_inner();
    if json {
        println!("{}", serde_json::to_string_pretty(&info_json(&info))?);
        return Ok(());
    }
    println!("tbd {} on kernel {}", info.version, info.kernel);
    println!(
        "capture: {}",
        if info.active_run.is_empty() {
            "idle".to_string()
        } else {
            format!("running ({})", info.active_run)
        }
    );
    println!(
        "events: {} received, {} in captures; store {} bytes, reopened {} times to give memory back",
        info.events_received, info.events_stored, info.store_bytes, info.store_reopens,
    );
    println!(
        "probes: {}; BPF stats {} (mode {}, on for {:.1} s in all: run times and counts cover only that)",
        if info.probes.iter().any(|p| p.attached) {
            "attached"
        } else {
            "loaded, attached only while capturing"
        },
        if info.bpf_stats_enabled { "on" } else { "off" },
        info.bpf_stats_mode,
        info.bpf_stats_seconds
    );
    let lost: Vec<String> = info
        .lost
        .iter()
        .map(|l| format!("{} {}", l.reason, l.count))
        .collect();
    println!("lost events: {}", lost.join(", "));
    println!(
        "socket table: {} slots (tbd --max-sockets; raise it when sockets_full counts)",
        info.socket_slots
    );
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "probe",
        "attached to",
        "runs",
        "run time ns",
        "ns/run",
    ]);
    for p in &info.probes {
        let per = if p.run_count > 0 {
            p.run_time_ns as f64 / p.run_count as f64
        } else {
            0.0
        };
        t.add_row(vec![
            p.name.clone(),
            p.attach.clone(),
            p.run_count.to_string(),
            p.run_time_ns.to_string(),
            format!("{per:.0}"),
        ]);
    }
    println!("{t}");
    for s in &info.sensors {
        println!(
            "sensor {}: {} ({})",
            s.name,
            if s.present { "present" } else { "absent" },
            s.reason
        );
    }
    Ok(())
}

fn info_json(i: &tb_proto::v1::DaemonInfo) -> serde_json::Value {
    serde_json::json!({
        "version": i.version, "kernel": i.kernel, "active_run": i.active_run,
        "events_received": i.events_received, "events_stored": i.events_stored,
        "store_bytes": i.store_bytes, "store_reopens": i.store_reopens, "socket_slots": i.socket_slots, "bpf_stats_enabled": i.bpf_stats_enabled,
        "bpf_stats_mode": i.bpf_stats_mode, "bpf_stats_seconds": i.bpf_stats_seconds,
        "lost": i.lost.iter().map(|l| (l.reason.clone(), l.count)).collect::<std::collections::BTreeMap<_, _>>(),
        "probes": i.probes.iter().map(|p| serde_json::json!({"name": p.name, "attach": p.attach, "attached": p.attached, "run_count": p.run_count, "run_time_ns": p.run_time_ns})).collect::<Vec<_>>(),
        "sensors": i.sensors.iter().map(|s| serde_json::json!({"name": s.name, "present": s.present, "reason": s.reason})).collect::<Vec<_>>(),
    })
}

/// A run's header as JSON.
pub fn run_json(r: &Run) -> serde_json::Value {
    serde_json::json!({
        "run_id": r.run_id, "label": r.label, "start_ns": r.start_ns, "end_ns": r.end_ns,
        "start_unix_ns": r.start_unix_ns, "client_pids": r.client_pids, "server_ports": r.server_ports,
        "server_listeners": r.server_listeners, "exchanges": r.exchanges, "connections": r.connections,
        "dns_lookups": r.dns_lookups, "client_records": r.client_records, "stored_bytes": r.stored_bytes,
        "stored_bytes_by_kind": r.stored_bytes_by_kind, "end_reason": r.end_reason,
        "lost": r.lost.iter().map(|l| (l.reason.clone(), l.count)).collect::<std::collections::BTreeMap<_, _>>(),
    })
}

/// `tbctl runs`.
pub async fn list(addr: &Option<String>, json: bool) -> anyhow::Result<()> {
    let mut c = daemon::connect(&socket(addr)).await?;
    let runs = c.list_runs(ListRunsRequest {}).await?.into_inner().runs;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&runs.iter().map(run_json).collect::<Vec<_>>())?
        );
        return Ok(());
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "run",
        "label",
        "seconds",
        "exchanges",
        "connections",
        "client records",
        "stored MiB",
        "state",
    ]);
    for r in &runs {
        let secs = if r.end_ns > 0 {
            format!("{:.1}", (r.end_ns - r.start_ns) as f64 / 1e9)
        } else {
            "-".into()
        };
        t.add_row(vec![
            r.run_id.clone(),
            r.label.clone(),
            secs,
            r.exchanges.to_string(),
            r.connections.to_string(),
            r.client_records.to_string(),
            format!("{:.1}", r.stored_bytes as f64 / (1u64 << 20) as f64),
            run_state(r),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// A run's state in a word or two: capturing, done, abandoned or interrupted.
fn run_state(r: &Run) -> String {
    if r.end_ns == 0 {
        return "capturing".into();
    }
    match r.end_reason.split(':').next().unwrap_or("") {
        "" | "stopped" => "done".into(),
        other => other.to_string(),
    }
}

/// `tbctl runs show ID`.
pub async fn show(addr: &Option<String>, id: &str) -> anyhow::Result<()> {
    let mut c = daemon::connect(&socket(addr)).await?;
    let r = c
        .get_run(GetRunRequest { run_id: id.into() })
        .await?
        .into_inner();
    println!("{}", serde_json::to_string_pretty(&run_json(&r))?);
    Ok(())
}

/// `tbctl runs delete ID`.
pub async fn delete(addr: &Option<String>, id: &str) -> anyhow::Result<()> {
    let mut c = daemon::connect(&socket(addr)).await?;
    let r = c
        .delete_run(DeleteRunRequest { run_id: id.into() })
        .await?
        .into_inner();
    println!("deleted run {id} ({} records)", r.records);
    Ok(())
}
