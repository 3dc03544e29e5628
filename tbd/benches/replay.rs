//! tbd's user-space CPU per request, on a recorded capture: the event log named by
//! `TBD_REPLAY_LOG` (written by `tbd --record-events`) replayed `TBD_REPLAY_REPS` times (7)
//! through the reader, tracker and a fresh sled store each time. `cargo xtask bench replay`
//! records a saturated capture of the fast SSE server and runs it.
//!
//! CPU is the whole process's (sled's threads included), from the first record to the store's
//! flush to disk; requests are half the exchanges, since the log holds both sides.

use std::{sync::Arc, time::Instant};

use anyhow::Context;
use tbd::{replay, store::Store};

fn cpu_s() -> f64 {
    // SAFETY: getrusage fills the struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn main() -> anyhow::Result<()> {
    let path = std::env::var_os("TBD_REPLAY_LOG")
        .context("TBD_REPLAY_LOG is not set: name an event log written by tbd --record-events")?;
    let reps: usize = std::env::var("TBD_REPLAY_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let log = replay::load(path.as_ref())?;
    let mut cpu_us = Vec::new();
    let mut wall_us = Vec::new();
    let mut last = replay::Replayed::default();
    let mut bytes = 0;
    for i in 0..reps {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(Store::open(dir.path())?);
        let (c0, t0) = (cpu_s(), Instant::now());
        last = replay::replay(log.clone(), store.clone(), &format!("replay-{i}"))?;
        store.flush()?;
        cpu_us.push((cpu_s() - c0) * 1e6);
        wall_us.push(t0.elapsed().as_secs_f64() * 1e6);
        bytes = store.run_bytes(&format!("replay-{i}"))?;
    }
    let requests = (last.exchanges / 2).max(1) as f64;
    let per_request = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[0] / requests, v[v.len() / 2] / requests)
    };
    let (cpu_min, cpu_med) = per_request(&mut cpu_us);
    let (wall_min, _) = per_request(&mut wall_us);
    let r2 = |x: f64| (x * 100.0).round() / 100.0;
    println!(
        "{}",
        serde_json::json!({
            "log_bytes": log.len(),
            "records": last.records,
            "events": last.events,
            "exchanges": last.exchanges,
            "connections": last.connections,
            "requests": requests,
            "reps": reps,
            "cpu_us_per_request_min": r2(cpu_min),
            "cpu_us_per_request_median": r2(cpu_med),
            "wall_us_per_request_min": r2(wall_min),
            "stored_bytes_per_request": r2(bytes as f64 / requests),
        })
    );
    Ok(())
}
