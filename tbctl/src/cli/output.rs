//! The terminal table of a summary.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, Table};

use crate::{
    catalogue::{self, Scope},
    doc::num,
    summary::Summary,
};

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
    for n in &s.notes {
        println!("note: {n}");
    }
}
