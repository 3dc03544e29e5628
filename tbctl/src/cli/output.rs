//! The terminal table of a summary.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, Table};

use crate::{
    catalogue::{self, Scope},
    doc::num,
    energy::figures::EnergySummary,
    summary::Summary,
};

/// Prints a run's energy: per domain, per device, per token, per request, above idle, with
/// the method and caveats.
pub fn print_energy(e: &EnergySummary) {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "domain", "sensor", "in total", "energy J", "avg W", "peak W",
    ]);
    for d in &e.domains {
        t.add_row(vec![
            Cell::new(&d.name),
            Cell::new(&d.sensor),
            Cell::new(if d.in_total { "yes" } else { "inside another" }),
            Cell::new(num(d.energy_j)),
            Cell::new(num(d.avg_power_w)),
            Cell::new(num(d.peak_power_w)),
        ]);
    }
    println!("{t}");
    let by: Vec<String> = e
        .by_device_j
        .iter()
        .map(|(k, v)| format!("{k} {} J", num(*v)))
        .collect();
    let opt = |v: Option<f64>| v.map(num).unwrap_or_else(|| "-".into());
    println!(
        "energy: {} J over {:.2} s ({}); {} W average, {} W peak",
        num(e.total_j),
        e.window_s,
        by.join(", "),
        num(e.avg_power_w),
        num(e.peak_power_w)
    );
    println!(
        "per token: {} J/output token, {} J/token, {} output tokens/J",
        opt(e.j_per_output_token),
        opt(e.j_per_token),
        opt(e.output_tokens_per_j)
    );
    for name in ["request_energy_j", "prefill_energy_j", "decode_energy_j"] {
        if let Some(m) = e.per_request.get(name) {
            println!(
                "{name}: mean {} p50 {} p99 {} J over {} requests",
                num(m.dist.mean),
                num(m.dist.p50),
                num(m.dist.p99),
                m.dist.count
            );
        }
    }
    println!(
        "unattributed (no request active): {} J",
        num(e.unattributed_j)
    );
    if let Some(i) = &e.above_idle {
        println!(
            "above idle ({} W over a {:.0} s baseline): {} J, {} J/output token",
            num(i.idle_power_w),
            i.baseline_s,
            num(i.energy_j),
            opt(i.j_per_output_token)
        );
    }
    for m in &e.method {
        println!("method: {m}");
    }
    for c in &e.caveats {
        println!("caveat: {c}");
    }
}

/// Prints the metrics table, throughput, errors, kernel figures and notes.
pub fn print_summary(s: &Summary) {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "metric", "count", "mean", "stddev", "min", "p50", "p90", "p95", "p99", "p99.9", "max",
    ]);
    for name in catalogue::of(Scope::Client).map(|d| d.name) {
        if let Some(m) = s.metrics.get(name) {
            let d = &m.dist;
            t.add_row(vec![
                Cell::new(name),
                Cell::new(d.count),
                Cell::new(num(d.mean)),
                Cell::new(num(d.stddev)),
                Cell::new(num(d.min)),
                Cell::new(num(d.p50)),
                Cell::new(num(d.p90)),
                Cell::new(num(d.p95)),
                Cell::new(num(d.p99)),
                Cell::new(num(d.p999)),
                Cell::new(num(d.max)),
            ]);
        }
    }
    println!("{t}");
    println!(
        "requests: {} ok, {} failed{} in {:.2}s; {:.2} req/s, {:.1} output tok/s{}",
        s.requests.succeeded,
        s.requests.failed,
        if s.requests.warmup_excluded > 0 {
            format!(" ({} warm-up excluded)", s.requests.warmup_excluded)
        } else {
            String::new()
        },
        s.duration_s,
        s.request_throughput.value,
        s.output_token_throughput.value,
        s.goodput
            .as_ref()
            .map(|g| format!(", goodput {:.2} req/s", g.value))
            .unwrap_or_default()
    );
    if !s.errors_by_class.is_empty() {
        let e: Vec<String> = s
            .errors_by_class
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("errors: {}", e.join(", "));
    }
    if let Some(k) = &s.kernel {
        println!(
            "kernel: seen {}/{} client side, {}/{} server side; lost events {:?}",
            k.seen_client_side, k.requests, k.seen_server_side, k.requests, k.lost_events
        );
        for d in catalogue::of(Scope::Kernel) {
            if let Some(m) = k.metrics.get(d.name) {
                println!(
                    "  {:<22} p50 {} p99 {} max {}  ({})",
                    d.name,
                    num(m.dist.p50),
                    num(m.dist.p99),
                    num(m.dist.max),
                    d.formula
                );
            }
        }
    }
    if let Some(e) = &s.energy {
        println!(
            "energy: {} J over {:.2} s, {} W average, {} J/output token, {} J/request (p50) \
             (tbctl energy RUN for sources, method and caveats)",
            num(e.total_j),
            e.window_s,
            num(e.avg_power_w),
            e.j_per_output_token.map(num).unwrap_or_else(|| "-".into()),
            e.per_request
                .get("request_energy_j")
                .map(|m| num(m.dist.p50))
                .unwrap_or_else(|| "-".into()),
        );
    }
    for n in &s.notes {
        println!("note: {n}");
    }
}
