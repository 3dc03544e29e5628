//! Loopback HTTP: `/healthz` and Prometheus `/metrics`.

use std::{net::SocketAddr, sync::Arc};

use axum::{extract::State, routing::get, Router};

use crate::capture::Engine;

/// Refuses addresses beyond loopback: the daemon is root and this endpoint has no auth.
pub fn check_loopback(addr: &SocketAddr) -> Result<(), String> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "--http {addr}: tbd serves HTTP on loopback only (use 127.0.0.1 or [::1])"
        ))
    }
}

/// The router for /healthz and /metrics.
pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(engine)
}

async fn metrics(State(engine): State<Arc<Engine>>) -> String {
    use std::{fmt::Write, sync::atomic::Ordering::Relaxed};
    let c = &engine.counters;
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, v: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    };
    metric(
        "tbd_events_received_total",
        "Records read from the ring buffer.",
        "counter",
        c.events_received.load(Relaxed),
    );
    metric(
        "tbd_syscalls_received_total",
        "Probe events those records carried (a batch of chunks counts each chunk).",
        "counter",
        c.syscalls_received.load(Relaxed),
    );
    metric(
        "tbd_events_stored_total",
        "Events processed into a capture.",
        "counter",
        c.events_stored.load(Relaxed),
    );
    metric(
        "tbd_records_stored_total",
        "Records written to the store.",
        "counter",
        c.records_stored.load(Relaxed),
    );
    metric(
        "tbd_store_bytes",
        "Store size on disk.",
        "gauge",
        engine.store.size_on_disk(),
    );
    metric(
        "tbd_store_reopens_total",
        "Times sled was closed and reopened to give its memory back.",
        "counter",
        engine.store.releases(),
    );
    metric(
        "tbd_capture_active",
        "1 while a capture runs.",
        "gauge",
        engine.active_run().is_some() as u64,
    );
    let probes = engine.probes();
    let _ = writeln!(out, "# HELP tbd_events_lost_total Events lost in the kernel, by reason.\n# TYPE tbd_events_lost_total counter");
    for (reason, n) in probes.lost().unwrap_or_default() {
        let _ = writeln!(out, "tbd_events_lost_total{{reason=\"{reason}\"}} {n}");
    }
    let _ = writeln!(out, "# HELP tbd_bpf_run_time_ns_total BPF program run time (kernel BPF stats).\n# TYPE tbd_bpf_run_time_ns_total counter");
    for p in probes.program_stats() {
        let _ = writeln!(
            out,
            "tbd_bpf_run_time_ns_total{{program=\"{}\"}} {}",
            p.name, p.run_time_ns
        );
        let _ = writeln!(
            out,
            "tbd_bpf_run_count_total{{program=\"{}\"}} {}",
            p.name, p.run_count
        );
        let _ = writeln!(
            out,
            "tbd_probe_attached{{program=\"{}\"}} {}",
            p.name, p.attached as u8
        );
    }
    out
}
