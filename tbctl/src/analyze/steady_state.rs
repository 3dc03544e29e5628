//! The steady state: the window where the load held (requests in flight at 90% or more of
//! their typical level), ramp-up and drain left out, with the metrics of the requests sent
//! and finished inside it.

use serde_json::json;

use super::Outcome;
use crate::{
    record::RequestRecord,
    rundir::RunData,
    summary::{summarize, RunInfo},
};

pub const NAME: &str = "steady-state";
pub const ABOUT: &str =
    "the window where requests in flight held (ramp-up and drain excluded), and its metrics";

/// The window holds while requests in flight are at least this share of their typical level.
pub const HOLD_SHARE: f64 = 0.9;

/// The steady window of a run.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Window {
    /// Requests in flight for half the run's time or more (time-weighted median).
    pub typical_in_flight: u64,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// The window from the first time requests in flight reach HOLD_SHARE of their typical level
/// to the last time they fall below it; None without two finished requests.
pub fn window(records: &[&RequestRecord]) -> Option<Window> {
    let mut ev: Vec<(u64, i64)> = records
        .iter()
        .filter_map(|r| Some([(r.t_sent_ns?, 1), (r.t_end_ns?, -1)]))
        .flatten()
        .collect();
    if ev.len() < 4 {
        return None;
    }
    // Ends before starts at one instant: a slot freed at t and taken at t never sat empty.
    ev.sort_unstable();
    let mut steps: Vec<(u64, i64)> = Vec::new(); // (time, level from then on)
    let mut level = 0;
    for (t, d) in ev {
        level += d;
        match steps.last_mut() {
            Some(last) if last.0 == t => last.1 = level,
            _ => steps.push((t, level)),
        }
    }
    let span = steps.last()?.0 - steps.first()?.0;
    let mut time_at: Vec<(i64, u64)> = steps
        .windows(2)
        .map(|w| (w[0].1, w[1].0 - w[0].0))
        .collect();
    time_at.sort_unstable();
    let mut acc = 0;
    let typical = time_at
        .iter()
        .find(|(_, dt)| {
            acc += dt;
            2 * acc >= span
        })
        .map(|(l, _)| *l)?;
    let hold = ((typical as f64 * HOLD_SHARE).floor() as i64).max(1);
    let start = steps.iter().find(|s| s.1 >= hold)?.0;
    let last_held = steps.iter().rposition(|s| s.1 >= hold)?;
    let end = steps.get(last_held + 1).map_or(start, |s| s.0);
    Some(Window {
        typical_in_flight: typical as u64,
        start_ns: start,
        end_ns: end,
    })
}

pub fn run(run: &RunData) -> Result<Outcome, String> {
    let measured: Vec<&RequestRecord> = run.measured().collect();
    let w = window(&measured).ok_or("fewer than two finished requests: no steady state")?;
    let inside: Vec<RequestRecord> = measured
        .iter()
        .filter(|r| {
            r.t_sent_ns.is_some_and(|s| s >= w.start_ns)
                && r.t_end_ns.is_some_and(|e| e <= w.end_ns)
        })
        .map(|r| (*r).clone())
        .collect();
    let c = &run.config;
    let s = summarize(RunInfo::of(c), &inside, c.slo.as_ref());
    let t0 = measured
        .iter()
        .filter_map(|r| r.t_sent_ns)
        .min()
        .unwrap_or(0);
    let rel = |t: u64| t.saturating_sub(t0) as f64 / 1e9;
    let mut lines = vec![format!(
        "steady window {:.3} s to {:.3} s after the first send ({:.3} s): requests in flight \
         held at >= {:.0}% of their typical {}; {} of {} requests sent and finished inside",
        rel(w.start_ns),
        rel(w.end_ns),
        (w.end_ns - w.start_ns) as f64 / 1e9,
        HOLD_SHARE * 100.0,
        w.typical_in_flight,
        inside.len(),
        measured.len()
    )];
    for name in ["ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"] {
        if let Some(m) = s.metrics.get(name) {
            lines.push(format!(
                "  {name}: p50 {:.3}, p99 {:.3}, mean {:.3} ({} samples)",
                m.dist.p50, m.dist.p99, m.dist.mean, m.dist.count
            ));
        }
    }
    lines.push(format!(
        "  throughput inside: {:.3} req/s, {:.1} output tokens/s",
        s.request_throughput.value, s.output_token_throughput.value
    ));
    Ok(Outcome {
        analysis: NAME,
        lines,
        data: json!({ "window": w, "summary": s }),
        plots: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(sent_ms: u64, end_ms: u64) -> RequestRecord {
        RequestRecord {
            t_sent_ns: Some(sent_ms * 1_000_000),
            t_end_ns: Some(end_ms * 1_000_000),
            ..Default::default()
        }
    }

    #[test]
    fn ramp_and_drain_are_left_out() {
        // One request alone 0-10 ms, four in flight 10-110 ms (each slot refilled at once),
        // then a drain: 4 -> 3 -> 2 -> 1 at 110, 112, 116, the last one ending at 150 ms.
        let mut recs = vec![rec(0, 10)];
        for slot in 0..4 {
            recs.push(rec(10, 60));
            recs.push(rec(60, 110 + 2 * slot));
        }
        recs.push(rec(114, 150));
        let refs: Vec<&RequestRecord> = recs.iter().collect();
        let w = window(&refs).unwrap();
        assert_eq!(w.typical_in_flight, 4);
        // Held at >= 3 in flight from 10 ms until the drain reaches 2 at 112 ms.
        assert_eq!((w.start_ns, w.end_ns), (10_000_000, 112_000_000));
    }
}
